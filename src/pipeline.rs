//! Wires the stages: extract → project → enrich → stage → plan, each on its own thread, joined by
//! bounded channels. Rejected rows flow on a separate bounded channel to the quarantine writer.
//!
//! Backpressure: a stage reserves a slot in its output channel *before* it takes an input batch,
//! so no stage ever holds a batch while blocked. With a stalled consumer the source can therefore
//! produce at most (sum of channel capacities + 1) batches: one per slot, plus the one it is
//! blocked sending.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::config::{Pipeline, SourceConfig, SyncKind, TargetConfig};
use crate::enrich::{Dimensions, Enricher};
use crate::error::{Error, Result};
use crate::extract::{drop_non_cost_rows, type_batch, RawBatch, SageSource};
use crate::invoices::DEFAULT_INVOICE_MEMORY;
use crate::ledger::{Ledger, LedgerLock};
use crate::load::client::{Connection, ProcoreClient, Secret};
use crate::load::dry_run::DryRunSink;
use crate::load::plan::RequestSink;
use crate::load::plan::{Planner, MAX_SYNC_RECORDS};
use crate::load::procore::{Directory, LoadContext, LoadOutcome, LoadSink};
use crate::model::schema::{enriched_schema, TableRole};
use crate::model::values::format_decimal;
use crate::project::Projector;
use crate::quarantine::{quarantine_schema, QuarantineBatch};
use crate::run::{self, CountsReport, Manifest, Report, StageReport, TotalRow};
use crate::stage::{
    quarantine_name, staged_part_name, writer_properties, HashedFile, ParquetFileSet,
};

/// Time a stage spent working (not waiting on its channels) and the rows it handled.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTiming {
    pub busy: Duration,
    pub rows_in: u64,
    pub rows_out: u64,
}

/// Rows in a batch, for stage timing.
pub trait Rows {
    fn rows(&self) -> u64;
}

impl Rows for RecordBatch {
    fn rows(&self) -> u64 {
        self.num_rows() as u64
    }
}

impl Rows for RawBatch {
    fn rows(&self) -> u64 {
        self.batch.num_rows() as u64
    }
}

fn downstream_gone(stage: &'static str) -> Error {
    Error::Stage {
        stage,
        message: "the next stage stopped".into(),
    }
}

/// Run one stage on the current (blocking) thread: reserve an output slot, then take an input,
/// then process it. `f` returns None when a batch produced no output rows.
pub fn run_stage<I: Rows + Send, O: Rows + Send>(
    stage: &'static str,
    mut rx: mpsc::Receiver<I>,
    tx: mpsc::Sender<O>,
    mut f: impl FnMut(I) -> Result<Option<O>>,
) -> Result<StageTiming> {
    let handle = Handle::current();
    let mut timing = StageTiming::default();
    loop {
        let permit = handle
            .block_on(tx.reserve())
            .map_err(|_| downstream_gone(stage))?;
        let Some(item) = rx.blocking_recv() else {
            break;
        };
        let started = Instant::now();
        timing.rows_in += item.rows();
        let out = f(item)?;
        timing.busy += started.elapsed();
        if let Some(o) = out {
            timing.rows_out += o.rows();
            permit.send(o);
        }
    }
    Ok(timing)
}

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct SyncOptions {
    /// Plan only, whatever the target says.
    pub dry_run: bool,
    /// Extract, project, enrich and stage only: no planning, no requests. The run directory
    /// can be loaded later with `jcsync replay`.
    pub stage_only: bool,
    /// Set (e.g. by Ctrl-C) to stop sending: in-flight requests settle, the ledger stays
    /// consistent, staging completes.
    pub cancel: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Exit status of a run whose load did not complete (Procore unavailable, interrupted).
pub const EXIT_LOAD_INCOMPLETE: u8 = 3;

/// Exit status of a sync or replay that did not start because another one holds the ledger.
pub const EXIT_LEDGER_BUSY: u8 = 4;

/// Take the ledger's lock for a run that sends to Procore (and so writes the ledger): one sync
/// or replay at a time per ledger. A dry run and a stage-only sync send nothing and write no
/// ledger: they take no lock (None) and may run beside a sync.
pub(crate) async fn lock_ledger(
    pipeline: &Pipeline,
    options: &SyncOptions,
    command: String,
) -> Result<Option<LedgerLock>> {
    let sends = !options.dry_run
        && !options.stage_only
        && !matches!(pipeline.config.target, TargetConfig::DryRun(_));
    if !sends {
        return Ok(None);
    }
    let ledger = pipeline.config.ledger_path();
    let lock = tokio::task::spawn_blocking(move || LedgerLock::acquire(&ledger, &command))
        .await
        .map_err(|e| join_error("ledger", e))??;
    tracing::debug!(lock = %lock.path().display(), "ledger locked");
    Ok(Some(lock))
}

/// Procore's project and vendor directory, fetched beside extract and stage (a Procore that
/// is down when the run starts must not keep the snapshot from being staged). A run that ends
/// before its load starts stops the lookup.
pub(crate) struct DirectoryLookup(tokio::task::JoinHandle<Result<Directory>>);

impl DirectoryLookup {
    /// Wait for the lookup (on a blocking thread).
    fn wait(mut self, handle: &Handle) -> Result<Directory> {
        handle
            .block_on(&mut self.0)
            .map_err(|e| join_error("load", e))
            .and_then(|r| r)
    }
}

impl Drop for DirectoryLookup {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a run's load sends: the client (logged in, or Procore not answering yet), the
/// directory being fetched, the ledger.
pub(crate) struct TargetLoad {
    pub client: Arc<ProcoreClient>,
    pub directory: DirectoryLookup,
    pub ledger: Ledger,
}

/// The target of a run, ready to receive requests.
pub(crate) struct PreparedTarget {
    pub label: String,
    pub load: Option<TargetLoad>,
    /// Keeps an embedded sandbox alive for the run.
    _sandbox: Option<crate::sandbox::SandboxHandle>,
}

pub(crate) async fn prepare_target(
    pipeline: &Pipeline,
    options: &SyncOptions,
) -> Result<PreparedTarget> {
    let config = &pipeline.config;
    if options.stage_only {
        return Ok(PreparedTarget {
            label: "none (stage only)".into(),
            load: None,
            _sandbox: None,
        });
    }
    if options.dry_run {
        return Ok(PreparedTarget {
            label: "dry-run".into(),
            load: None,
            _sandbox: None,
        });
    }
    let (conn, ledger, sandbox, label) = match &config.target {
        TargetConfig::DryRun(_) => {
            return Ok(PreparedTarget {
                label: "dry-run".into(),
                load: None,
                _sandbox: None,
            })
        }
        TargetConfig::Sandbox(t) => {
            let mut sc = crate::sandbox::SandboxConfig::from_dir(&t.seed);
            sc.state_file = t.state_file.clone();
            if !t.rate_limit {
                sc.rate_limit = None;
            }
            let handle = crate::sandbox::Sandbox::start(sc)
                .await
                .map_err(|e| Error::Config {
                    path: pipeline.path.clone(),
                    message: format!("section `target` (sandbox): {e}"),
                })?;
            let cred = handle
                .credentials()
                .into_iter()
                .next()
                .ok_or_else(|| Error::Config {
                    path: pipeline.path.clone(),
                    message: format!(
                        "section `target`: the sandbox seed {} has no credentials",
                        t.seed.display()
                    ),
                })?;
            let conn = Connection {
                api_url: handle.url().to_string(),
                login_url: handle.url().to_string(),
                company_id: handle.company_id(),
                client_id: Secret::new(cred.client_id),
                client_secret: Secret::new(cred.client_secret),
                credentials_source: format!("the sandbox seed {}", t.seed.display()),
            };
            // A sandbox without a state file forgets everything at exit: so must its ledger.
            let ledger = t
                .state_file
                .as_ref()
                .map(|state| format!("sandbox:{}", state.display()));
            let label = format!("sandbox {}", handle.url());
            (conn, ledger, Some(handle), label)
        }
        TargetConfig::Procore(t) => {
            let conn = Connection::from_env(
                &t.api_url,
                &t.login_url,
                t.company_id,
                &t.client_id_env,
                &t.client_secret_env,
            )?;
            let ledger = Some(format!("{}#{}", conn.api_url, conn.company_id));
            (conn, ledger, None, format!("procore {}", t.api_url))
        }
    };
    let client =
        Arc::new(ProcoreClient::new(conn, &config.load)?.with_cancel(options.cancel.clone()));
    // Log in before Sage is read: credentials Procore refuses (401, 403) stop the run here. A
    // Procore that is unreachable or answers retryable errors does not: the run stages its
    // snapshot while the directory lookup retries, and the load gives up (exit 3) if Procore
    // has not answered within `max_retry_secs`.
    match client.log_in().await {
        Ok(()) => {}
        Err(Error::ProcoreUnavailable { endpoint, last, .. }) => tracing::warn!(
            "procore {endpoint}: not answering ({last}); the run is staged meanwhile, and the \
             load retries for up to {} s",
            config.load.max_retry_secs
        ),
        Err(e) => return Err(e),
    }
    let directory = {
        let (client, matching) = (client.clone(), config.load.project_match);
        DirectoryLookup(tokio::spawn(async move {
            Directory::fetch(&client, matching).await
        }))
    };
    let ledger = match ledger {
        Some(target) => Ledger::open(&config.ledger_path())?.with_target(&target),
        None => Ledger::in_memory()?,
    };
    Ok(PreparedTarget {
        label,
        load: Some(TargetLoad {
            client,
            directory,
            ledger,
        }),
        _sandbox: sandbox,
    })
}

/// The sink of a load that could not start (Procore's directory could not be fetched): every
/// planned line is left pending, for the next sync or a replay of the staged run.
struct PendingSink {
    lines: u64,
}

impl RequestSink for PendingSink {
    fn send(&mut self, request: crate::load::plan::PlannedRequest<'_>) -> Result<()> {
        if let crate::load::plan::PlannedRequest::LineSync { lines, .. } = request {
            self.lines += lines.len() as u64;
        }
        Ok(())
    }
}

/// What the last stage produced.
pub(crate) enum PlanOutput {
    /// `sync --stage-only`: the staged rows were counted and dropped.
    Skipped,
    DryRun(crate::stage::FileEntry),
    Load(LoadOutcome),
}

/// What a finished sync left.
#[derive(Debug)]
pub struct RunOutcome {
    pub run_dir: PathBuf,
    pub report: Report,
    /// Process exit status: 0 clean, `report.quarantine_exit_code` when rows were quarantined.
    pub exit_code: u8,
}

/// Results of the quarantine writer.
pub(crate) struct QuarantineTally {
    pub files: Vec<crate::stage::FileEntry>,
    /// (table, reason) → rows.
    pub counts: BTreeMap<(String, String), u64>,
}

fn join_error(stage: &'static str, e: tokio::task::JoinError) -> Error {
    Error::Stage {
        stage,
        message: format!("task ended abnormally: {e}"),
    }
}

/// The enrich stage's error when the dimensions it waits for were not loaded (the loader's own
/// error explains why).
const DIMENSIONS_MISSING: &str = "the dimension tables were not loaded";

/// The dimension tables, indexed, and what loading them took.
struct DimensionsLoaded {
    dims: Arc<Dimensions>,
    reports: Vec<run::DimensionReport>,
    elapsed: Duration,
}

/// Pick the error that explains a failure: a stage's own error beats "the next stage stopped"
/// (and the enrich stage's "the dimension tables were not loaded").
fn first_real_error(errors: Vec<Error>) -> Option<Error> {
    let (gone, real): (Vec<Error>, Vec<Error>) = errors.into_iter().partition(|e| {
        matches!(e, Error::Stage { message, .. }
            if message == "the next stage stopped" || message == DIMENSIONS_MISSING)
    });
    real.into_iter().next().or_else(|| gone.into_iter().next())
}

/// The quarantine writer: every stage may send rejected rows to it; it writes
/// `quarantine.parquet` and counts rows per (table, reason).
pub(crate) fn spawn_quarantine_writer(
    run_dir: &std::path::Path,
    props: &parquet::file::properties::WriterProperties,
    mut qrx: mpsc::Receiver<QuarantineBatch>,
) -> tokio::task::JoinHandle<Result<QuarantineTally>> {
    let run_dir = run_dir.to_path_buf();
    let props = props.clone();
    tokio::task::spawn_blocking(move || -> Result<QuarantineTally> {
        let mut set = ParquetFileSet::new(
            &run_dir,
            quarantine_name,
            quarantine_schema(),
            props,
            usize::MAX,
        );
        let mut counts = BTreeMap::new();
        while let Some(q) = qrx.blocking_recv() {
            for code in &q.codes {
                *counts
                    .entry((q.table.clone(), code.as_str().to_string()))
                    .or_insert(0) += 1;
            }
            set.write(&q.batch)?;
        }
        Ok(QuarantineTally {
            files: set.finish()?,
            counts,
        })
    })
}

/// What the last stage needs: where to write, and the target.
pub(crate) struct LoadSetup {
    pub run_dir: PathBuf,
    pub run_id: String,
    pub load_config: crate::config::LoadConfig,
    pub table: String,
    pub handle: Handle,
    pub load: Option<TargetLoad>,
    pub quarantine: mpsc::Sender<QuarantineBatch>,
    pub cancel: Arc<std::sync::atomic::AtomicBool>,
}

/// Plan every enriched batch `next` yields and send the requests to the target (or to
/// `requests.ndjson` for a dry run). Runs on a blocking thread.
pub(crate) fn plan_and_load(
    setup: LoadSetup,
    mut next: impl FnMut() -> Option<Result<RecordBatch>>,
) -> Result<(StageTiming, Planner, PlanOutput)> {
    let mut planner = Planner::new(MAX_SYNC_RECORDS);
    let mut timing = StageTiming::default();
    let mut plan_all = |sink: &mut dyn RequestSink,
                        timing: &mut StageTiming,
                        planner: &mut Planner|
     -> Result<()> {
        let mut last_log = Instant::now();
        while let Some(batch) = next() {
            let batch = batch?;
            let started = Instant::now();
            timing.rows_in += batch.rows();
            planner.process(&batch, sink)?;
            timing.busy += started.elapsed();
            if last_log.elapsed() > Duration::from_secs(5) {
                tracing::info!(
                    lines = planner.stats.lines,
                    direct_costs = planner.stats.direct_costs,
                    "planning"
                );
                last_log = Instant::now();
            }
        }
        let started = Instant::now();
        planner.finish(sink)?;
        timing.busy += started.elapsed();
        timing.rows_out = planner.stats.lines;
        Ok(())
    };
    let output = match setup.load {
        None => {
            drop(setup.quarantine);
            let mut sink = DryRunSink::new(HashedFile::create(&setup.run_dir, "requests.ndjson")?);
            plan_all(&mut sink, &mut timing, &mut planner)?;
            PlanOutput::DryRun(sink.finish()?)
        }
        Some(target) => {
            let client = target.client;
            // Waits for the directory: while Procore does not answer, the stages upstream run
            // until their channels are full, then wait too (at most `max_retry_secs`).
            let directory = match target.directory.wait(&setup.handle) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(
                        "the load cannot start: {e}; the run is staged, nothing is sent"
                    );
                    drop(setup.quarantine);
                    let mut sink = PendingSink { lines: 0 };
                    plan_all(&mut sink, &mut timing, &mut planner)?;
                    let outcome = LoadOutcome {
                        counts: crate::load::procore::LoadCounts {
                            pending: sink.lines,
                            ..Default::default()
                        },
                        client: client.stats(),
                        failure: Some(e),
                    };
                    return Ok((timing, planner, PlanOutput::Load(outcome)));
                }
            };
            let ledger = target.ledger;
            let ctx = Arc::new(LoadContext::new(
                client,
                setup.load_config,
                directory,
                ledger,
                &setup.run_id,
                &setup.table,
                setup.quarantine,
                setup.cancel,
            ));
            let mut sink = LoadSink::new(ctx, setup.handle);
            let planned = plan_all(&mut sink, &mut timing, &mut planner);
            let outcome = sink.finish();
            planned?;
            PlanOutput::Load(outcome)
        }
    };
    Ok((timing, planner, output))
}

/// The files, load report and load failure of the last stage's output.
pub(crate) fn summarize_output(
    output: PlanOutput,
) -> (
    Option<crate::stage::FileEntry>,
    Option<run::LoadReport>,
    Option<Error>,
) {
    match output {
        PlanOutput::Skipped => (None, None, None),
        PlanOutput::DryRun(f) => (Some(f), None, None),
        PlanOutput::Load(outcome) => {
            let requests: u64 = outcome
                .client
                .requests
                .values()
                .flat_map(|m| m.values())
                .sum();
            let sync_requests = outcome.counts.line_requests;
            let report = run::LoadReport {
                lines_per_line_request: if sync_requests > 0 {
                    outcome.counts.lines_sent as f64 / sync_requests as f64
                } else {
                    0.0
                },
                requests_total: requests,
                failure: outcome.failure.as_ref().map(|e| e.to_string()),
                counts: outcome.counts,
                http: outcome.client,
            };
            (None, Some(report), outcome.failure)
        }
    }
}

/// Run a sync as the pipeline file says. Every table is checked before anything is written.
pub async fn sync(pipeline: &Pipeline, options: &SyncOptions) -> Result<RunOutcome> {
    let config = Arc::new(pipeline.config.clone());
    // Before the ledger or Sage is read; held until the watermark has moved.
    let _ledger_lock = lock_ledger(
        pipeline,
        options,
        format!("sync {}", pipeline.path.display()),
    )
    .await?;

    // Incremental window: rows stamped at or after (watermark - overlap). SQL Server only.
    let mut change_window = match (&config.source, config.sync.kind) {
        (SourceConfig::Files(_), SyncKind::Incremental) => {
            return Err(Error::Config {
                path: pipeline.path.clone(),
                message: "key `sync.type`: \"incremental\" reads rows by their change stamps and needs \
                          `[source] kind = \"mssql\"`; a file export has no query to filter it with. \
                          Use type = \"deep\" (optionally with since = \"YYYY-MM-DD\")"
                    .into(),
            })
        }
        (SourceConfig::Files(_), SyncKind::Deep) => None,
        (SourceConfig::Mssql(_), kind) => {
            let scope = watermark_scope(&config);
            let ledger_path = config.ledger_path();
            let watermark = tokio::task::spawn_blocking(move || {
                Ledger::open(&ledger_path)?.watermark(&scope)
            })
            .await
            .map_err(|e| join_error("extract", e))??;
            let overlap = chrono::Duration::minutes(i64::from(config.sync.overlap_minutes));
            let changed_since = match kind {
                SyncKind::Incremental => watermark.map(|w| w - overlap),
                SyncKind::Deep => None,
            };
            Some(run::ChangeWindow {
                scope: watermark_scope(&config),
                watermark: watermark.map(format_stamp),
                overlap_minutes: config.sync.overlap_minutes,
                changed_since: changed_since.map(format_stamp),
                max_stamp_seen: None,
                new_watermark: None,
            })
        }
    };
    let changed_since = change_window
        .as_ref()
        .and_then(|w| w.changed_since.as_deref())
        .and_then(parse_stamp);
    if let Some(w) = &change_window {
        tracing::info!(
            scope = w.scope,
            watermark = w.watermark.as_deref().unwrap_or("none"),
            changed_since = w.changed_since.as_deref().unwrap_or("everything"),
            "change window"
        );
    }

    let started_at = chrono::Utc::now();
    let wall = Instant::now();
    // The login comes before Sage is read: refused credentials stop the run at once.
    let target = prepare_target(pipeline, options).await?;
    let source = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || SageSource::open_window(&config, changed_since))
            .await
            .map_err(|e| join_error("extract", e))??
    };
    let (run_id, run_dir) = run::create_run_dir(&config.stage.dir)?;
    tracing::info!(run_id, dir = %run_dir.display(), target = target.label, "run started");
    let cancel = options.cancel.clone().unwrap_or_default();
    let result = execute(
        pipeline,
        config.clone(),
        source,
        target,
        cancel,
        options.stage_only,
        &run_id,
        &run_dir,
        started_at,
        wall,
        &mut change_window,
    )
    .await;
    if let Err(e) = &result {
        // No manifest is written for a failed run; say why beside the partial files.
        let note = serde_json::json!({ "run_id": run_id, "error": e.to_string() });
        if let Err(w) = crate::stage::write_json(&run_dir, run::FAILED, &note) {
            tracing::warn!("cannot record the failure in {}: {w}", run_dir.display());
        }
    }
    // The run succeeded (its manifest is written): only now may the watermark move. A ledger
    // error here fails the command, but the run itself is complete (no failed.json).
    match (result, &change_window) {
        // A load that did not complete must be resumed from the same window.
        // A stage-only run loaded nothing: its window is still to be loaded.
        (Ok(outcome), Some(w))
            if outcome.exit_code != EXIT_LOAD_INCOMPLETE && !options.stage_only =>
        {
            match w.new_watermark.as_deref().and_then(parse_stamp) {
                Some(stamp) => {
                    let (scope, ledger_path, id) =
                        (w.scope.clone(), config.ledger_path(), run_id.clone());
                    tokio::task::spawn_blocking(move || {
                        Ledger::open(&ledger_path)?.advance_watermark(&scope, stamp, &id)
                    })
                    .await
                    .map_err(|e| join_error("ledger", e))
                    .and_then(|r| r)
                    .map(|()| {
                        tracing::info!(watermark = %format_stamp(stamp), "watermark advanced");
                        outcome
                    })
                }
                None => Ok(outcome),
            }
        }
        (result, _) => result,
    }
}

/// The ledger scope of a SQL Server source's watermark: company, server, database and table.
/// (Not the user: reading with another login must not reset it.)
pub fn watermark_scope(config: &crate::config::PipelineConfig) -> String {
    match &config.source {
        SourceConfig::Mssql(m) => format!(
            "{}|mssql://{}:{}/{}/{}.{}",
            config.company, m.host, m.port, m.database, m.schema, config.tables.transaction
        ),
        SourceConfig::Files(_) => format!("{}|{}", config.company, config.source.describe()),
    }
}

fn format_stamp(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

fn parse_stamp(s: &str) -> Option<chrono::NaiveDateTime> {
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()
}

/// Latest Date_Stamp + Time_Stamp of a typed transaction batch, in µs since 1970 (a row
/// without a Time_Stamp counts as midnight).
fn max_change_stamp(batch: &RecordBatch) -> Option<i64> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Date32Type, Time64MicrosecondType};
    let dates = batch
        .column_by_name("date_stamp")?
        .as_primitive_opt::<Date32Type>()?;
    let times = batch
        .column_by_name("time_stamp")?
        .as_primitive_opt::<Time64MicrosecondType>()?;
    (0..batch.num_rows())
        .filter(|&i| !dates.is_null(i))
        .map(|i| {
            let t = if times.is_null(i) { 0 } else { times.value(i) };
            i64::from(dates.value(i)) * 86_400_000_000 + t
        })
        .max()
}

fn micros_to_stamp(us: i64) -> Option<chrono::NaiveDateTime> {
    chrono::DateTime::from_timestamp_micros(us).map(|d| d.naive_utc())
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    pipeline: &Pipeline,
    config: Arc<crate::config::PipelineConfig>,
    source: SageSource,
    target: PreparedTarget,
    cancel: Arc<std::sync::atomic::AtomicBool>,
    options_stage_only: bool,
    run_id: &str,
    run_dir: &std::path::Path,
    started_at: chrono::DateTime<chrono::Utc>,
    wall: Instant,
    change_window: &mut Option<run::ChangeWindow>,
) -> Result<RunOutcome> {
    let run_id = run_id.to_string();
    let run_dir = run_dir.to_path_buf();
    let quarantine_props = writer_properties(&config.stage, &quarantine_schema())?;
    let props = writer_properties(&config.stage, &enriched_schema())?;
    let cap = config.pipeline.channel_capacity;

    // Quarantine writer: every stage may send rejected rows here.
    let (qtx, qrx) = mpsc::channel::<QuarantineBatch>(cap);
    let quarantine_task = spawn_quarantine_writer(&run_dir, &quarantine_props, qrx);

    // Dimensions are the build side of the joins. They load on a thread of their own while the
    // transactions are read, typed and projected (bounded by the channels): only the enrich
    // stage waits for them.
    let source = Arc::new(source);
    let (dims_tx, dims_rx) = tokio::sync::oneshot::channel::<Arc<Dimensions>>();
    let dims_task = {
        let source = source.clone();
        let qtx = qtx.clone();
        // Invoices beyond what memory holds spill beside the runs, and are removed at the end.
        let spill = config.stage.dir.join(format!(".invoices-{run_id}"));
        tokio::task::spawn_blocking(move || -> Result<DimensionsLoaded> {
            let started = Instant::now();
            let (dims, reports) = Dimensions::load(&source, spill, DEFAULT_INVOICE_MEMORY, |q| {
                qtx.blocking_send(q).map_err(|_| downstream_gone("extract"))
            })?;
            tracing::info!(jobs = dims.job_count(), "dimensions indexed");
            let dims = Arc::new(dims);
            // No receiver means the enrich stage already stopped; its error tells why.
            let _ = dims_tx.send(dims.clone());
            Ok(DimensionsLoaded {
                dims,
                reports,
                elapsed: started.elapsed(),
            })
        })
    };

    let (raw_tx, raw_rx) = mpsc::channel::<RawBatch>(cap);
    let (extract_tx, extract_rx) = mpsc::channel::<RecordBatch>(cap);
    let (project_tx, project_rx) = mpsc::channel::<RecordBatch>(cap);
    let (enrich_tx, enrich_rx) = mpsc::channel::<RecordBatch>(cap);
    let (staged_tx, mut staged_rx) = mpsc::channel::<RecordBatch>(cap);

    // Extract reads (CSV parsing, Parquet decoding, TDS rows) and a stage of its own types the
    // cells, so that the two overlap on separate cores.
    let extracted = Arc::new(AtomicU64::new(0));
    let max_stamp = Arc::new(std::sync::atomic::AtomicI64::new(i64::MIN));
    // A stage-only or dry run sends nothing: Ctrl-C stops its reading (the stages drain, and the
    // run is left without a manifest, failed.json saying why). A load instead stages everything
    // and stops sending.
    let stop_reading = target.load.is_none().then(|| cancel.clone());
    let extract_task = {
        let source = source.clone();
        let extracted = extracted.clone();
        tokio::task::spawn_blocking(move || -> Result<(StageTiming, BTreeMap<String, u64>)> {
            let mut timing = StageTiming::default();
            let mut not_cost_type = BTreeMap::new();
            let mut last_log = Instant::now();
            let mut batches = source.raw_transactions(true)?;
            let handle = Handle::current();
            loop {
                // Room downstream first: at most one batch is ever held outside the channels.
                let permit = handle
                    .block_on(raw_tx.reserve())
                    .map_err(|_| downstream_gone("extract"))?;
                if stop_reading
                    .as_ref()
                    .is_some_and(|c| c.load(Ordering::Relaxed))
                {
                    return Err(Error::InterruptedUnsent {
                        rows: extracted.load(Ordering::Relaxed),
                    });
                }
                let started = Instant::now();
                let Some(raw) = batches.next() else { break };
                let mut raw = drop_non_cost_rows(raw?)?;
                timing.busy += started.elapsed();
                let rows = raw.rows_read();
                let total = extracted.fetch_add(rows, Ordering::Relaxed) + rows;
                timing.rows_in += rows;
                timing.rows_out += raw.batch.num_rows() as u64;
                for (ty, n) in std::mem::take(&mut raw.not_cost_type) {
                    *not_cost_type.entry(ty).or_insert(0) += n;
                }
                permit.send(raw);
                if last_log.elapsed() > Duration::from_secs(5) {
                    tracing::info!(rows = total, "extracting");
                    last_log = Instant::now();
                }
            }
            Ok((timing, not_cost_type))
        })
    };

    let type_task = {
        let qtx = qtx.clone();
        let max_stamp = max_stamp.clone();
        let table = source.transaction_table().to_string();
        tokio::task::spawn_blocking(move || {
            run_stage("type", raw_rx, extract_tx, |raw| {
                let typed = type_batch(TableRole::Transaction, &table, raw)?;
                if let Some(q) = typed.quarantine {
                    qtx.blocking_send(q).map_err(|_| downstream_gone("type"))?;
                }
                if let Some(m) = max_change_stamp(&typed.batch) {
                    max_stamp.fetch_max(m, Ordering::Relaxed);
                }
                Ok((typed.batch.num_rows() > 0).then_some(typed.batch))
            })
        })
    };

    // Natural keys beyond what memory holds spill beside the runs, and are removed at the end.
    let mut projector = Projector::with_spill_dir(
        &config,
        config.stage.dir.join(format!(".keys-{run_id}")),
        crate::dedup::DEFAULT_RECENT_KEYS,
    );
    if let Some(rows) = source.estimated_transactions() {
        projector.expect_rows(rows);
    }
    let projector = Arc::new(std::sync::Mutex::new(projector));
    let project_task = {
        let qtx = qtx.clone();
        let projector = projector.clone();
        tokio::task::spawn_blocking(move || {
            run_stage("project", extract_rx, project_tx, |batch| {
                let mut p = projector.lock().map_err(|_| Error::Stage {
                    stage: "project",
                    message: "state poisoned".into(),
                })?;
                let out = p.process(&batch)?;
                if let Some(q) = out.quarantine {
                    qtx.blocking_send(q)
                        .map_err(|_| downstream_gone("project"))?;
                }
                Ok((out.batch.num_rows() > 0).then_some(out.batch))
            })
        })
    };

    let enrich_task = {
        let qtx = qtx.clone();
        let (company, table) = (config.company.clone(), config.tables.transaction.clone());
        tokio::task::spawn_blocking(move || {
            let dims = Handle::current()
                .block_on(dims_rx)
                .map_err(|_| Error::Stage {
                    stage: "enrich",
                    message: DIMENSIONS_MISSING.into(),
                })?;
            let enricher = Enricher::new(dims, &company, &table);
            run_stage("enrich", project_rx, enrich_tx, |batch| {
                let out = enricher.process(&batch)?;
                if let Some(q) = out.quarantine {
                    qtx.blocking_send(q)
                        .map_err(|_| downstream_gone("enrich"))?;
                }
                Ok((out.batch.num_rows() > 0).then_some(out.batch))
            })
        })
    };
    let load_qtx = qtx.clone();
    drop(qtx);

    let stage_task = {
        let run_dir = run_dir.clone();
        let props = props.clone();
        let part_rows = config.stage.part_rows;
        tokio::task::spawn_blocking(
            move || -> Result<(StageTiming, Vec<crate::stage::FileEntry>)> {
                let mut set = ParquetFileSet::new(
                    &run_dir,
                    staged_part_name,
                    enriched_schema(),
                    props,
                    part_rows,
                );
                let timing = run_stage("stage", enrich_rx, staged_tx, |batch| {
                    set.write(&batch)?;
                    Ok(Some(batch))
                })?;
                Ok((timing, set.finish()?))
            },
        )
    };

    let target_label = target.label.clone();
    let stage_only = options_stage_only;
    let plan_task = if stage_only {
        drop(load_qtx);
        drop(cancel);
        tokio::task::spawn_blocking(move || -> Result<(StageTiming, Planner, PlanOutput)> {
            let mut timing = StageTiming::default();
            while let Some(batch) = staged_rx.blocking_recv() {
                timing.rows_in += batch.rows();
            }
            Ok((timing, Planner::new(MAX_SYNC_RECORDS), PlanOutput::Skipped))
        })
    } else {
        let setup = LoadSetup {
            run_dir: run_dir.clone(),
            run_id: run_id.clone(),
            load_config: config.load.clone(),
            table: config.tables.transaction.clone(),
            handle: Handle::current(),
            load: target.load,
            quarantine: load_qtx,
            cancel,
        };
        tokio::task::spawn_blocking(move || {
            plan_and_load(setup, || staged_rx.blocking_recv().map(Ok))
        })
    };

    // Join everything; on failure report the error that explains it.
    let mut errors = Vec::new();
    let dimensions = dims_task
        .await
        .map_err(|e| join_error("extract", e))
        .and_then(|r| r);
    let extract = extract_task
        .await
        .map_err(|e| join_error("extract", e))
        .and_then(|r| r);
    let typed = type_task
        .await
        .map_err(|e| join_error("type", e))
        .and_then(|r| r);
    let project = project_task
        .await
        .map_err(|e| join_error("project", e))
        .and_then(|r| r);
    let enrich = enrich_task
        .await
        .map_err(|e| join_error("enrich", e))
        .and_then(|r| r);
    let stage = stage_task
        .await
        .map_err(|e| join_error("stage", e))
        .and_then(|r| r);
    let plan = plan_task
        .await
        .map_err(|e| join_error("plan", e))
        .and_then(|r| r);
    let quarantine = quarantine_task
        .await
        .map_err(|e| join_error("quarantine", e))
        .and_then(|r| r);
    let dimensions = dimensions.map_err(|e| errors.push(e)).ok();
    let extract = extract.map_err(|e| errors.push(e)).ok();
    let typed = typed.map_err(|e| errors.push(e)).ok();
    let project = project.map_err(|e| errors.push(e)).ok();
    let enrich = enrich.map_err(|e| errors.push(e)).ok();
    let stage = stage.map_err(|e| errors.push(e)).ok();
    let plan = plan.map_err(|e| errors.push(e)).ok();
    let quarantine = quarantine.map_err(|e| errors.push(e)).ok();
    let (
        Some(dimensions),
        Some(extract),
        Some(typed),
        Some(project),
        Some(enrich),
        Some((stage, staged_files)),
        Some((plan, planner, output)),
        Some(quarantine),
    ) = (
        dimensions, extract, typed, project, enrich, stage, plan, quarantine,
    )
    else {
        return Err(first_real_error(errors).unwrap_or_else(|| Error::Stage {
            stage: "pipeline",
            message: "a stage failed without an error".into(),
        }));
    };

    let (extract, not_cost_type) = extract;
    let mut filtered = projector
        .lock()
        .map_err(|_| Error::Stage {
            stage: "project",
            message: "state poisoned".into(),
        })?
        .filtered
        .clone();
    // Non-cost rows the reader dropped count as the project stage's filter would have.
    for (ty, n) in not_cost_type {
        *filtered.not_cost_type.entry(ty).or_insert(0) += n;
    }
    let transaction_table = config.tables.transaction.clone();
    let mut quarantined = BTreeMap::new();
    for ((table, reason), n) in &quarantine.counts {
        if *table == transaction_table {
            *quarantined.entry(reason.clone()).or_insert(0) += n;
        }
    }
    let counts = CountsReport {
        extracted: extracted.load(Ordering::Relaxed),
        filtered: filtered.total(),
        filtered_by_type: filtered.not_cost_type.clone(),
        filtered_before_window: filtered.before_window,
        quarantined_total: quarantined.values().sum(),
        quarantined,
        staged: stage.rows_out,
        planned: planner.stats.lines,
        loaded: None,
        pending: 0,
        plan_skipped: stage_only,
    };
    let mut counts = counts;
    let (requests_file, load_report, load_failure) = summarize_output(output);
    if let Some(l) = &load_report {
        counts.loaded = Some(l.counts.loaded());
        counts.pending = l.counts.pending;
    }
    let elapsed = wall.elapsed();
    let stages = vec![
        StageReport::new(
            "dimensions",
            dimensions.elapsed,
            dimensions.reports.iter().map(|d| d.rows_read).sum(),
            dimensions.dims.job_count() as u64,
        ),
        StageReport::from_timing("extract", extract),
        StageReport::from_timing("type", typed),
        StageReport::from_timing("project", project),
        StageReport::from_timing("enrich", enrich),
        StageReport::from_timing("stage", stage),
        StageReport::from_timing("plan", plan),
    ];
    let totals = planner
        .totals()
        .into_iter()
        .map(|((job, extra, cost_code, category), cents)| TotalRow {
            job,
            extra,
            cost_code,
            category,
            amount: format_decimal(cents, 2),
        })
        .collect();
    let dim_quarantined: u64 = quarantine
        .counts
        .iter()
        .filter(|((t, _), _)| *t != transaction_table)
        .map(|(_, n)| n)
        .sum();
    if let Some(w) = change_window.as_mut() {
        let seen = max_stamp.load(Ordering::Relaxed);
        let seen = (seen != i64::MIN).then(|| micros_to_stamp(seen)).flatten();
        w.max_stamp_seen = seen.map(format_stamp);
        let old = w.watermark.as_deref().and_then(parse_stamp);
        w.new_watermark = match (old, seen) {
            (Some(o), Some(s)) => Some(o.max(s)),
            (o, s) => o.or(s),
        }
        .map(format_stamp);
    }
    let report = Report {
        change_window: change_window.clone(),
        run_id: run_id.clone(),
        company: config.company.clone(),
        target: target_label,
        sync_type: config.sync.kind,
        since: config.sync.since.to_string(),
        started_at: started_at.to_rfc3339(),
        elapsed_ms: elapsed.as_millis() as u64,
        reconciled: counts.reconciles(
            load_report
                .as_ref()
                .map(|l| l.counts.quarantined_total())
                .unwrap_or(0),
        ),
        counts,
        dimensions: dimensions.reports,
        dimension_rows_quarantined: dim_quarantined,
        stages,
        plan: planner.stats.clone(),
        planned_amount: format_decimal(planner.stats.amount_cents, 2),
        totals,
        load: load_report,
    };
    let mut files = staged_files;
    files.extend(quarantine.files);
    files.extend(requests_file);
    files.push(crate::stage::write_json(&run_dir, "report.json", &report)?);
    let source_desc = config.source.describe();
    let manifest = Manifest::new(&run_id, pipeline, source_desc, &report, files);
    crate::stage::write_json(&run_dir, run::MANIFEST, &manifest)?;
    let quarantined_any = report.counts.quarantined_total + report.dimension_rows_quarantined > 0;
    let exit_code = if let Some(e) = load_failure {
        tracing::error!("the load did not complete: {e}");
        EXIT_LOAD_INCOMPLETE
    } else if quarantined_any {
        config.report.quarantine_exit_code
    } else {
        0
    };
    Ok(RunOutcome {
        run_dir,
        report,
        exit_code,
    })
}
