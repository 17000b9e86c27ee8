//! Load planning: enriched transactions → Procore direct costs (DOMAIN.md section 4).
//!
//! Each transaction becomes one line item; lines group into direct costs by type:
//! AP cost → invoice per (Job, Vendor, Invoice); PR cost → payroll per (Job, Period_End_Date or
//! Accounting_Date, Batch); other costs → expense per (Job, Transaction_Type, Accounting_Date, Batch).
//! Headers and lines carry deterministic origin_ids: the same input gives the same ids on any
//! machine, so re-sending is an update, never a duplicate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
};
use arrow::buffer::{Buffer, OffsetBuffer};
use arrow::datatypes::{Date32Type, Decimal128Type, Int64Type};
use chrono::Datelike;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64, Xxh3};

use crate::error::{Error, Result};
use crate::extract::convert::days_to_date;
use crate::schema::{DIRECT_COST_ORIGIN_ID, LINE_ORIGIN_ID};

/// Records per sync request (Procore's limit for `…/sync`).
pub const MAX_SYNC_RECORDS: usize = 1000;

/// Typed access to the columns of a projected or enriched transaction batch.
pub struct TransactionView<'a> {
    job: &'a StringArray,
    extra: &'a StringArray,
    cost_code: &'a StringArray,
    category: &'a StringArray,
    transaction_type: &'a StringArray,
    description: &'a StringArray,
    vendor: &'a StringArray,
    invoice: &'a StringArray,
    batch: &'a StringArray,
    accounting_date: &'a Date32Array,
    period_end_date: &'a Date32Array,
    amount: &'a Decimal128Array,
    units: &'a Decimal128Array,
    unit_cost: &'a Decimal128Array,
    run: &'a Int64Array,
    sequence: &'a Int64Array,
    dist_sequence: &'a Int64Array,
    source_line: &'a arrow::array::UInt64Array,
    enriched: Option<EnrichedView<'a>>,
}

struct EnrichedView<'a> {
    invoice_date: &'a Date32Array,
    invoice_received_date: &'a Date32Array,
    invoice_payment_date: &'a Date32Array,
    invoice_description: &'a StringArray,
    line_origin_id: &'a StringArray,
    direct_cost_origin_id: &'a StringArray,
}

fn col<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a dyn Array> {
    batch
        .column_by_name(name)
        .map(|c| c.as_ref())
        .ok_or_else(|| Error::Stage {
            stage: "plan",
            message: format!("batch lacks column {name}"),
        })
}

fn wrong(name: &str) -> Error {
    Error::Stage {
        stage: "plan",
        message: format!("column {name} has an unexpected type"),
    }
}

fn text<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    col(batch, name)?
        .as_string_opt::<i32>()
        .ok_or_else(|| wrong(name))
}

fn date<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Date32Array> {
    col(batch, name)?
        .as_primitive_opt::<Date32Type>()
        .ok_or_else(|| wrong(name))
}

fn decimal<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Decimal128Array> {
    col(batch, name)?
        .as_primitive_opt::<Decimal128Type>()
        .ok_or_else(|| wrong(name))
}

fn int<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int64Array> {
    col(batch, name)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| wrong(name))
}

fn opt_str(a: &StringArray, r: usize) -> Option<&str> {
    (!a.is_null(r)).then(|| a.value(r))
}

fn opt_i64(a: &Int64Array, r: usize) -> Option<i64> {
    (!a.is_null(r)).then(|| a.value(r))
}

fn opt_i128(a: &Decimal128Array, r: usize) -> Option<i128> {
    (!a.is_null(r)).then(|| a.value(r))
}

fn opt_date(a: &Date32Array, r: usize) -> Option<i32> {
    (!a.is_null(r)).then(|| a.value(r))
}

impl<'a> TransactionView<'a> {
    /// View a projected (or enriched) batch.
    pub fn new(batch: &'a RecordBatch) -> Result<TransactionView<'a>> {
        let enriched = if batch.column_by_name(LINE_ORIGIN_ID).is_some() {
            Some(EnrichedView {
                invoice_date: date(batch, "invoice_date")?,
                invoice_received_date: date(batch, "invoice_received_date")?,
                invoice_payment_date: date(batch, "invoice_payment_date")?,
                invoice_description: text(batch, "invoice_description")?,
                line_origin_id: text(batch, LINE_ORIGIN_ID)?,
                direct_cost_origin_id: text(batch, DIRECT_COST_ORIGIN_ID)?,
            })
        } else {
            None
        };
        Ok(TransactionView {
            job: text(batch, "job")?,
            extra: text(batch, "extra")?,
            cost_code: text(batch, "cost_code")?,
            category: text(batch, "category")?,
            transaction_type: text(batch, "transaction_type")?,
            description: text(batch, "description")?,
            vendor: text(batch, "vendor")?,
            invoice: text(batch, "invoice")?,
            batch: text(batch, "batch")?,
            accounting_date: date(batch, "accounting_date")?,
            period_end_date: date(batch, "period_end_date")?,
            amount: decimal(batch, "amount")?,
            units: decimal(batch, "units")?,
            unit_cost: decimal(batch, "unit_cost")?,
            run: int(batch, "run")?,
            sequence: int(batch, "sequence")?,
            dist_sequence: int(batch, "dist_sequence")?,
            source_line: col(batch, crate::schema::SOURCE_LINE)?
                .as_primitive_opt::<arrow::datatypes::UInt64Type>()
                .ok_or_else(|| wrong(crate::schema::SOURCE_LINE))?,
            enriched,
        })
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.job.len()
    }

    /// True when the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.job.is_empty()
    }

    /// Transaction_Type ('' when NULL, which projection never lets through).
    pub fn transaction_type(&self, r: usize) -> &str {
        opt_str(self.transaction_type, r).unwrap_or("")
    }

    /// Sage vendor.
    pub fn vendor(&self, r: usize) -> Option<&str> {
        opt_str(self.vendor, r)
    }

    /// Sage invoice number.
    pub fn invoice(&self, r: usize) -> Option<&str> {
        opt_str(self.invoice, r)
    }

    fn job(&self, r: usize) -> &str {
        opt_str(self.job, r).unwrap_or("")
    }

    /// The direct cost this row belongs to.
    pub fn direct_cost_key(&self, r: usize) -> DirectCostKey {
        let job = self.job(r).to_string();
        let ty = self.transaction_type(r);
        let batch = opt_str(self.batch, r).unwrap_or("");
        let acct = opt_date(self.accounting_date, r);
        match ty {
            "AP cost" => DirectCostKey {
                job,
                kind: DirectCostKind::Invoice,
                parts: vec![
                    self.vendor(r).unwrap_or("").to_string(),
                    self.invoice(r).unwrap_or("").to_string(),
                ],
            },
            "PR cost" => DirectCostKey {
                job,
                kind: DirectCostKind::Payroll,
                parts: vec![
                    fmt_date(opt_date(self.period_end_date, r).or(acct)),
                    batch.to_string(),
                ],
            },
            _ => DirectCostKey {
                job,
                kind: DirectCostKind::Expense,
                parts: vec![ty.to_string(), fmt_date(acct), batch.to_string()],
            },
        }
    }

    /// Hash of the line's natural key: `head` (`line` and the company, framed) then the row's
    /// fields, as `feed` frames them, in one buffer (the same bytes, so the same digest, as
    /// feeding a streaming hasher field by field).
    fn natural_key_hash(&self, head: &[u8], r: usize, buf: &mut Vec<u8>) -> u128 {
        // The decimal text of the numbers is part of the hashed bytes.
        let (mut run, mut sequence, mut dist_sequence) = (
            itoa::Buffer::new(),
            itoa::Buffer::new(),
            itoa::Buffer::new(),
        );
        hash_framed(
            buf,
            head,
            &[
                opt_str(self.job, r).map(str::as_bytes),
                opt_str(self.extra, r).map(str::as_bytes),
                opt_str(self.cost_code, r).map(str::as_bytes),
                opt_str(self.category, r).map(str::as_bytes),
                opt_str(self.transaction_type, r).map(str::as_bytes),
                opt_i64(self.run, r).map(|v| run.format(v).as_bytes()),
                opt_i64(self.sequence, r).map(|v| sequence.format(v).as_bytes()),
                opt_i64(self.dist_sequence, r).map(|v| dist_sequence.format(v).as_bytes()),
            ],
        )
    }

    /// Hash of the row's direct cost key: the digest `DirectCostKey::origin_id` takes, computed
    /// from the borrowed cells without building the key. `head` is `direct_cost` and the
    /// company, framed; `date` formats (and remembers) the last date.
    fn direct_cost_hash(
        &self,
        head: &[u8],
        r: usize,
        buf: &mut Vec<u8>,
        date: &mut DateBytes,
    ) -> u128 {
        let job = Some(self.job(r).as_bytes());
        let ty = self.transaction_type(r);
        let batch = Some(opt_str(self.batch, r).unwrap_or("").as_bytes());
        match ty {
            "AP cost" => hash_framed(
                buf,
                head,
                &[
                    job,
                    Some(DirectCostKind::Invoice.as_str().as_bytes()),
                    Some(self.vendor(r).unwrap_or("").as_bytes()),
                    Some(self.invoice(r).unwrap_or("").as_bytes()),
                ],
            ),
            "PR cost" => {
                let acct = opt_date(self.accounting_date, r);
                let d = opt_date(self.period_end_date, r).or(acct);
                hash_framed(
                    buf,
                    head,
                    &[
                        job,
                        Some(DirectCostKind::Payroll.as_str().as_bytes()),
                        Some(date.format(d)),
                        batch,
                    ],
                )
            }
            _ => {
                let acct = opt_date(self.accounting_date, r);
                hash_framed(
                    buf,
                    head,
                    &[
                        job,
                        Some(DirectCostKind::Expense.as_str().as_bytes()),
                        Some(ty.as_bytes()),
                        Some(date.format(acct)),
                        batch,
                    ],
                )
            }
        }
    }
}

fn feed(h: &mut Xxh3, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            h.update(&[1]);
            h.update(&(v.len() as u64).to_le_bytes());
            h.update(v);
        }
        None => h.update(&[0]),
    }
}

/// `feed`'s framing, appended to a buffer that is hashed in one shot.
fn feed_buf(buf: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(v) => {
            // The tag and the length in one append.
            let mut tag_len = [1u8; 9];
            tag_len[1..].copy_from_slice(&(v.len() as u64).to_le_bytes());
            buf.extend_from_slice(&tag_len);
            buf.extend_from_slice(v);
        }
        None => buf.push(0),
    }
}

/// xxh3_128 of `head` (fields framed already) followed by `feed`'s framing of `fields`: the
/// digest of a streaming hasher fed the same fields. `buf` is scratch, grown once per call.
fn hash_framed(buf: &mut Vec<u8>, head: &[u8], fields: &[Option<&[u8]>]) -> u128 {
    let framed: usize = fields.iter().map(|f| f.map_or(1, |v| 9 + v.len())).sum();
    buf.clear();
    buf.reserve(head.len() + framed);
    buf.extend_from_slice(head);
    for &f in fields {
        feed_buf(buf, f);
    }
    xxh3_128(buf)
}

/// `feed`'s framing of `fields`, for the constant start of a hash.
fn framed(fields: &[&[u8]]) -> Vec<u8> {
    let mut buf = Vec::new();
    for &f in fields {
        feed_buf(&mut buf, Some(f));
    }
    buf
}

/// `fmt_date`'s text on the stack: `YYYY-MM-DD`, or empty for no date. Remembers the last date
/// it formatted (rows of a batch often share one).
#[derive(Default)]
struct DateBytes {
    bytes: [u8; 10],
    /// Bytes of `bytes` in use; `None` when the text is `fallback`.
    len: Option<usize>,
    fallback: String,
    /// The date the text is for (`None` before the first).
    day: Option<Option<i32>>,
}

impl DateBytes {
    fn format(&mut self, days: Option<i32>) -> &[u8] {
        if self.day != Some(days) {
            self.len = self.write(days);
            self.day = Some(days);
        }
        match self.len {
            Some(n) => self.bytes.get(..n).unwrap_or_default(),
            None => self.fallback.as_bytes(),
        }
    }

    /// Writes the text of `days`: its length in `bytes`, or `None` when it is in `fallback`.
    fn write(&mut self, days: Option<i32>) -> Option<usize> {
        use chrono::Datelike;
        let Some(d) = days.and_then(days_to_date) else {
            return Some(0);
        };
        let (y, m, day) = (d.year(), d.month(), d.day());
        if !(0..=9999).contains(&y) {
            // chrono's %Y signs and widens such years; keep its exact text.
            self.fallback = fmt_date(days);
            return None;
        }
        let digits = |v: u32, out: &mut [u8]| {
            let mut v = v;
            for slot in out.iter_mut().rev() {
                *slot = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        digits(y as u32, &mut self.bytes[0..4]);
        self.bytes[4] = b'-';
        digits(m, &mut self.bytes[5..7]);
        self.bytes[7] = b'-';
        digits(day, &mut self.bytes[8..10]);
        Some(self.bytes.len())
    }
}

/// Two lowercase hex digits of every byte value.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    table
};

/// The 32 lowercase hex digits of `hash` (what `{:032x}` prints).
fn hex32(hash: u128) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (pair, byte) in out.chunks_exact_mut(2).zip(hash.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    out
}

/// A column of ids: `prefix` then the 32 hex digits of a hash, written straight into the Arrow
/// array's values (every id the same length).
struct IdColumn {
    prefix: Box<[u8]>,
    values: Vec<u8>,
}

impl IdColumn {
    fn new(prefix: &str, rows: usize) -> IdColumn {
        IdColumn {
            prefix: prefix.as_bytes().into(),
            values: Vec::with_capacity(rows * (prefix.len() + 32)),
        }
    }

    fn push(&mut self, hash: u128) {
        self.values.extend_from_slice(&self.prefix);
        self.values.extend_from_slice(&hex32(hash));
    }

    /// The ids as an Arrow array (checked: offsets in range, UTF-8).
    fn finish(self) -> Result<StringArray> {
        let failed = |message: String| Error::Stage {
            stage: "plan",
            message,
        };
        let width = self.prefix.len() + 32;
        let rows = self.values.len() / width;
        let offsets = OffsetBuffer::try_from_lengths(std::iter::repeat_n(width, rows))
            .map_err(|e| failed(format!("{rows} origin_ids: {e}")))?;
        StringArray::try_new(offsets, Buffer::from_vec(self.values), None)
            .map_err(|e| failed(format!("origin_ids: {e}")))
    }
}

fn fmt_date(days: Option<i32>) -> String {
    days.map(|d| DateText(d).to_string()).unwrap_or_default()
}

/// Procore's `direct_cost_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DirectCostKind {
    Invoice,
    Payroll,
    Expense,
}

impl DirectCostKind {
    /// The Procore enum value.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectCostKind::Invoice => "invoice",
            DirectCostKind::Payroll => "payroll",
            DirectCostKind::Expense => "expense",
        }
    }
}

/// The grouping key of a direct cost.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DirectCostKey {
    pub job: String,
    pub kind: DirectCostKind,
    /// Invoice: [vendor, invoice]; payroll: [date, batch]; expense: [type, date, batch].
    pub parts: Vec<String>,
}

impl DirectCostKey {
    /// `VENDOR|INVOICE`, `DATE|BATCH` or `TYPE|DATE|BATCH`, for people.
    pub fn group_key(&self) -> String {
        self.parts.join("|")
    }

    /// The deterministic origin_id of the direct cost.
    pub fn origin_id(&self, company: &str) -> String {
        let mut h = Xxh3::new();
        feed(&mut h, Some(b"direct_cost"));
        feed(&mut h, Some(company.as_bytes()));
        feed(&mut h, Some(self.job.as_bytes()));
        feed(&mut h, Some(self.kind.as_str().as_bytes()));
        for p in &self.parts {
            feed(&mut h, Some(p.as_bytes()));
        }
        format!("jcsync:{company}:dc:{:032x}", h.digest128())
    }
}

/// Origin ids of every row: (line item ids, direct cost ids).
pub fn origin_ids(company: &str, view: &TransactionView) -> Result<(StringArray, StringArray)> {
    let n = view.len();
    let line_head = framed(&[b"line", company.as_bytes()]);
    let dc_head = framed(&[b"direct_cost", company.as_bytes()]);
    let mut lines = IdColumn::new(&format!("jcsync:{company}:line:"), n);
    let mut dcs = IdColumn::new(&format!("jcsync:{company}:dc:"), n);
    let mut buf = Vec::with_capacity(256);
    let mut date = DateBytes::default();
    for r in 0..n {
        lines.push(view.natural_key_hash(&line_head, r, &mut buf));
        dcs.push(view.direct_cost_hash(&dc_head, r, &mut buf, &mut date));
    }
    Ok((lines.finish()?, dcs.finish()?))
}

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
    parts: Parts<'a>,
    pub invoice_number: Option<&'a str>,
    pub vendor: Option<&'a str>,
    pub direct_cost_date: Option<i32>,
    pub received_date: Option<i32>,
    pub payment_date: Option<i32>,
    pub description: &'a str,
}

/// The group parts of a [`HeaderRef`]: planned (at most three) or an owned key's.
#[derive(Debug, Clone, Copy)]
enum Parts<'a> {
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
    headers: &'a [QueuedHeader],
    text: &'a str,
    job: &'a str,
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
}

/// The lines of one line request, borrowed from the planner.
#[derive(Clone, Copy)]
pub struct Lines<'a> {
    lines: &'a [Queued],
    text: &'a str,
    budgets: &'a [Budget],
    types: &'a [Arc<str>],
    no_type: &'a Arc<str>,
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

/// Budget code key: (job, extra, cost_code, category).
pub type BudgetKey = (String, Option<String>, Option<String>, Option<String>);

/// Counts of a plan.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct PlanStats {
    pub lines: u64,
    /// Header records planned: one per direct cost, plus one for each direct cost planned again
    /// because the bounded cache of recent direct costs had forgotten it (a harmless upsert).
    pub direct_costs: u64,
    pub header_requests: u64,
    pub line_requests: u64,
    /// Sum of all line amounts, cents.
    #[serde(skip)]
    pub amount_cents: i128,
}

/// How the planner batches requests and bounds its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Records per request (1 to [`MAX_SYNC_RECORDS`]).
    pub max_records: usize,
    /// Full line requests a project holds before its pending headers are sent (in as few
    /// requests as they fit) followed by those lines: one header request serves several line
    /// requests.
    pub chunks_per_project: usize,
    /// Lines queued over all projects before the biggest queues are sent early. Each queued
    /// line costs ~200 bytes (128 inline, its origin_id and description in its chunk's text;
    /// plus ~30 for its share of pending headers), so the default 65,536 bounds the queue near
    /// 15 MB; sent chunks are kept for reuse, so that peak stays allocated. Twice that saves header requests (2M generated rows:
    /// 399 instead of 1,053; 790 transactions a request instead of 597) but planned slower
    /// (0.92M rows/s instead of ~1.2M in `cargo bench --bench stages -- plan`) and held 23 MB more.
    pub max_queued_lines: usize,
    /// Direct costs remembered as already planned (rounded up to a power of two). One that has
    /// been forgotten is planned again when another of its lines comes: an upsert, never a loss.
    pub header_cache: usize,
}

impl Default for PlanLimits {
    fn default() -> PlanLimits {
        PlanLimits {
            max_records: MAX_SYNC_RECORDS,
            chunks_per_project: 8,
            max_queued_lines: 64 * 1024,
            header_cache: 64 * 1024,
        }
    }
}

/// Hasher for keys that already are xxh3 hashes.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type PreHashedMap<V> = HashMap<u64, V, BuildHasherDefault<PreHashed>>;

/// An origin_id in a set, hashed in one shot by xxh3 (compared exactly).
#[derive(PartialEq, Eq)]
struct IdKey<'a>(&'a str);

impl std::hash::Hash for IdKey<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(xxh3_64(self.0.as_bytes()));
    }
}

const WAYS: usize = 4;

#[derive(Clone)]
struct Recent {
    fingerprint: u64,
    project: u32,
    /// The project's flush count when this entry was planned.
    epoch: u32,
    origin_id: Arc<str>,
}

/// The direct costs planned most recently: a fixed-size 4-way set-associative cache (LRU within
/// a set) of origin_ids. Memory is fixed at creation (32 bytes a slot plus the shared ids);
/// what it forgets is planned again, never lost.
struct RecentHeaders {
    slots: Vec<Option<Recent>>,
    mask: usize,
    /// Entries dropped to make room, ever.
    evictions: u64,
}

/// What [`RecentHeaders::get_or_insert`] dropped to make room: (project, epoch).
type Evicted = Option<(u32, u32)>;

impl RecentHeaders {
    fn new(capacity: usize) -> RecentHeaders {
        let sets = (capacity / WAYS).max(1).next_power_of_two();
        RecentHeaders {
            slots: vec![None; sets * WAYS],
            mask: sets - 1,
            evictions: 0,
        }
    }

    /// The shared origin_id of direct cost `origin_id` of `project`, and true when it is not
    /// among the recently planned (its header must be planned), with the entry dropped for it.
    fn get_or_insert(
        &mut self,
        origin_id: &str,
        project: u32,
        epoch: u32,
    ) -> (Arc<str>, bool, Evicted) {
        let fingerprint = xxh3_64(origin_id.as_bytes());
        let set = (fingerprint as usize) & self.mask;
        let ways = &mut self.slots[set * WAYS..(set + 1) * WAYS];
        for i in 0..WAYS {
            match &ways[i] {
                Some(e)
                    if e.fingerprint == fingerprint
                        && e.project == project
                        && *e.origin_id == *origin_id =>
                {
                    let found = e.origin_id.clone();
                    ways[..=i].rotate_right(1);
                    return (found, false, None);
                }
                Some(_) => {}
                // Sets fill from the front: the first empty way ends it.
                None => break,
            }
        }
        let id: Arc<str> = Arc::from(origin_id);
        let evicted = ways[WAYS - 1].as_ref().map(|e| (e.project, e.epoch));
        if evicted.is_some() {
            self.evictions += 1;
        }
        ways.rotate_right(1);
        ways[0] = Some(Recent {
            fingerprint,
            project,
            epoch,
            origin_id: id.clone(),
        });
        (id, true, evicted)
    }
}

const NO_BUDGET: u32 = u32::MAX;

/// Running total of one budget code, with the shared text its lines point to.
struct Budget {
    job: Arc<str>,
    extra: Option<Arc<str>>,
    cost_code: Option<Arc<str>>,
    category: Option<Arc<str>>,
    cents: i128,
    project: u32,
    /// Next budget code with the same hash.
    next: u32,
    /// The four parts as `feed` frames them: a hit is one comparison, not four.
    framed: Box<[u8]>,
}

/// A range of a chunk's text.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn get<'a>(&self, text: &'a str) -> &'a str {
        text.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }
}

/// Appends `s` to `text`; the span it took.
fn push_text(text: &mut String, s: &str) -> Result<Span> {
    let start = text.len();
    text.push_str(s);
    span(start, text.len())
}

/// The span from `start` to `end` of a chunk's text (a request's text stays far below 4 GiB:
/// 1000 records).
fn span(start: usize, end: usize) -> Result<Span> {
    match (u32::try_from(start), u32::try_from(end)) {
        (Ok(start), Ok(end)) => Ok(Span { start, end }),
        _ => Err(Error::Stage {
            stage: "plan",
            message: "the text of one request exceeds 4 GiB".into(),
        }),
    }
}

/// Appends a date as `fmt_date` writes it (nothing for no date); the span it took.
fn push_date(text: &mut String, days: Option<i32>) -> Result<Span> {
    let start = text.len();
    let mut date = DateBytes::default();
    // `DateBytes` writes ASCII digits and dashes (or chrono's text): always UTF-8.
    text.push_str(std::str::from_utf8(date.format(days)).unwrap_or_default());
    span(start, text.len())
}

/// A queued line: numbers inline, its own text (origin_id, description) in its chunk's text
/// buffer, the shared text (budget code, transaction type) by index. Requests borrow it as a
/// [`LineRef`]: no per-line allocation between the batch and the sink.
struct Queued {
    direct_cost: Arc<str>,
    amount: i128,
    quantity: i128,
    unit_cost: i128,
    run: i64,
    sequence: i64,
    dist_sequence: i64,
    source_line: u64,
    origin_id: Span,
    description: Span,
    budget: u32,
    transaction_type: u16,
    /// Bits 0-5: quantity, unit_cost, run, sequence, dist_sequence, description are present.
    present: u8,
}

/// The lines of one line request, with their text in one buffer. Reused once sent.
#[derive(Default)]
struct LineChunk {
    lines: Vec<Queued>,
    text: String,
}

impl LineChunk {
    fn with_capacity(records: usize) -> LineChunk {
        LineChunk {
            lines: Vec::with_capacity(records),
            // An origin_id is 48 bytes and more; descriptions are short.
            text: String::with_capacity(records * 64),
        }
    }

    fn clear(&mut self) {
        self.lines.clear();
        self.text.clear();
    }
}

/// A queued header: dates inline, its text in its project's header text buffer.
struct QueuedHeader {
    origin_id: Arc<str>,
    kind: DirectCostKind,
    parts: [Span; 3],
    invoice_number: Span,
    vendor: Span,
    description: Span,
    direct_cost_date: Option<i32>,
    received_date: Option<i32>,
    payment_date: Option<i32>,
    /// Bit 0: invoice_number is present; bit 1: vendor is.
    present: u8,
}

impl QueuedHeader {
    fn view<'a>(&'a self, text: &'a str, job: &'a str) -> HeaderRef<'a> {
        let n = match self.kind {
            DirectCostKind::Invoice | DirectCostKind::Payroll => 2,
            DirectCostKind::Expense => 3,
        };
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
struct HeaderChunk {
    headers: Vec<QueuedHeader>,
    text: String,
}

impl HeaderChunk {
    /// Queue the header of row `r`'s direct cost: the record `DirectCostKey` and the planned
    /// header text describe (same parts, same descriptions).
    fn push(
        &mut self,
        view: &TransactionView,
        e: &EnrichedView,
        r: usize,
        origin_id: Arc<str>,
    ) -> Result<()> {
        let text = &mut self.text;
        let acct = opt_date(view.accounting_date, r);
        let batch = opt_str(view.batch, r).unwrap_or("");
        let ty = view.transaction_type(r);
        let header = match ty {
            "AP cost" => {
                let vendor = view.vendor(r);
                let invoice = view.invoice(r);
                let vendor_span = push_text(text, vendor.unwrap_or(""))?;
                let invoice_span = push_text(text, invoice.unwrap_or(""))?;
                let description = match opt_str(e.invoice_description, r) {
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
                    direct_cost_date: opt_date(e.invoice_date, r).or(acct),
                    received_date: opt_date(e.invoice_received_date, r),
                    payment_date: opt_date(e.invoice_payment_date, r),
                    present: u8::from(invoice.is_some()) | u8::from(vendor.is_some()) << 1,
                }
            }
            "PR cost" => {
                let day = opt_date(view.period_end_date, r).or(acct);
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
            _ => {
                let ty_span = push_text(text, ty)?;
                let date = push_date(text, acct)?;
                let batch_span = push_text(text, batch)?;
                let start = text.len();
                text.push_str(ty);
                text.push(' ');
                push_date(text, acct)?;
                text.push_str(" batch ");
                text.push_str(batch);
                QueuedHeader {
                    origin_id,
                    kind: DirectCostKind::Expense,
                    parts: [ty_span, date, batch_span],
                    invoice_number: Span::default(),
                    vendor: Span::default(),
                    description: span(start, text.len())?,
                    direct_cost_date: acct,
                    received_date: None,
                    payment_date: None,
                    present: 0,
                }
            }
        };
        self.headers.push(header);
        Ok(())
    }

    fn clear(&mut self) {
        self.headers.clear();
        self.text.clear();
    }
}

fn bit<T: Default>(v: Option<T>, b: u8, present: &mut u8) -> T {
    match v {
        Some(v) => {
            *present |= 1 << b;
            v
        }
        None => T::default(),
    }
}

fn has<T>(present: u8, b: u8, v: T) -> Option<T> {
    (present & (1 << b) != 0).then_some(v)
}

/// What one project (Sage job) has planned but not sent.
struct Project {
    job: Arc<str>,
    /// Headers not sent yet: every one has at least one queued line.
    headers: HeaderChunk,
    /// Full line requests, in order.
    sealed: Vec<LineChunk>,
    /// The line request being filled.
    open: LineChunk,
    /// Flushes so far (wrapping).
    epoch: u32,
    /// The cache forgot one of the pending headers: one may be pending twice.
    maybe_twice: bool,
}

impl Project {
    fn queued(&self) -> usize {
        self.sealed.iter().map(|c| c.lines.len()).sum::<usize>() + self.open.lines.len()
    }
}

/// Groups lines into direct costs and emits sync requests per project. Invariant: a line is sent
/// only after the header of its direct cost (in an earlier request of the same project), since
/// every flush of a project sends all its pending headers before any of its lines.
///
/// Memory is bounded by [`PlanLimits`] and the chart of accounts (budget codes, projects), not by
/// the number of rows.
pub struct Planner {
    limits: PlanLimits,
    recent: RecentHeaders,
    projects: Vec<Project>,
    project_index: HashMap<Arc<str>, u32>,
    budgets: Vec<Budget>,
    budget_heads: PreHashedMap<u32>,
    transaction_types: Vec<Arc<str>>,
    /// Shown for a transaction type or job a line cannot have (its index is always valid).
    no_text: Arc<str>,
    /// Sent line chunks, emptied for reuse (their buffers keep their capacity).
    spare: Vec<LineChunk>,
    /// Lines queued over all projects.
    queued: usize,
    scratch: Vec<u8>,
    /// Running counts.
    pub stats: PlanStats,
}

impl Planner {
    /// A planner with `max_records` per request (at most [`MAX_SYNC_RECORDS`]) and the default
    /// batching and memory limits.
    pub fn new(max_records: usize) -> Planner {
        Planner::with_limits(PlanLimits {
            max_records,
            ..PlanLimits::default()
        })
    }

    /// A planner with explicit limits (each clamped to a workable value).
    pub fn with_limits(limits: PlanLimits) -> Planner {
        let max_records = limits.max_records.clamp(1, MAX_SYNC_RECORDS);
        let limits = PlanLimits {
            max_records,
            chunks_per_project: limits.chunks_per_project.max(1),
            max_queued_lines: limits.max_queued_lines.max(max_records),
            header_cache: limits.header_cache.max(WAYS),
        };
        Planner {
            limits,
            recent: RecentHeaders::new(limits.header_cache),
            projects: Vec::new(),
            project_index: HashMap::new(),
            budgets: Vec::new(),
            budget_heads: PreHashedMap::default(),
            transaction_types: Vec::new(),
            no_text: Arc::from(""),
            spare: Vec::new(),
            queued: 0,
            scratch: Vec::new(),
            stats: PlanStats::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> PlanLimits {
        self.limits
    }

    /// Direct costs the bounded cache has forgotten so far (each is planned again if another of
    /// its lines comes).
    pub fn headers_forgotten(&self) -> u64 {
        self.recent.evictions
    }

    /// Cents per budget code, in key order.
    pub fn totals(&self) -> BTreeMap<BudgetKey, i128> {
        let own = |v: &Option<Arc<str>>| v.as_deref().map(str::to_string);
        let mut totals = BTreeMap::new();
        for b in &self.budgets {
            *totals
                .entry((
                    b.job.to_string(),
                    own(&b.extra),
                    own(&b.cost_code),
                    own(&b.category),
                ))
                .or_insert(0) += b.cents;
        }
        totals
    }

    fn project_of(&mut self, job: &str) -> Result<u32> {
        if let Some(&p) = self.project_index.get(job) {
            return Ok(p);
        }
        let p = u32::try_from(self.projects.len()).map_err(|_| Error::Stage {
            stage: "plan",
            message: "more than 4 billion projects".into(),
        })?;
        let job: Arc<str> = Arc::from(job);
        self.projects.push(Project {
            job: job.clone(),
            headers: HeaderChunk::default(),
            sealed: Vec::new(),
            open: LineChunk::default(),
            epoch: 0,
            maybe_twice: false,
        });
        self.project_index.insert(job, p);
        Ok(p)
    }

    /// The budget code of row `r`, found by hash (exact comparison on a hit).
    fn budget_of(&mut self, view: &TransactionView, r: usize) -> Result<usize> {
        let job = view.job(r);
        let extra = opt_str(view.extra, r);
        let cost_code = opt_str(view.cost_code, r);
        let category = opt_str(view.category, r);
        self.scratch.clear();
        for part in [Some(job), extra, cost_code, category] {
            match part {
                Some(s) => {
                    self.scratch.push(1);
                    self.scratch
                        .extend_from_slice(&(s.len() as u64).to_le_bytes());
                    self.scratch.extend_from_slice(s.as_bytes());
                }
                None => self.scratch.push(0),
            }
        }
        let hash = xxh3_64(&self.scratch);
        let head = self.budget_heads.get(&hash).copied().unwrap_or(NO_BUDGET);
        let mut i = head;
        while let Some(b) = self.budgets.get(i as usize) {
            // The framing is unambiguous: equal bytes are equal parts.
            if *b.framed == *self.scratch {
                return Ok(i as usize);
            }
            i = b.next;
        }
        let project = self.project_of(job)?;
        let index = u32::try_from(self.budgets.len())
            .ok()
            .filter(|&i| i != NO_BUDGET)
            .ok_or_else(|| Error::Stage {
                stage: "plan",
                message: "more than 4 billion budget codes".into(),
            })?;
        let shared = |s: Option<&str>| s.map(Arc::<str>::from);
        self.budgets.push(Budget {
            job: self.projects[project as usize].job.clone(),
            extra: shared(extra),
            cost_code: shared(cost_code),
            category: shared(category),
            cents: 0,
            project,
            next: head,
            framed: self.scratch.as_slice().into(),
        });
        self.budget_heads.insert(hash, index);
        Ok(index as usize)
    }

    fn transaction_type(&mut self, ty: &str) -> Result<u16> {
        if let Some(i) = self
            .transaction_types
            .iter()
            .position(|t| t.len() == ty.len() && **t == *ty)
        {
            return Ok(i as u16);
        }
        // Projection lets the six cost types through: this bound is never near.
        let i = u16::try_from(self.transaction_types.len()).map_err(|_| Error::Stage {
            stage: "plan",
            message: "more than 65,536 transaction types".into(),
        })?;
        self.transaction_types.push(Arc::from(ty));
        Ok(i)
    }

    /// Plan one enriched batch.
    pub fn process(&mut self, batch: &RecordBatch, sink: &mut dyn RequestSink) -> Result<()> {
        let view = TransactionView::new(batch)?;
        let enriched = view.enriched.as_ref().ok_or_else(|| Error::Stage {
            stage: "plan",
            message: "planning needs enriched batches (with origin ids)".into(),
        })?;
        let max_records = self.limits.max_records;
        for r in 0..view.len() {
            let b = self.budget_of(&view, r)?;
            let p = self.budgets[b].project;
            let epoch = self.projects[p as usize].epoch;
            let (dc_id, new, evicted) =
                self.recent
                    .get_or_insert(enriched.direct_cost_origin_id.value(r), p, epoch);
            if let Some((q, e)) = evicted {
                // Forgotten while still pending (planned since its project's last flush)?
                if let Some(q) = self.projects.get_mut(q as usize) {
                    q.maybe_twice |= q.epoch == e;
                }
            }
            if new {
                self.stats.direct_costs += 1;
                self.projects[p as usize]
                    .headers
                    .push(&view, enriched, r, dc_id.clone())?;
            }
            let transaction_type = self.transaction_type(view.transaction_type(r))?;
            let amount = opt_i128(view.amount, r).unwrap_or(0);
            self.budgets[b].cents += amount;
            self.stats.lines += 1;
            self.stats.amount_cents += amount;
            let project = &mut self.projects[p as usize];
            let text = &mut project.open.text;
            let origin_id = push_text(text, enriched.line_origin_id.value(r))?;
            let description = opt_str(view.description, r);
            let mut present = u8::from(description.is_some()) << 5;
            let description = push_text(text, description.unwrap_or(""))?;
            project.open.lines.push(Queued {
                direct_cost: dc_id,
                amount,
                quantity: bit(opt_i128(view.units, r), 0, &mut present),
                unit_cost: bit(opt_i128(view.unit_cost, r), 1, &mut present),
                run: bit(opt_i64(view.run, r), 2, &mut present),
                sequence: bit(opt_i64(view.sequence, r), 3, &mut present),
                dist_sequence: bit(opt_i64(view.dist_sequence, r), 4, &mut present),
                source_line: view.source_line.value(r),
                origin_id,
                description,
                budget: b as u32,
                transaction_type,
                present,
            });
            self.queued += 1;
            if project.open.lines.len() >= max_records {
                // A project that filled one request is likely to fill the next.
                let next = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| LineChunk::with_capacity(max_records));
                let full = std::mem::replace(&mut project.open, next);
                project.sealed.push(full);
            }
            if project.headers.headers.len() >= max_records
                || project.sealed.len() >= self.limits.chunks_per_project
            {
                self.flush(p as usize, false, sink)?;
            }
            if self.queued > self.limits.max_queued_lines {
                self.shed(sink)?;
            }
        }
        Ok(())
    }

    /// Send project `p`'s pending headers, then its full line requests (and the one being filled
    /// when `include_open`).
    fn flush(&mut self, p: usize, include_open: bool, sink: &mut dyn RequestSink) -> Result<()> {
        let max = self.limits.max_records;
        let Some(project) = self.projects.get_mut(p) else {
            return Ok(());
        };
        if project.maybe_twice {
            let headers = &mut project.headers.headers;
            let first: Vec<bool> = {
                let mut seen: HashSet<IdKey, BuildHasherDefault<PreHashed>> =
                    HashSet::with_capacity_and_hasher(headers.len(), Default::default());
                headers
                    .iter()
                    .map(|h| seen.insert(IdKey(&h.origin_id)))
                    .collect()
            };
            let mut first = first.into_iter();
            headers.retain(|_| first.next().unwrap_or(true));
            project.maybe_twice = false;
        }
        project.epoch = project.epoch.wrapping_add(1);
        let mut chunks = std::mem::take(&mut project.sealed);
        if include_open && !project.open.lines.is_empty() {
            // A spare if there is one; a project flushed at the end gets no new buffer.
            let next = self.spare.pop().unwrap_or_default();
            chunks.push(std::mem::replace(&mut project.open, next));
        }
        let project = &self.projects[p];
        let job: &str = &project.job;
        // Records are lent to the sink, not moved: a sink that keeps them copies them.
        for headers in project.headers.headers.chunks(max) {
            self.stats.header_requests += 1;
            sink.send(PlannedRequest::HeaderSync {
                job,
                headers: Headers {
                    headers,
                    text: &project.headers.text,
                    job,
                },
            })?;
        }
        for chunk in &chunks {
            self.queued -= chunk.lines.len();
            self.stats.line_requests += 1;
            sink.send(PlannedRequest::LineSync {
                job,
                lines: Lines {
                    lines: &chunk.lines,
                    text: &chunk.text,
                    budgets: &self.budgets,
                    types: &self.transaction_types,
                    no_type: &self.no_text,
                },
            })?;
        }
        self.projects[p].headers.clear();
        // Keep as many emptied chunks as the queue can fill.
        let keep = self.limits.max_queued_lines / max + 1;
        for mut chunk in chunks.drain(..) {
            if self.spare.len() < keep {
                chunk.clear();
                self.spare.push(chunk);
            }
        }
        self.projects[p].sealed = chunks;
        Ok(())
    }

    /// Too many lines queued: send the biggest projects' full requests (then, if that is not
    /// enough, the partly filled ones) until the queue is down to 7/8 of the limit. Sending
    /// the biggest first keeps the requests of the others filling.
    fn shed(&mut self, sink: &mut dyn RequestSink) -> Result<()> {
        let target = self.limits.max_queued_lines / 8 * 7;
        let mut order: Vec<(usize, usize)> = self
            .projects
            .iter()
            .enumerate()
            .map(|(p, pr)| (pr.queued(), p))
            .collect();
        order.sort_unstable_by(|a, b| b.cmp(a));
        for include_open in [false, true] {
            for &(_, p) in &order {
                if self.queued <= target {
                    return Ok(());
                }
                let pr = &self.projects[p];
                let has_lines =
                    !pr.sealed.is_empty() || (include_open && !pr.open.lines.is_empty());
                if has_lines {
                    self.flush(p, include_open, sink)?;
                }
            }
        }
        Ok(())
    }

    /// Send everything still queued, project by project in job order.
    pub fn finish(&mut self, sink: &mut dyn RequestSink) -> Result<()> {
        let mut order: Vec<usize> = (0..self.projects.len()).collect();
        order.sort_by(|&a, &b| self.projects[a].job.cmp(&self.projects[b].job));
        for p in order {
            self.flush(p, true, sink)?;
        }
        Ok(())
    }
}

/// Text of a Decimal128 value with `scale` places (`-2.68`).
pub fn format_decimal(value: i128, scale: u32) -> String {
    DecimalText(value, scale).to_string()
}

/// [`format_decimal`] as a `Display`, to write without an intermediate String.
#[derive(Debug, Clone, Copy)]
pub struct DecimalText(pub i128, pub u32);

impl fmt::Display for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let DecimalText(value, scale) = *self;
        let sign = if value < 0 { "-" } else { "" };
        let abs = value.unsigned_abs();
        if scale == 0 {
            return write!(f, "{sign}{abs}");
        }
        let p = 10u128.pow(scale);
        write!(
            f,
            "{sign}{}.{:0width$}",
            abs / p,
            abs % p,
            width = scale as usize
        )
    }
}

/// `YYYY-MM-DD` of a Date32 value.
pub fn format_date(days: i32) -> String {
    fmt_date(Some(days))
}

/// [`format_date`] as a `Display` (empty for a day chrono cannot represent).
#[derive(Debug, Clone, Copy)]
pub struct DateText(pub i32);

impl fmt::Display for DateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(d) = days_to_date(self.0) else {
            return Ok(());
        };
        if (0..=9999).contains(&d.year()) {
            write!(f, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
        } else {
            write!(f, "{}", d.format("%Y-%m-%d"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_format_exactly() {
        assert_eq!(format_decimal(268, 2), "2.68");
        assert_eq!(format_decimal(-268, 2), "-2.68");
        assert_eq!(format_decimal(5, 2), "0.05");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(12_500, 4), "1.2500");
    }

    #[test]
    fn direct_cost_origin_id_is_stable_and_company_scoped() {
        let key = DirectCostKey {
            job: "1001".into(),
            kind: DirectCostKind::Invoice,
            parts: vec!["V100".into(), "7731".into()],
        };
        let a = key.origin_id("DEMO");
        assert_eq!(a, key.origin_id("DEMO"));
        assert_ne!(a, key.origin_id("OTHER"));
        // Pinned: a change here would turn every re-sync into duplicates in Procore.
        assert_eq!(a.len(), "jcsync:DEMO:dc:".len() + 32);
        assert!(a.starts_with("jcsync:DEMO:dc:"));
    }

    #[test]
    fn group_parts_cannot_collide_through_separators() {
        let a = DirectCostKey {
            job: "1".into(),
            kind: DirectCostKind::Invoice,
            parts: vec!["A|B".into(), "C".into()],
        };
        let b = DirectCostKey {
            job: "1".into(),
            kind: DirectCostKind::Invoice,
            parts: vec!["A".into(), "B|C".into()],
        };
        assert_eq!(a.group_key(), b.group_key());
        assert_ne!(a.origin_id("X"), b.origin_id("X"));
    }

    use arrow::array::{ArrayRef, UInt64Array};

    /// One row of `origin_rows`: job, extra, cost code, category, type, vendor, invoice, batch,
    /// accounting date, period end date, run, sequence, dist sequence.
    type IdRow<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Option<i32>,
        Option<i32>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );

    /// Rows that exercise every branch of the origin_id framing: NULLs, padded and empty text,
    /// non-ASCII, negative and extreme numbers, dates outside chrono's 4-digit years, AP/PR/other.
    fn origin_rows() -> Vec<IdRow<'static>> {
        vec![
            (
                Some("1001"),
                None,
                Some("01-100"),
                Some("M"),
                Some("AP cost"),
                Some("V100"),
                Some("7731"),
                Some("B1"),
                Some(19_727),
                None,
                Some(1),
                Some(2),
                Some(3),
            ),
            (
                Some(" 1001 "),
                Some(""),
                Some(""),
                None,
                Some("AP cost"),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
            ),
            (
                Some("1001"),
                Some("X"),
                Some("01-100"),
                Some("L"),
                Some("PR cost"),
                None,
                None,
                Some("PR7"),
                Some(19_727),
                Some(19_730),
                Some(0),
                Some(-1),
                Some(i64::MIN),
            ),
            (
                Some("1001"),
                None,
                None,
                None,
                Some("PR cost"),
                None,
                None,
                Some("PR7"),
                Some(-719_162),
                None,
                Some(i64::MAX),
                Some(10),
                Some(100),
            ),
            (
                Some("1002"),
                None,
                None,
                None,
                Some("PR cost"),
                Some("V9"),
                Some("9"),
                None,
                None,
                None,
                Some(-42),
                None,
                Some(7),
            ),
            (
                Some("1002"),
                None,
                Some("02-200"),
                Some("E"),
                Some("EQ cost"),
                None,
                None,
                Some("EQ1"),
                Some(-800_000),
                None,
                Some(5),
                Some(6),
                Some(7),
            ),
            (
                Some("1002"),
                None,
                Some("02-200"),
                Some("E"),
                Some("EQ cost"),
                None,
                None,
                Some("EQ1"),
                Some(3_000_000),
                None,
                Some(5),
                Some(6),
                Some(8),
            ),
            (
                None, None, None, None, None, None, None, None, None, None, None, None, None,
            ),
            (
                Some(""),
                Some(""),
                Some(""),
                Some(""),
                Some(""),
                Some(""),
                Some(""),
                Some(""),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
                Some(0),
            ),
            (
                Some("Jöb ✓"),
                Some("é"),
                Some("03 "),
                Some(" O"),
                Some("AP cost "),
                Some("Vé"),
                Some(" 1 "),
                Some("b"),
                Some(1),
                Some(2),
                Some(-9_223_372_036),
                Some(123_456_789),
                Some(1),
            ),
            (
                Some("1003"),
                None,
                Some("01-100"),
                Some("O"),
                Some("ap cost"),
                Some("V1"),
                Some("I1"),
                Some("B2"),
                Some(20_000),
                Some(20_001),
                Some(1),
                Some(1),
                Some(1),
            ),
        ]
    }

    /// A projected batch (no enriched columns) of `origin_rows`.
    fn origin_batch(rows: &[IdRow<'static>]) -> RecordBatch {
        let text = |f: &dyn Fn(&IdRow<'static>) -> Option<&'static str>| -> ArrayRef {
            Arc::new(StringArray::from_iter(rows.iter().map(f)))
        };
        let date = |f: &dyn Fn(&IdRow) -> Option<i32>| -> ArrayRef {
            Arc::new(Date32Array::from_iter(rows.iter().map(f)))
        };
        let int = |f: &dyn Fn(&IdRow) -> Option<i64>| -> ArrayRef {
            Arc::new(Int64Array::from_iter(rows.iter().map(f)))
        };
        let dec: ArrayRef = Arc::new(Decimal128Array::from_iter(rows.iter().map(|_| Some(1))));
        RecordBatch::try_from_iter([
            ("job", text(&|r| r.0)),
            ("extra", text(&|r| r.1)),
            ("cost_code", text(&|r| r.2)),
            ("category", text(&|r| r.3)),
            ("transaction_type", text(&|r| r.4)),
            ("description", text(&|_| Some("d"))),
            ("vendor", text(&|r| r.5)),
            ("invoice", text(&|r| r.6)),
            ("batch", text(&|r| r.7)),
            ("accounting_date", date(&|r| r.8)),
            ("period_end_date", date(&|r| r.9)),
            ("amount", dec.clone()),
            ("units", dec.clone()),
            ("unit_cost", dec),
            ("run", int(&|r| r.10)),
            ("sequence", int(&|r| r.11)),
            ("dist_sequence", int(&|r| r.12)),
            (
                crate::schema::SOURCE_LINE,
                Arc::new(UInt64Array::from_iter_values(0..rows.len() as u64)),
            ),
        ])
        .expect("batch")
    }

    /// The line id built field by field with the streaming hasher, as the first release did.
    fn streamed_line_id(company: &str, row: &IdRow) -> String {
        let mut h = Xxh3::new();
        feed(&mut h, Some(b"line"));
        feed(&mut h, Some(company.as_bytes()));
        for s in [row.0, row.1, row.2, row.3, row.4] {
            feed(&mut h, s.map(str::as_bytes));
        }
        for i in [row.10, row.11, row.12] {
            feed(
                &mut h,
                i.map(|v| v.to_string()).as_deref().map(str::as_bytes),
            );
        }
        format!("jcsync:{company}:line:{:032x}", h.digest128())
    }

    #[test]
    fn hex_digits_match_the_formatter() {
        let mut v: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        let mut values = vec![0, 1, 9, 10, 15, 16, u128::MAX, u128::MAX >> 64, 1 << 64];
        for _ in 0..1000 {
            // xorshift: every nibble value in every position.
            v ^= v << 13;
            v ^= v >> 7;
            v ^= v << 17;
            values.push(v);
        }
        for v in values {
            assert_eq!(hex32(v), format!("{v:032x}").as_bytes(), "{v:#x}");
        }
    }

    #[test]
    fn batch_origin_ids_match_the_streamed_ids() {
        let rows = origin_rows();
        let batch = origin_batch(&rows);
        let view = TransactionView::new(&batch).expect("view");
        for company in ["GEN", "", "Çø|:"] {
            let (lines, dcs) = origin_ids(company, &view).expect("origin ids");
            assert_eq!(lines.len(), rows.len());
            assert_eq!(dcs.len(), rows.len());
            assert_eq!(lines.null_count() + dcs.null_count(), 0);
            for (r, row) in rows.iter().enumerate() {
                assert_eq!(lines.value(r), streamed_line_id(company, row), "line {r}");
                assert_eq!(
                    dcs.value(r),
                    view.direct_cost_key(r).origin_id(company),
                    "direct cost {r}"
                );
            }
        }
    }

    #[test]
    fn batch_origin_ids_are_pinned() {
        // Written by the per-field framing before it was sped up: the ids Procore holds.
        let rows = origin_rows();
        let batch = origin_batch(&rows);
        let view = TransactionView::new(&batch).expect("view");
        let (lines, dcs) = origin_ids("GEN", &view).expect("origin ids");
        let got: Vec<(&str, &str)> = (0..rows.len())
            .map(|r| (lines.value(r), dcs.value(r)))
            .collect();
        let expected: &[(&str, &str)] = &[
            (
                "jcsync:GEN:line:ab77e0af0ad9acd799cffc5ae7c3bb35",
                "jcsync:GEN:dc:64764f8a8d8d56515b854606767f8122",
            ),
            (
                "jcsync:GEN:line:ce811c18c4ea0b7fdfb16d25cfd7ad01",
                "jcsync:GEN:dc:a52058e91c4d24092982202e79fb6941",
            ),
            (
                "jcsync:GEN:line:c9683e98427bade2cfee841dc812892f",
                "jcsync:GEN:dc:0f392c6b81e56df61e988e99cdc669c3",
            ),
            (
                "jcsync:GEN:line:2c11116a3a919aa65c1a9b7186c59a21",
                "jcsync:GEN:dc:b77c08dcdc5f3972434aa410bc3d847e",
            ),
            (
                "jcsync:GEN:line:2c6252b142608f1eb36ff4ad79cfdb1c",
                "jcsync:GEN:dc:7a63d1033f626e4a05516e629bcdfe85",
            ),
            (
                "jcsync:GEN:line:fe97d22619d011b65f74af30ef00bf53",
                "jcsync:GEN:dc:8594bfeaf8d35136340a4c9ae6211ab9",
            ),
            (
                "jcsync:GEN:line:a25851db587fbcc45933e29c88c6d6a0",
                "jcsync:GEN:dc:db22be7c3595de5b086e47cc1c6bf7f0",
            ),
            (
                "jcsync:GEN:line:18fbd6af09a25f4c858f715c05f1e6c5",
                "jcsync:GEN:dc:45970d2ba6edd2dfdafca83f4b0cac4a",
            ),
            (
                "jcsync:GEN:line:2bc4e40b5a320687bc0efd97e80cdd99",
                "jcsync:GEN:dc:23337bf0afe42e9230123df26e00df60",
            ),
            (
                "jcsync:GEN:line:2adc65a4cd7a5e4830e485fe4e79d8a0",
                "jcsync:GEN:dc:0f668f325719bc7eb2c3b744b4a25a31",
            ),
            (
                "jcsync:GEN:line:3e0fb6295a185d444f6ab8bfe019f55c",
                "jcsync:GEN:dc:6589b55f0b510b8e466787e780cb0edc",
            ),
        ];
        assert_eq!(got, expected);
    }

    /// One synthetic row: (job, direct cost origin_id, amount in cents).
    type Row<'a> = (&'a str, &'a str, i128);

    /// An enriched batch of expense lines (one batch per direct cost, so the header key follows
    /// the origin_id).
    fn batch(rows: &[Row], first_line: usize) -> RecordBatch {
        let n = rows.len();
        let text = |f: &dyn Fn(usize) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from_iter((0..n).map(f)))
        };
        let dates = |v: Option<i32>| -> ArrayRef { Arc::new(Date32Array::from(vec![v; n])) };
        let dec = |f: &dyn Fn(usize) -> Option<i128>| -> ArrayRef {
            Arc::new(Decimal128Array::from_iter((0..n).map(f)))
        };
        let seq = |f: &dyn Fn(usize) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values((0..n).map(f)))
        };
        let line = |i: usize| first_line + i;
        RecordBatch::try_from_iter([
            ("job", text(&|i| Some(rows[i].0.to_string()))),
            ("extra", text(&|_| None)),
            ("cost_code", text(&|i| Some(format!("01-{}", line(i) % 7)))),
            ("category", text(&|_| Some("E".into()))),
            ("transaction_type", text(&|_| Some("EQ cost".into()))),
            ("description", text(&|i| Some(format!("line {}", line(i))))),
            ("vendor", text(&|_| None)),
            ("invoice", text(&|_| None)),
            ("batch", text(&|i| Some(rows[i].1.to_string()))),
            ("accounting_date", dates(Some(19_727))),
            ("period_end_date", dates(None)),
            ("amount", dec(&|i| Some(rows[i].2))),
            ("units", dec(&|_| None)),
            ("unit_cost", dec(&|_| None)),
            ("run", seq(&|_| 1)),
            ("sequence", seq(&|i| line(i) as i64)),
            ("dist_sequence", seq(&|_| 1)),
            (
                crate::schema::SOURCE_LINE,
                Arc::new(UInt64Array::from_iter_values(
                    (0..n).map(|i| line(i) as u64),
                )),
            ),
            ("invoice_date", dates(None)),
            ("invoice_received_date", dates(None)),
            ("invoice_payment_date", dates(None)),
            ("invoice_description", text(&|_| None)),
            (LINE_ORIGIN_ID, text(&|i| Some(format!("line:{}", line(i))))),
            (
                DIRECT_COST_ORIGIN_ID,
                text(&|i| Some(rows[i].1.to_string())),
            ),
        ])
        .expect("batch")
    }

    /// Checks every request as it arrives: the size limit, and that each line's header was sent
    /// before it (in an earlier request of the same project).
    #[derive(Default)]
    struct Checking {
        max_records: usize,
        sent_headers: HashSet<(String, String)>,
        header_records: Vec<String>,
        lines: Vec<String>,
        cents: i128,
        requests: usize,
    }

    impl RequestSink for Checking {
        fn send(&mut self, request: PlannedRequest<'_>) -> Result<()> {
            self.requests += 1;
            assert!(request.records() >= 1 && request.records() <= self.max_records);
            match request {
                PlannedRequest::HeaderSync { job, headers } => {
                    let mut in_request = HashSet::new();
                    for h in headers.iter() {
                        assert_eq!(h.job, job);
                        assert!(in_request.insert(h.origin_id.clone()), "twice in a request");
                        self.sent_headers
                            .insert((job.to_string(), h.origin_id.to_string()));
                        self.header_records.push(h.origin_id.to_string());
                    }
                }
                PlannedRequest::LineSync { job, lines } => {
                    for l in lines.iter() {
                        assert_eq!(**l.job, *job);
                        assert!(
                            self.sent_headers
                                .contains(&(job.to_string(), l.direct_cost_origin_id.to_string())),
                            "line {} before its header {}",
                            l.origin_id,
                            l.direct_cost_origin_id
                        );
                        self.cents += l.amount;
                        self.lines.push(l.origin_id.to_string());
                    }
                }
            }
            Ok(())
        }
    }

    fn plan(limits: PlanLimits, rows: &[Row], batch_rows: usize) -> (Checking, Planner) {
        let mut planner = Planner::with_limits(limits);
        let mut sink = Checking {
            max_records: planner.limits().max_records,
            ..Checking::default()
        };
        for (i, chunk) in rows.chunks(batch_rows).enumerate() {
            planner
                .process(&batch(chunk, i * batch_rows), &mut sink)
                .expect("process");
            assert!(planner.queued <= planner.limits().max_queued_lines);
        }
        planner.finish(&mut sink).expect("finish");
        (sink, planner)
    }

    /// `lines` lines over `jobs` interleaved projects, `per_header` consecutive lines (of one
    /// project) per direct cost.
    fn stream(lines: usize, jobs: usize, per_header: usize) -> (Vec<String>, Vec<String>) {
        let job: Vec<String> = (0..lines)
            .map(|i| format!("{}", 1001 + (i / per_header) % jobs))
            .collect();
        let dc = (0..lines)
            .map(|i| format!("dc:{}", i / per_header))
            .collect();
        (job, dc)
    }

    fn rows<'a>(job: &'a [String], dc: &'a [String]) -> Vec<Row<'a>> {
        job.iter()
            .zip(dc)
            .enumerate()
            .map(|(i, (j, d))| (j.as_str(), d.as_str(), (i % 500) as i128 - 100))
            .collect()
    }

    #[test]
    fn one_header_request_serves_several_line_requests() {
        // 5 lines a direct cost: 200 new headers per 1000 lines. Flushing headers with every
        // line request would give 2 requests per 1000 lines (500 a request, less the tails).
        let (job, dc) = stream(100_000, 4, 5);
        let rows = rows(&job, &dc);
        let (sink, planner) = plan(PlanLimits::default(), &rows, 4096);
        assert_eq!(sink.lines.len(), 100_000);
        let distinct: HashSet<&String> = sink.lines.iter().collect();
        assert_eq!(distinct.len(), 100_000, "every line exactly once");
        assert_eq!(
            sink.header_records.len(),
            20_000,
            "every header exactly once"
        );
        let expected: i128 = rows.iter().map(|r| r.2).sum();
        assert_eq!(sink.cents, expected);
        assert_eq!(planner.stats.amount_cents, expected);
        assert_eq!(planner.totals().values().sum::<i128>(), expected);
        let per_request = sink.lines.len() as f64 / sink.requests as f64;
        assert!(per_request >= 800.0, "{per_request} lines a request");
        assert_eq!(
            sink.requests as u64,
            planner.stats.header_requests + planner.stats.line_requests
        );
    }

    #[test]
    fn a_queued_line_stays_small() {
        // PlanLimits::max_queued_lines documents 128 bytes inline a line.
        assert!(std::mem::size_of::<Queued>() <= 128);
    }

    #[test]
    fn the_queue_limit_holds_with_many_projects() {
        // 40 projects, a small queue: projects are sent early, still headers first.
        let (job, dc) = stream(60_000, 40, 3);
        let rows = rows(&job, &dc);
        let limits = PlanLimits {
            max_queued_lines: 5_000,
            ..PlanLimits::default()
        };
        let (sink, planner) = plan(limits, &rows, 1000);
        assert_eq!(sink.lines.len(), 60_000);
        assert_eq!(sink.header_records.len(), 20_000);
        assert_eq!(planner.stats.lines, 60_000);
        assert_eq!(planner.totals().len(), 40 * 7);
    }

    #[test]
    fn a_forgotten_header_is_sent_again_never_lost() {
        // A cache of 4 direct costs; 2 records a request. dc:0 comes back after 5 others have
        // pushed it out of the cache: its header is sent again before its second line.
        let job = vec!["1001".to_string(); 8];
        let dc: Vec<String> = [0, 1, 2, 3, 4, 5, 6, 0]
            .iter()
            .map(|d| format!("dc:{d}"))
            .collect();
        let rows = rows(&job, &dc);
        let limits = PlanLimits {
            max_records: 2,
            chunks_per_project: 1,
            max_queued_lines: 2,
            header_cache: 4,
        };
        let (sink, planner) = plan(limits, &rows, 8);
        assert_eq!(sink.lines.len(), 8);
        assert!(planner.headers_forgotten() >= 1);
        let sent = |id: &str| sink.header_records.iter().filter(|h| *h == id).count();
        assert_eq!(sent("dc:0"), 2, "{:?}", sink.header_records);
        assert_eq!(planner.stats.direct_costs, 8);
    }

    #[test]
    fn a_header_forgotten_while_pending_is_sent_once() {
        // Nothing is sent before the end: dc:0 is forgotten while still pending and planned
        // again; the header request carries it once.
        let job = vec!["1001".to_string(); 6];
        let dc: Vec<String> = [0, 1, 2, 3, 4, 0]
            .iter()
            .map(|d| format!("dc:{d}"))
            .collect();
        let rows = rows(&job, &dc);
        let limits = PlanLimits {
            header_cache: 4,
            ..PlanLimits::default()
        };
        let (sink, planner) = plan(limits, &rows, 6);
        // dc:4 pushes dc:0 out; dc:0 planned again pushes dc:1 out.
        assert_eq!(planner.headers_forgotten(), 2);
        assert_eq!(planner.stats.direct_costs, 6);
        assert_eq!(sink.header_records.len(), 5);
        assert_eq!(sink.lines.len(), 6);
        assert_eq!(sink.requests, 2);
    }
}
