//! The POST of an alert: retried on connection errors, timeouts, 429 and 5xx (the load's own
//! [`crate::load::retry`] classification, `Retry-After` honoured) with capped, jittered
//! backoff, within a bounded total time. The URL never appears in what is logged or returned.

use std::time::{Duration, Instant};

use super::payload::Alert;
use crate::config::NotifyConfig;
use crate::load::client::Secret;
use crate::load::retry::{classify_status, classify_transport, Backoff, RetryDecision};

/// First backoff step between two attempts.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest backoff step (also the most a `Retry-After` may add per attempt).
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// How a notification went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// No URL (see [`super::Notifier::problem`]): nothing was sent.
    NotConfigured,
    /// The webhook answered 2xx.
    Delivered { status: u16, attempts: u32 },
    /// Given up: `last` is the last answer (`HTTP 500`) or error, never the URL.
    Failed { attempts: u32, last: String },
}

impl Delivery {
    /// Log how it went (a failure is a warning; the run's exit status stays what it was).
    pub(super) fn log(&self, run_id: Option<&str>) {
        let run = run_id.unwrap_or("-");
        match self {
            Delivery::NotConfigured => {}
            Delivery::Delivered { status, attempts } => {
                tracing::info!(run_id = run, status, attempts, "notify: alert delivered")
            }
            Delivery::Failed { attempts, last } => tracing::warn!(
                run_id = run,
                attempts,
                "notify: the alert could not be delivered ({last}); the run's exit status is unchanged"
            ),
        }
    }
}

/// The HTTP client of a webhook: per-attempt timeout, no redirects (a POST must not become a
/// GET elsewhere), TLS verified (rustls, the system's and webpki roots).
pub(super) fn client(config: &NotifyConfig) -> reqwest::Result<reqwest::Client> {
    let timeout = Duration::from_secs(config.timeout_secs);
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("jcsync/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The longest a notification may take, retries and waits included.
pub fn total_budget(config: &NotifyConfig) -> Duration {
    let attempts = config.retries.saturating_add(1);
    Duration::from_secs(config.timeout_secs).saturating_mul(attempts)
        + BACKOFF_CAP.saturating_mul(config.retries)
}

/// POST `alert` to `url`.
pub(super) async fn post(
    client: &reqwest::Client,
    url: &Secret,
    config: &NotifyConfig,
    alert: &Alert,
) -> Delivery {
    let deadline = Instant::now() + total_budget(config);
    let backoff = Backoff {
        base: BACKOFF_BASE,
        cap: BACKOFF_CAP,
    };
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let (decision, last) = match client.post(url.expose()).json(alert).send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                if (200..300).contains(&status) {
                    return Delivery::Delivered { status, attempts };
                }
                (
                    classify_status(status, retry_after, None),
                    format!("HTTP {status}"),
                )
            }
            Err(e) => (classify_transport(&e), describe(e, url)),
        };
        let give_up = Delivery::Failed {
            attempts,
            last: last.clone(),
        };
        let RetryDecision::Retry { min_wait } = decision else {
            return give_up;
        };
        if attempts > config.retries {
            return give_up;
        }
        let wait = backoff.wait(attempts, min_wait.map(|m| m.min(BACKOFF_CAP)));
        if Instant::now() + wait >= deadline {
            return give_up;
        }
        tracing::warn!(
            "notify: the webhook answered {last} (attempt {attempts} of {}); retrying in {:.1} s",
            config.retries + 1,
            wait.as_secs_f64()
        );
        tokio::time::sleep(wait).await;
    }
}

/// A transport error as text, with its causes, without the URL (which holds the token).
fn describe(e: reqwest::Error, url: &Secret) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    // Belt and braces: no cause may carry the URL either.
    text.replace(url.expose(), "<webhook URL>")
}
