//! The middleware every request passes: rate limits, fault injection, `X-Rate-Limit-*` headers
//! and the request counters.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::sandbox::app::AppState;
use crate::sandbox::auth::{bearer, COMPANY_HEADER};
use crate::sandbox::config::RateLimitConfig;
use crate::sandbox::faults::{lock, FaultKind, RequestKind};
use crate::sandbox::limits::{unix_now, RateDecision, WindowReport};
use crate::sandbox::server::{ConnControl, DropMode};

/// What Procore says when a window is exhausted.
const RATE_LIMITED: &str = "You have surpassed the max number of requests for an hour. Please wait until your limit resets.";

fn set_rate_headers(headers: &mut HeaderMap, d: &WindowReport) {
    headers.insert(
        HeaderName::from_static("x-rate-limit-limit"),
        HeaderValue::from(d.limit),
    );
    headers.insert(
        HeaderName::from_static("x-rate-limit-remaining"),
        HeaderValue::from(d.remaining),
    );
    headers.insert(
        HeaderName::from_static("x-rate-limit-reset"),
        HeaderValue::from(d.reset_unix),
    );
}

/// The answer to an injected status fault. `spike` is the spike window after an injected spike
/// 429 has spent it.
fn injected(
    kind: FaultKind,
    app: &AppState,
    decision: Option<RateDecision>,
    spike: Option<WindowReport>,
) -> Response {
    let retry_after = app.faults.config().retry_after_secs;
    let (status, body) = match kind {
        FaultKind::TooManyRequests | FaultKind::SpikeTooManyRequests => (
            StatusCode::TOO_MANY_REQUESTS,
            json!({ "errors": RATE_LIMITED }),
        ),
        FaultKind::Conflict => (
            StatusCode::CONFLICT,
            json!({"errors": "Direct Cost does not support concurrent requests"}),
        ),
        FaultKind::BadGateway => (StatusCode::BAD_GATEWAY, json!({"errors": "Bad Gateway"})),
        FaultKind::ServiceUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"errors": "Service Unavailable"}),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            json!({"errors": "Internal Server Error"}),
        ),
    };
    let mut resp = (status, Json(body)).into_response();
    let h = resp.headers_mut();
    if matches!(
        kind,
        FaultKind::TooManyRequests | FaultKind::ServiceUnavailable
    ) {
        h.insert(
            axum::http::header::RETRY_AFTER,
            HeaderValue::from(retry_after),
        );
    }
    match kind {
        FaultKind::TooManyRequests => {
            // Look exhausted, resetting when Retry-After says, so either signal works.
            let limit =
                decision.map_or(RateLimitConfig::default().spike_limit, |d| d.reported.limit);
            set_rate_headers(
                h,
                &WindowReport {
                    limit,
                    remaining: 0,
                    reset_unix: unix_now() + retry_after,
                },
            );
        }
        FaultKind::SpikeTooManyRequests => {
            // The spike window's own headers; without a limiter, a 10-second window's.
            let spike = spike.unwrap_or(WindowReport {
                limit: RateLimitConfig::default().spike_limit,
                remaining: 0,
                reset_unix: unix_now() + RateLimitConfig::default().spike_window.as_secs(),
            });
            set_rate_headers(h, &spike);
        }
        _ => {
            if let Some(d) = decision {
                set_rate_headers(h, &d.reported);
            }
        }
    }
    resp
}

/// Drops the connection under the request; the response never leaves.
async fn drop_connection(conn: Option<ConnControl>, mode: DropMode) -> Response {
    match conn {
        Some(conn) => {
            conn.kill(mode);
            std::future::pending::<Response>().await
        }
        // Served without the sandbox's own server (cannot happen through `Sandbox::start`).
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"errors": "connection fault without a connection"})),
        )
            .into_response(),
    }
}

/// Rate limit → fault → handler, then headers and counters.
pub(crate) async fn gate(State(app): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path.starts_with("/_sandbox/") {
        return next.run(req).await;
    }
    let route = format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map_or("(unmatched)", MatchedPath::as_str)
    );
    if !path.starts_with("/rest/") {
        let resp = next.run(req).await;
        app.record(&route, resp.status().as_str());
        return resp;
    }

    let key = {
        let client = bearer(req.headers())
            .and_then(|t| app.tokens.client_of(t))
            .unwrap_or_default();
        let company = req
            .headers()
            .get(COMPANY_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        format!("{client}|{company}")
    };
    let decision = app.limiter.as_ref().map(|limiter| limiter.admit(&key));
    if let Some(d) = decision.filter(|d| !d.allowed) {
        *lock(&app.rate_limited) += 1;
        let mut resp = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "errors": RATE_LIMITED })),
        )
            .into_response();
        set_rate_headers(resp.headers_mut(), &d.reported);
        app.record(&route, resp.status().as_str());
        return resp;
    }

    // A project whose Direct Costs tool is off refuses its direct cost routes (the request
    // counts against the limits, as failed requests do on Procore).
    let req = match super::tools::refuse_if_direct_costs_off(&app, req).await {
        Ok(req) => req,
        Err(mut resp) => {
            if let Some(d) = decision {
                set_rate_headers(resp.headers_mut(), &d.reported);
            }
            app.record(&route, resp.status().as_str());
            return resp;
        }
    };
    let request_kind = if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        RequestKind::Read
    } else if route.contains("/direct_costs") {
        RequestKind::DirectCostWrite
    } else {
        RequestKind::Write
    };
    let conn = req.extensions().get::<ConnControl>().cloned();
    let mut resp = match app.faults.draw(request_kind) {
        Some(FaultKind::ConnectionReset) => {
            app.record(&route, "connection_reset");
            return drop_connection(conn, DropMode::Reset).await;
        }
        Some(FaultKind::LostResponse) => {
            // The write commits; only the answer is lost.
            let committed = next.run(req).await;
            app.record(&route, "response_lost");
            tracing::debug!(status = %committed.status(), "sandbox dropping a response");
            return drop_connection(conn, DropMode::Close).await;
        }
        Some(FaultKind::Slow) => {
            tokio::time::sleep(app.faults.config().slow_delay).await;
            next.run(req).await
        }
        Some(kind) => {
            let spike = (kind == FaultKind::SpikeTooManyRequests)
                .then(|| app.limiter.as_ref().map(|l| l.exhaust_spike(&key)))
                .flatten();
            let resp = injected(kind, &app, decision, spike);
            app.record(&route, resp.status().as_str());
            return resp;
        }
        None => next.run(req).await,
    };
    if let Some(d) = decision {
        set_rate_headers(resp.headers_mut(), &d.reported);
    }
    app.record(&route, resp.status().as_str());
    resp
}
