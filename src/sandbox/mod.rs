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

mod app;
mod auth;
pub mod config;
pub mod faults;
pub mod limits;
pub mod routes;
pub mod seed;
mod server;
pub mod state;
pub mod sync;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use app::Stats;
pub use config::{RateLimitConfig, SandboxConfig, SeedSource};
pub use faults::{FaultConfig, FaultKind, FaultRule};
pub use seed::{Seed, SeedError};
pub use state::{CostSummary, Db, StateFileError};

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
                SeedSource::Dir(dir) => Db::from_seed(&Seed::load_dir(dir)?),
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

async fn flush(app: &Arc<AppState>, path: &std::path::Path, force: bool) {
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
    let path = path.to_path_buf();
    let written = tokio::task::spawn_blocking(move || state::write_state_file(&path, &bytes)).await;
    match written {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "sandbox cannot save its state"),
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

    /// Stops accepting, lets open requests finish (up to 5 s), saves the state file, and waits.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SandboxHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}
