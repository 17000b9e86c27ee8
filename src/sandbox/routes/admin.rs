//! `/_sandbox/…` drift tools: what a person in Procore (or another integration) does behind
//! jcsync's back (see [`crate::sandbox::drift`]). Not Procore: no auth, no rate limit, no fault,
//! no 409. Errors: 404 `{"errors": "… not found"}`, 422 `{"errors": "…"}` (also for a body that
//! does not parse).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::sandbox::app::AppState;
use crate::sandbox::drift::{DriftError, DriftLine, ForeignDirectCost, LineEdit};
use crate::sandbox::views::line_item_json;

/// A drift tool's refusal, as an answer.
pub(crate) struct Refusal(DriftError);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self.0 {
            DriftError::NotFound(_) => StatusCode::NOT_FOUND,
            DriftError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        (status, Json(json!({ "errors": self.0.to_string() }))).into_response()
    }
}

impl From<DriftError> for Refusal {
    fn from(e: DriftError) -> Self {
        Refusal(e)
    }
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, Refusal> {
    serde_json::from_slice(bytes).map_err(|e| Refusal(DriftError::Invalid(format!("body: {e}"))))
}

fn id_of(raw: &str) -> Result<i64, Refusal> {
    raw.trim()
        .parse()
        .map_err(|_| Refusal(DriftError::NotFound(format!("Record {raw}"))))
}

/// `PATCH /_sandbox/line_items/{id}` with any of `{"amount", "wbs_code_id", "description",
/// "direct_cost_id"}`: 200 with the line as the API renders it.
pub(crate) async fn edit_line_item(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Refusal> {
    let (id, edit) = (id_of(&id)?, body::<LineEdit>(&bytes)?);
    let view = app.drift(|db, now| {
        let li = db.edit_line_item(id, &edit, now)?;
        Ok(line_item_json(db, &li))
    })?;
    Ok(Json(view).into_response())
}

/// `DELETE /_sandbox/line_items/{id}`: 200 `{"id"}`.
pub(crate) async fn delete_line_item(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let id = id_of(&id)?;
    app.drift(|db, _| db.delete_line_item(id))?;
    Ok(Json(json!({ "id": id })).into_response())
}

/// `DELETE /_sandbox/direct_costs/{id}`: 200 `{"id", "line_items_deleted"}`.
pub(crate) async fn delete_direct_cost(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let id = id_of(&id)?;
    let lines = app.drift(|db, _| db.delete_direct_cost(id))?;
    Ok(Json(json!({ "id": id, "line_items_deleted": lines })).into_response())
}

/// `POST /_sandbox/projects/{project_id}/direct_costs` with a [`ForeignDirectCost`]: 201
/// `{"direct_cost_id", "line_item_ids"}`.
pub(crate) async fn add_foreign_direct_cost(
    State(app): State<Arc<AppState>>,
    Path(project): Path<String>,
    bytes: Bytes,
) -> Result<Response, Refusal> {
    let (pid, input) = (id_of(&project)?, body::<ForeignDirectCost>(&bytes)?);
    let ids = app.drift(|db, now| db.add_foreign_direct_cost(pid, &input, now))?;
    Ok((StatusCode::CREATED, Json(ids)).into_response())
}

/// `POST /_sandbox/direct_costs/{id}/line_items` with a [`DriftLine`] (its `origin_id` may
/// repeat another line's): 201 with the line as the API renders it.
pub(crate) async fn add_raw_line_item(
    State(app): State<Arc<AppState>>,
    Path(direct_cost): Path<String>,
    bytes: Bytes,
) -> Result<Response, Refusal> {
    let (dc, line) = (id_of(&direct_cost)?, body::<DriftLine>(&bytes)?);
    let view = app.drift(|db, now| {
        let id = db.add_raw_line_item(dc, &line, now)?;
        db.line_items
            .get(&id)
            .map(|li| line_item_json(db, li))
            .ok_or_else(|| DriftError::NotFound(format!("Line Item {id}")))
    })?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}
