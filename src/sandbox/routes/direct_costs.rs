//! Direct costs: one-at-a-time create, lists, and the two bulk sync endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::seq::SliceRandom;
use serde::Serialize;
use serde_json::Value;

use super::common::{json_body, list_page, now, project_id};
use super::error::ApiError;
use crate::sandbox::app::AppState;
use crate::sandbox::auth::Caller;
use crate::sandbox::config::{MAX_POST_LINE_ITEMS, MAX_SYNC_UPDATES};
use crate::sandbox::faults::lock;
use crate::sandbox::sync::{self, SyncResult};

/// `POST /rest/v1.1/projects/{id}/direct_costs`.
pub(crate) async fn create(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pid = project_id(&lock(&app.db), &project)?;
    let body = json_body(&body)?;
    if !app.config.write_latency.is_zero() {
        tokio::time::sleep(app.config.write_latency).await;
    }
    let created = {
        let mut db = lock(&app.db);
        sync::create_direct_cost(&mut db, pid, &body, MAX_POST_LINE_ITEMS, &now())?
    };
    app.mark_dirty();
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `GET /rest/v1.0/projects/{id}/direct_costs` with `filters[origin_id]`.
pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let origin = query.get("filters[origin_id]");
    let items: Vec<sync::DirectCostView> = {
        let db = lock(&app.db);
        let pid = project_id(&db, &project)?;
        db.direct_costs
            .values()
            .filter(|dc| dc.project_id == pid)
            .filter(|dc| origin.is_none() || dc.origin_id.as_ref() == origin)
            .map(|dc| sync::direct_cost_json(&db, dc, false))
            .collect()
    };
    Ok(list_page(items, &query, &uri, &headers))
}

/// `GET /rest/v1.0/projects/{id}/direct_costs/line_items` with `filters[origin_id]` and
/// `filters[direct_cost_id]`.
pub(crate) async fn list_line_items(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let origin = query.get("filters[origin_id]");
    let parent: Option<i64> = query
        .get("filters[direct_cost_id]")
        .and_then(|v| v.trim().parse().ok());
    let items: Vec<sync::LineItemView> = {
        let db = lock(&app.db);
        let pid = project_id(&db, &project)?;
        db.line_items
            .values()
            .filter(|li| li.project_id == pid)
            .filter(|li| origin.is_none() || li.origin_id.as_ref() == origin)
            .filter(|li| parent.is_none() || Some(li.direct_cost_id) == parent)
            .map(|li| sync::line_item_json(&db, li))
            .collect()
    };
    Ok(list_page(items, &query, &uri, &headers))
}

/// The `updates` array of a sync body.
fn updates_of(body: &Value) -> Result<&[Value], ApiError> {
    let updates = body
        .get("updates")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ApiError::BadRequest("param is missing or the value is empty: updates".into())
        })?;
    if updates.len() > MAX_SYNC_UPDATES {
        return Err(ApiError::field(
            "updates",
            &format!("must contain at most {MAX_SYNC_UPDATES} records"),
        ));
    }
    Ok(updates)
}

#[derive(Clone, Copy)]
enum SyncKind {
    Headers,
    Lines,
}

/// The body of a sync answer.
#[derive(Serialize)]
struct SyncAnswer<T> {
    entities: Vec<T>,
    errors: Vec<Value>,
}

/// Shuffles and renders a sync result: no order guarantee, clients must match by origin_id.
fn answer<T: Serialize>(app: &AppState, result: SyncResult<T>) -> Response {
    let SyncResult {
        mut entities,
        mut errors,
    } = result;
    if !entities.is_empty() {
        app.mark_dirty();
    }
    {
        let mut rng = lock(&app.shuffle_rng);
        entities.shuffle(&mut *rng);
        errors.shuffle(&mut *rng);
    }
    Json(SyncAnswer { entities, errors }).into_response()
}

async fn run_sync(
    app: &AppState,
    project: &str,
    body: &Bytes,
    kind: SyncKind,
) -> Result<Response, ApiError> {
    let pid = project_id(&lock(&app.db), project)?;
    let body = json_body(body)?;
    let updates = updates_of(&body)?;
    let touched = {
        let db = lock(&app.db);
        match kind {
            SyncKind::Headers => sync::headers_touched(&db, updates),
            SyncKind::Lines => sync::lines_touched(&db, updates),
        }
    };
    // Procore refuses concurrent writes to one direct cost; the claim makes overlap visible.
    let _claim = app.claim(&touched).map_err(ApiError::Conflict)?;
    if !app.config.write_latency.is_zero() {
        tokio::time::sleep(app.config.write_latency).await;
    }
    let now = now();
    Ok(match kind {
        SyncKind::Headers => {
            let result = sync::sync_direct_costs(&mut lock(&app.db), pid, updates, &now);
            answer(app, result)
        }
        SyncKind::Lines => {
            let result = sync::sync_line_items(&mut lock(&app.db), pid, updates, &now);
            answer(app, result)
        }
    })
}

/// `PATCH /rest/v1.0/projects/{id}/direct_costs/sync`.
pub(crate) async fn sync_headers(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    run_sync(&app, &project, &body, SyncKind::Headers).await
}

/// `PATCH /rest/v1.0/projects/{id}/direct_costs/line_items/sync`.
pub(crate) async fn sync_line_items(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    run_sync(&app, &project, &body, SyncKind::Lines).await
}
