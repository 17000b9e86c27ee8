//! `jcsync check PIPELINE [--json]`: the hh2 "Connect" and "Mappings" steps as a command.
//!
//! 1. [`source`]: the pipeline file is valid, the Sage source is reachable, every table and
//!    column the pipeline needs exists (with row counts).
//! 2. [`target`]: logged in to the pipeline's `[target]` as a sync logs in; the company's
//!    projects and vendors; for each project that would receive lines, its budget codes and
//!    whether its Direct Costs tool is enabled.
//! 3. [`costs`] and [`mappings`]: the transactions streamed through the pipeline's own extract,
//!    type, project and enrich stages, summed per job, budget code and vendor, and resolved by
//!    the load's rules: which jobs have no project, which vendors and budget codes are missing,
//!    which projects cannot receive direct costs, and how many rows and how much money would
//!    not load.
//!
//! Exit status ([`CheckOutcome::exit_code`]): 0 when every cost row would load; 1 when the
//! pipeline, the source or the target cannot be used (bad file, missing table or column,
//! unreachable or refused); [`EXIT_WOULD_NOT_LOAD`] (2) when everything is reachable but some
//! cost rows would not load.

pub mod costs;
pub mod mappings;
pub mod render;
pub mod source;
pub mod target;

use std::collections::BTreeSet;

use crate::config::Pipeline;
use crate::error::Result;

pub use costs::{SageCosts, Tally};
pub use mappings::{Mappings, NotLoaded};
pub use source::{check as check_source, CheckReport, ColumnCheck, TableCheck};
pub use target::{ToolState, Unreachable};

/// Exit status when everything is reachable and some cost rows would not load.
pub const EXIT_WOULD_NOT_LOAD: u8 = 2;
/// Exit status when the pipeline, its source or its target cannot be used.
pub const EXIT_CANNOT_CHECK: u8 = 1;

/// What the target part found.
#[derive(Debug)]
pub enum TargetPart {
    /// `[target] kind = "dry-run"`: no Procore to check, mappings not resolved.
    DryRun,
    /// Logged in.
    Reached {
        label: String,
        projects: usize,
        vendors: usize,
    },
    /// Login refused, Procore down or unreachable.
    Unreachable(Unreachable),
}

/// Everything `check` found.
#[derive(Debug)]
pub struct CheckOutcome {
    pub pipeline: String,
    pub source: CheckReport,
    pub target: TargetPart,
    /// The source's transactions as the load would receive them (None: not read, because a
    /// table is missing or the target is a dry run or unreachable).
    pub costs: Option<SageCosts>,
    /// Resolved against Procore (None when there is no Procore to resolve against).
    pub mappings: Option<Mappings>,
    /// Why the transactions could not be read, if they could not.
    pub costs_error: Option<String>,
}

impl CheckOutcome {
    /// Rows that would not load, in all (set aside before the load, and by the mappings).
    pub fn not_loaded(&self) -> Tally {
        let mut t = Tally::default();
        if let Some(c) = &self.costs {
            for s in c.set_aside.values() {
                t.merge(s.tally);
            }
        }
        if let Some(m) = &self.mappings {
            for n in m.not_loaded.values() {
                t.merge(*n);
            }
        }
        t
    }

    /// 0, [`EXIT_CANNOT_CHECK`] or [`EXIT_WOULD_NOT_LOAD`] (see the module's doc).
    pub fn exit_code(&self) -> u8 {
        let unusable = !self.source.all_present()
            || matches!(self.target, TargetPart::Unreachable(_))
            || self.costs_error.is_some();
        if unusable {
            EXIT_CANNOT_CHECK
        } else if self.not_loaded().rows > 0 {
            EXIT_WOULD_NOT_LOAD
        } else {
            0
        }
    }
}

/// Check a pipeline: its source, its target, and what would not load. An error is a source
/// that cannot be reached at all (wrong password, unreachable host, unreadable file); every
/// other finding is in the outcome.
pub async fn check(pipeline: &Pipeline) -> Result<CheckOutcome> {
    let source = source::check(pipeline).await?;
    let read_costs = source.all_present()
        && !matches!(
            pipeline.config.target,
            crate::config::TargetConfig::DryRun(_)
        );
    // The transactions stream on a thread of their own while Procore is asked.
    let scan = read_costs.then(|| {
        let config = pipeline.config.clone();
        tokio::task::spawn_blocking(move || costs::scan(&config))
    });
    let mut outcome = CheckOutcome {
        pipeline: pipeline.path.display().to_string(),
        source,
        target: TargetPart::DryRun,
        costs: None,
        mappings: None,
        costs_error: None,
    };
    let connected = target::connect(pipeline).await;
    let scanned = match scan {
        Some(task) => Some(match task.await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }),
        None => None,
    };
    match scanned {
        Some(Ok(c)) => outcome.costs = Some(c),
        Some(Err(e)) => outcome.costs_error = Some(e),
        None => {}
    }
    let mut connected = match connected {
        Ok(Some(c)) => c,
        Ok(None) => return Ok(outcome),
        Err(u) => {
            outcome.target = TargetPart::Unreachable(u);
            return Ok(outcome);
        }
    };
    outcome.target = TargetPart::Reached {
        label: connected.label.clone(),
        projects: connected.facts.projects.len(),
        vendors: connected.facts.vendors.len(),
    };
    let Some(costs) = &outcome.costs else {
        return Ok(outcome);
    };
    let projects: BTreeSet<i64> = costs
        .groups
        .keys()
        .filter_map(|g| connected.facts.projects.get(&g.job).copied())
        .collect();
    if let Err(e) = connected.look_up_projects(&projects).await {
        outcome.target = TargetPart::Unreachable(Unreachable {
            status: match &e {
                crate::error::Error::Procore { status, .. } => Some(*status),
                _ => None,
            },
            message: e.to_string(),
        });
        return Ok(outcome);
    }
    outcome.mappings = Some(mappings::resolve(
        costs,
        &connected.facts,
        &pipeline.config.load,
    ));
    Ok(outcome)
}
