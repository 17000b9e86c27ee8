//! Small pieces every API handler uses.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use super::error::ApiError;
use super::pagination::paginate;
use crate::sandbox::state::Db;

/// The project of a path, if it exists in the caller's company (404 otherwise, as Procore says
/// for what the caller cannot see).
pub(crate) fn project_id(db: &Db, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| db.projects.contains_key(id))
        .ok_or_else(|| ApiError::NotFound(format!("Project {raw} not found")))
}

/// Parses a JSON body; a malformed one is a 400, never a panic.
pub(crate) fn json_body(bytes: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::BadRequest(format!("Invalid JSON body: {e}")))
}

/// `company_id` of a query: required, and it must be the caller's company.
pub(crate) fn company_param(
    query: &HashMap<String, String>,
    caller_company: i64,
) -> Result<(), ApiError> {
    let raw = query.get("company_id").ok_or_else(|| {
        ApiError::BadRequest("param is missing or the value is empty: company_id".into())
    })?;
    match raw.trim().parse::<i64>() {
        Ok(id) if id == caller_company => Ok(()),
        _ => Err(ApiError::ForbiddenCompany),
    }
}

/// Current time, RFC 3339 in UTC.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The `Host` the client used, for absolute `Link` URLs.
pub(crate) fn host_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
}

/// The answer to a list request: the page of `items` the query asks for, with its `Link`,
/// `Total` and `Per-Page` headers.
pub(crate) fn list_page<T: serde::Serialize>(
    items: Vec<T>,
    query: &HashMap<String, String>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let page = paginate(items, query, uri, host_of(headers));
    (page.headers, Json(page.items)).into_response()
}
