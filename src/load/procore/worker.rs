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
    flat_code, flat_code_of, project_path, sync_body, HeaderIds, HeaderRecord, LineIds, LineRecord,
    Payload, HEADER_SYNC_PATH, LINE_SYNC_PATH,
};
use super::LoadContext;
use crate::error::{Error, Result};
use crate::ledger::{ExceptionSeen, LedgerEntry};
use crate::load::plan::{DirectCostHeader, LineCode, LineItem};
use crate::model::values::{date_text, format_decimal};
use crate::quarantine::{QuarantineBatch, ReasonCode, StageName};

/// A planned request as a project worker receives it: the planner lends its records for the
/// duration of `send`, the worker keeps owned copies (the load is paced by Procore's rate
/// limit, so copying is not its cost).
///
/// Owned records rather than payloads serialized at `send`: a line's payload needs its direct
/// cost's and budget code's Procore ids, which only this worker learns (from the header sync's
/// answer, the WBS codes it fetches or creates), and a line kept for the ledger or quarantine
/// needs nearly every field anyway (`QuarantineBatch::from_line_items` takes a [`LineItem`]).
pub(super) enum Request {
    HeaderSync(Vec<(DirectCostHeader, Vec<LineCode>)>),
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
    /// Headers not sent because none of their lines could be loaded yet: the serialized
    /// record and its hash.
    deferred: HashMap<Arc<str>, (Vec<u8>, String)>,
    /// Set when Procore refused this project with a final 403 (its Direct Costs tool is off, or
    /// the app may not write there): why, for every line of the project still to come. Nothing
    /// more is sent to the project in this run; the lines become open exceptions.
    refused: Option<String>,
}

/// The status Procore answers on a project's routes when the project refuses the app: a tool
/// that is not active (Direct Costs off) or a permission the app lacks. Final for this project
/// only: the other projects load (401, the credentials, stays fatal).
const PROJECT_REFUSED: u16 = 403;

/// Why the lines of a project Procore refused are not loaded. Names the project, the request
/// and the status; never Procore's body (it is not ours to copy into files).
fn refusal_reason(job: &str, project_id: i64, endpoint: &str, status: u16) -> String {
    format!(
        "Procore refused project {project_id} (job {job}): HTTP {status} on {endpoint}; the \
         project's Direct Costs tool may be off (or the app lacks permission there): turn it on \
         and the next sync retries these lines"
    )
}

impl ProjectWorker {
    async fn quarantine(&self, rejected: &[(&LineItem, ReasonCode, String)]) -> Result<()> {
        if rejected.is_empty() {
            return Ok(());
        }
        // Every line the load could not send is an open exception of the target, retried by
        // later runs. A line retried from one is not a row of this run's snapshot: it is
        // counted apart and written to `quarantine_retried.parquet`, not quarantine.parquet.
        let seen: Vec<ExceptionSeen> = rejected
            .iter()
            .map(|(l, code, reason)| ExceptionSeen {
                origin_id: l.origin_id().to_string(),
                reason_code: code.as_str().to_string(),
                reason: reason.clone(),
                job: self.job.clone(),
                budget_code: Some(flat_code(&self.ctx.config, l)),
                cents: l.amount as i64,
                accounting_date: l.accounting_date.map(|d| date_text(Some(d))),
            })
            .collect();
        let mut fresh: Vec<(&LineItem, ReasonCode, String)> = Vec::with_capacity(rejected.len());
        let mut again: Vec<(&LineItem, ReasonCode, String)> = Vec::new();
        {
            let mut ledger = self.ctx.ledger.lock().unwrap_or_else(|p| p.into_inner());
            ledger.record_exceptions(&seen, &self.ctx.run_id)?;
            for (l, code, reason) in rejected {
                if !self.ctx.is_retried(l.origin_id()) {
                    fresh.push((l, *code, reason.clone()));
                    continue;
                }
                // Said in the row itself: which run first set it aside, how many tries.
                let marked = match ledger.exception(l.origin_id())? {
                    Some(e) => format!(
                        "retried open exception (first quarantined by run {}, attempt {}): {reason}",
                        e.first_run, e.attempts
                    ),
                    None => format!("retried open exception: {reason}"),
                };
                again.push((l, *code, marked));
            }
        }
        {
            let mut c = self.ctx.counts();
            for (_, code, _) in &fresh {
                *c.quarantined.entry(code.as_str().to_string()).or_insert(0) += 1;
            }
            for (l, code, _) in &again {
                *c.retried_quarantined
                    .entry(code.as_str().to_string())
                    .or_insert(0) += 1;
                c.retried_quarantined_cents += l.amount as i64;
            }
        }
        for (stage, rows) in [(StageName::Load, fresh), (StageName::LoadRetry, again)] {
            if rows.is_empty() {
                continue;
            }
            let q = QuarantineBatch::from_line_items(stage, &self.ctx.table, &rows)?;
            // The quarantine writer stopped: its own error says why.
            let sender = self
                .ctx
                .quarantine_sender()
                .ok_or(Error::NextStageStopped { stage: "load" })?;
            sender
                .send(q)
                .await
                .map_err(|_| Error::NextStageStopped { stage: "load" })?;
        }
        Ok(())
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

    /// Sync a flush's headers. A header goes out only when one of its lines can be loaded
    /// (its budget code is in Procore, or is created now as the pipeline says): the others wait
    /// in `deferred` for a later line that can, and are never sent if none comes. A direct cost
    /// never exists in Procore without a line because of jcsync.
    async fn sync_headers(
        &mut self,
        headers: Vec<(DirectCostHeader, Vec<LineCode>)>,
    ) -> Result<()> {
        if self.headers.len() > HEADER_IDS_KEPT {
            // Every id here is in the ledger (recorded when Procore answered, or found there):
            // forget them, keep the rejections, which only this map knows.
            self.headers.retain(|_, v| v.is_err());
        }
        if headers.iter().any(|(_, codes)| !codes.is_empty()) {
            self.ensure_wbs().await?;
            let codes: Vec<String> = headers
                .iter()
                .flat_map(|(_, codes)| codes)
                .map(|c| {
                    flat_code_of(
                        &self.ctx.config,
                        c.extra.as_deref(),
                        c.cost_code.as_deref(),
                        c.category.as_deref(),
                    )
                })
                .collect();
            self.create_missing(codes).await?;
        }
        let mut outgoing = Vec::new();
        let mut unchanged = 0;
        for (h, codes) in headers {
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
            let loadable = codes.is_empty()
                || codes.iter().any(|c| {
                    self.has_code(&flat_code_of(
                        &self.ctx.config,
                        c.extra.as_deref(),
                        c.cost_code.as_deref(),
                        c.category.as_deref(),
                    ))
                });
            if loadable {
                outgoing.push((h.origin_id.clone(), json, hash));
            } else {
                self.deferred.insert(h.origin_id.clone(), (json, hash));
            }
        }
        self.ctx.counts().headers_unchanged += unchanged;
        self.send_headers(outgoing).await
    }

    /// Why a line of budget code `code` cannot be loaded.
    fn no_code(&self, code: &str) -> String {
        format!(
            "budget code {code:?} is not in Procore project {} (job {})",
            self.project_id.unwrap_or_default(),
            self.job
        )
    }

    /// True when the project's budget codes (as fetched or created) hold `code`.
    fn has_code(&self, code: &str) -> bool {
        self.wbs.as_ref().is_some_and(|w| w.contains_key(code))
    }

    /// Send headers (origin_id, serialized record, its hash) in one sync request and record
    /// what Procore answered.
    async fn send_headers(&mut self, outgoing: Vec<(Arc<str>, Vec<u8>, String)>) -> Result<()> {
        if outgoing.is_empty() {
            return Ok(());
        }
        let mut hashes: HashMap<Arc<str>, String> = HashMap::new();
        let mut updates = Vec::with_capacity(outgoing.len());
        for (origin, json, hash) in outgoing {
            hashes.insert(origin, hash);
            updates.push(json);
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
                    direct_cost: None,
                    accounting_date: None,
                    amount: None,
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

    /// Create the budget codes of `codes` the project lacks, when the pipeline says so.
    async fn create_missing(&mut self, codes: Vec<String>) -> Result<()> {
        if !self.ctx.config.create_missing_budget_codes {
            return Ok(());
        }
        let mut missing: Vec<String> = codes.into_iter().filter(|c| !self.has_code(c)).collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        self.create_codes(missing).await
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

    async fn sync_lines(&mut self, lines: &[LineItem]) -> Result<()> {
        self.ensure_wbs().await?;
        let codes = lines
            .iter()
            .map(|l| flat_code(&self.ctx.config, l))
            .collect();
        self.create_missing(codes).await?;
        // Deferred headers (no line of theirs could be loaded when they were planned) that a
        // line of this request can now be loaded into: sent first.
        if !self.deferred.is_empty() {
            let mut now = Vec::new();
            for l in lines {
                if self.headers.contains_key(&l.direct_cost_origin_id)
                    || !self.has_code(&flat_code(&self.ctx.config, l))
                {
                    continue;
                }
                if let Some((json, hash)) = self.deferred.remove(&l.direct_cost_origin_id) {
                    now.push((l.direct_cost_origin_id.clone(), json, hash));
                }
            }
            self.send_headers(now).await?;
        }
        let mut rejected: Vec<(&LineItem, ReasonCode, String)> = Vec::new();
        let mut updates = Vec::new();
        let mut pending: HashMap<String, (&LineItem, String, bool)> = HashMap::new();
        let mut unchanged = 0;
        // Lines in Procore after this request (unchanged or accepted): they close their open
        // exceptions.
        let mut loaded: Vec<&LineItem> = Vec::new();
        // Unchanged lines whose ledger entry lacks what schema version 2 records (or names
        // another direct cost): recorded again, not sent.
        let mut refresh = Vec::new();
        let mut moving = Vec::new();
        for l in lines {
            let code = flat_code(&self.ctx.config, l);
            let dc = match self.headers.get(&l.direct_cost_origin_id) {
                Some(Ok(id)) => *id,
                Some(Err((code, reason))) => {
                    rejected.push((l, *code, reason.clone()));
                    continue;
                }
                // Its direct cost waits for a line that can be loaded (none of its lines'
                // budget codes is in Procore yet): the line's own reason is its budget code.
                None if !self.has_code(&code) => {
                    rejected.push((l, ReasonCode::UnmappedBudgetCode, self.no_code(&code)));
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
            let Some(wbs_id) = self.wbs.as_ref().and_then(|w| w.get(&code)).copied() else {
                rejected.push((l, ReasonCode::UnmappedBudgetCode, self.no_code(&code)));
                continue;
            };
            let Payload { json, hash } = Payload::of(&LineRecord {
                line: l.view(),
                ids: LineIds::Resolved {
                    direct_cost_id: dc,
                    wbs_code_id: wbs_id,
                },
            })?;
            let known = self.ctx.known(l.origin_id())?;
            if let Some(known) = known.as_ref().filter(|_| !self.ctx.config.force) {
                if known.payload_hash == hash && known.procore_id.is_some() {
                    unchanged += 1;
                    loaded.push(l);
                    if known.direct_cost.as_deref() != Some(&*l.direct_cost_origin_id)
                        || known.accounting_date.is_none() && l.accounting_date.is_some()
                        || known.amount.is_none()
                    {
                        refresh.push(self.line_entry(l, known.procore_id, hash));
                    }
                    continue;
                }
            }
            if let Some(k) = &known {
                if let (Some(old), Some(line_id)) = (k.direct_cost.as_deref(), k.procore_id) {
                    if old != &*l.direct_cost_origin_id {
                        moving.push((l, old.to_string(), line_id, hash, json));
                        continue;
                    }
                }
            }
            pending.insert(l.origin_id().to_string(), (l, hash, known.is_some()));
            updates.push(json);
        }
        // Lines whose direct cost changed (a vendor or an invoice number changed in Sage):
        // Procore does not let a line change its direct cost, so the line leaves the old one
        // first and is created in the new one.
        for (l, old, line_id, hash, json) in moving {
            match self.move_out(&old, line_id, l.origin_id()).await {
                Ok(()) => {
                    pending.insert(l.origin_id().to_string(), (l, hash, true));
                    updates.push(json);
                }
                Err(Error::Procore {
                    status, message, ..
                }) => rejected.push((
                    l,
                    ReasonCode::ProcoreRejected,
                    format!(
                        "its direct cost changed and Procore refused to remove it from the old one (HTTP {status}): {message}"
                    ),
                )),
                Err(e) => return Err(e),
            }
        }
        self.ctx.counts().lines_unchanged += unchanged;
        self.ctx.record(&refresh)?;
        if !updates.is_empty() {
            let endpoint = "PATCH direct_costs/line_items/sync";
            let (entities, errors) = match self.send_sync(LINE_SYNC_PATH, endpoint, &updates).await
            {
                Ok(answer) => answer,
                // Refused now, after this request's unchanged lines were counted: only the
                // lines it was sending are quarantined here (`refuse_on_403` would take all).
                Err(Error::Procore {
                    status: PROJECT_REFUSED,
                    ..
                }) => {
                    let reason = self.refuse(endpoint, PROJECT_REFUSED);
                    for (_, (l, _, _)) in pending.drain() {
                        rejected.push((l, ReasonCode::ProcoreRejected, reason.clone()));
                    }
                    self.close_loaded(&loaded)?;
                    return self.quarantine(&rejected).await;
                }
                Err(e) => return Err(e),
            };
            self.ctx.counts().line_requests += 1;
            let mut ledger = Vec::new();
            let mut updated = 0;
            for e in &entities {
                let Some(origin) = e["origin_id"].as_str() else {
                    continue;
                };
                if let Some((l, hash, known)) = pending.remove(origin) {
                    ledger.push(self.line_entry(l, e["id"].as_i64(), hash));
                    loaded.push(l);
                    if known {
                        updated += 1;
                    }
                }
            }
            for e in &errors {
                if let Some((l, _, _)) = e["origin_id"].as_str().and_then(|o| pending.remove(o)) {
                    rejected.push((
                        l,
                        ReasonCode::ProcoreRejected,
                        format!("Procore rejected the line: {}", e["errors"]),
                    ));
                }
            }
            for (_, (l, _, _)) in pending.drain() {
                rejected.push((
                    l,
                    ReasonCode::ProcoreRejected,
                    "Procore's answer did not mention this line".into(),
                ));
            }
            {
                let mut c = self.ctx.counts();
                c.lines_sent += ledger.len() as u64;
                c.lines_updated += updated;
            }
            self.ctx.record(&ledger)?;
        }
        self.close_loaded(&loaded)?;
        self.quarantine(&rejected).await
    }

    /// Lines now in Procore: the retried ones are counted, and the open exceptions of any
    /// of them are closed as resolved (`loaded`).
    fn close_loaded(&self, loaded: &[&LineItem]) -> Result<()> {
        let retried = loaded
            .iter()
            .filter(|l| self.ctx.is_retried(l.origin_id()))
            .count() as u64;
        self.ctx.counts().retried_loaded += retried;
        if loaded.is_empty() || !self.ctx.job_has_exceptions(&self.job) {
            return Ok(());
        }
        let ids: Vec<&str> = loaded.iter().map(|l| l.origin_id()).collect();
        self.ctx
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .close_exceptions(&ids, "loaded", &self.ctx.run_id)
            .map(|_| ())
    }

    /// Remove line `line_id` (ledger `origin_id`) from its old direct cost `old` (origin_id), and
    /// record the removal: the line is then created again under its new direct cost. A 404 is
    /// a line already gone.
    async fn move_out(&self, old: &str, line_id: i64, origin_id: &str) -> Result<()> {
        if let Some(dc) = self.ctx.known(old)?.and_then(|e| e.procore_id) {
            let path = format!("{}/direct_costs/{dc}/line_items/{line_id}", self.base());
            let _permit = self.ctx.permit().await?;
            match self
                .ctx
                .client
                .call(
                    Method::DELETE,
                    &path,
                    &[],
                    None,
                    "DELETE direct_costs/line_items",
                )
                .await
            {
                Ok(_) | Err(Error::Procore { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.ctx.counts().lines_moved += 1;
        self.ctx
            .ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .confirm_removal(&crate::ledger::Removal {
                origin_ids: vec![origin_id.to_string()],
                run_id: self.ctx.run_id.clone(),
            })
            .map(|_| ())
    }

    /// The ledger entry of a line Procore holds as `procore_id`, sent as `hash`.
    fn line_entry(&self, l: &LineItem, procore_id: Option<i64>, hash: String) -> LedgerEntry {
        LedgerEntry {
            origin_id: l.origin_id().to_string(),
            kind: "line".into(),
            job: self.job.clone(),
            procore_id,
            payload_hash: hash,
            run_id: self.ctx.run_id.clone(),
            direct_cost: Some(l.direct_cost_origin_id.to_string()),
            accounting_date: l.accounting_date.map(|d| date_text(Some(d))),
            amount: Some(format_decimal(l.amount, 2)),
        }
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
        if let Some(reason) = self.refused.clone() {
            // Refused earlier in this run: nothing more is sent to this project.
            if let Request::LineSync(lines) = &request {
                self.quarantine_all(lines, &reason).await?;
            }
            return Ok(());
        }
        match request {
            Request::HeaderSync(headers) => {
                let result = self.sync_headers(headers).await;
                self.refuse_on_403(result, None).await
            }
            Request::LineSync(lines) => {
                let result = self.sync_lines(&lines).await;
                self.refuse_on_403(result, Some(&lines)).await
            }
        }
    }

    /// A final 403 on one of this project's requests: the project is refused for the rest of
    /// the run, and `lines` (the request's lines, none of them accounted for yet) are
    /// quarantined. Any other outcome is returned as it is.
    async fn refuse_on_403(
        &mut self,
        result: Result<()>,
        lines: Option<&[LineItem]>,
    ) -> Result<()> {
        match result {
            Err(Error::Procore {
                status: PROJECT_REFUSED,
                endpoint,
                ..
            }) => {
                let reason = self.refuse(&endpoint, PROJECT_REFUSED);
                match lines {
                    Some(lines) => self.quarantine_all(lines, &reason).await,
                    None => Ok(()),
                }
            }
            other => other,
        }
    }

    /// Mark the project refused (a final `status` on `endpoint`); the reason its lines get.
    fn refuse(&mut self, endpoint: &str, status: u16) -> String {
        let pid = self.project_id.unwrap_or_default();
        let reason = refusal_reason(&self.job, pid, endpoint, status);
        tracing::warn!(
            job = self.job,
            project_id = pid,
            status,
            endpoint,
            "Procore refused the project: its lines are quarantined (procore_rejected), the \
             other projects load"
        );
        self.refused = Some(reason.clone());
        reason
    }

    /// Quarantine every line of a request with the project's refusal `reason`.
    async fn quarantine_all(&self, lines: &[LineItem], reason: &str) -> Result<()> {
        let rejected: Vec<(&LineItem, ReasonCode, String)> = lines
            .iter()
            .map(|l| (l, ReasonCode::ProcoreRejected, reason.to_string()))
            .collect();
        self.quarantine(&rejected).await
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
        deferred: HashMap::new(),
        refused: None,
    };
    while let Some(request) = rx.recv().await {
        let (lines, retried) = match &request {
            Request::LineSync(lines) => (
                lines.len() as u64,
                lines
                    .iter()
                    .filter(|l| ctx.is_retried(l.origin_id()))
                    .count() as u64,
            ),
            Request::HeaderSync(_) => (0, 0),
        };
        let left = if ctx.stopped() {
            true
        } else if let Err(e) = worker.handle(request).await {
            ctx.fail(e);
            true
        } else {
            false
        };
        if left {
            let mut c = ctx.counts();
            c.pending += lines;
            c.retried_pending += retried;
        }
        ctx.progress
            .handled_requests
            .fetch_add(1, Ordering::Relaxed);
    }
}
