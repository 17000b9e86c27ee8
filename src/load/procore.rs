//! Sending planned direct costs to Procore: resolve ids, skip what the ledger says is unchanged,
//! sync headers then lines per project, record what Procore answered.
//!
//! One worker task per project takes that project's requests in order, so writes to a project are
//! serialized (no 409 by construction) while several projects are in flight at once (bounded by
//! `[load] max_projects_in_flight`). Results are matched by origin_id, never by order. A load that
//! fails (Procore down past the retry budget) or is interrupted stops sending but keeps consuming,
//! so that staging still completes and the run can be resumed or replayed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::client::ProcoreClient;
use super::plan::{DirectCostHeader, LineItem, PlannedRequest, RequestSink};
use crate::model::cost_type::DirectCostKind;
use crate::model::values::{format_date, format_decimal};

/// A planned request as a project worker receives it: the planner lends its records for the
/// duration of `send`, the worker keeps owned copies (the load is paced by Procore's rate
/// limit, so copying is not its cost).
enum Request {
    HeaderSync(Vec<DirectCostHeader>),
    LineSync(Vec<LineItem>),
}
use crate::config::{LoadConfig, ProjectMatch};
use crate::error::{Error, Result};
use crate::ledger::{Ledger, LedgerEntry};
use crate::quarantine::{QuarantineBatch, ReasonCode};

/// Procore ids of direct costs a project worker keeps at hand; past this, lines find their
/// direct cost's id in the ledger.
const HEADER_IDS_KEPT: usize = 100_000;

/// Largest `bulk_create` body jcsync sends.
const BULK_CREATE_MAX: usize = 100;

/// Counts of a load.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct LoadCounts {
    /// Lines Procore accepted in this run.
    pub lines_sent: u64,
    /// Lines the ledger showed unchanged (already in Procore).
    pub lines_unchanged: u64,
    pub headers_sent: u64,
    pub headers_unchanged: u64,
    /// Lines quarantined at load, by reason.
    pub quarantined: BTreeMap<String, u64>,
    /// Lines not loaded because the load stopped (failure or interruption): the next sync resumes them.
    pub pending: u64,
    pub header_requests: u64,
    pub line_requests: u64,
    pub budget_codes_created: u64,
}

impl LoadCounts {
    /// Lines in Procore after this run (sent now or already there).
    pub fn loaded(&self) -> u64 {
        self.lines_sent + self.lines_unchanged
    }

    /// Lines quarantined at load.
    pub fn quarantined_total(&self) -> u64 {
        self.quarantined.values().sum()
    }
}

/// Project and vendor ids, looked up once at the start of a load.
pub struct Directory {
    projects: HashMap<String, i64>,
    vendors: HashMap<String, i64>,
}

impl Directory {
    /// Fetch every project and vendor of the company.
    pub async fn fetch(client: &ProcoreClient, matching: ProjectMatch) -> Result<Directory> {
        let company = vec![("company_id".to_string(), client.company_id().to_string())];
        let mut projects = HashMap::new();
        for p in client
            .get_all("/rest/v1.0/projects", &company, "GET projects")
            .await?
        {
            let key = match matching {
                ProjectMatch::ProjectNumber => p["project_number"].as_str(),
                ProjectMatch::OriginId => p["origin_id"].as_str(),
            };
            if let (Some(k), Some(id)) = (key, p["id"].as_i64()) {
                projects.insert(k.trim().to_string(), id);
            }
        }
        let mut vendors = HashMap::new();
        for v in client
            .get_all("/rest/v1.0/vendors", &company, "GET vendors")
            .await?
        {
            if let (Some(k), Some(id)) = (v["origin_id"].as_str(), v["id"].as_i64()) {
                vendors.insert(k.trim().to_string(), id);
            }
        }
        tracing::info!(
            projects = projects.len(),
            vendors = vendors.len(),
            "Procore directory loaded"
        );
        Ok(Directory { projects, vendors })
    }
}

/// Everything the project workers share.
pub struct LoadContext {
    pub client: Arc<ProcoreClient>,
    pub config: LoadConfig,
    pub directory: Directory,
    pub ledger: Mutex<Ledger>,
    pub run_id: String,
    pub table: String,
    pub quarantine: mpsc::Sender<QuarantineBatch>,
    /// Set by Ctrl-C: no new request is sent.
    pub cancel: Arc<AtomicBool>,
    failure: Mutex<Option<Error>>,
    counts: Mutex<LoadCounts>,
    in_flight: Semaphore,
    progress: Progress,
}

/// What the progress bar can know while planning and loading overlap: the lines and requests
/// planned so far, and the requests the project workers are done with (sent, skipped as
/// unchanged, quarantined, or left pending).
#[derive(Debug, Default)]
struct Progress {
    planned_lines: AtomicU64,
    planned_requests: AtomicU64,
    handled_requests: AtomicU64,
}

impl Progress {
    /// Planned requests no worker has handled yet: headers are batched (one header request
    /// serves several line requests), so this counts requests, not lines.
    fn requests_left(&self) -> u64 {
        let planned = self.planned_requests.load(Ordering::Relaxed);
        planned.saturating_sub(self.handled_requests.load(Ordering::Relaxed))
    }
}

/// Time the rate budget (`rate` requests/s) needs for `requests`.
fn time_at_rate(requests: u64, rate: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(requests as f64 / rate.max(f64::MIN_POSITIVE))
}

impl LoadContext {
    /// A context for one run's load.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Arc<ProcoreClient>,
        config: LoadConfig,
        directory: Directory,
        ledger: Ledger,
        run_id: &str,
        table: &str,
        quarantine: mpsc::Sender<QuarantineBatch>,
        cancel: Arc<AtomicBool>,
    ) -> LoadContext {
        let permits = config.max_projects_in_flight;
        LoadContext {
            client,
            config,
            directory,
            ledger: Mutex::new(ledger),
            run_id: run_id.to_string(),
            table: table.to_string(),
            quarantine,
            cancel,
            failure: Mutex::new(None),
            counts: Mutex::new(LoadCounts::default()),
            in_flight: Semaphore::new(permits),
            progress: Progress::default(),
        }
    }

    fn stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
            || self.failure.lock().map(|f| f.is_some()).unwrap_or(true)
    }

    fn fail(&self, e: Error) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::error!("load stopped: {e}");
            *f = Some(e);
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, LoadCounts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, entries: &[LedgerEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(entries)
    }

    fn known(&self, origin_id: &str) -> Result<Option<LedgerEntry>> {
        self.ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(origin_id)
    }
}

fn payload_hash(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

fn date(d: Option<i32>) -> Value {
    d.map(|d| Value::String(format_date(d)))
        .unwrap_or(Value::Null)
}

/// Flat budget code of a line, by the pipeline's formats.
pub fn flat_code(config: &LoadConfig, line: &LineItem) -> String {
    let fmt = match line.extra.as_deref() {
        Some(e) if !e.is_empty() => config.budget_code_format_with_extra.replace("{extra}", e),
        _ => config.budget_code_format.clone(),
    };
    fmt.replace("{cost_code}", line.cost_code.as_deref().unwrap_or(""))
        .replace("{category}", line.category.as_deref().unwrap_or(""))
}

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
        self.ctx.quarantine.send(q).await.map_err(|_| Error::Stage {
            stage: "load",
            message: "the quarantine writer stopped".into(),
        })
    }

    fn base(&self) -> String {
        format!(
            "/rest/v1.0/projects/{}",
            self.project_id.unwrap_or_default()
        )
    }

    async fn send_sync(
        &self,
        path: &str,
        endpoint: &str,
        updates: Vec<Value>,
    ) -> Result<(Vec<Value>, Vec<Value>)> {
        let _permit = self
            .ctx
            .in_flight
            .acquire()
            .await
            .map_err(|_| Error::Stage {
                stage: "load",
                message: "the load is shutting down".into(),
            })?;
        let body = json!({ "updates": updates });
        let resp = self
            .ctx
            .client
            .call(Method::PATCH, path, &[], Some(&body), endpoint)
            .await?;
        let list = |k: &str| resp.body[k].as_array().cloned().unwrap_or_default();
        Ok((list("entities"), list("errors")))
    }

    fn header_payload(
        &self,
        h: &DirectCostHeader,
    ) -> std::result::Result<Value, (ReasonCode, String)> {
        let mut v = json!({
            "origin_id": &*h.origin_id,
            "direct_cost_type": h.key.kind.as_str(),
            "direct_cost_date": date(h.direct_cost_date),
            "status": self.ctx.config.status,
            "description": h.description,
            "origin_data": format!("sage:{}|{}|{}", h.key.job, h.key.kind.as_str(), h.key.group_key()),
        });
        if let Some(n) = &h.invoice_number {
            v["invoice_number"] = json!(n);
        }
        if h.received_date.is_some() {
            v["received_date"] = date(h.received_date);
        }
        if h.payment_date.is_some() {
            v["payment_date"] = date(h.payment_date);
        }
        if h.key.kind == DirectCostKind::Invoice {
            let vendor = h.vendor.as_deref().unwrap_or("");
            match self.ctx.directory.vendors.get(vendor) {
                Some(id) => v["vendor_id"] = json!(id),
                None => {
                    return Err((
                        ReasonCode::UnmappedVendor,
                        format!("Sage vendor {vendor:?} has no Procore vendor (by origin_id)"),
                    ))
                }
            }
        }
        Ok(v)
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
            let payload = match self.header_payload(h) {
                Ok(p) => p,
                Err(reason) => {
                    self.headers.insert(h.origin_id.clone(), Err(reason));
                    continue;
                }
            };
            let hash = payload_hash(&payload);
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
            updates.push(payload);
        }
        self.ctx.counts().headers_unchanged += unchanged;
        if updates.is_empty() {
            return Ok(());
        }
        let path = format!("{}/direct_costs/sync", self.base());
        let sent = updates.len();
        let (entities, errors) = self
            .send_sync(&path, "PATCH direct_costs/sync", updates)
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
            let _permit = self
                .ctx
                .in_flight
                .acquire()
                .await
                .map_err(|_| Error::Stage {
                    stage: "load",
                    message: "the load is shutting down".into(),
                })?;
            let resp = self
                .ctx
                .client
                .call(
                    Method::PATCH,
                    &path,
                    &[],
                    Some(&json!({ "bulk": bulk })),
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
            let payload = json!({
                "origin_id": l.origin_id(),
                "direct_cost_id": dc,
                "wbs_code_id": wbs_id,
                "amount": format_decimal(l.amount, 2),
                "quantity": l.quantity.map(|q| format_decimal(q, 4)),
                "unit_cost": l.unit_cost.map(|q| format_decimal(q, 4)),
                "description": l.description(),
                "origin_data": format!("sage:{}", l.natural_key()),
            });
            let hash = payload_hash(&payload);
            if !self.ctx.config.force {
                if let Some(known) = self.ctx.known(l.origin_id())? {
                    if known.payload_hash == hash && known.procore_id.is_some() {
                        unchanged += 1;
                        continue;
                    }
                }
            }
            pending.insert(l.origin_id().to_string(), (l, hash));
            updates.push(payload);
        }
        self.ctx.counts().lines_unchanged += unchanged;
        if !updates.is_empty() {
            let path = format!("{}/direct_costs/line_items/sync", self.base());
            let (entities, errors) = self
                .send_sync(&path, "PATCH direct_costs/line_items/sync", updates)
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

async fn run_worker(ctx: Arc<LoadContext>, job: String, mut rx: mpsc::Receiver<Request>) {
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

/// The sink the planner feeds when the target is Procore (or the sandbox).
pub struct LoadSink {
    ctx: Arc<LoadContext>,
    handle: Handle,
    workers: HashMap<String, (mpsc::Sender<Request>, JoinHandle<()>)>,
    progress: indicatif::ProgressBar,
    ticker: JoinHandle<()>,
}

/// Requests per second the rate budget allows (the tighter of the two quotas).
fn budget_rate(config: &LoadConfig) -> f64 {
    let spike = config.spike_limit as f64 / config.spike_window_secs.max(1) as f64;
    let hourly = config.hourly_limit as f64 / 3600.0;
    spike.min(hourly).max(f64::MIN_POSITIVE)
}

/// The progress bar of the load: lines handled out of lines planned so far, and the time the
/// rate budget needs for the requests planned and not yet handled.
fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(0),
        indicatif::ProgressDrawTarget::stderr_with_hz(4),
    );
    let style = indicatif::ProgressStyle::with_template("load {bar:30} {pos}/{len} lines  {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// How a load ended.
#[derive(Debug)]
pub struct LoadOutcome {
    pub counts: LoadCounts,
    pub client: super::client::ClientStats,
    /// Why the load stopped early, if it did.
    pub failure: Option<Error>,
}

impl LoadSink {
    /// A sink running its workers on `handle`.
    pub fn new(ctx: Arc<LoadContext>, handle: Handle) -> LoadSink {
        let progress = progress_bar();
        let ticker = {
            let (ctx, bar) = (ctx.clone(), progress.clone());
            let rate = budget_rate(&ctx.config);
            handle.spawn(async move {
                let mut last_log = std::time::Instant::now();
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    let c = ctx.counts().clone();
                    let planned = ctx.progress.planned_lines.load(Ordering::Relaxed);
                    let done = c.loaded() + c.quarantined_total() + c.pending;
                    let eta = time_at_rate(ctx.progress.requests_left(), rate);
                    let mut msg = format!(
                        "{} requests, {} retries, ETA at the rate budget {}",
                        c.header_requests + c.line_requests,
                        ctx.client.stats().retries,
                        indicatif::HumanDuration(eta)
                    );
                    if let Some(wait) = ctx.client.rate_wait() {
                        // Said first: it is why the line does not move.
                        msg = format!("{wait}; {msg}");
                    }
                    bar.set_length(planned);
                    bar.set_position(done);
                    bar.set_message(msg.clone());
                    if bar.is_hidden() && last_log.elapsed() > std::time::Duration::from_secs(10) {
                        tracing::info!(done, planned, "load: {msg}");
                        last_log = std::time::Instant::now();
                    }
                }
            })
        };
        LoadSink {
            ctx,
            handle,
            workers: HashMap::new(),
            progress,
            ticker,
        }
    }

    /// Wait for every project worker; return the counts and the failure, if any.
    pub fn finish(mut self) -> LoadOutcome {
        let workers: Vec<JoinHandle<()>> = self.workers.drain().map(|(_, (_, h))| h).collect();
        for w in workers {
            if let Err(e) = self.handle.block_on(w) {
                self.ctx.fail(Error::Stage {
                    stage: "load",
                    message: format!("a project worker ended abnormally: {e}"),
                });
            }
        }
        self.ticker.abort();
        self.progress.finish_and_clear();
        if self.ctx.cancel.load(Ordering::Relaxed) {
            self.ctx.fail(Error::Interrupted);
        }
        LoadOutcome {
            counts: self.ctx.counts().clone(),
            client: self.ctx.client.stats(),
            failure: self
                .ctx
                .failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
        }
    }
}

impl RequestSink for LoadSink {
    fn send(&mut self, request: PlannedRequest<'_>) -> Result<()> {
        let (job, request) = match request {
            PlannedRequest::HeaderSync { job, headers } => {
                (job, Request::HeaderSync(headers.to_headers()))
            }
            PlannedRequest::LineSync { job, lines } => {
                let planned = &self.ctx.progress.planned_lines;
                planned.fetch_add(lines.len() as u64, Ordering::Relaxed);
                (job, Request::LineSync(lines.to_items()))
            }
        };
        // Counted before the worker can handle it, so `requests_left` never undercounts.
        self.ctx
            .progress
            .planned_requests
            .fetch_add(1, Ordering::Relaxed);
        let ctx = self.ctx.clone();
        let handle = self.handle.clone();
        let (tx, _) = self.workers.entry(job.to_string()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(2);
            let task = handle.spawn(run_worker(ctx, job.to_string(), rx));
            (tx, task)
        });
        tx.blocking_send(request).map_err(|_| Error::Stage {
            stage: "load",
            message: "a project worker stopped".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_counts_planned_requests_not_two_per_line_request() {
        // 8 line requests of 1000 lines served by 2 header requests (headers are batched);
        // the workers are done with 4 of the 10.
        let progress = Progress::default();
        progress.planned_lines.store(8000, Ordering::Relaxed);
        progress.planned_requests.store(10, Ordering::Relaxed);
        progress.handled_requests.store(4, Ordering::Relaxed);
        assert_eq!(progress.requests_left(), 6);
        assert_eq!(
            time_at_rate(progress.requests_left(), 2.0),
            std::time::Duration::from_secs(3)
        );
        progress.handled_requests.store(10, Ordering::Relaxed);
        assert_eq!(progress.requests_left(), 0);
        assert_eq!(time_at_rate(0, 0.0), std::time::Duration::ZERO);
    }
}
