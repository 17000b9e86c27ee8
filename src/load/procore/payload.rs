//! What the load sends to Procore: the flat budget code of a line and the hash of a payload.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::LoadConfig;
use crate::load::plan::LineItem;
use crate::model::values::format_date;

pub(super) fn payload_hash(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

pub(super) fn date(d: Option<i32>) -> Value {
    d.map(|d| Value::String(format_date(d)))
        .unwrap_or(Value::Null)
}

/// Flat budget code of a line, by the pipeline's formats.
pub fn flat_code(config: &LoadConfig, line: &LineItem) -> String {
    let fmt = match line.extra.as_deref() {
        Some(e) if !e.is_empty() => config.budget_code_format_with_extra.replace("{extra}", e),
        _ => config.budget_code_format.clone(),
    };
    fmt.replace("{cost_code}", line.cost_code.as_deref().unwrap_or(""))
        .replace("{category}", line.category.as_deref().unwrap_or(""))
}
