//! Projects, vendors and budget codes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::common::{company_param, json_body, list_page, project_id};
use super::error::{ApiError, FieldErrors};
use crate::sandbox::app::AppState;
use crate::sandbox::auth::Caller;
use crate::sandbox::faults::lock;
use crate::sandbox::state::WbsCode;
use crate::sandbox::sync::{error_entry, wbs_code_json};

/// `GET /rest/v1.0/projects?company_id=`.
pub(crate) async fn projects(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    company_param(&query, caller.company_id)?;
    let items: Vec<Value> = {
        let db = lock(&app.db);
        db.projects
            .values()
            .map(|p| {
                json!({
                    "id": p.id,
                    "name": p.name,
                    "project_number": p.project_number,
                    "origin_id": p.origin_id,
                    "active": true,
                    "company": {"id": db.company.id, "name": db.company.name},
                })
            })
            .collect()
    };
    Ok(list_page(items, &query, &uri, &headers))
}

/// `GET /rest/v1.0/vendors?company_id=` with `filters[origin_id]`.
pub(crate) async fn vendors(
    State(app): State<Arc<AppState>>,
    caller: Caller,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    company_param(&query, caller.company_id)?;
    let origin = query.get("filters[origin_id]");
    let items: Vec<Value> = lock(&app.db)
        .vendors
        .values()
        .filter(|v| origin.is_none() || v.origin_id.as_ref() == origin)
        .map(|v| json!({"id": v.id, "name": v.name, "origin_id": v.origin_id, "is_active": true}))
        .collect();
    Ok(list_page(items, &query, &uri, &headers))
}

/// `GET /rest/v1.0/projects/{id}/work_breakdown_structure/wbs_codes`.
pub(crate) async fn wbs_codes(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(project): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let items: Vec<_> = {
        let db = lock(&app.db);
        let pid = project_id(&db, &project)?;
        db.wbs_codes
            .values()
            .filter(|w| w.project_id == pid)
            .map(wbs_code_json)
            .collect()
    };
    Ok(list_page(items, &query, &uri, &headers))
}

/// `PATCH /rest/v1.0/projects/{id}/work_breakdown_structure/wbs_codes/bulk_create` with
/// `{"bulk": [{"flat_code", "description"}]}` (the sandbox names codes by flat code; Procore by
/// segment items).
pub(crate) async fn bulk_create_wbs_codes(
    State(app): State<Arc<AppState>>,
    _caller: Caller,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body = json_body(&body)?;
    let Some(bulk) = body.get("bulk").and_then(Value::as_array) else {
        return Err(ApiError::BadRequest(
            "param is missing or the value is empty: bulk".into(),
        ));
    };
    let mut entities = Vec::new();
    let mut errors = Vec::new();
    {
        let mut db = lock(&app.db);
        let pid = project_id(&db, &project)?;
        for input in bulk {
            let flat = input
                .get("flat_code")
                .and_then(Value::as_str)
                .map(str::trim);
            let mut errs = FieldErrors::new();
            match flat {
                None | Some("") => {
                    errs.insert("flat_code".into(), vec!["can't be blank".into()]);
                }
                Some(code) => {
                    if db
                        .wbs_codes
                        .values()
                        .any(|w| w.project_id == pid && w.flat_code == code)
                    {
                        errs.insert("flat_code".into(), vec!["has already been taken".into()]);
                    }
                }
            }
            if !errs.is_empty() {
                errors.push(error_entry(input, errs));
                continue;
            }
            let id = db.allocate_id();
            let code = WbsCode {
                id,
                project_id: pid,
                flat_code: flat.unwrap_or_default().to_owned(),
                description: input
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            };
            entities.push(wbs_code_json(&code));
            db.wbs_codes.insert(id, code);
        }
    }
    app.mark_dirty();
    Ok((
        StatusCode::CREATED,
        Json(json!({"entities": entities, "errors": errors})),
    )
        .into_response())
}
