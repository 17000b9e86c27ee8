//! Error responses, shaped like Procore's (whose bodies vary: `{"errors": "…"}`,
//! `{"errors": {field: [message]}}`, `{"error": …}`).

use std::collections::BTreeMap;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Field errors: field name → messages.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// A request the sandbox refuses as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: missing, invalid or expired token.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// 400: no `Procore-Company-Id`.
    #[error("Missing Procore-Company-Id header!")]
    MissingCompanyHeader,
    /// 403: the company is not one the app belongs to.
    #[error("forbidden company")]
    ForbiddenCompany,
    /// 400: a required parameter is missing or malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 404.
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: another write is working on the same direct cost.
    #[error("conflict on direct cost {0}")]
    Conflict(i64),
    /// 422 with field errors.
    #[error("unprocessable")]
    Unprocessable(FieldErrors),
}

impl ApiError {
    /// 422 with one field error.
    pub fn field(field: &str, message: &str) -> Self {
        let mut errors = FieldErrors::new();
        errors.insert(field.to_owned(), vec![message.to_owned()]);
        ApiError::Unprocessable(errors)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Unauthorized(why) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
                Json(json!({"errors": "401 Unauthorized", "message": why})),
            )
                .into_response(),
            ApiError::MissingCompanyHeader => (
                StatusCode::BAD_REQUEST,
                Json(json!({"errors": "Missing Procore-Company-Id header!"})),
            )
                .into_response(),
            ApiError::ForbiddenCompany => (
                StatusCode::FORBIDDEN,
                Json(json!({"errors": "You do not have access to this company"})),
            )
                .into_response(),
            ApiError::BadRequest(m) => {
                (StatusCode::BAD_REQUEST, Json(json!({"errors": m}))).into_response()
            }
            ApiError::NotFound(m) => {
                (StatusCode::NOT_FOUND, Json(json!({"errors": m}))).into_response()
            }
            ApiError::Conflict(id) => (
                StatusCode::CONFLICT,
                Json(json!({"error": {
                    "message": "Another request is updating this direct cost; retry later",
                    "direct_cost_id": id,
                }})),
            )
                .into_response(),
            ApiError::Unprocessable(errors) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "errors": errors })),
            )
                .into_response(),
        }
    }
}
