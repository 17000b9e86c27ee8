//! `GET` and `PATCH /rest/v1.0/projects/{project_id}/tools` (Procore's "List project tools" and
//! "Update project tools"), and the 403 of a project whose Direct Costs tool is off.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::common::{json_body, list_page, project_id};
use super::error::ApiError;
use crate::sandbox::app::AppState;
use crate::sandbox::auth::Caller;
use crate::sandbox::faults::lock;
use crate::sandbox::tools::{self, tool_json, DIRECT_COSTS};

/// `GET /rest/v1.0/projects/{project_id}/tools`, with `filters[is_active]` (paginated).
pub(crate) async fn list(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let only = match query.get("filters[is_active]").map(|v| v.trim()) {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "filters[is_active] must be true or false, not {other:?}"
            )))
        }
    };
    let items: Vec<Value> = {
        let db = lock(&app.db);
        let pid = project_id(&db, &project)?;
        tools::project_tools(&db, pid)
            .into_iter()
            .filter(|(_, _, active)| only.is_none_or(|o| o == *active))
            .map(|(t, position, active)| tool_json(&t, position, active))
            .collect()
    };
    Ok(list_page(items, &query, &uri, &headers))
}

/// `PATCH /rest/v1.0/projects/{project_id}/tools` with `{"tools": [{"id", "is_active",
/// "position"?}]}`: 200 with the project's tools. A required tool cannot be turned off (400).
/// [G] `position` is accepted and ignored: the sandbox keeps its catalog's order.
pub(crate) async fn update(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    let Some(changes) = body.get("tools").and_then(Value::as_array) else {
        return Err(ApiError::BadRequest(
            "param is missing or the value is empty: tools".into(),
        ));
    };
    let items: Vec<Value> = {
        let mut db = lock(&app.db);
        let pid = project_id(&db, &project)?;
        // Checked whole before any change: a refused request changes nothing.
        let mut planned = Vec::new();
        for c in changes {
            let tool = c
                .get("id")
                .and_then(Value::as_i64)
                .and_then(tools::by_id)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown tool: {}", c["id"])))?;
            if let Some(active) = c.get("is_active").and_then(Value::as_bool) {
                if tool.required && !active {
                    return Err(ApiError::BadRequest(format!(
                        "{} can't be disabled (admin, home and connection_hub are required)",
                        tool.engine_name
                    )));
                }
                planned.push((tool.engine_name, active));
            }
        }
        for (engine, active) in planned {
            tools::set_active(&mut db, pid, engine, active).map_err(ApiError::BadRequest)?;
        }
        tools::project_tools(&db, pid)
            .into_iter()
            .map(|(t, position, active)| tool_json(&t, position, active))
            .collect()
    };
    app.mark_dirty();
    Ok((StatusCode::OK, Json(items)).into_response())
}

/// The project of a direct cost route (`/rest/v1.0|v1.1/projects/{id}/direct_costs…`).
fn direct_cost_project(path: &str) -> Option<i64> {
    let mut parts = path.split('/').skip(1);
    let (rest, _version, projects, id, tool) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (rest == "rest" && projects == "projects" && tool == DIRECT_COSTS)
        .then(|| id.parse().ok())
        .flatten()
}

/// A direct cost request on a project whose Direct Costs tool is off: 403, once the caller is
/// authenticated (an unauthenticated one gets the handler's 401 as usual). Otherwise the
/// request, unchanged.
pub(crate) async fn refuse_if_direct_costs_off(
    app: &Arc<AppState>,
    req: Request,
) -> Result<Request, Response> {
    let Some(pid) = direct_cost_project(req.uri().path()) else {
        return Ok(req);
    };
    let (mut parts, body) = req.into_parts();
    let authenticated = Caller::from_request_parts(&mut parts, app).await.is_ok();
    let off = authenticated && {
        let db = lock(&app.db);
        db.projects.contains_key(&pid) && !tools::is_active(&db, pid, DIRECT_COSTS)
    };
    if off {
        return Err((
            StatusCode::FORBIDDEN,
            Json(json!({
                "errors": format!("The Direct Costs tool is not enabled on project {pid}")
            })),
        )
            .into_response());
    }
    Ok(Request::from_parts(parts, body))
}

#[cfg(test)]
mod tests {
    use super::direct_cost_project;

    #[test]
    fn direct_cost_routes_name_their_project() {
        assert_eq!(
            direct_cost_project("/rest/v1.0/projects/42/direct_costs/sync"),
            Some(42)
        );
        assert_eq!(
            direct_cost_project("/rest/v1.1/projects/42/direct_costs"),
            Some(42)
        );
        assert_eq!(
            direct_cost_project("/rest/v1.0/projects/42/work_breakdown_structure/wbs_codes"),
            None
        );
        assert_eq!(direct_cost_project("/rest/v1.0/projects"), None);
    }
}
