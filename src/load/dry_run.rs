//! `[target] kind = "dry-run"`: the requests that would be sent, one JSON object a line, in
//! `runs/<run-id>/requests.ndjson`. Procore ids are not resolved: each request names the Sage keys
//! they will come from under `unresolved`.

use serde_json::{json, Value};

use super::plan::{
    format_date, format_decimal, DirectCostHeader, LineItem, PlannedRequest, RequestSink,
};
use crate::error::Result;
use crate::stage::HashedFile;

/// Procore path of the header sync, with the project id still to resolve.
pub const HEADER_SYNC_PATH: &str = "/rest/v1.0/projects/{project_id}/direct_costs/sync";
/// Procore path of the line item sync.
pub const LINE_SYNC_PATH: &str = "/rest/v1.0/projects/{project_id}/direct_costs/line_items/sync";

/// Writes planned requests as NDJSON.
pub struct DryRunSink {
    file: HashedFile,
    seq: u64,
}

impl DryRunSink {
    /// Write to `file` (renamed into place on [`DryRunSink::finish`]).
    pub fn new(file: HashedFile) -> DryRunSink {
        DryRunSink { file, seq: 0 }
    }

    /// Close the file and return its manifest entry.
    pub fn finish(self) -> Result<crate::stage::FileEntry> {
        self.file.finish(Some(self.seq))
    }
}

fn date(d: Option<i32>) -> Value {
    d.map(|d| Value::String(format_date(d)))
        .unwrap_or(Value::Null)
}

/// The `updates[]` record of a header, as the dry run shows it.
pub fn header_json(h: &DirectCostHeader) -> Value {
    let mut v = json!({
        "origin_id": h.origin_id,
        "direct_cost_type": h.key.kind.as_str(),
        "direct_cost_date": date(h.direct_cost_date),
        "status": "approved",
        "description": h.description,
        "origin_data": format!("sage:{}|{}|{}", h.key.job, h.key.kind.as_str(), h.key.group_key()),
    });
    if let Some(n) = &h.invoice_number {
        v["invoice_number"] = json!(n);
    }
    if h.received_date.is_some() {
        v["received_date"] = date(h.received_date);
    }
    if h.payment_date.is_some() {
        v["payment_date"] = date(h.payment_date);
    }
    if let Some(vendor) = &h.vendor {
        v["unresolved"] = json!({ "vendor_id": { "sage_vendor": vendor } });
    }
    v
}

/// The `updates[]` record of a line item, as the dry run shows it.
pub fn line_json(l: &LineItem) -> Value {
    json!({
        "origin_id": l.origin_id,
        "amount": format_decimal(l.amount, 2),
        "quantity": l.quantity.map(|q| format_decimal(q, 4)),
        "unit_cost": l.unit_cost.map(|q| format_decimal(q, 4)),
        "description": l.description,
        "origin_data": format!("sage:{}", l.natural_key),
        "unresolved": {
            "direct_cost_id": { "origin_id": l.direct_cost_origin_id },
            "wbs_code_id": {
                "sage_job": l.job,
                "sage_extra": l.extra,
                "sage_cost_code": l.cost_code,
                "sage_category": l.category,
            },
        },
    })
}

impl RequestSink for DryRunSink {
    fn send(&mut self, request: PlannedRequest) -> Result<()> {
        self.seq += 1;
        let (path, job, updates): (&str, &str, Vec<Value>) = match &request {
            PlannedRequest::HeaderSync { job, headers } => (
                HEADER_SYNC_PATH,
                job,
                headers.iter().map(header_json).collect(),
            ),
            PlannedRequest::LineSync { job, lines } => {
                (LINE_SYNC_PATH, job, lines.iter().map(line_json).collect())
            }
        };
        let line = json!({
            "seq": self.seq,
            "method": "PATCH",
            "path": path,
            "unresolved": { "project_id": { "sage_job": job } },
            "records": updates.len(),
            "body": { "updates": updates },
        });
        self.file.write_line(&serde_json::to_vec(&line)?)
    }
}
