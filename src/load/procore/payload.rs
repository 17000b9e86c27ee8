//! The one serializer of planned records: the JSON of a direct cost header and of a line item,
//! as the load sends it to Procore (an `updates[]` record of the two sync requests) and as the
//! dry run writes it to `requests.ndjson`. Also the sync paths, the payload hash the ledger keeps,
//! and the flat budget code of a line.
//!
//! A record is written straight from its borrowed form ([`HeaderRef`], [`LineRef`]) into bytes
//! (no `serde_json::Value` tree): the load hashes those bytes and sends those bytes, so what is
//! hashed is what is sent.
//!
//! The two forms differ only in the Procore ids, which the load resolves and the dry run cannot
//! (it has no Procore): a sent record carries `vendor_id` (invoices), `direct_cost_id` and
//! `wbs_code_id`; a dry-run record carries instead, under `unresolved`, the Sage keys those ids
//! come from. Both byte layouts are fixed by what exists already, so neither is moved toward the
//! other: Procore's ledger holds the hash of every sent record (a changed byte would re-send every
//! line), and `requests.ndjson` is compared byte for byte. Hence the resolved ids sit where the
//! load always wrote them (a line's right after its `origin_id`, a header's `vendor_id` last) and
//! the `unresolved` object last. Both write `[load] status` as the header's `status`.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::LoadConfig;
use crate::error::Result;
use crate::load::plan::{HeaderRef, LineItem, LineRef};
use crate::model::values::{DateText, DecimalText};

/// Procore path of the header sync, with the project id still to resolve.
pub const HEADER_SYNC_PATH: &str = "/rest/v1.0/projects/{project_id}/direct_costs/sync";
/// Procore path of the line item sync.
pub const LINE_SYNC_PATH: &str = "/rest/v1.0/projects/{project_id}/direct_costs/line_items/sync";

/// A sync path (`HEADER_SYNC_PATH` or `LINE_SYNC_PATH`) for a project.
pub(super) fn project_path(template: &str, project_id: i64) -> String {
    template.replace("{project_id}", &project_id.to_string())
}

/// The Procore ids of a header record.
#[derive(Debug, Clone, Copy)]
pub enum HeaderIds {
    /// As sent: the vendor's Procore id (invoices).
    Resolved { vendor_id: Option<i64> },
    /// As the dry run shows it: the Sage vendor, if the header has one.
    Unresolved,
}

/// A header's `updates[]` record.
#[derive(Clone, Copy)]
pub struct HeaderRecord<'a> {
    pub header: HeaderRef<'a>,
    /// `[load] status`.
    pub status: &'a str,
    pub ids: HeaderIds,
}

/// The Procore ids of a line record.
#[derive(Debug, Clone, Copy)]
pub enum LineIds {
    /// As sent: the direct cost's and the budget code's Procore ids.
    Resolved {
        direct_cost_id: i64,
        wbs_code_id: i64,
    },
    /// As the dry run shows it: the Sage keys of the direct cost and the budget code.
    Unresolved,
}

/// A line's `updates[]` record.
#[derive(Clone, Copy)]
pub struct LineRecord<'a> {
    pub line: LineRef<'a>,
    pub ids: LineIds,
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
        let h = self.header;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("origin_id", &**h.origin_id)?;
        m.serialize_entry("direct_cost_type", h.kind.as_str())?;
        m.serialize_entry(
            "direct_cost_date",
            &h.direct_cost_date.map(DateText).map(Text),
        )?;
        m.serialize_entry("status", self.status)?;
        m.serialize_entry("description", h.description)?;
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
        match (self.ids, h.vendor) {
            (
                HeaderIds::Resolved {
                    vendor_id: Some(id),
                },
                _,
            ) => {
                m.serialize_entry("vendor_id", &id)?;
            }
            (HeaderIds::Unresolved, Some(vendor)) => {
                m.serialize_entry(
                    "unresolved",
                    &Unresolved {
                        vendor_id: SageVendor {
                            sage_vendor: vendor,
                        },
                    },
                )?;
            }
            (HeaderIds::Resolved { vendor_id: None }, _) | (HeaderIds::Unresolved, None) => {}
        }
        m.end()
    }
}

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
        let l = self.line;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("origin_id", l.origin_id)?;
        if let LineIds::Resolved {
            direct_cost_id,
            wbs_code_id,
        } = self.ids
        {
            m.serialize_entry("direct_cost_id", &direct_cost_id)?;
            m.serialize_entry("wbs_code_id", &wbs_code_id)?;
        }
        m.serialize_entry("amount", &Text(DecimalText(l.amount, 2)))?;
        m.serialize_entry("quantity", &l.quantity.map(|q| Text(DecimalText(q, 4))))?;
        m.serialize_entry("unit_cost", &l.unit_cost.map(|q| Text(DecimalText(q, 4))))?;
        m.serialize_entry("description", &l.description)?;
        m.serialize_entry("origin_data", &Text(LineOrigin(l)))?;
        if let LineIds::Unresolved = self.ids {
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
        }
        m.end()
    }
}

/// A record as the load sends it: its JSON and the hash of that JSON, which the ledger keeps
/// (a record whose hash the ledger already has is not sent again).
pub(super) struct Payload {
    pub(super) json: Vec<u8>,
    pub(super) hash: String,
}

impl Payload {
    /// The payload of a record.
    pub(super) fn of(record: &impl Serialize) -> Result<Payload> {
        let json = serde_json::to_vec(record)?;
        let hash = hex::encode(Sha256::digest(&json));
        Ok(Payload { json, hash })
    }
}

/// The body of a sync request: `{"updates":[…]}` around records already serialized.
pub(super) fn sync_body(updates: &[Vec<u8>]) -> Vec<u8> {
    const OPEN: &[u8] = br#"{"updates":["#;
    const CLOSE: &[u8] = b"]}";
    let len = updates.iter().map(|u| u.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(OPEN.len() + len + CLOSE.len());
    body.extend_from_slice(OPEN);
    for (i, u) in updates.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(u);
    }
    body.extend_from_slice(CLOSE);
    body
}

/// Flat budget code of a line, by the pipeline's formats.
pub fn flat_code(config: &LoadConfig, line: &LineItem) -> String {
    flat_code_of(
        config,
        line.extra.as_deref(),
        line.cost_code.as_deref(),
        line.category.as_deref(),
    )
}

/// The flat budget code of a line's parts (Extra, Cost_Code, Category).
pub fn flat_code_of(
    config: &LoadConfig,
    extra: Option<&str>,
    cost_code: Option<&str>,
    category: Option<&str>,
) -> String {
    let fmt = match extra {
        Some(e) if !e.is_empty() => config.budget_code_format_with_extra.replace("{extra}", e),
        _ => config.budget_code_format.clone(),
    };
    fmt.replace("{cost_code}", cost_code.unwrap_or(""))
        .replace("{category}", category.unwrap_or(""))
}

#[cfg(test)]
mod tests {
    //! The records are pinned against the `serde_json::Value` trees the load and the dry run
    //! built before they shared this serializer (kept here as the readable reference): the same
    //! bytes, so the same payload hashes in the ledger and the same `requests.ndjson`.

    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::*;
    use crate::load::plan::{DirectCostHeader, LineText};
    use crate::model::cost_type::DirectCostKind;
    use crate::model::ids::DirectCostKey;
    use crate::model::values::{format_date, format_decimal};

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

    fn headers() -> [DirectCostHeader; 4] {
        [
            header(DirectCostKind::Invoice, Some("V\"1"), true),
            header(DirectCostKind::Invoice, None, false),
            header(DirectCostKind::Payroll, None, false),
            header(DirectCostKind::Expense, None, true),
        ]
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
            accounting_date: None,
            transaction_type: Arc::from("AP cost"),
        }
    }

    fn date(d: Option<i32>) -> Value {
        d.map(|d| Value::String(format_date(d)))
            .unwrap_or(Value::Null)
    }

    /// The header the dry run wrote (its `header_json`).
    fn dry_run_header(h: HeaderRef<'_>) -> Value {
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

    /// The line the dry run wrote (its `line_json`).
    fn dry_run_line(l: LineRef<'_>) -> Value {
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

    /// The header the load sent (its `header_payload`, the vendor already resolved).
    fn sent_header(h: &DirectCostHeader, status: &str, vendor_id: Option<i64>) -> Value {
        let mut v = json!({
            "origin_id": &*h.origin_id,
            "direct_cost_type": h.key.kind.as_str(),
            "direct_cost_date": date(h.direct_cost_date),
            "status": status,
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
        if let Some(id) = vendor_id {
            v["vendor_id"] = json!(id);
        }
        v
    }

    /// The line the load sent.
    fn sent_line(l: &LineItem, dc: i64, wbs_id: i64) -> Value {
        json!({
            "origin_id": l.origin_id(),
            "direct_cost_id": dc,
            "wbs_code_id": wbs_id,
            "amount": format_decimal(l.amount, 2),
            "quantity": l.quantity.map(|q| format_decimal(q, 4)),
            "unit_cost": l.unit_cost.map(|q| format_decimal(q, 4)),
            "description": l.description(),
            "origin_data": format!("sage:{}", l.natural_key()),
        })
    }

    /// The load's payload hash of a `Value` tree.
    fn value_hash(v: &Value) -> String {
        hex::encode(Sha256::digest(v.to_string().as_bytes()))
    }

    fn text(record: &impl Serialize) -> String {
        String::from_utf8(Payload::of(record).expect("serializes").json).expect("UTF-8")
    }

    #[test]
    fn dry_run_records_are_the_bytes_the_dry_run_wrote() {
        for h in headers() {
            let record = HeaderRecord {
                header: h.view(),
                status: "approved",
                ids: HeaderIds::Unresolved,
            };
            assert_eq!(text(&record), dry_run_header(h.view()).to_string());
        }
        for l in [line(true), line(false)] {
            let record = LineRecord {
                line: l.view(),
                ids: LineIds::Unresolved,
            };
            assert_eq!(text(&record), dry_run_line(l.view()).to_string());
        }
    }

    #[test]
    fn sent_records_and_their_hashes_are_those_the_load_sent() {
        for (h, vendor_id) in headers().into_iter().zip([Some(42), None, None, None]) {
            for status in ["approved", "draft"] {
                let record = HeaderRecord {
                    header: h.view(),
                    status,
                    ids: HeaderIds::Resolved { vendor_id },
                };
                let reference = sent_header(&h, status, vendor_id);
                let payload = Payload::of(&record).expect("serializes");
                assert_eq!(payload.json, reference.to_string().into_bytes());
                assert_eq!(payload.hash, value_hash(&reference));
            }
        }
        for l in [line(true), line(false)] {
            let record = LineRecord {
                line: l.view(),
                ids: LineIds::Resolved {
                    direct_cost_id: 9_007_199_254_740_993,
                    wbs_code_id: -3,
                },
            };
            let reference = sent_line(&l, 9_007_199_254_740_993, -3);
            let payload = Payload::of(&record).expect("serializes");
            assert_eq!(payload.json, reference.to_string().into_bytes());
            assert_eq!(payload.hash, value_hash(&reference));
        }
    }

    #[test]
    fn a_sent_line_is_pinned() {
        let l = line(true);
        let record = LineRecord {
            line: l.view(),
            ids: LineIds::Resolved {
                direct_cost_id: 11,
                wbs_code_id: 12,
            },
        };
        assert_eq!(
            text(&record),
            r#"{"origin_id":"jcsync:X:line:01","direct_cost_id":11,"wbs_code_id":12,"amount":"-0.05","quantity":"1.2500","unit_cost":"-0.0001","description":"café \\ \"x\"","origin_data":"sage:1001|2|01-100|M|AP cost|3||-2"}"#
        );
    }

    #[test]
    fn the_sync_body_is_the_records_under_updates() {
        let a = sent_line(&line(true), 1, 2);
        let b = sent_line(&line(false), 3, 4);
        let records = [a.to_string().into_bytes(), b.to_string().into_bytes()];
        let reference = serde_json::to_vec(&json!({ "updates": [a, b] })).expect("serializes");
        assert_eq!(sync_body(&records), reference);
        assert_eq!(sync_body(&records[..1]), {
            let a = sent_line(&line(true), 1, 2);
            serde_json::to_vec(&json!({ "updates": [a] })).expect("serializes")
        });
    }

    #[test]
    fn sync_paths_name_the_project() {
        assert_eq!(
            project_path(HEADER_SYNC_PATH, 7),
            "/rest/v1.0/projects/7/direct_costs/sync"
        );
        assert_eq!(
            project_path(LINE_SYNC_PATH, 7),
            "/rest/v1.0/projects/7/direct_costs/line_items/sync"
        );
    }
}
