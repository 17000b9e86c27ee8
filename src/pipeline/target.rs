//! The target of a run, prepared before Sage is read: the ledger's lock, the login, the
//! Procore directory fetched beside extract and stage, the ledger.

use std::sync::Arc;

use tokio::runtime::Handle;

use super::SyncOptions;
use crate::config::{Pipeline, TargetConfig};
use crate::error::{Error, Result};
use crate::ledger::{Ledger, LedgerLock};
use crate::load::client::{Connection, ProcoreClient, Secret};
use crate::load::procore::Directory;
use crate::transform::driver::task_failed;

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
        .map_err(|e| task_failed("ledger", e))??;
    tracing::debug!(lock = %lock.path().display(), "ledger locked");
    Ok(Some(lock))
}

/// Procore's project and vendor directory, fetched beside extract and stage (a Procore that
/// is down when the run starts must not keep the snapshot from being staged). A run that ends
/// before its load starts stops the lookup.
pub(crate) struct DirectoryLookup(tokio::task::JoinHandle<Result<Directory>>);

impl DirectoryLookup {
    /// Wait for the lookup (on a blocking thread).
    pub(crate) fn wait(mut self, handle: &Handle) -> Result<Directory> {
        handle
            .block_on(&mut self.0)
            .map_err(|e| task_failed("load", e))
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
    /// A dry run of a pipeline whose target keeps a ledger: that ledger, read only, to show the
    /// removals the run would make.
    pub dry_run_ledger: Option<Ledger>,
    /// Keeps an embedded sandbox alive for the run.
    _sandbox: Option<crate::sandbox::SandboxHandle>,
}

/// What the ledger scopes a target's entries by: a Procore company at a URL, or a sandbox
/// state file. None for a target that keeps nothing (dry-run, a sandbox without a state file,
/// which forgets everything at exit: so must its ledger).
pub(crate) fn ledger_scope(target: &TargetConfig) -> Option<String> {
    match target {
        TargetConfig::DryRun(_) => None,
        TargetConfig::Sandbox(t) => t
            .state_file
            .as_ref()
            .map(|state| format!("sandbox:{}", state.display())),
        TargetConfig::Procore(t) => Some(format!(
            "{}#{}",
            t.api_url.trim_end_matches('/'),
            t.company_id
        )),
    }
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
            dry_run_ledger: None,
            _sandbox: None,
        });
    }
    if options.dry_run {
        let ledger_file = config.ledger_path();
        let dry_run_ledger = match ledger_scope(&config.target) {
            Some(scope) if ledger_file.exists() => {
                Some(Ledger::open(&ledger_file)?.with_target(&scope))
            }
            _ => None,
        };
        return Ok(PreparedTarget {
            label: "dry-run".into(),
            load: None,
            dry_run_ledger,
            _sandbox: None,
        });
    }
    let (conn, ledger, sandbox, label) = match &config.target {
        TargetConfig::DryRun(_) => {
            return Ok(PreparedTarget {
                label: "dry-run".into(),
                load: None,
                dry_run_ledger: None,
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
            let ledger = ledger_scope(&config.target);
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
            let ledger = ledger_scope(&config.target);
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
        Some(target) if !options.ledger_untouched => {
            Ledger::open(&config.ledger_path())?.with_target(&target)
        }
        _ => Ledger::in_memory()?,
    };
    Ok(PreparedTarget {
        label,
        load: Some(TargetLoad {
            client,
            directory,
            ledger,
        }),
        dry_run_ledger: None,
        _sandbox: sandbox,
    })
}
