//! `/_sandbox/…`: what the sandbox has seen and holds, for tests and curious users. Not Procore.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde_json::Value;

use crate::sandbox::app::{AppState, Stats};
use crate::sandbox::faults::lock;
use crate::sandbox::state::CostSummary;

/// `GET /_sandbox/stats`: requests by route and outcome, 429s sent, faults injected.
pub(crate) async fn stats(State(app): State<Arc<AppState>>) -> Json<Stats> {
    Json(app.stats())
}

/// `GET /_sandbox/direct_costs`: counts and line totals per project and budget code.
pub(crate) async fn direct_costs(State(app): State<Arc<AppState>>) -> Json<CostSummary> {
    Json(lock(&app.db).cost_summary())
}

/// `GET /_sandbox/state`: the whole state, as the state file holds it.
pub(crate) async fn state(State(app): State<Arc<AppState>>) -> Json<Value> {
    let db = lock(&app.db);
    Json(serde_json::to_value(&*db).unwrap_or(Value::Null))
}
