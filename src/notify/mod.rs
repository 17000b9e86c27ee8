//! Alerts: after each run (a plain `sync` and every slot of `sync --every`), a JSON summary
//! POSTed to the webhook the pipeline's `[notify]` section names.
//!
//! [`Notifier`] reads the URL from the environment variable `webhook_url_env` names (a missing
//! one is a warning, never a failed run); [`payload`] builds the summary from how the run
//! ended ([`Ended`]); [`send`] POSTs it, retrying connection errors, timeouts, 429s and 5xx
//! within a bounded time. A notification that cannot be delivered is logged (its status code,
//! never the URL: the URL embeds the webhook's token) and never changes the run's exit status.

pub mod payload;
mod send;

use std::time::Duration;

use crate::config::{NotifyConfig, NotifyOn, Pipeline};
use crate::error::Error;
use crate::load::client::Secret;
use crate::pipeline::RunOutcome;

pub use payload::{Alert, AlertCounts, QuarantineReason};
pub use send::Delivery;

/// How a run ended, for its alert.
pub struct Ended<'a> {
    pub pipeline: &'a Pipeline,
    /// The run's outcome, or the error that stopped it.
    pub result: Result<&'a RunOutcome, &'a Error>,
    /// The exit status the run gives (a plain sync's process exit status).
    pub exit_code: u8,
    /// When the run started.
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// How long it took.
    pub duration: Duration,
}

/// The webhook of a pipeline's `[notify]` section, ready to POST.
pub struct Notifier {
    config: NotifyConfig,
    /// None: the environment variable is missing or empty, or its value is not a URL
    /// (`problem` says which).
    url: Option<Secret>,
    client: Option<reqwest::Client>,
    problem: Option<String>,
}

impl Notifier {
    /// The notifier of a pipeline, or None when it has no `[notify]` section. Reads the
    /// URL from the environment now; a notifier without one only says why ([`Notifier::problem`]).
    pub fn for_pipeline(pipeline: &Pipeline) -> Option<Notifier> {
        pipeline.config.notify.as_ref().map(Notifier::new)
    }

    /// A notifier for `config`, its URL read from the environment.
    pub fn new(config: &NotifyConfig) -> Notifier {
        let var = &config.webhook_url_env;
        let raw = std::env::var(var).ok().filter(|v| !v.trim().is_empty());
        let (url, mut problem) = match raw {
            None => (
                None,
                Some(format!(
                    "notify: environment variable {var} (named by `notify.webhook_url_env`) is not set: no alert will be sent"
                )),
            ),
            Some(v) => match reqwest::Url::parse(v.trim()) {
                Ok(u) if matches!(u.scheme(), "https" | "http") => (Some(Secret::new(u)), None),
                // Never the value: it may be the secret pasted in the wrong variable.
                _ => (
                    None,
                    Some(format!(
                        "notify: environment variable {var} does not hold an http(s) URL: no alert will be sent"
                    )),
                ),
            },
        };
        let client = match &url {
            Some(_) => match send::client(config) {
                Ok(c) => Some(c),
                Err(e) => {
                    problem = Some(format!(
                        "notify: cannot set up the HTTP client ({}): no alert will be sent",
                        e.without_url()
                    ));
                    None
                }
            },
            None => None,
        };
        Notifier {
            config: config.clone(),
            url: if client.is_some() { url } else { None },
            client,
            problem,
        }
    }

    /// Why this notifier sends nothing, if it does not (to log as a warning at start).
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// Whether a run that exits with `exit_code` is told (`on = "failure"`: any non-zero).
    pub fn wants(&self, exit_code: u8) -> bool {
        match self.config.on {
            NotifyOn::Always => true,
            NotifyOn::Failure => exit_code != 0,
        }
    }

    /// POST `alert` (with the retries the section allows); the delivery is logged.
    pub async fn send(&self, alert: &Alert) -> Delivery {
        let (Some(url), Some(client)) = (&self.url, &self.client) else {
            return Delivery::NotConfigured;
        };
        let delivery = send::post(client, url, &self.config, alert).await;
        delivery.log(alert.run_id.as_deref());
        delivery
    }
}

/// Tell the notifier (if any) how a run ended, when its `on` wants it. Never fails: a
/// notification that cannot be delivered is logged.
pub async fn after_run(notifier: Option<&Notifier>, ended: &Ended<'_>) -> Option<Delivery> {
    let notifier = notifier?;
    if !notifier.wants(ended.exit_code) || notifier.url.is_none() {
        return None;
    }
    let mut alert = payload::Alert::build(ended);
    // Reading the run back (its quarantine file; for a failed run, its id in the ledger) is
    // blocking file I/O.
    let company = ended.pipeline.config.company.clone();
    let ledger = ended.pipeline.config.ledger_path();
    let table = ended.pipeline.config.tables.transaction.clone();
    let run_dir = ended.result.ok().map(|o| o.run_dir.clone());
    let (since, busy) = (
        ended.started_at,
        matches!(ended.result, Err(Error::LedgerBusy { .. })),
    );
    let read_back = tokio::task::spawn_blocking(move || match run_dir {
        Some(dir) => payload::ReadBack::Amounts(payload::quarantine_amounts(&dir, &table)),
        None if busy => payload::ReadBack::Nothing,
        None => payload::ReadBack::RunId(payload::failed_run_id(&ledger, &company, since)),
    })
    .await;
    match read_back {
        Ok(r) => alert.add(r),
        Err(e) => tracing::warn!("notify: reading the run back failed: {e}"),
    }
    alert.finish();
    Some(notifier.send(&alert).await)
}

#[cfg(test)]
mod tests;
