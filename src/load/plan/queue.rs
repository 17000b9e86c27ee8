//! The planner's private queue: lines and headers packed per request, their text in one buffer
//! per chunk, shared text (budget codes, transaction types) by index.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::model::cost_type::DirectCostKind;
use crate::model::values::DateBytes;
use crate::model::view::{Group, TransactionView};

use super::records::{HeaderRef, Parts};

pub(super) const NO_BUDGET: u32 = u32::MAX;

/// Running total of one budget code, with the shared text its lines point to.
pub(super) struct Budget {
    pub(super) job: Arc<str>,
    pub(super) extra: Option<Arc<str>>,
    pub(super) cost_code: Option<Arc<str>>,
    pub(super) category: Option<Arc<str>>,
    pub(super) cents: i128,
    pub(super) project: u32,
    /// Next budget code with the same hash.
    pub(super) next: u32,
    /// The four parts as `feed` frames them: a hit is one comparison, not four.
    pub(super) framed: Box<[u8]>,
}

/// A range of a chunk's text.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Span {
    pub(super) start: u32,
    pub(super) end: u32,
}

impl Span {
    pub(super) fn get<'a>(&self, text: &'a str) -> &'a str {
        text.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// Appends `s` to `text`; the span it took.
pub(super) fn push_text(text: &mut String, s: &str) -> Result<Span> {
    let start = text.len();
    text.push_str(s);
    span(start, text.len())
}

/// The span from `start` to `end` of a chunk's text (a request's text stays far below 4 GiB:
/// 1000 records).
pub(super) fn span(start: usize, end: usize) -> Result<Span> {
    match (u32::try_from(start), u32::try_from(end)) {
        (Ok(start), Ok(end)) => Ok(Span { start, end }),
        _ => Err(Error::Capacity {
            what: "the text of one request exceeds 4 GiB".into(),
        }),
    }
}

/// Appends a date as `date_text` writes it (nothing for no date); the span it took.
pub(super) fn push_date(text: &mut String, days: Option<i32>) -> Result<Span> {
    let start = text.len();
    let mut date = DateBytes::default();
    // `DateBytes` writes ASCII digits and dashes (or chrono's text): always UTF-8.
    text.push_str(std::str::from_utf8(date.format(days)).unwrap_or_default());
    span(start, text.len())
}

/// A queued line: numbers inline, its own text (origin_id, description) in its chunk's text
/// buffer, the shared text (budget code, transaction type) by index. Requests borrow it as a
/// [`LineRef`]: no per-line allocation between the batch and the sink.
pub(super) struct Queued {
    pub(super) direct_cost: Arc<str>,
    pub(super) amount: i128,
    pub(super) quantity: i128,
    pub(super) unit_cost: i128,
    pub(super) run: i64,
    pub(super) sequence: i64,
    pub(super) dist_sequence: i64,
    pub(super) source_line: u64,
    pub(super) origin_id: Span,
    pub(super) description: Span,
    pub(super) budget: u32,
    pub(super) transaction_type: u16,
    pub(super) accounting_date: i32,
    /// Bits 0-6: quantity, unit_cost, run, sequence, dist_sequence, description,
    /// accounting_date are present.
    pub(super) present: u8,
}

/// The lines of one line request, with their text in one buffer. Reused once sent.
#[derive(Default)]
pub(super) struct LineChunk {
    pub(super) lines: Vec<Queued>,
    pub(super) text: String,
}

impl LineChunk {
    pub(super) fn with_capacity(records: usize) -> LineChunk {
        LineChunk {
            lines: Vec::with_capacity(records),
            // An origin_id is 48 bytes and more; descriptions are short.
            text: String::with_capacity(records * 64),
        }
    }

    pub(super) fn clear(&mut self) {
        self.lines.clear();
        self.text.clear();
    }
}

/// A queued header: dates inline, its text in its project's header text buffer.
pub(super) struct QueuedHeader {
    pub(super) origin_id: Arc<str>,
    pub(super) kind: DirectCostKind,
    pub(super) parts: [Span; 3],
    pub(super) invoice_number: Span,
    pub(super) vendor: Span,
    pub(super) description: Span,
    pub(super) direct_cost_date: Option<i32>,
    pub(super) received_date: Option<i32>,
    pub(super) payment_date: Option<i32>,
    /// Bit 0: invoice_number is present; bit 1: vendor is.
    pub(super) present: u8,
}

impl QueuedHeader {
    pub(super) fn view<'a>(&'a self, text: &'a str, job: &'a str) -> HeaderRef<'a> {
        let n = self.kind.parts();
        HeaderRef {
            origin_id: &self.origin_id,
            job,
            kind: self.kind,
            parts: Parts::Planned(self.parts.map(|p| p.get(text)), n),
            invoice_number: has(self.present, 0, self.invoice_number.get(text)),
            vendor: has(self.present, 1, self.vendor.get(text)),
            direct_cost_date: self.direct_cost_date,
            received_date: self.received_date,
            payment_date: self.payment_date,
            description: self.description.get(text),
        }
    }
}

/// A project's pending headers, with their text in one buffer.
#[derive(Default)]
pub(super) struct HeaderChunk {
    pub(super) headers: Vec<QueuedHeader>,
    pub(super) text: String,
}

impl HeaderChunk {
    /// Queue the header of row `r`'s direct cost: the record `DirectCostKey::of` and the
    /// planned header text describe (same parts, same descriptions).
    pub(super) fn push(
        &mut self,
        view: &TransactionView,
        r: usize,
        origin_id: Arc<str>,
    ) -> Result<()> {
        let text = &mut self.text;
        let e = view.enriched().ok_or_else(|| Error::BatchShape {
            message: "planning needs enriched batches (with origin ids)".into(),
        })?;
        let acct = view.accounting_date(r);
        let header = match view.group(r) {
            Group::Invoice { vendor, invoice } => {
                let vendor_span = push_text(text, vendor.unwrap_or(""))?;
                let invoice_span = push_text(text, invoice.unwrap_or(""))?;
                let description = match e.invoice_description(r) {
                    Some(d) => push_text(text, d)?,
                    None => {
                        let start = text.len();
                        text.push_str("Invoice ");
                        text.push_str(invoice.unwrap_or("?"));
                        text.push_str(" from ");
                        text.push_str(vendor.unwrap_or("?"));
                        span(start, text.len())?
                    }
                };
                QueuedHeader {
                    origin_id,
                    kind: DirectCostKind::Invoice,
                    parts: [vendor_span, invoice_span, Span::default()],
                    invoice_number: invoice_span,
                    vendor: vendor_span,
                    description,
                    direct_cost_date: e.invoice_date(r).or(acct),
                    received_date: e.invoice_received_date(r),
                    payment_date: e.invoice_payment_date(r),
                    present: u8::from(invoice.is_some()) | u8::from(vendor.is_some()) << 1,
                }
            }
            Group::Payroll { day, batch } => {
                let date = push_date(text, day)?;
                let batch_span = push_text(text, batch)?;
                let start = text.len();
                text.push_str("Payroll ");
                push_date(text, day)?;
                text.push_str(" batch ");
                text.push_str(batch);
                QueuedHeader {
                    origin_id,
                    kind: DirectCostKind::Payroll,
                    parts: [date, batch_span, Span::default()],
                    invoice_number: Span::default(),
                    vendor: Span::default(),
                    description: span(start, text.len())?,
                    direct_cost_date: day,
                    received_date: None,
                    payment_date: None,
                    present: 0,
                }
            }
            Group::Expense { ty, day, batch } => {
                let ty_span = push_text(text, ty)?;
                let date = push_date(text, day)?;
                let batch_span = push_text(text, batch)?;
                let start = text.len();
                text.push_str(ty);
                text.push(' ');
                push_date(text, day)?;
                text.push_str(" batch ");
                text.push_str(batch);
                QueuedHeader {
                    origin_id,
                    kind: DirectCostKind::Expense,
                    parts: [ty_span, date, batch_span],
                    invoice_number: Span::default(),
                    vendor: Span::default(),
                    description: span(start, text.len())?,
                    direct_cost_date: day,
                    received_date: None,
                    payment_date: None,
                    present: 0,
                }
            }
        };
        self.headers.push(header);
        Ok(())
    }

    pub(super) fn clear(&mut self) {
        self.headers.clear();
        self.text.clear();
    }
}

pub(super) fn bit<T: Default>(v: Option<T>, b: u8, present: &mut u8) -> T {
    match v {
        Some(v) => {
            *present |= 1 << b;
            v
        }
        None => T::default(),
    }
}

pub(super) fn has<T>(present: u8, b: u8, v: T) -> Option<T> {
    (present & (1 << b) != 0).then_some(v)
}

/// What one project (Sage job) has planned but not sent.
pub(super) struct Project {
    pub(super) job: Arc<str>,
    /// Headers not sent yet: every one has at least one queued line.
    pub(super) headers: HeaderChunk,
    /// Full line requests, in order.
    pub(super) sealed: Vec<LineChunk>,
    /// The line request being filled.
    pub(super) open: LineChunk,
    /// Flushes so far (wrapping).
    pub(super) epoch: u32,
    /// The cache forgot one of the pending headers: one may be pending twice.
    pub(super) maybe_twice: bool,
}

impl Project {
    pub(super) fn queued(&self) -> usize {
        self.sealed.iter().map(|c| c.lines.len()).sum::<usize>() + self.open.lines.len()
    }
}
