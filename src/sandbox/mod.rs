//! A local emulator of the Procore API (issue 3): OAuth, the company header, lookups, direct
//! costs and their bulk sync, rate limits, 409s, and injected faults, following
//! `DOMAIN.md` section 3 so that a client that works here works against Procore.
//!
//! Embed it in a test or bench:
//!
//! ```no_run
//! # async fn demo() -> Result<(), jcsync::sandbox::SandboxError> {
//! use jcsync::sandbox::{Sandbox, SandboxConfig};
//! let sandbox = Sandbox::start(SandboxConfig::from_dir("fixtures/procore")).await?;
//! println!("Procore at {}", sandbox.url());
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! or run it with `jcsync sandbox --seed fixtures/procore --port 8080`.
//!
//! Removing, one record per request as on Procore (all through the gate: auth, company header,
//! rate limits, faults, the 409 rule, stats):
//!
//! - `DELETE /rest/v1.0/projects/{project_id}/direct_costs/{direct_cost_id}` (and
//!   `/rest/v1.1/projects/{project_id}/direct_costs/{id}`): the direct cost with its lines;
//!   200 `{"id": <id>}` as Procore's OpenAPI description says (not 204).
//! - `DELETE /rest/v1.0/projects/{project_id}/direct_costs/{direct_cost_id}/line_items/{id}`:
//!   one line; 200 with an empty body. The direct cost stays even when it loses its last line.
//! - `GET /rest/v1.0/projects/{project_id}/direct_costs/{direct_cost_id}/line_items`: that
//!   direct cost's lines, paginated like every list.
//!
//! 404 `{"errors": "… not found"}` for what does not exist or is not the path's (so a delete
//! whose response was lost answers 404 on retry); 409 while another write holds the direct cost.
//!
//! Drift, what a user in Procore does behind the client's back ([`drift`]), without auth,
//! limits or faults: `PATCH /_sandbox/line_items/{id}` (amount, wbs_code_id, description,
//! direct_cost_id), `DELETE /_sandbox/line_items/{id}`, `DELETE /_sandbox/direct_costs/{id}`,
//! `POST /_sandbox/projects/{project_id}/direct_costs` (a hand-entered direct cost, no origin
//! ids), `POST /_sandbox/direct_costs/{id}/line_items` (a raw line whose origin id may repeat),
//! and the same as [`SandboxHandle`] methods. See `SANDBOX_ADMIN.md`.
//!
//! The state file is saved when [`SandboxHandle::shutdown`] returns, and also when the handle
//! is dropped without it (synchronously, in `drop`), so an embedded sandbox that goes away
//! with its run and runtime keeps every write.

mod app;
mod auth;
pub mod config;
pub mod drift;
pub mod faults;
pub mod limits;
pub mod routes;
pub mod seed;
mod server;
pub mod state;
pub mod sync;
pub mod tools;
pub mod views;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use app::Stats;
pub use config::{RateLimitConfig, SandboxConfig, SeedSource};
pub use drift::{DriftError, DriftLine, ForeignDirectCost, ForeignIds, LineEdit};
pub use faults::{FaultConfig, FaultKind, FaultRule};
pub use seed::{Seed, SeedError};
pub use state::{CostSummary, Db, StateFileError};
pub use views::LineItemView;

use app::AppState;
use faults::lock;

/// How often a dirty state is flushed to the state file.
const PERSIST_EVERY: Duration = Duration::from_millis(200);

/// Why a sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The seed is missing or invalid.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// The state file is unreadable.
    #[error(transparent)]
    State(#[from] StateFileError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// Entry points.
pub struct Sandbox;

impl Sandbox {
    /// Loads the state (state file if it exists, else the seed), binds, and serves in the
    /// background on the current Tokio runtime.
    pub async fn start(config: SandboxConfig) -> Result<SandboxHandle, SandboxError> {
        let db = match &config.state_file {
            Some(path) if path.exists() => Db::load_file(path)?,
            _ => match &config.seed {
                SeedSource::Dir(dir) => {
                    let seed = Seed::load_dir(dir)?;
                    let mut db = Db::from_seed(&seed);
                    tools::apply_seed(&mut db, &seed, &tools::load_seed_file(dir)?)?;
                    db
                }
                SeedSource::Inline(seed) => {
                    seed.validate()?;
                    Db::from_seed(seed)
                }
            },
        };
        let bind = |source| SandboxError::Bind {
            addr: config.bind,
            source,
        };
        let listener = TcpListener::bind(config.bind).await.map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let state_file = config.state_file.clone();
        let persisted = state_file.clone();
        let app = Arc::new(AppState::new(config, db));
        let router = routes::router(app.clone());
        let (shutdown, rx) = watch::channel(false);

        let server_app = app.clone();
        let task = tokio::spawn(async move {
            let persister = state_file
                .clone()
                .map(|path| tokio::spawn(persist_loop(server_app.clone(), path, rx.clone())));
            server::serve(listener, router, rx).await;
            if let Some(p) = persister {
                let _ = p.await;
            }
            if let Some(path) = state_file {
                flush(&server_app, &path, true).await;
            }
        });
        tracing::info!(%addr, "Procore sandbox listening");
        Ok(SandboxHandle {
            url: format!("http://{addr}"),
            addr,
            app,
            shutdown,
            task: Some(task),
            state_file: persisted,
        })
    }

    /// Runs a sandbox until Ctrl-C (the `jcsync sandbox` command).
    pub async fn run(config: SandboxConfig) -> Result<(), SandboxError> {
        let handle = Sandbox::start(config).await?;
        {
            use std::io::Write;
            // Not println!: a closed stdout (e.g. a reader that took the first line and left)
            // must not take the sandbox down.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "Procore sandbox listening on {}", handle.url());
            let _ = writeln!(out, "  login_url = {0}   api_url = {0}", handle.url());
            let _ = writeln!(out, "  inspection: {}/_sandbox/stats", handle.url());
            let _ = out.flush();
        }
        let _ = tokio::signal::ctrl_c().await;
        handle.shutdown().await;
        Ok(())
    }
}

async fn persist_loop(app: Arc<AppState>, path: PathBuf, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PERSIST_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => flush(&app, &path, false).await,
            _ = shutdown.changed() => return,
        }
    }
}

/// Saves the state to `path` now, on this thread, if it changed since the last save (or when
/// `force`). Writers take turns; each one serializes the state as it is when its turn comes, so
/// the last save holds the last write.
fn save_now(app: &AppState, path: &Path, force: bool) {
    let _turn = lock(&app.persist);
    if !app.dirty.swap(false, Ordering::AcqRel) && !force {
        return;
    }
    let bytes = match lock(&app.db).to_json() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "sandbox cannot serialize its state");
            return;
        }
    };
    if let Err(e) = state::write_state_file(path, &bytes) {
        // Try again at the next save.
        app.mark_dirty();
        tracing::error!(error = %e, "sandbox cannot save its state");
    }
}

/// [`save_now`] on a blocking thread. A runtime that is shutting down cancels blocking tasks that
/// have not started: the save then runs here instead of being lost.
async fn flush(app: &Arc<AppState>, path: &Path, force: bool) {
    let (writer, file) = (app.clone(), path.to_path_buf());
    match tokio::task::spawn_blocking(move || save_now(&writer, &file, force)).await {
        Ok(()) => {}
        Err(e) if e.is_cancelled() => save_now(app, path, force),
        Err(e) => tracing::error!(error = %e, "sandbox state writer failed"),
    }
}

/// A running sandbox. Dropping it asks the server to stop; [`SandboxHandle::shutdown`] also waits
/// for it (and for the final save of the state file).
pub struct SandboxHandle {
    url: String,
    addr: SocketAddr,
    app: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    state_file: Option<PathBuf>,
}

impl SandboxHandle {
    /// Base URL for both the login and the API, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The company id to send as `Procore-Company-Id`.
    pub fn company_id(&self) -> i64 {
        lock(&self.app.db).company.id
    }

    /// The OAuth clients of the company (for an embedded pipeline to log in with).
    pub fn credentials(&self) -> Vec<seed::Credential> {
        lock(&self.app.db).company.credentials.clone()
    }

    /// Requests by route and outcome, 429s sent, faults injected.
    pub fn stats(&self) -> Stats {
        self.app.stats()
    }

    /// Direct costs and line totals per project and budget code.
    pub fn cost_summary(&self) -> CostSummary {
        lock(&self.app.db).cost_summary()
    }

    /// A copy of the whole state.
    pub fn snapshot(&self) -> Db {
        lock(&self.app.db).clone()
    }

    /// Drift: edits a line item as a user with "Edit Synced Direct Cost Transactions" would
    /// (amount, budget code, description, direct cost); `updated_at` moves. Returns the line as
    /// the API now renders it.
    pub fn edit_line_item(&self, id: i64, edit: &LineEdit) -> Result<LineItemView, DriftError> {
        self.app.drift(|db, now| {
            let li = db.edit_line_item(id, edit, now)?;
            Ok(views::line_item_json(db, &li))
        })
    }

    /// Drift: deletes a line item as a user would (its direct cost stays, even empty).
    pub fn delete_line_item(&self, id: i64) -> Result<(), DriftError> {
        self.app.drift(|db, _| db.delete_line_item(id).map(|_| ()))
    }

    /// Drift: deletes a direct cost with its lines; returns how many lines went with it.
    pub fn delete_direct_cost(&self, id: i64) -> Result<usize, DriftError> {
        self.app.drift(|db, _| db.delete_direct_cost(id))
    }

    /// Drift: adds a direct cost entered by hand or by another integration (no origin id on it
    /// or its lines) to a project.
    pub fn add_foreign_direct_cost(
        &self,
        project_id: i64,
        direct_cost: &ForeignDirectCost,
    ) -> Result<ForeignIds, DriftError> {
        self.app
            .drift(|db, now| db.add_foreign_direct_cost(project_id, direct_cost, now))
    }

    /// Drift: adds a line to a direct cost with the line's `origin_id`, even one another line
    /// holds (a data import's duplicate); returns the new line's id.
    pub fn add_raw_line_item(
        &self,
        direct_cost_id: i64,
        line: &DriftLine,
    ) -> Result<i64, DriftError> {
        self.app
            .drift(|db, now| db.add_raw_line_item(direct_cost_id, line, now))
    }

    /// Turns a project's tool (by engine name, e.g. [`tools::DIRECT_COSTS`]) on or off, as an
    /// admin does in the project's Admin tool under "Active Tools".
    pub fn set_tool_active(
        &self,
        project_id: i64,
        engine_name: &str,
        active: bool,
    ) -> Result<(), DriftError> {
        self.app.drift(|db, _| {
            tools::set_active(db, project_id, engine_name, active).map_err(DriftError::Invalid)
        })
    }

    /// Stops accepting, lets open requests finish (up to 5 s), saves the state file, and returns
    /// once the file holds every write the sandbox answered.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            // Its last act is a forced save; if it was cancelled instead, the save below does it.
            let _ = task.await;
        }
        if let Some(path) = &self.state_file {
            let force = !path.exists();
            flush(&self.app, path, force).await;
        }
    }
}

impl Drop for SandboxHandle {
    /// Asks the server to stop and, when it was not shut down with [`SandboxHandle::shutdown`],
    /// saves the state file right here, on this thread: an embedded sandbox is dropped with its
    /// run, often just before the runtime that would have run its background save goes away.
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if self.task.is_some() {
            if let Some(path) = &self.state_file {
                save_now(&self.app, path, !path.exists());
            }
        }
    }
}
