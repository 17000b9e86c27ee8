//! The hh2 "Mappings" step: each group of lines the load would receive, resolved against what
//! Procore holds by the load's own rules, in the load's order (a project worker quarantines a
//! line for its project first, then its direct cost's vendor, then its budget code):
//!
//! 1. the job's project, by `[load] project_match` (no project: `unmapped_project`);
//! 2. the project's Direct Costs tool (not enabled: Procore answers 403 and the sync's load
//!    stops there: `direct_costs_tool_disabled`);
//! 3. an AP cost's Sage vendor as a Procore vendor origin_id (none: `unmapped_vendor`);
//! 4. the flat budget code (`[load] budget_code_format…`, [`flat_code_of`]) among the project's
//!    codes: created when `[load] create_missing_budget_codes` is true, else
//!    `unmapped_budget_code`.

use std::collections::BTreeMap;

use serde::Serialize;

use super::costs::{SageCosts, Tally};
use super::target::{ProcoreFacts, ToolState};
use crate::config::LoadConfig;
use crate::load::procore::payload::flat_code_of;
use crate::quarantine::ReasonCode;

/// Why a line would not load: a quarantine reason of the sync, or the project's tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotLoaded {
    /// Quarantined by the sync with this reason.
    Quarantined(ReasonCode),
    /// The project's Direct Costs tool is not enabled.
    DirectCostsToolDisabled,
}

impl NotLoaded {
    /// The stable code (a quarantine reason code, or `direct_costs_tool_disabled`).
    pub fn code(self) -> &'static str {
        match self {
            NotLoaded::Quarantined(r) => r.as_str(),
            NotLoaded::DirectCostsToolDisabled => "direct_costs_tool_disabled",
        }
    }
}

/// One Sage job and where its lines go.
#[derive(Debug, Clone, Default)]
pub struct JobMapping {
    pub job: String,
    /// None: no Procore project.
    pub project_id: Option<i64>,
    /// Lines the load would receive for the job.
    pub lines: Tally,
    /// Of those, the ones that would not load.
    pub not_loaded: Tally,
}

/// A budget code a project lacks.
#[derive(Debug, Clone)]
pub struct MissingCode {
    pub job: String,
    pub project_id: i64,
    pub budget_code: String,
    pub lines: Tally,
    /// True when the sync would create it (`create_missing_budget_codes`).
    pub created: bool,
}

/// A project whose Direct Costs tool is not enabled, or whose state Procore did not tell.
#[derive(Debug, Clone)]
pub struct ToolProblem {
    pub job: String,
    pub project_id: i64,
    /// False: Procore did not say (the lines are not counted as not loading).
    pub disabled: bool,
    pub detail: String,
    pub lines: Tally,
}

/// Everything the mappings found.
#[derive(Debug, Clone, Default)]
pub struct Mappings {
    /// Every job with lines, in job order.
    pub jobs: Vec<JobMapping>,
    /// Sage vendors of AP costs with no Procore vendor: all their lines, whatever their job.
    pub missing_vendors: BTreeMap<String, Tally>,
    /// Per project and code, in job and code order.
    pub missing_codes: Vec<MissingCode>,
    pub tool_problems: Vec<ToolProblem>,
    /// Lines that would not load, each counted once, by the first reason in the load's order.
    pub not_loaded: BTreeMap<NotLoaded, Tally>,
    pub create_missing_budget_codes: bool,
}

/// Resolve the source's lines against Procore.
pub fn resolve(costs: &SageCosts, facts: &ProcoreFacts, load: &LoadConfig) -> Mappings {
    let mut jobs: BTreeMap<&str, JobMapping> = BTreeMap::new();
    let mut codes: BTreeMap<(&str, String), (i64, Tally)> = BTreeMap::new();
    let mut tools: BTreeMap<&str, (i64, Tally)> = BTreeMap::new();
    let mut m = Mappings {
        create_missing_budget_codes: load.create_missing_budget_codes,
        ..Mappings::default()
    };
    for (g, t) in &costs.groups {
        let project = facts.projects.get(&g.job).copied();
        let job = jobs.entry(&g.job).or_insert_with(|| JobMapping {
            job: g.job.clone(),
            project_id: project,
            ..JobMapping::default()
        });
        job.lines.merge(*t);
        let vendor_missing = g.vendor.as_deref().filter(|v| !facts.vendors.contains(*v));
        if let Some(v) = vendor_missing {
            m.missing_vendors
                .entry(v.to_string())
                .or_default()
                .merge(*t);
        }
        let Some(pid) = project else {
            job.not_loaded.merge(*t);
            *m.not_loaded
                .entry(NotLoaded::Quarantined(ReasonCode::UnmappedProject))
                .or_default() += *t;
            continue;
        };
        let tool = facts.direct_costs_tool.get(&pid);
        if !matches!(tool, Some(ToolState::Enabled)) {
            tools
                .entry(&g.job)
                .or_insert((pid, Tally::default()))
                .1
                .merge(*t);
        }
        let code = flat_code_of(
            load,
            g.extra.as_deref(),
            g.cost_code.as_deref(),
            g.category.as_deref(),
        );
        let known = facts
            .budget_codes
            .get(&pid)
            .is_some_and(|c| c.contains(&code));
        if !known {
            codes
                .entry((&g.job, code))
                .or_insert((pid, Tally::default()))
                .1
                .merge(*t);
        }
        let reason = if matches!(tool, Some(ToolState::Disabled(_))) {
            Some(NotLoaded::DirectCostsToolDisabled)
        } else if vendor_missing.is_some() {
            Some(NotLoaded::Quarantined(ReasonCode::UnmappedVendor))
        } else if !known && !load.create_missing_budget_codes {
            Some(NotLoaded::Quarantined(ReasonCode::UnmappedBudgetCode))
        } else {
            None
        };
        if let Some(r) = reason {
            job.not_loaded.merge(*t);
            *m.not_loaded.entry(r).or_default() += *t;
        }
    }
    m.jobs = jobs.into_values().collect();
    m.missing_codes = codes
        .into_iter()
        .map(|((job, budget_code), (project_id, lines))| MissingCode {
            job: job.to_string(),
            project_id,
            budget_code,
            lines,
            created: load.create_missing_budget_codes,
        })
        .collect();
    m.tool_problems = tools
        .into_iter()
        .map(|(job, (project_id, lines))| {
            let (disabled, detail) = match facts.direct_costs_tool.get(&project_id) {
                Some(ToolState::Disabled(d)) => (true, d.clone()),
                Some(ToolState::Unknown(d)) => (false, d.clone()),
                _ => (false, "not asked".to_string()),
            };
            ToolProblem {
                job: job.to_string(),
                project_id,
                disabled,
                detail,
                lines,
            }
        })
        .collect();
    m
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.merge(other);
    }
}
