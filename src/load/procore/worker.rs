//! A project's worker: one task per Sage job takes that project's requests in order, resolves
//! the Procore ids (direct cost, budget code), skips what the ledger shows unchanged, sends the
//! rest and records what Procore answered (ledger) or why a line was not loaded (quarantine).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::payload::{
    flat_code, project_path, sync_body, HeaderIds, HeaderRecord, LineIds, LineRecord, Payload,
    HEADER_SYNC_PATH, LINE_SYNC_PATH,
};
use super::LoadContext;
use crate::error::{Error, Result};
use crate::ledger::LedgerEntry;
use crate::load::plan::{DirectCostHeader, LineItem};
use crate::quarantine::{QuarantineBatch, ReasonCode};

/// A planned request as a project worker receives it: the planner lends its records for the
/// duration of `send`, the worker keeps owned copies (the load is paced by Procore's rate
/// limit, so copying is not its cost).
///
/// Owned records rather than payloads serialized at `send`: a line's payload needs its direct
/// cost's and budget code's Procore ids, which only this worker learns (from the header sync's
/// answer, the WBS codes it fetches or creates), and a line kept for the ledger or quarantine
/// needs nearly every field anyway (`QuarantineBatch::from_line_items` takes a [`LineItem`]).
pub(super) enum Request {
    HeaderSync(Vec<DirectCostHeader>),
    LineSync(Vec<LineItem>),
}

/// Procore ids of direct costs a project worker keeps at hand; past this, lines find their
/// direct cost's id in the ledger.
const HEADER_IDS_KEPT: usize = 100_000;

/// Largest `bulk_create` body jcsync sends.
const BULK_CREATE_MAX: usize = 100;

/// A project worker's state.
struct ProjectWorker {
    ctx: Arc<LoadContext>,
    job: String,
    project_id: Option<i64>,
    wbs: Option<HashMap<String, i64>>,
    /// Header origin_id → Procore id, or the reason it has none. Bounded: past
    /// [`HEADER_IDS_KEPT`] the ids are dropped (the ledger has them), the reasons kept.
    headers: HashMap<Arc<str>, std::result::Result<i64, (ReasonCode, String)>>,
}

impl ProjectWorker {
    async fn quarantine(&self, rejected: &[(&LineItem, ReasonCode, String)]) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        {
            let mut c = self.ctx.counts();
            for (_, code, _) in rejected {
                *c.quarantined.entry(code.as_str().to_string()).or_insert(0) += 1;
            }
        }
        let q = QuarantineBatch::from_line_items(&self.ctx.table, rejected)?;
        // The quarantine writer stopped: its own error says why.
        self.ctx
            .quarantine
            .send(q)
            .await
            .map_err(|_| Error::NextStageStopped { stage: "load" })
    }

    fn base(&self) -> String {
        format!(
            "/rest/v1.0/projects/{}",
            self.project_id.unwrap_or_default()
        )
    }

    /// Send a sync request (`HEADER_SYNC_PATH` or `LINE_SYNC_PATH`) of serialized records; the
    /// entities and the errors of Procore's answer.
    async fn send_sync(
        &self,
        template: &str,
        endpoint: &str,
        updates: &[Vec<u8>],
    ) -> Result<(Vec<Value>, Vec<Value>)> {
        let path = project_path(template, self.project_id.unwrap_or_default());
        let _permit = self.ctx.permit().await?;
        let body = sync_body(updates);
        let resp = self
            .ctx
            .client
            .call(Method::PATCH, &path, &[], Some(&body), endpoint)
            .await?;
        let list = |k: &str| resp.body[k].as_array().cloned().unwrap_or_default();
        Ok((list("entities"), list("errors")))
    }

    async fn sync_headers(&mut self, headers: Vec<DirectCostHeader>) -> Result<()> {
        let mut updates = Vec::new();
        if self.headers.len() > HEADER_IDS_KEPT {
            // Every id here is in the ledger (recorded when Procore answered, or found there):
            // forget them, keep the rejections, which only this map knows.
            self.headers.retain(|_, v| v.is_err());
        }
        let mut hashes: HashMap<Arc<str>, String> = HashMap::new();
        let mut unchanged = 0;
        for h in &headers {
            let vendor_id = match self.ctx.directory.vendor_of(h.view()) {
                Ok(id) => id,
                Err(reason) => {
                    self.headers.insert(h.origin_id.clone(), Err(reason));
                    continue;
                }
            };
            let Payload { json, hash } = Payload::of(&HeaderRecord {
                header: h.view(),
                status: &self.ctx.config.status,
                ids: HeaderIds::Resolved { vendor_id },
            })?;
            if !self.ctx.config.force {
                if let Some(known) = self.ctx.known(&h.origin_id)? {
                    if let (true, Some(id)) = (known.payload_hash == hash, known.procore_id) {
                        self.headers.insert(h.origin_id.clone(), Ok(id));
                        unchanged += 1;
                        continue;
                    }
                }
            }
            hashes.insert(h.origin_id.clone(), hash);
            updates.push(json);
        }
        self.ctx.counts().headers_unchanged += unchanged;
        if updates.is_empty() {
            return Ok(());
        }
        let sent = updates.len();
        let (entities, errors) = self
            .send_sync(HEADER_SYNC_PATH, "PATCH direct_costs/sync", &updates)
            .await?;
        self.ctx.counts().header_requests += 1;
        let mut ledger = Vec::new();
        for e in &entities {
            let (Some(origin), Some(id)) = (e["origin_id"].as_str(), e["id"].as_i64()) else {
                continue;
            };
            if let Some(hash) = hashes.remove(origin) {
                self.headers.insert(Arc::from(origin), Ok(id));
                ledger.push(LedgerEntry {
                    origin_id: origin.to_string(),
                    kind: "header".into(),
                    job: self.job.clone(),
                    procore_id: Some(id),
                    payload_hash: hash,
                    run_id: self.ctx.run_id.clone(),
                });
            }
        }
        for e in &errors {
            if let Some(origin) = e["origin_id"].as_str() {
                hashes.remove(origin);
                let message = e["errors"].to_string();
                self.headers.insert(
                    Arc::from(origin),
                    Err((
                        ReasonCode::ProcoreRejected,
                        format!("Procore rejected the direct cost: {message}"),
                    )),
                );
            }
        }
        // Anything Procore neither accepted nor rejected: not loaded, say so.
        for origin in hashes.into_keys() {
            self.headers.insert(
                origin,
                Err((
                    ReasonCode::ProcoreRejected,
                    "Procore's answer did not mention this direct cost".into(),
                )),
            );
        }
        self.ctx.counts().headers_sent += ledger.len() as u64;
        tracing::debug!(job = self.job, sent, accepted = ledger.len(), "header sync");
        self.ctx.record(&ledger)
    }

    async fn ensure_wbs(&mut self) -> Result<()> {
        if self.wbs.is_some() {
            return Ok(());
        }
        let path = format!("{}/work_breakdown_structure/wbs_codes", self.base());
        let codes = self.ctx.client.get_all(&path, &[], "GET wbs_codes").await?;
        let map = codes
            .iter()
            .filter_map(|c| Some((c["flat_code"].as_str()?.to_string(), c["id"].as_i64()?)))
            .collect();
        self.wbs = Some(map);
        Ok(())
    }

    async fn create_codes(&mut self, missing: Vec<String>) -> Result<()> {
        let path = format!(
            "{}/work_breakdown_structure/wbs_codes/bulk_create",
            self.base()
        );
        for chunk in missing.chunks(BULK_CREATE_MAX) {
            let bulk: Vec<Value> = chunk
                .iter()
                .map(|c| json!({ "flat_code": c, "description": format!("{c} (created by jcsync)") }))
                .collect();
            let body = serde_json::to_vec(&json!({ "bulk": bulk }))?;
            let _permit = self.ctx.permit().await?;
            let resp = self
                .ctx
                .client
                .call(
                    Method::PATCH,
                    &path,
                    &[],
                    Some(&body),
                    "PATCH wbs_codes/bulk_create",
                )
                .await?;
            let wbs = self.wbs.get_or_insert_with(HashMap::new);
            for e in resp.body["entities"].as_array().into_iter().flatten() {
                if let (Some(code), Some(id)) = (e["flat_code"].as_str(), e["id"].as_i64()) {
                    wbs.insert(code.to_string(), id);
                    self.ctx.counts().budget_codes_created += 1;
                }
            }
        }
        Ok(())
    }

    async fn sync_lines(&mut self, lines: Vec<LineItem>) -> Result<()> {
        self.ensure_wbs().await?;
        if self.ctx.config.create_missing_budget_codes {
            let wbs = self.wbs.as_ref();
            let mut missing: Vec<String> = lines
                .iter()
                .map(|l| flat_code(&self.ctx.config, l))
                .filter(|c| wbs.is_some_and(|w| !w.contains_key(c)))
                .collect();
            missing.sort();
            missing.dedup();
            if !missing.is_empty() {
                self.create_codes(missing).await?;
            }
        }
        let mut rejected: Vec<(&LineItem, ReasonCode, String)> = Vec::new();
        let mut updates = Vec::new();
        let mut pending: HashMap<String, (&LineItem, String)> = HashMap::new();
        let mut unchanged = 0;
        for l in &lines {
            let dc = match self.headers.get(&l.direct_cost_origin_id) {
                Some(Ok(id)) => *id,
                Some(Err((code, reason))) => {
                    rejected.push((l, *code, reason.clone()));
                    continue;
                }
                None => {
                    // Planned in an earlier request of this run that this worker never saw:
                    // only the ledger can know it.
                    match self
                        .ctx
                        .known(&l.direct_cost_origin_id)?
                        .and_then(|e| e.procore_id)
                    {
                        Some(id) => id,
                        None => {
                            rejected.push((
                                l,
                                ReasonCode::ProcoreRejected,
                                "its direct cost was never created".into(),
                            ));
                            continue;
                        }
                    }
                }
            };
            let code = flat_code(&self.ctx.config, l);
            let Some(wbs_id) = self.wbs.as_ref().and_then(|w| w.get(&code)).copied() else {
                rejected.push((
                    l,
                    ReasonCode::UnmappedBudgetCode,
                    format!(
                        "budget code {code:?} is not in Procore project {} (job {})",
                        self.project_id.unwrap_or_default(),
                        self.job
                    ),
                ));
                continue;
            };
            let Payload { json, hash } = Payload::of(&LineRecord {
                line: l.view(),
                ids: LineIds::Resolved {
                    direct_cost_id: dc,
                    wbs_code_id: wbs_id,
                },
            })?;
            if !self.ctx.config.force {
                if let Some(known) = self.ctx.known(l.origin_id())? {
                    if known.payload_hash == hash && known.procore_id.is_some() {
                        unchanged += 1;
                        continue;
                    }
                }
            }
            pending.insert(l.origin_id().to_string(), (l, hash));
            updates.push(json);
        }
        self.ctx.counts().lines_unchanged += unchanged;
        if !updates.is_empty() {
            let (entities, errors) = self
                .send_sync(
                    LINE_SYNC_PATH,
                    "PATCH direct_costs/line_items/sync",
                    &updates,
                )
                .await?;
            self.ctx.counts().line_requests += 1;
            let mut ledger = Vec::new();
            for e in &entities {
                let Some(origin) = e["origin_id"].as_str() else {
                    continue;
                };
                if let Some((_, hash)) = pending.remove(origin) {
                    ledger.push(LedgerEntry {
                        origin_id: origin.to_string(),
                        kind: "line".into(),
                        job: self.job.clone(),
                        procore_id: e["id"].as_i64(),
                        payload_hash: hash,
                        run_id: self.ctx.run_id.clone(),
                    });
                }
            }
            for e in &errors {
                if let Some((l, _)) = e["origin_id"].as_str().and_then(|o| pending.remove(o)) {
                    rejected.push((
                        l,
                        ReasonCode::ProcoreRejected,
                        format!("Procore rejected the line: {}", e["errors"]),
                    ));
                }
            }
            for (_, (l, _)) in pending.drain() {
                rejected.push((
                    l,
                    ReasonCode::ProcoreRejected,
                    "Procore's answer did not mention this line".into(),
                ));
            }
            self.ctx.counts().lines_sent += ledger.len() as u64;
            self.ctx.record(&ledger)?;
        }
        self.quarantine(&rejected).await
    }

    async fn handle(&mut self, request: Request) -> Result<()> {
        if self.project_id.is_none() {
            // Unmapped project: every line of the project is quarantined, nothing is sent.
            if let Request::LineSync(lines) = &request {
                let reason = format!("Sage job {:?} has no Procore project", self.job);
                let rejected: Vec<(&LineItem, ReasonCode, String)> = lines
                    .iter()
                    .map(|l| (l, ReasonCode::UnmappedProject, reason.clone()))
                    .collect();
                self.quarantine(&rejected).await?;
            }
            return Ok(());
        }
        match request {
            Request::HeaderSync(headers) => self.sync_headers(headers).await,
            Request::LineSync(lines) => self.sync_lines(lines).await,
        }
    }
}

pub(super) async fn run_worker(
    ctx: Arc<LoadContext>,
    job: String,
    mut rx: mpsc::Receiver<Request>,
) {
    let project_id = ctx.directory.projects.get(&job).copied();
    let mut worker = ProjectWorker {
        ctx: ctx.clone(),
        job,
        project_id,
        wbs: None,
        headers: HashMap::new(),
    };
    while let Some(request) = rx.recv().await {
        let lines = match &request {
            Request::LineSync(lines) => lines.len() as u64,
            Request::HeaderSync(_) => 0,
        };
        if ctx.stopped() {
            ctx.counts().pending += lines;
        } else if let Err(e) = worker.handle(request).await {
            ctx.counts().pending += lines;
            ctx.fail(e);
        }
        ctx.progress
            .handled_requests
            .fetch_add(1, Ordering::Relaxed);
    }
}
