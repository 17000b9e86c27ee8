//! Removing direct costs and their lines one record at a time (Procore has no bulk delete for
//! them), and listing the lines of one direct cost. Status codes follow Procore's OpenAPI
//! description: `DELETE …/direct_costs/{id}` answers 200 with `{"id": …}`, `DELETE
//! …/line_items/{id}` answers 200 with no body. Both refuse, with a 409, to run while another
//! write holds the direct cost; both answer 404 for what does not exist or is not the path's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::common::{list_page, project_id};
use super::error::ApiError;
use crate::sandbox::app::AppState;
use crate::sandbox::auth::Caller;
use crate::sandbox::faults::lock;
use crate::sandbox::state::Db;
use crate::sandbox::views::{line_item_json, LineItemView};

/// The direct cost of a path, if it exists in the path's project.
fn direct_cost_in(db: &Db, pid: i64, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| {
            db.direct_costs
                .get(id)
                .is_some_and(|dc| dc.project_id == pid)
        })
        .ok_or_else(|| ApiError::NotFound(format!("Direct Cost {raw} not found")))
}

/// The line item of a path, if it belongs to the path's direct cost.
fn line_in(db: &Db, dc: i64, raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| {
            db.line_items
                .get(id)
                .is_some_and(|li| li.direct_cost_id == dc)
        })
        .ok_or_else(|| ApiError::NotFound(format!("Line Item {raw} not found")))
}

/// Holds the direct cost like any write (the 409 rule), waits the configured write latency,
/// then runs `commit` on the data as it is then.
async fn write_on<T>(
    app: &AppState,
    dc: i64,
    commit: impl FnOnce(&mut Db) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let _claim = app
        .claim(&HashSet::from([dc]))
        .map_err(ApiError::Conflict)?;
    if !app.config.write_latency.is_zero() {
        tokio::time::sleep(app.config.write_latency).await;
    }
    let out = commit(&mut lock(&app.db))?;
    app.mark_dirty();
    Ok(out)
}

/// `DELETE /rest/v1.0/projects/{project_id}/direct_costs/{direct_cost_id}` (also under
/// v1.1 as `…/{id}`): the direct cost and all its lines. 200 `{"id": <direct cost id>}`.
pub(crate) async fn delete_direct_cost(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path((project, direct_cost)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let dc = {
        let db = lock(&app.db);
        let pid = project_id(&db, &project)?;
        direct_cost_in(&db, pid, &direct_cost)?
    };
    write_on(&app, dc, |db| {
        // A drift tool may have removed it meanwhile: then it is not found.
        db.remove_direct_cost(dc)
            .ok_or_else(|| ApiError::NotFound(format!("Direct Cost {dc} not found")))
    })
    .await?;
    Ok((StatusCode::OK, Json(json!({ "id": dc }))).into_response())
}

/// `DELETE /rest/v1.0/projects/{project_id}/direct_costs/{direct_cost_id}/line_items/{id}`:
/// one line. 200 with an empty body. The direct cost stays, even when this was its last line.
pub(crate) async fn delete_line_item(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path((project, direct_cost, line)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let (dc, id) = {
        let db = lock(&app.db);
        let pid = project_id(&db, &project)?;
        let dc = direct_cost_in(&db, pid, &direct_cost)?;
        (dc, line_in(&db, dc, &line)?)
    };
    write_on(&app, dc, |db| {
        line_in(db, dc, &id.to_string())?;
        db.remove_line_item(id)
            .ok_or_else(|| ApiError::NotFound(format!("Line Item {id} not found")))
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

/// `GET /rest/v1.0/projects/{project_id}/direct_costs/{direct_cost_id}/line_items`: the lines of
/// one direct cost, by id, paginated like every list (`page`, `per_page`; `Total`, `Per-Page`,
/// `Link`).
pub(crate) async fn list_lines_of(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path((project, direct_cost)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let items: Vec<LineItemView> = {
        let db = lock(&app.db);
        let pid = project_id(&db, &project)?;
        let dc = direct_cost_in(&db, pid, &direct_cost)?;
        db.lines_of(dc).map(|li| line_item_json(&db, li)).collect()
    };
    Ok(list_page(items, &query, &uri, &headers))
}
