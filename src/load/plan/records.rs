//! The records a plan emits: owned ([`DirectCostHeader`], [`LineItem`]) and borrowed from the
//! planner's queue ([`HeaderRef`], [`LineRef`]), grouped into [`PlannedRequest`]s for a
//! [`RequestSink`].

use std::fmt;
use std::sync::Arc;

use crate::error::Result;
use crate::model::cost_type::DirectCostKind;
use crate::model::ids::DirectCostKey;

use super::queue::{has, Budget, Queued, QueuedHeader};

/// A planned direct cost header (`direct_costs/sync` record). Ids still as Sage keys.
#[derive(Debug, Clone, PartialEq)]
pub struct DirectCostHeader {
    /// Shared with the lines of the direct cost.
    pub origin_id: Arc<str>,
    pub key: DirectCostKey,
    pub invoice_number: Option<String>,
    pub vendor: Option<String>,
    pub direct_cost_date: Option<i32>,
    pub received_date: Option<i32>,
    pub payment_date: Option<i32>,
    pub description: String,
}

/// A planned line item (`direct_costs/line_items/sync` record).
///
/// Text that many lines share (job, budget code parts, the direct cost's origin_id, the
/// transaction type) is reference-counted, not copied per line; the natural key is derived when
/// it is written, not stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LineItem {
    /// origin_id and description, in one allocation.
    pub text: LineText,
    pub direct_cost_origin_id: Arc<str>,
    pub job: Arc<str>,
    pub extra: Option<Arc<str>>,
    pub cost_code: Option<Arc<str>>,
    pub category: Option<Arc<str>>,
    /// Cents.
    pub amount: i128,
    /// Units, 4 decimals.
    pub quantity: Option<i128>,
    /// Unit cost, 4 decimals.
    pub unit_cost: Option<i128>,
    pub run: Option<i64>,
    pub sequence: Option<i64>,
    pub dist_sequence: Option<i64>,
    /// Where the transaction came from, for quarantine rows.
    pub source_line: u64,
    pub transaction_type: Arc<str>,
    /// The transaction's Accounting_Date (days since 1970-01-01), for the ledger.
    pub accounting_date: Option<i32>,
}

/// A line's own text, its origin_id and description, in one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineText {
    text: Box<str>,
    /// Where the description starts (the end of the origin_id).
    split: usize,
    has_description: bool,
}

impl LineText {
    /// The text of a line.
    pub fn new(origin_id: &str, description: Option<&str>) -> LineText {
        let d = description.unwrap_or("");
        let mut text = String::with_capacity(origin_id.len() + d.len());
        text.push_str(origin_id);
        text.push_str(d);
        LineText {
            text: text.into_boxed_str(),
            split: origin_id.len(),
            has_description: description.is_some(),
        }
    }

    /// The line's origin_id.
    pub fn origin_id(&self) -> &str {
        self.text.get(..self.split).unwrap_or_default()
    }

    /// The line's description.
    pub fn description(&self) -> Option<&str> {
        self.has_description
            .then(|| self.text.get(self.split..).unwrap_or_default())
    }
}

impl LineItem {
    /// The line's origin_id.
    pub fn origin_id(&self) -> &str {
        self.text.origin_id()
    }

    /// The line's description.
    pub fn description(&self) -> Option<&str> {
        self.text.description()
    }

    /// The natural key `JOB|EXTRA|COST_CODE|CATEGORY|TYPE|RUN|SEQUENCE|DIST_SEQUENCE` (NULL as
    /// empty), for origin_data.
    pub fn natural_key(&self) -> NaturalKey<'_> {
        self.view().natural_key()
    }

    /// The line as a borrowed record, the form sinks serialize.
    pub fn view(&self) -> LineRef<'_> {
        LineRef {
            origin_id: self.origin_id(),
            description: self.description(),
            direct_cost_origin_id: &self.direct_cost_origin_id,
            job: &self.job,
            extra: self.extra.as_ref(),
            cost_code: self.cost_code.as_ref(),
            category: self.category.as_ref(),
            amount: self.amount,
            quantity: self.quantity,
            unit_cost: self.unit_cost,
            run: self.run,
            sequence: self.sequence,
            dist_sequence: self.dist_sequence,
            source_line: self.source_line,
            transaction_type: &self.transaction_type,
            accounting_date: self.accounting_date,
        }
    }
}

/// A planned line item borrowed from the planner's queue (or from a [`LineItem`]): what a sink
/// serializes, without a per-line allocation.
#[derive(Debug, Clone, Copy)]
pub struct LineRef<'a> {
    pub origin_id: &'a str,
    pub description: Option<&'a str>,
    pub direct_cost_origin_id: &'a Arc<str>,
    pub job: &'a Arc<str>,
    pub extra: Option<&'a Arc<str>>,
    pub cost_code: Option<&'a Arc<str>>,
    pub category: Option<&'a Arc<str>>,
    /// Cents.
    pub amount: i128,
    /// Units, 4 decimals.
    pub quantity: Option<i128>,
    /// Unit cost, 4 decimals.
    pub unit_cost: Option<i128>,
    pub run: Option<i64>,
    pub sequence: Option<i64>,
    pub dist_sequence: Option<i64>,
    /// Where the transaction came from, for quarantine rows.
    pub source_line: u64,
    pub transaction_type: &'a Arc<str>,
    pub accounting_date: Option<i32>,
}

impl<'a> LineRef<'a> {
    /// The natural key `JOB|EXTRA|COST_CODE|CATEGORY|TYPE|RUN|SEQUENCE|DIST_SEQUENCE` (NULL as
    /// empty), for origin_data.
    pub fn natural_key(self) -> NaturalKey<'a> {
        NaturalKey(self)
    }

    /// An owned copy (the shared text stays shared), for a sink that keeps lines past `send`.
    pub fn to_item(self) -> LineItem {
        LineItem {
            text: LineText::new(self.origin_id, self.description),
            direct_cost_origin_id: self.direct_cost_origin_id.clone(),
            job: self.job.clone(),
            extra: self.extra.cloned(),
            cost_code: self.cost_code.cloned(),
            category: self.category.cloned(),
            amount: self.amount,
            quantity: self.quantity,
            unit_cost: self.unit_cost,
            run: self.run,
            sequence: self.sequence,
            dist_sequence: self.dist_sequence,
            source_line: self.source_line,
            transaction_type: self.transaction_type.clone(),
            accounting_date: self.accounting_date,
        }
    }
}

/// [`LineRef::natural_key`], written without an intermediate String.
pub struct NaturalKey<'a>(LineRef<'a>);

impl fmt::Display for NaturalKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn s(v: Option<&Arc<str>>) -> &str {
            v.map(|v| &**v).unwrap_or("")
        }
        let l = &self.0;
        write!(
            f,
            "{}|{}|{}|{}|{}",
            l.job,
            s(l.extra),
            s(l.cost_code),
            s(l.category),
            l.transaction_type
        )?;
        for v in [l.run, l.sequence, l.dist_sequence] {
            f.write_str("|")?;
            if let Some(v) = v {
                write!(f, "{v}")?;
            }
        }
        Ok(())
    }
}

impl DirectCostHeader {
    /// The header as a borrowed record, the form sinks serialize.
    pub fn view(&self) -> HeaderRef<'_> {
        HeaderRef {
            origin_id: &self.origin_id,
            job: &self.key.job,
            kind: self.key.kind,
            parts: Parts::Key(&self.key.parts),
            invoice_number: self.invoice_number.as_deref(),
            vendor: self.vendor.as_deref(),
            direct_cost_date: self.direct_cost_date,
            received_date: self.received_date,
            payment_date: self.payment_date,
            description: &self.description,
        }
    }
}

/// A planned direct cost header borrowed from the planner's queue (or from a
/// [`DirectCostHeader`]).
#[derive(Debug, Clone, Copy)]
pub struct HeaderRef<'a> {
    /// Shared with the lines of the direct cost.
    pub origin_id: &'a Arc<str>,
    pub job: &'a str,
    pub kind: DirectCostKind,
    pub(super) parts: Parts<'a>,
    pub invoice_number: Option<&'a str>,
    pub vendor: Option<&'a str>,
    pub direct_cost_date: Option<i32>,
    pub received_date: Option<i32>,
    pub payment_date: Option<i32>,
    pub description: &'a str,
}

/// The group parts of a [`HeaderRef`]: planned (at most three) or an owned key's.
#[derive(Debug, Clone, Copy)]
pub(super) enum Parts<'a> {
    Planned([&'a str; 3], usize),
    Key(&'a [String]),
}

impl<'a> HeaderRef<'a> {
    /// The direct cost's group parts (see [`DirectCostKey::parts`]).
    pub fn parts(self) -> impl Iterator<Item = &'a str> {
        let (planned, n, key): ([&'a str; 3], usize, &'a [String]) = match self.parts {
            Parts::Planned(p, n) => (p, n, &[]),
            Parts::Key(k) => ([""; 3], 0, k),
        };
        planned
            .into_iter()
            .take(n)
            .chain(key.iter().map(String::as_str))
    }

    /// `VENDOR|INVOICE`, `DATE|BATCH` or `TYPE|DATE|BATCH`, for people.
    pub fn group_key(self) -> String {
        self.parts().collect::<Vec<_>>().join("|")
    }

    /// An owned copy, for a sink that keeps headers past `send`.
    pub fn to_header(self) -> DirectCostHeader {
        DirectCostHeader {
            origin_id: self.origin_id.clone(),
            key: DirectCostKey {
                job: self.job.to_string(),
                kind: self.kind,
                parts: self.parts().map(str::to_string).collect(),
            },
            invoice_number: self.invoice_number.map(str::to_string),
            vendor: self.vendor.map(str::to_string),
            direct_cost_date: self.direct_cost_date,
            received_date: self.received_date,
            payment_date: self.payment_date,
            description: self.description.to_string(),
        }
    }
}

/// The headers of one header request, borrowed from the planner.
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    pub(super) headers: &'a [QueuedHeader],
    pub(super) text: &'a str,
    pub(super) job: &'a str,
    /// Per header, the budget codes (indices into `budgets`) of its lines in the same flush:
    /// the load sends a header only if one of them can be loaded.
    pub(super) line_budgets: &'a [Vec<u32>],
    pub(super) budgets: &'a [Budget],
}

/// The budget code parts of a line (job aside), shared with the planner's budget codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineCode {
    pub extra: Option<Arc<str>>,
    pub cost_code: Option<Arc<str>>,
    pub category: Option<Arc<str>>,
}

impl<'a> Headers<'a> {
    /// Records in the request.
    pub fn len(&self) -> usize {
        self.headers.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// The headers, in planned order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = HeaderRef<'a>> + 'a {
        let (text, job) = (self.text, self.job);
        self.headers.iter().map(move |h| h.view(text, job))
    }

    /// Owned copies.
    pub fn to_headers(&self) -> Vec<DirectCostHeader> {
        self.iter().map(HeaderRef::to_header).collect()
    }

    /// Owned copies, each with the budget codes of its lines planned with it.
    pub fn to_headers_with_codes(&self) -> Vec<(DirectCostHeader, Vec<LineCode>)> {
        self.iter()
            .enumerate()
            .map(|(i, h)| {
                let codes = self
                    .line_budgets
                    .get(i)
                    .into_iter()
                    .flatten()
                    .filter_map(|&b| self.budgets.get(b as usize))
                    .map(|b| LineCode {
                        extra: b.extra.clone(),
                        cost_code: b.cost_code.clone(),
                        category: b.category.clone(),
                    })
                    .collect();
                (h.to_header(), codes)
            })
            .collect()
    }
}

/// The lines of one line request, borrowed from the planner.
#[derive(Clone, Copy)]
pub struct Lines<'a> {
    pub(super) lines: &'a [Queued],
    pub(super) text: &'a str,
    pub(super) budgets: &'a [Budget],
    pub(super) types: &'a [Arc<str>],
    pub(super) no_type: &'a Arc<str>,
}

impl<'a> Lines<'a> {
    /// Records in the request.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lines, in planned order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = LineRef<'a>> + 'a {
        let this = *self;
        self.lines.iter().map(move |q| this.line(q))
    }

    /// Owned copies.
    pub fn to_items(&self) -> Vec<LineItem> {
        self.iter().map(LineRef::to_item).collect()
    }

    fn line(&self, q: &'a Queued) -> LineRef<'a> {
        let b = self.budgets.get(q.budget as usize);
        LineRef {
            origin_id: q.origin_id.get(self.text),
            description: has(q.present, 5, q.description.get(self.text)),
            direct_cost_origin_id: &q.direct_cost,
            job: b.map_or(self.no_type, |b| &b.job),
            extra: b.and_then(|b| b.extra.as_ref()),
            cost_code: b.and_then(|b| b.cost_code.as_ref()),
            category: b.and_then(|b| b.category.as_ref()),
            amount: q.amount,
            quantity: has(q.present, 0, q.quantity),
            unit_cost: has(q.present, 1, q.unit_cost),
            run: has(q.present, 2, q.run),
            sequence: has(q.present, 3, q.sequence),
            dist_sequence: has(q.present, 4, q.dist_sequence),
            source_line: q.source_line,
            transaction_type: self
                .types
                .get(usize::from(q.transaction_type))
                .unwrap_or(self.no_type),
            accounting_date: has(q.present, 6, q.accounting_date),
        }
    }
}

/// One request the load will send, for one project (Sage job). Its records are borrowed from the
/// planner for the duration of [`RequestSink::send`].
pub enum PlannedRequest<'a> {
    HeaderSync { job: &'a str, headers: Headers<'a> },
    LineSync { job: &'a str, lines: Lines<'a> },
}

impl PlannedRequest<'_> {
    /// Records in the request body.
    pub fn records(&self) -> usize {
        match self {
            PlannedRequest::HeaderSync { headers, .. } => headers.len(),
            PlannedRequest::LineSync { lines, .. } => lines.len(),
        }
    }
}

/// Where planned requests go: the dry-run file now, Procore later.
pub trait RequestSink {
    /// Take one request; requests of a project arrive headers first.
    fn send(&mut self, request: PlannedRequest<'_>) -> Result<()>;
}

impl crate::quarantine::QuarantinedLine for LineItem {
    fn job(&self) -> &str {
        &self.job
    }

    fn extra(&self) -> Option<&str> {
        self.extra.as_deref()
    }

    fn cost_code(&self) -> Option<&str> {
        self.cost_code.as_deref()
    }

    fn category(&self) -> Option<&str> {
        self.category.as_deref()
    }

    fn transaction_type(&self) -> &str {
        &self.transaction_type
    }

    fn amount(&self) -> i128 {
        self.amount
    }

    fn description(&self) -> Option<&str> {
        LineItem::description(self)
    }

    fn run(&self) -> Option<i64> {
        self.run
    }

    fn sequence(&self) -> Option<i64> {
        self.sequence
    }

    fn dist_sequence(&self) -> Option<i64> {
        self.dist_sequence
    }

    fn source_line(&self) -> u64 {
        self.source_line
    }
}
