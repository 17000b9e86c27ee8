//! OAuth client-credentials tokens, and the checks every API call passes: a live bearer token and
//! a `Procore-Company-Id` the app belongs to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::app::AppState;
use super::faults::lock;
use super::routes::error::ApiError;

/// Name of the company header.
pub const COMPANY_HEADER: &str = "procore-company-id";

#[derive(Debug, Clone)]
struct Token {
    client_id: String,
    expires: Instant,
}

/// Issued access tokens.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    tokens: Mutex<HashMap<String, Token>>,
}

impl TokenStore {
    /// Issues a token for `client_id` that lives `ttl`.
    pub(crate) fn issue(&self, client_id: &str, ttl: Duration) -> String {
        let token = format!(
            "{:032x}{:032x}",
            rand::random::<u128>(),
            rand::random::<u128>()
        );
        lock(&self.tokens).insert(
            token.clone(),
            Token {
                client_id: client_id.to_owned(),
                expires: Instant::now() + ttl,
            },
        );
        token
    }

    /// The app a token was issued to, whether or not it has expired (for rate-limit keys).
    pub(crate) fn client_of(&self, token: &str) -> Option<String> {
        lock(&self.tokens).get(token).map(|t| t.client_id.clone())
    }

    /// The app of a live token.
    fn live_client(&self, token: &str) -> Result<String, ApiError> {
        let tokens = lock(&self.tokens);
        let t = tokens
            .get(token)
            .ok_or(ApiError::Unauthorized("The access token is invalid"))?;
        if Instant::now() >= t.expires {
            return Err(ApiError::Unauthorized("The access token expired"));
        }
        Ok(t.client_id.clone())
    }
}

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// An authenticated caller acting on the sandbox's company.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    #[allow(dead_code)] // kept for logs and future per-app rules
    pub(crate) client_id: String,
    pub(crate) company_id: i64,
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized(
            "Missing Authorization: Bearer token",
        ))?;
        let client_id = app.tokens.live_client(token)?;
        let header = parts
            .headers
            .get(COMPANY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or(ApiError::MissingCompanyHeader)?;
        let company_id: i64 = header.parse().map_err(|_| ApiError::ForbiddenCompany)?;
        let db = lock(&app.db);
        let belongs = company_id == db.company.id
            && db
                .company
                .credentials
                .iter()
                .any(|c| c.client_id == client_id);
        if !belongs {
            return Err(ApiError::ForbiddenCompany);
        }
        Ok(Caller {
            client_id,
            company_id,
        })
    }
}
