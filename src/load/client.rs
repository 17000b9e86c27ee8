//! The Procore HTTP client: OAuth client credentials, the company header, the rate gate and the
//! retry policy around every call.
//!
//! The token is cached and renewed a minute before it expires, and after a 401; renewals go
//! through one lock, so only one is ever in flight. Secrets live in [`Secret`], whose Debug and
//! Display never show them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::Method;
use serde_json::Value;

use super::limit::{RateGate, RateHeaders, RateQuotas, RateWait};
use super::retry::{classify_status, classify_transport, Backoff, RetryDecision};
use crate::config::LoadConfig;
use crate::error::{Error, Result};

/// A secret string: never printed, never serialized.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct Connection {
    pub api_url: String,
    pub login_url: String,
    pub company_id: i64,
    pub client_id: Secret,
    pub client_secret: Secret,
    /// How the credentials were given, for messages (e.g. "env PROCORE_CLIENT_ID").
    pub credentials_source: String,
}

impl Connection {
    /// Read the client id and secret from the environment variables a pipeline names.
    pub fn from_env(
        api_url: &str,
        login_url: &str,
        company_id: i64,
        id_env: &str,
        secret_env: &str,
    ) -> Result<Connection> {
        let read = |name: &str| {
            std::env::var(name).map_err(|_| Error::Credentials {
                message: format!("environment variable {name} is not set (named in [target])"),
            })
        };
        Ok(Connection {
            api_url: api_url.trim_end_matches('/').to_string(),
            login_url: login_url.trim_end_matches('/').to_string(),
            company_id,
            client_id: Secret::new(read(id_env)?),
            client_secret: Secret::new(read(secret_env)?),
            credentials_source: format!("env {id_env} / {secret_env}"),
        })
    }
}

struct Token {
    value: Secret,
    expires_at: Instant,
    generation: u64,
}

/// Counts for the run report.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ClientStats {
    /// endpoint → outcome (status code, or `transport`) → count.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    pub retries: u64,
    /// 429s received.
    pub rate_limited: u64,
    pub token_renewals: u64,
    /// Seconds spent waiting for the rate budget.
    pub rate_wait_secs: f64,
    /// Seconds spent in retry backoff.
    pub backoff_secs: f64,
}

/// A successful answer.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

/// The client.
pub struct ProcoreClient {
    http: reqwest::Client,
    conn: Connection,
    token: tokio::sync::Mutex<Option<Token>>,
    generation: std::sync::atomic::AtomicU64,
    gate: RateGate,
    backoff: Backoff,
    max_retry: Duration,
    stats: Mutex<ClientStats>,
    /// Set by Ctrl-C: waits before a retry or for the rate gate are given up.
    cancel: Option<Arc<AtomicBool>>,
}

/// Renew this long before the token expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

fn error_message(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(body);
        return text.chars().take(300).collect();
    };
    // Procore bodies vary: {"errors":{f:[m]}}, {"errors":"…"}, {"error":{…}}, {"message":…}.
    for key in ["errors", "error", "message"] {
        if let Some(e) = v.get(key) {
            return match e {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
        }
    }
    v.to_string().chars().take(300).collect()
}

impl ProcoreClient {
    /// A client for a connection, with the pipeline's load settings.
    pub fn new(conn: Connection, load: &LoadConfig) -> Result<ProcoreClient> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(load.request_timeout_secs))
            .connect_timeout(Duration::from_secs(load.request_timeout_secs.min(30)))
            .user_agent(concat!("jcsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Credentials {
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(ProcoreClient {
            http,
            conn,
            token: tokio::sync::Mutex::new(None),
            generation: std::sync::atomic::AtomicU64::new(0),
            gate: RateGate::new(Some(RateQuotas {
                hourly: load.hourly_limit,
                spike: load.spike_limit,
                spike_window: Duration::from_secs(load.spike_window_secs),
            })),
            backoff: Backoff {
                base: Duration::from_millis(load.backoff_base_ms),
                cap: Duration::from_millis(load.backoff_cap_ms),
            },
            max_retry: Duration::from_secs(load.max_retry_secs),
            stats: Mutex::new(ClientStats::default()),
            cancel: None,
        })
    }

    /// The same client, giving up its waits (never a request on the wire) once `cancel` is set.
    pub fn with_cancel(mut self, cancel: Option<Arc<AtomicBool>>) -> ProcoreClient {
        self.cancel = cancel;
        self
    }

    /// Resolves once the run is interrupted; never without a cancel flag.
    async fn interrupted(&self) {
        match &self.cancel {
            Some(flag) => {
                while !flag.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            None => std::future::pending().await,
        }
    }

    /// Wait before a retry, unless the run is interrupted first: the last attempt has been
    /// answered (or failed), nothing is in flight, so Ctrl-C need not wait out a backoff.
    async fn pause(&self, wait: Duration) -> Result<()> {
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            () = self.interrupted() => Err(Error::Interrupted),
        }
    }

    /// The company id sent as `Procore-Company-Id`.
    pub fn company_id(&self) -> i64 {
        self.conn.company_id
    }

    /// The wait for the rate limit in progress, if any (for the progress line).
    pub fn rate_wait(&self) -> Option<RateWait> {
        self.gate.waiting()
    }

    /// A copy of the counts so far.
    pub fn stats(&self) -> ClientStats {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone();
        s.rate_wait_secs = self.gate.waited().as_secs_f64();
        s
    }

    fn count(&self, endpoint: &str, outcome: &str) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        *s.requests
            .entry(endpoint.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_insert(0) += 1;
        if outcome == "429" {
            s.rate_limited += 1;
        }
    }

    /// A valid token, fetching one when there is none or it is about to expire.
    async fn token(&self) -> Result<(Secret, u64)> {
        let mut guard = self.token.lock().await;
        if let Some(t) = guard.as_ref() {
            if t.expires_at > Instant::now() + TOKEN_MARGIN {
                return Ok((t.value.clone(), t.generation));
            }
        }
        let t = self.fetch_token(self.max_retry).await?;
        let out = (t.value.clone(), t.generation);
        *guard = Some(t);
        Ok(out)
    }

    /// Log in now, once, without retrying: [`Error::Credentials`] when the login is refused
    /// (401, 403 or any other final answer), [`Error::ProcoreUnavailable`] when Procore is
    /// unreachable or answers a retryable error. A run calls it before reading Sage, so that
    /// bad credentials fail fast and a Procore that is down does not.
    pub async fn log_in(&self) -> Result<()> {
        let mut guard = self.token.lock().await;
        *guard = Some(self.fetch_token(Duration::ZERO).await?);
        Ok(())
    }

    /// Forget the token of `generation` (a 401 said it is no longer good).
    async fn invalidate(&self, generation: u64) {
        let mut guard = self.token.lock().await;
        if guard.as_ref().is_some_and(|t| t.generation == generation) {
            *guard = None;
        }
    }

    /// Fetch a token, retrying retryable failures for up to `retry_for` (zero: never).
    async fn fetch_token(&self, retry_for: Duration) -> Result<Token> {
        let url = format!("{}/oauth/token", self.conn.login_url);
        let mut budget = RetryBudget::new(retry_for);
        loop {
            let sent = self
                .http
                .post(&url)
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", self.conn.client_id.expose()),
                    ("client_secret", self.conn.client_secret.expose()),
                ])
                .send()
                .await;
            let (decision, detail) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    self.count("POST /oauth/token", &status.to_string());
                    let retry_after = retry_after(resp.headers());
                    let body = resp.bytes().await.unwrap_or_default();
                    if (200..300).contains(&status) {
                        let v: Value =
                            serde_json::from_slice(&body).map_err(|_| Error::Credentials {
                                message: format!("login at {url}: the token answer is not JSON"),
                            })?;
                        let value =
                            v["access_token"]
                                .as_str()
                                .ok_or_else(|| Error::Credentials {
                                    message: format!(
                                        "login at {url}: the answer has no access_token"
                                    ),
                                })?;
                        let expires_in = v["expires_in"].as_u64().unwrap_or(5400);
                        let generation = self
                            .generation
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                            + 1;
                        self.stats
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .token_renewals += 1;
                        return Ok(Token {
                            value: Secret::new(value),
                            expires_at: Instant::now() + Duration::from_secs(expires_in),
                            generation,
                        });
                    }
                    let decision = match classify_status(status, retry_after, None) {
                        RetryDecision::RenewToken => RetryDecision::Fail,
                        d => d,
                    };
                    (decision, format!("HTTP {status}: {}", error_message(&body)))
                }
                Err(e) => {
                    self.count("POST /oauth/token", "transport");
                    (classify_transport(&e), without_url(&e))
                }
            };
            match decision {
                RetryDecision::Retry { min_wait } => {
                    let wait =
                        budget
                            .next_wait(&self.backoff, min_wait, "POST /oauth/token", || detail)?;
                    self.stats.lock().unwrap_or_else(|p| p.into_inner()).retries += 1;
                    self.pause(wait).await?;
                }
                _ => {
                    return Err(Error::Credentials {
                        message: format!(
                            "login at {url} with the credentials from {} refused: {detail}",
                            self.conn.credentials_source
                        ),
                    })
                }
            }
        }
    }

    /// Call the API: `path` under `api_url`, with the company header, rate gate and retries.
    /// `body` is JSON text, sent as `application/json` (the load serializes its records once,
    /// and sends the bytes it hashed). `endpoint` names the call in stats and errors (e.g.
    /// `PATCH direct_costs/sync`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(String, String)],
        body: Option<&[u8]>,
        endpoint: &str,
    ) -> Result<ApiResponse> {
        let url = format!("{}{}", self.conn.api_url, path);
        let mut budget = RetryBudget::new(self.max_retry);
        let mut renewals = 0u32;
        loop {
            // Nothing is sent yet while waiting for the rate gate: Ctrl-C gives the wait up, and
            // so does the retry budget (a wait the budget cannot cover is given up at once).
            let acquired = tokio::select! {
                slot = self.gate.acquire(Some(budget.deadline())) => slot,
                () = self.interrupted() => return Err(Error::Interrupted),
            };
            let slot = match acquired {
                Ok(slot) => slot,
                Err(blocked) => return Err(budget.exhausted(endpoint, blocked.to_string())),
            };
            let (token, generation) = match self.token().await {
                Ok(t) => t,
                Err(e) => {
                    self.gate.settle(slot, RateHeaders::default());
                    return Err(e);
                }
            };
            let mut req = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose())
                .header("Procore-Company-Id", self.conn.company_id.to_string())
                .query(query);
            if let Some(b) = body {
                // As `RequestBuilder::json` sends a body: this header, then the bytes.
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.to_vec());
            }
            // The window a 429 names, so that its retry shows as a wait for the rate limit.
            let mut rate_window = None;
            let (decision, detail) = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let rate = RateHeaders::from_headers(resp.headers());
                    self.gate.settle(slot, rate);
                    self.count(endpoint, &status.to_string());
                    let headers = resp.headers().clone();
                    let request_id = headers
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let bytes = match resp.bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            // The status came but the body did not: as a connection failure.
                            let wait = budget.next_wait(&self.backoff, None, endpoint, || {
                                format!("HTTP {status}, body lost: {}", without_url(&e))
                            })?;
                            self.note_retry(wait);
                            self.pause(wait).await?;
                            continue;
                        }
                    };
                    match classify_status(
                        status,
                        retry_after(&headers),
                        rate.reset_in().filter(|_| status == 429),
                    ) {
                        RetryDecision::Success => {
                            let body = if bytes.is_empty() {
                                Value::Null
                            } else {
                                serde_json::from_slice(&bytes).map_err(|e| Error::Procore {
                                    endpoint: endpoint.into(),
                                    status,
                                    message: format!("answer is not JSON: {e}"),
                                    request_id: request_id.clone(),
                                })?
                            };
                            return Ok(ApiResponse {
                                status,
                                body,
                                headers,
                            });
                        }
                        RetryDecision::RenewToken if renewals < 2 => {
                            renewals += 1;
                            self.invalidate(generation).await;
                            continue;
                        }
                        RetryDecision::Retry { min_wait } => {
                            if status == 429 {
                                rate_window = Some(self.gate.window_of(&rate));
                            }
                            let message = error_message(&bytes);
                            (
                                RetryDecision::Retry { min_wait },
                                format!(
                                    "HTTP {status}{}{}",
                                    if message.is_empty() {
                                        String::new()
                                    } else {
                                        format!(": {message}")
                                    },
                                    request_id
                                        .map(|r| format!(" (request id {r})"))
                                        .unwrap_or_default()
                                ),
                            )
                        }
                        _ => {
                            let message = error_message(&bytes);
                            tracing::warn!(
                                endpoint,
                                status,
                                request_id = request_id.as_deref().unwrap_or("-"),
                                "Procore refused: {message}"
                            );
                            return Err(Error::Procore {
                                endpoint: endpoint.into(),
                                status,
                                message,
                                request_id,
                            });
                        }
                    }
                }
                Err(e) => {
                    self.gate.settle(slot, RateHeaders::default());
                    self.count(endpoint, "transport");
                    (classify_transport(&e), without_url(&e))
                }
            };
            match decision {
                RetryDecision::Retry { min_wait } => {
                    let wait =
                        budget.next_wait(&self.backoff, min_wait, endpoint, || detail.clone())?;
                    tracing::debug!(
                        endpoint,
                        attempt = budget.attempts(),
                        wait_ms = wait.as_millis() as u64,
                        "retrying after {detail}"
                    );
                    self.note_retry(wait);
                    let _rate_wait =
                        rate_window.map(|w| self.gate.waiting_for(w, SystemTime::now() + wait));
                    self.pause(wait).await?;
                }
                _ => {
                    return Err(Error::Procore {
                        endpoint: endpoint.into(),
                        status: 0,
                        message: detail,
                        request_id: None,
                    })
                }
            }
        }
    }

    fn note_retry(&self, wait: Duration) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        s.retries += 1;
        s.backoff_secs += wait.as_secs_f64();
    }

    /// GET every page of a list endpoint (`per_page` 1000).
    pub async fn get_all(
        &self,
        path: &str,
        query: &[(String, String)],
        endpoint: &str,
    ) -> Result<Vec<Value>> {
        const PER_PAGE: usize = 1000;
        let mut out = Vec::new();
        for page in 1.. {
            let mut q = query.to_vec();
            q.push(("page".into(), page.to_string()));
            q.push(("per_page".into(), PER_PAGE.to_string()));
            let resp = self.call(Method::GET, path, &q, None, endpoint).await?;
            let items = resp
                .body
                .as_array()
                .cloned()
                .ok_or_else(|| Error::Procore {
                    endpoint: endpoint.into(),
                    status: resp.status,
                    message: "expected a JSON array".into(),
                    request_id: None,
                })?;
            let n = items.len();
            out.extend(items);
            let has_next = resp
                .headers
                .get("link")
                .and_then(|v| v.to_str().ok())
                .map(|l| l.contains("rel=\"next\""));
            if n == 0 || has_next == Some(false) || (has_next.is_none() && n < PER_PAGE) {
                break;
            }
        }
        Ok(out)
    }
}

/// The retry budget of one call: its attempts so far and the time since the first. A retry whose
/// wait would end past the budget is not made: the call fails with
/// [`Error::ProcoreUnavailable`], naming the endpoint, the time spent and the last failure.
struct RetryBudget {
    started: Instant,
    limit: Duration,
    /// Retries so far (1 = the first).
    attempt: u32,
}

impl RetryBudget {
    /// A budget of `limit` from now (zero: never retry).
    fn new(limit: Duration) -> RetryBudget {
        RetryBudget {
            started: Instant::now(),
            limit,
            attempt: 0,
        }
    }

    /// The wait before the next attempt (at least `min_wait`), or the error when that wait
    /// would end past the budget; `last` describes the failure being retried.
    fn next_wait(
        &mut self,
        backoff: &Backoff,
        min_wait: Option<Duration>,
        endpoint: &str,
        last: impl FnOnce() -> String,
    ) -> Result<Duration> {
        self.attempt += 1;
        let wait = backoff.wait(self.attempt, min_wait);
        // Zero never retries, even a wait of zero right away.
        if self.limit.is_zero() || self.started.elapsed() + wait > self.limit {
            return Err(self.exhausted(endpoint, last()));
        }
        Ok(wait)
    }

    /// The error of a call that gave up: `last` is the failure it could not retry past.
    fn exhausted(&self, endpoint: &str, last: String) -> Error {
        Error::ProcoreUnavailable {
            endpoint: endpoint.into(),
            elapsed_secs: self.started.elapsed().as_secs(),
            last,
        }
    }

    /// Retries so far.
    fn attempts(&self) -> u32 {
        self.attempt
    }

    /// When the budget runs out.
    fn deadline(&self) -> Instant {
        self.started + self.limit
    }
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    h.get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A transport error without its URL (query strings could carry ids a log should not).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "connection lost while reading the answer"
    } else if e.is_request() {
        "connection lost"
    } else {
        "transport error"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let c = Connection {
            api_url: "x".into(),
            login_url: "y".into(),
            company_id: 1,
            client_id: Secret::new("id-123"),
            client_secret: Secret::new("hunter2"),
            credentials_source: "env A / B".into(),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("id-123"),
            "{shown}"
        );
    }

    #[test]
    fn error_bodies_of_every_shape_give_a_message() {
        assert_eq!(
            error_message(br#"{"errors":"Missing Procore-Company-Id header!"}"#),
            "Missing Procore-Company-Id header!"
        );
        assert!(
            error_message(br#"{"errors":{"vendor":["can't be blank"]}}"#)
                .contains("can't be blank")
        );
        assert!(error_message(br#"{"error":{"message":"conflict"}}"#).contains("conflict"));
        assert_eq!(error_message(br#"{"message":"Not found"}"#), "Not found");
        assert_eq!(
            error_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
    }

    #[test]
    fn the_retry_budget_gives_up_when_a_wait_would_end_past_it() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(100),
        };
        let last = || "HTTP 503".to_string();
        let mut budget = RetryBudget::new(Duration::from_secs(60));
        let wait = budget
            .next_wait(&backoff, Some(Duration::from_secs(10)), "GET x", last)
            .expect("10 s fits in 60 s");
        assert!(wait >= Duration::from_secs(10), "{wait:?}");
        assert_eq!(budget.attempts(), 1);
        let gone = budget.next_wait(&backoff, Some(Duration::from_secs(61)), "GET x", last);
        assert!(
            matches!(&gone, Err(Error::ProcoreUnavailable { endpoint, last, .. })
                if endpoint == "GET x" && last == "HTTP 503"),
            "{gone:?}"
        );
        // Zero never retries.
        let mut zero = RetryBudget::new(Duration::ZERO);
        assert!(zero.next_wait(&backoff, None, "GET x", last).is_err());
    }

    #[test]
    fn missing_credential_env_is_named_without_values() {
        let err = Connection::from_env(
            "a",
            "b",
            1,
            "JCSYNC_TEST_SURELY_UNSET_ID",
            "JCSYNC_TEST_SURELY_UNSET_SECRET",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("JCSYNC_TEST_SURELY_UNSET_ID"), "{err}");
    }
}
