//! `[target] kind = "dry-run"`: the requests that would be sent, one JSON object a line, in
//! `runs/<run-id>/requests.ndjson`. Procore ids are not resolved: each request names the Sage keys
//! they will come from under `unresolved`.
//!
//! Records are serialized straight from the planner's queued records, borrowed for the request,
//! into one reused buffer (no owned record, no `serde_json::Value` tree per record); the key order
//! and text are those of [`header_json`] and [`line_json`], which stay as the readable reference.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use super::plan::{HeaderRef, Headers, LineRef, Lines, PlannedRequest, RequestSink};
use crate::error::Result;
use crate::model::values::{format_date, format_decimal, DateText, DecimalText};
use crate::staging::HashedFile;

/// Procore path of the header sync, with the project id still to resolve.
pub const HEADER_SYNC_PATH: &str = "/rest/v1.0/projects/{project_id}/direct_costs/sync";
/// Procore path of the line item sync.
pub const LINE_SYNC_PATH: &str = "/rest/v1.0/projects/{project_id}/direct_costs/line_items/sync";

/// Writes planned requests as NDJSON.
pub struct DryRunSink {
    file: HashedFile,
    seq: u64,
    buf: Vec<u8>,
}

impl DryRunSink {
    /// Write to `file` (renamed into place on [`DryRunSink::finish`]).
    pub fn new(file: HashedFile) -> DryRunSink {
        DryRunSink {
            file,
            seq: 0,
            buf: Vec::new(),
        }
    }

    /// Close the file and return its manifest entry.
    pub fn finish(self) -> Result<crate::staging::FileEntry> {
        self.file.finish(Some(self.seq))
    }
}

fn date(d: Option<i32>) -> Value {
    d.map(|d| Value::String(format_date(d)))
        .unwrap_or(Value::Null)
}

/// The `updates[]` record of a header, as the dry run shows it.
pub fn header_json(h: HeaderRef<'_>) -> Value {
    let mut v = json!({
        "origin_id": &**h.origin_id,
        "direct_cost_type": h.kind.as_str(),
        "direct_cost_date": date(h.direct_cost_date),
        "status": "approved",
        "description": h.description,
        "origin_data": format!("sage:{}|{}|{}", h.job, h.kind.as_str(), h.group_key()),
    });
    if let Some(n) = h.invoice_number {
        v["invoice_number"] = json!(n);
    }
    if h.received_date.is_some() {
        v["received_date"] = date(h.received_date);
    }
    if h.payment_date.is_some() {
        v["payment_date"] = date(h.payment_date);
    }
    if let Some(vendor) = h.vendor {
        v["unresolved"] = json!({ "vendor_id": { "sage_vendor": vendor } });
    }
    v
}

/// The `updates[]` record of a line item, as the dry run shows it.
pub fn line_json(l: LineRef<'_>) -> Value {
    json!({
        "origin_id": l.origin_id,
        "amount": format_decimal(l.amount, 2),
        "quantity": l.quantity.map(|q| format_decimal(q, 4)),
        "unit_cost": l.unit_cost.map(|q| format_decimal(q, 4)),
        "description": l.description,
        "origin_data": format!("sage:{}", l.natural_key()),
        "unresolved": {
            "direct_cost_id": { "origin_id": &**l.direct_cost_origin_id },
            "wbs_code_id": {
                "sage_job": &**l.job,
                "sage_extra": l.extra.map(|s| &**s),
                "sage_cost_code": l.cost_code.map(|s| &**s),
                "sage_category": l.category.map(|s| &**s),
            },
        },
    })
}

/// A `Display` value serialized as a JSON string, written without an intermediate String.
struct Text<T>(T);

impl<T: std::fmt::Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// `sage:JOB|KIND|GROUP`, the header's origin_data.
struct HeaderOrigin<'a>(HeaderRef<'a>);

impl std::fmt::Display for HeaderOrigin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.0;
        write!(f, "sage:{}|{}|", h.job, h.kind.as_str())?;
        for (i, p) in h.parts().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            f.write_str(p)?;
        }
        Ok(())
    }
}

/// `sage:NATURAL_KEY`, the line's origin_data.
struct LineOrigin<'a>(LineRef<'a>);

impl std::fmt::Display for LineOrigin<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sage:{}", self.0.natural_key())
    }
}

struct HeaderRecord<'a>(HeaderRef<'a>);

impl Serialize for HeaderRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct SageVendor<'a> {
            sage_vendor: &'a str,
        }
        #[derive(Serialize)]
        struct Unresolved<'a> {
            vendor_id: SageVendor<'a>,
        }
        let h = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("origin_id", &**h.origin_id)?;
        m.serialize_entry("direct_cost_type", h.kind.as_str())?;
        m.serialize_entry(
            "direct_cost_date",
            &h.direct_cost_date.map(DateText).map(Text),
        )?;
        m.serialize_entry("status", "approved")?;
        m.serialize_entry("description", &h.description)?;
        m.serialize_entry("origin_data", &Text(HeaderOrigin(h)))?;
        if let Some(n) = h.invoice_number {
            m.serialize_entry("invoice_number", n)?;
        }
        if let Some(d) = h.received_date {
            m.serialize_entry("received_date", &Text(DateText(d)))?;
        }
        if let Some(d) = h.payment_date {
            m.serialize_entry("payment_date", &Text(DateText(d)))?;
        }
        if let Some(vendor) = h.vendor {
            m.serialize_entry(
                "unresolved",
                &Unresolved {
                    vendor_id: SageVendor {
                        sage_vendor: vendor,
                    },
                },
            )?;
        }
        m.end()
    }
}

struct LineRecord<'a>(LineRef<'a>);

impl Serialize for LineRecord<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct DirectCostRef<'a> {
            origin_id: &'a str,
        }
        #[derive(Serialize)]
        struct WbsRef<'a> {
            sage_job: &'a str,
            sage_extra: Option<&'a str>,
            sage_cost_code: Option<&'a str>,
            sage_category: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Unresolved<'a> {
            direct_cost_id: DirectCostRef<'a>,
            wbs_code_id: WbsRef<'a>,
        }
        let l = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("origin_id", l.origin_id)?;
        m.serialize_entry("amount", &Text(DecimalText(l.amount, 2)))?;
        m.serialize_entry("quantity", &l.quantity.map(|q| Text(DecimalText(q, 4))))?;
        m.serialize_entry("unit_cost", &l.unit_cost.map(|q| Text(DecimalText(q, 4))))?;
        m.serialize_entry("description", &l.description)?;
        m.serialize_entry("origin_data", &Text(LineOrigin(l)))?;
        m.serialize_entry(
            "unresolved",
            &Unresolved {
                direct_cost_id: DirectCostRef {
                    origin_id: l.direct_cost_origin_id,
                },
                wbs_code_id: WbsRef {
                    sage_job: l.job,
                    sage_extra: l.extra.map(|s| &**s),
                    sage_cost_code: l.cost_code.map(|s| &**s),
                    sage_category: l.category.map(|s| &**s),
                },
            },
        )?;
        m.end()
    }
}

/// The records of one request, serialized one by one.
enum Updates<'a> {
    Headers(Headers<'a>),
    Lines(Lines<'a>),
}

impl Serialize for Updates<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Updates::Headers(h) => s.collect_seq(h.iter().map(HeaderRecord)),
            Updates::Lines(l) => s.collect_seq(l.iter().map(LineRecord)),
        }
    }
}

#[derive(Serialize)]
struct SageJob<'a> {
    sage_job: &'a str,
}

#[derive(Serialize)]
struct ProjectRef<'a> {
    project_id: SageJob<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    updates: Updates<'a>,
}

/// One line of requests.ndjson.
#[derive(Serialize)]
struct Request<'a> {
    seq: u64,
    method: &'static str,
    path: &'static str,
    unresolved: ProjectRef<'a>,
    records: usize,
    body: Body<'a>,
}

impl RequestSink for DryRunSink {
    fn send(&mut self, request: PlannedRequest<'_>) -> Result<()> {
        self.seq += 1;
        let records = request.records();
        let (path, job, updates) = match request {
            PlannedRequest::HeaderSync { job, headers } => {
                (HEADER_SYNC_PATH, job, Updates::Headers(headers))
            }
            PlannedRequest::LineSync { job, lines } => (LINE_SYNC_PATH, job, Updates::Lines(lines)),
        };
        let line = Request {
            seq: self.seq,
            method: "PATCH",
            path,
            unresolved: ProjectRef {
                project_id: SageJob { sage_job: job },
            },
            records,
            body: Body { updates },
        };
        self.buf.clear();
        serde_json::to_writer(&mut self.buf, &line)?;
        self.file.write_line(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::plan::{DirectCostHeader, LineItem, LineText};
    use crate::model::cost_type::DirectCostKind;
    use crate::model::ids::DirectCostKey;
    use std::sync::Arc;

    fn header(kind: DirectCostKind, vendor: Option<&str>, dates: bool) -> DirectCostHeader {
        DirectCostHeader {
            origin_id: Arc::from("jcsync:X:dc:00ff"),
            key: DirectCostKey {
                job: "1001".into(),
                kind,
                parts: vec!["V\"1".into(), "INV|7".into()],
            },
            invoice_number: vendor.map(|_| "INV|7".to_string()),
            vendor: vendor.map(str::to_string),
            direct_cost_date: Some(19_727),
            received_date: dates.then_some(19_730),
            payment_date: dates.then_some(-800_000),
            description: "Invoice \"7\"\n".into(),
        }
    }

    fn line(optional: bool) -> LineItem {
        LineItem {
            text: LineText::new("jcsync:X:line:01", optional.then_some("caf\u{e9} \\ \"x\"")),
            direct_cost_origin_id: Arc::from("jcsync:X:dc:00ff"),
            job: Arc::from("1001"),
            extra: optional.then(|| Arc::from("2")),
            cost_code: optional.then(|| Arc::from("01-100")),
            category: Some(Arc::from("M")),
            amount: -5,
            quantity: optional.then_some(12_500),
            unit_cost: optional.then_some(-1),
            run: Some(3),
            sequence: None,
            dist_sequence: optional.then_some(-2),
            source_line: 7,
            transaction_type: Arc::from("AP cost"),
        }
    }

    #[test]
    fn direct_serialization_matches_the_value_tree() {
        for h in [
            header(DirectCostKind::Invoice, Some("V\"1"), true),
            header(DirectCostKind::Payroll, None, false),
            header(DirectCostKind::Expense, None, true),
        ] {
            assert_eq!(
                serde_json::to_string(&HeaderRecord(h.view())).expect("direct"),
                serde_json::to_string(&header_json(h.view())).expect("tree")
            );
        }
        for l in [line(true), line(false)] {
            assert_eq!(
                serde_json::to_string(&LineRecord(l.view())).expect("direct"),
                serde_json::to_string(&line_json(l.view())).expect("tree")
            );
        }
    }
}
