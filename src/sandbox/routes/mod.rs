//! The sandbox's HTTP surface: Procore's routes, plus `/_sandbox/` inspection and drift tools.

pub(crate) mod admin;
pub(crate) mod common;
pub(crate) mod direct_costs;
pub mod error;
pub(crate) mod gate;
pub(crate) mod inspect;
pub(crate) mod lookups;
pub(crate) mod oauth;
pub(crate) mod pagination;
pub(crate) mod removals;
pub(crate) mod tools;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post};
use axum::Router;

use super::app::AppState;
use error::ApiError;

/// Largest request body accepted (a 1000-record sync body is well under 1 MiB).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

async fn not_found() -> ApiError {
    ApiError::NotFound("Not Found".into())
}

/// All routes, wrapped in the gate.
pub(crate) fn router(app: Arc<AppState>) -> Router {
    const PROJECT: &str = "/rest/v1.0/projects/{project_id}";
    Router::new()
        .route("/oauth/token", post(oauth::token))
        .route("/rest/v1.0/projects", get(lookups::projects))
        .route("/rest/v1.0/vendors", get(lookups::vendors))
        .route(
            &format!("{PROJECT}/work_breakdown_structure/wbs_codes"),
            get(lookups::wbs_codes),
        )
        .route(
            &format!("{PROJECT}/work_breakdown_structure/wbs_codes/bulk_create"),
            patch(lookups::bulk_create_wbs_codes),
        )
        .route(
            &format!("{PROJECT}/tools"),
            get(tools::list).patch(tools::update),
        )
        .route(
            "/rest/v1.1/projects/{project_id}/direct_costs",
            post(direct_costs::create),
        )
        .route(
            "/rest/v1.1/projects/{project_id}/direct_costs/{id}",
            delete(removals::delete_direct_cost),
        )
        .route(
            &format!("{PROJECT}/direct_costs/{{direct_cost_id}}"),
            delete(removals::delete_direct_cost),
        )
        .route(
            &format!("{PROJECT}/direct_costs/{{direct_cost_id}}/line_items"),
            get(removals::list_lines_of),
        )
        .route(
            &format!("{PROJECT}/direct_costs/{{direct_cost_id}}/line_items/{{id}}"),
            delete(removals::delete_line_item),
        )
        .route(&format!("{PROJECT}/direct_costs"), get(direct_costs::list))
        .route(
            &format!("{PROJECT}/direct_costs/line_items"),
            get(direct_costs::list_line_items),
        )
        .route(
            &format!("{PROJECT}/direct_costs/sync"),
            patch(direct_costs::sync_headers),
        )
        .route(
            &format!("{PROJECT}/direct_costs/line_items/sync"),
            patch(direct_costs::sync_line_items),
        )
        .route("/_sandbox/stats", get(inspect::stats))
        .route("/_sandbox/direct_costs", get(inspect::direct_costs))
        .route("/_sandbox/state", get(inspect::state))
        .route(
            "/_sandbox/line_items/{id}",
            patch(admin::edit_line_item).delete(admin::delete_line_item),
        )
        .route(
            "/_sandbox/direct_costs/{id}",
            delete(admin::delete_direct_cost),
        )
        .route(
            "/_sandbox/direct_costs/{id}/line_items",
            post(admin::add_raw_line_item),
        )
        .route(
            "/_sandbox/projects/{project_id}/direct_costs",
            post(admin::add_foreign_direct_cost),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            gate::gate,
        ))
        .with_state(app)
}
