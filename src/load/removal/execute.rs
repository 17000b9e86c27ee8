//! Sending the removals: one task per project (a project's deletions in order, so two never
//! touch one direct cost at once: no 409 by construction), at most `max_projects_in_flight`
//! projects at a time, every request through the client's rate gate and retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::{self, StreamExt};
use reqwest::Method;
use serde::Serialize;

use super::{Deletion, ProjectRemovals};
use crate::error::{Error, Result};
use crate::ledger::{Ledger, Removal};
use crate::load::client::ProcoreClient;
use crate::model::values::format_decimal;

/// How the removals went.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RemovalOutcome {
    /// Lines removed (alone, or with their direct cost).
    pub lines_removed: u64,
    pub direct_costs_removed: u64,
    /// Of those, already gone from Procore (404): a retry after a lost response, or deleted by
    /// a user.
    pub already_gone: u64,
    pub requests: u64,
    /// Removals Procore refused, with its answer; the ledger keeps them for the next run.
    pub failed: Vec<String>,
    /// Removals not sent because the run stopped (Procore down, Ctrl-C): the next sync sends them.
    pub pending: u64,
    pub by_project: BTreeMap<String, ProjectRemovals>,
}

/// What a project's task reports.
#[derive(Default)]
struct ProjectDone {
    outcome: RemovalOutcome,
    stop: Option<Error>,
}

/// Send `deletions`: the first error that stops the load (Procore unavailable past the retry
/// budget, Ctrl-C, refused credentials) is returned beside what was done; a removal Procore
/// refuses (e.g. 403 on a locked direct cost) is reported and the others go on.
pub async fn execute(
    client: Arc<ProcoreClient>,
    ledger: &Mutex<Ledger>,
    projects: &HashMap<String, i64>,
    deletions: Vec<Deletion>,
    run_id: &str,
    in_flight: usize,
    cancel: Arc<AtomicBool>,
) -> (RemovalOutcome, Option<Error>) {
    let mut by_job: BTreeMap<String, Vec<Deletion>> = BTreeMap::new();
    for d in deletions {
        by_job.entry(d.job().to_string()).or_default().push(d);
    }
    let tasks = by_job.into_iter().map(|(job, deletions)| {
        let (client, cancel) = (client.clone(), cancel.clone());
        let project = projects.get(&job).copied();
        async move {
            let mut done = ProjectDone::default();
            let Some(pid) = project else {
                // The project is not mapped any more: nothing can be sent, nothing is lost.
                done.outcome.pending = deletions.iter().map(|d| d.lines().len() as u64).sum();
                done.outcome.failed.push(format!(
                    "job {job}: {} removal(s) not sent, the job has no Procore project now",
                    deletions.len()
                ));
                return done;
            };
            let mut project = ProjectTask {
                client: &client,
                ledger,
                pid,
                run_id,
                parents: None,
            };
            let mut left = deletions.into_iter();
            for d in left.by_ref() {
                if cancel.load(Ordering::Relaxed) {
                    done.outcome.pending += d.lines().len() as u64;
                    done.stop.get_or_insert(Error::Interrupted);
                    continue;
                }
                match project.delete(&d, &mut done.outcome).await {
                    Ok(()) => {}
                    Err(e @ Error::Procore { .. }) => {
                        done.outcome.failed.push(format!("job {job}: {e}"));
                    }
                    Err(e) => {
                        done.outcome.pending += d.lines().len() as u64;
                        done.stop = Some(e);
                        break;
                    }
                }
            }
            done.outcome.pending += left.map(|d| d.lines().len() as u64).sum::<u64>();
            done
        }
    });
    let mut outcome = RemovalOutcome::default();
    let mut stop = None;
    let mut results = stream::iter(tasks).buffer_unordered(in_flight.max(1));
    while let Some(done) = results.next().await {
        let o = done.outcome;
        outcome.lines_removed += o.lines_removed;
        outcome.direct_costs_removed += o.direct_costs_removed;
        outcome.already_gone += o.already_gone;
        outcome.requests += o.requests;
        outcome.pending += o.pending;
        outcome.failed.extend(o.failed);
        for (job, p) in o.by_project {
            let mine = outcome.by_project.entry(job).or_default();
            mine.lines += p.lines;
            mine.direct_costs += p.direct_costs;
            mine.cents += p.cents;
            mine.amount = format_decimal(mine.cents, 2);
        }
        if stop.is_none() {
            stop = done.stop;
        }
    }
    (outcome, stop)
}

/// One project's removals.
struct ProjectTask<'a> {
    client: &'a ProcoreClient,
    ledger: &'a Mutex<Ledger>,
    pid: i64,
    run_id: &'a str,
    /// Procore line id → its direct cost's id, read once from Procore for lines whose direct
    /// cost the ledger does not know (recorded before schema version 2).
    parents: Option<HashMap<i64, i64>>,
}

impl ProjectTask<'_> {
    /// Send one deletion; a 404 is a removal already done. Recorded in the ledger at once.
    async fn delete(&mut self, d: &Deletion, outcome: &mut RemovalOutcome) -> Result<()> {
        let (path, endpoint, origin_ids) = match d {
            Deletion::DirectCost { header, lines, .. } => {
                let Some(id) = header.procore_id else {
                    return self.forget(d, outcome, false);
                };
                let mut ids: Vec<String> = lines.iter().map(|l| l.origin_id.clone()).collect();
                ids.push(header.origin_id.clone());
                (
                    format!("/rest/v1.0/projects/{}/direct_costs/{id}", self.pid),
                    "DELETE direct_costs",
                    ids,
                )
            }
            Deletion::Line { header, line, .. } => {
                let Some(line_id) = line.procore_id else {
                    return self.forget(d, outcome, false);
                };
                let parent = match header.as_ref().and_then(|h| h.procore_id) {
                    Some(id) => Some(id),
                    None => self.parent_of(line_id).await?,
                };
                let Some(dc) = parent else {
                    // Procore has no such line any more: nothing to send.
                    return self.forget(d, outcome, true);
                };
                (
                    format!(
                        "/rest/v1.0/projects/{}/direct_costs/{dc}/line_items/{line_id}",
                        self.pid
                    ),
                    "DELETE direct_costs/line_items",
                    vec![line.origin_id.clone()],
                )
            }
        };
        outcome.requests += 1;
        let gone = match self
            .client
            .call(Method::DELETE, &path, &[], None, endpoint)
            .await
        {
            Ok(_) => false,
            Err(Error::Procore { status: 404, .. }) => true,
            Err(e) => return Err(e),
        };
        self.confirm(d, origin_ids, gone, outcome)
    }

    /// Record a removal Procore confirmed (or that was already gone).
    fn confirm(
        &self,
        d: &Deletion,
        origin_ids: Vec<String>,
        gone: bool,
        outcome: &mut RemovalOutcome,
    ) -> Result<()> {
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .confirm_removal(&Removal {
                origin_ids,
                run_id: self.run_id.to_string(),
            })?;
        let p = outcome.by_project.entry(d.job().to_string()).or_default();
        for line in d.lines() {
            p.add_line(line);
        }
        outcome.lines_removed += d.lines().len() as u64;
        if let Deletion::DirectCost { .. } = d {
            p.direct_costs += 1;
            outcome.direct_costs_removed += 1;
        }
        if gone {
            outcome.already_gone += 1;
        }
        Ok(())
    }

    /// A removal of something Procore never gave an id for (or no longer holds): only the
    /// ledger's entries go.
    fn forget(&self, d: &Deletion, outcome: &mut RemovalOutcome, gone: bool) -> Result<()> {
        let mut ids: Vec<String> = d.lines().iter().map(|l| l.origin_id.clone()).collect();
        if let Deletion::DirectCost { header, .. } = d {
            ids.push(header.origin_id.clone());
        }
        self.confirm(d, ids, gone, outcome)
    }

    /// The direct cost of Procore line `line_id`, from one paginated read of the project's
    /// line items (done once per project, only for lines the ledger lacks it for).
    async fn parent_of(&mut self, line_id: i64) -> Result<Option<i64>> {
        if self.parents.is_none() {
            let path = format!("/rest/v1.0/projects/{}/direct_costs/line_items", self.pid);
            let items = self
                .client
                .get_all(&path, &[], "GET direct_costs/line_items")
                .await?;
            self.parents = Some(
                items
                    .iter()
                    .filter_map(|i| Some((i["id"].as_i64()?, i["direct_cost_id"].as_i64()?)))
                    .collect(),
            );
        }
        Ok(self.parents.as_ref().and_then(|p| p.get(&line_id)).copied())
    }
}
