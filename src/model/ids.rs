//! Origin ids and the natural key: the one hashing helper, and the ids Procore holds.
//!
//! Every id is xxh3-128 of length-framed fields (a tag byte, then for a value its length and
//! bytes), written as 32 hex digits after `jcsync:{company}:line:` or `jcsync:{company}:dc:`.
//! The same input gives the same ids on any machine, so re-sending is an update, never a
//! duplicate. Procore already holds these ids: the bytes hashed here may never change (the
//! pinned tests below and in `tests/` hold them).

use arrow::array::StringArray;
use arrow::buffer::{Buffer, OffsetBuffer};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

use crate::error::{Error, Result};
use crate::model::cost_type::DirectCostKind;
use crate::model::values::{date_text, DateBytes};
use crate::model::view::{Group, TransactionView};

#[inline]
pub fn feed(h: &mut Xxh3, value: Option<&[u8]>) {
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
#[inline]
pub fn feed_buf(buf: &mut Vec<u8>, value: Option<&[u8]>) {
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
#[inline]
pub fn hash_framed(buf: &mut Vec<u8>, head: &[u8], fields: &[Option<&[u8]>]) -> u128 {
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
pub fn framed(fields: &[&[u8]]) -> Vec<u8> {
    let mut buf = Vec::new();
    for &f in fields {
        feed_buf(&mut buf, Some(f));
    }
    buf
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
#[inline]
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

    #[inline]
    fn push(&mut self, hash: u128) {
        self.values.extend_from_slice(&self.prefix);
        self.values.extend_from_slice(&hex32(hash));
    }

    /// The ids as an Arrow array (checked: offsets in range, UTF-8).
    fn finish(self) -> Result<StringArray> {
        let failed = |message: String| Error::BatchShape { message };
        let width = self.prefix.len() + 32;
        let rows = self.values.len() / width;
        let offsets = OffsetBuffer::try_from_lengths(std::iter::repeat_n(width, rows))
            .map_err(|e| failed(format!("{rows} origin_ids: {e}")))?;
        StringArray::try_new(offsets, Buffer::from_vec(self.values), None)
            .map_err(|e| failed(format!("origin_ids: {e}")))
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
    /// The direct cost row `r` of `view` belongs to.
    pub fn of(view: &TransactionView, r: usize) -> DirectCostKey {
        let own = |s: Option<&str>| s.unwrap_or("").to_string();
        let group = view.group(r);
        let parts = match group {
            Group::Invoice { vendor, invoice } => vec![own(vendor), own(invoice)],
            Group::Payroll { day, batch } => vec![date_text(day), batch.to_string()],
            Group::Expense { ty, day, batch } => {
                vec![ty.to_string(), date_text(day), batch.to_string()]
            }
        };
        DirectCostKey {
            job: view.job(r).to_string(),
            kind: group.kind(),
            parts,
        }
    }

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

/// The framed start of every line hash of `company` (`line`, then the company).
pub fn line_head(company: &str) -> Vec<u8> {
    framed(&[b"line", company.as_bytes()])
}

/// Hash of row `r`'s natural key (Job, Extra, Cost_Code, Category, Transaction_Type, Run,
/// Sequence, Dist_Sequence; NULL distinct from empty, numbers as decimal text) after `head`
/// ([`line_head`]): the digest of the line's origin_id, and the key the project stage dedups by.
#[inline]
pub fn line_hash(view: &TransactionView, head: &[u8], r: usize, buf: &mut Vec<u8>) -> u128 {
    let (mut run, mut sequence, mut dist_sequence) = (
        itoa::Buffer::new(),
        itoa::Buffer::new(),
        itoa::Buffer::new(),
    );
    hash_framed(
        buf,
        head,
        &[
            view.job_cell(r).map(str::as_bytes),
            view.extra(r).map(str::as_bytes),
            view.cost_code(r).map(str::as_bytes),
            view.category(r).map(str::as_bytes),
            view.transaction_type_cell(r).map(str::as_bytes),
            view.run(r).map(|v| run.format(v).as_bytes()),
            view.sequence(r).map(|v| sequence.format(v).as_bytes()),
            view.dist_sequence(r)
                .map(|v| dist_sequence.format(v).as_bytes()),
        ],
    )
}

/// Hash of row `r`'s direct cost key: the digest [`DirectCostKey::origin_id`] takes, computed
/// from the borrowed cells without building the key. `head` is `direct_cost` and the company,
/// framed; `date` formats (and remembers) the last date.
#[inline]
fn direct_cost_hash(
    view: &TransactionView,
    head: &[u8],
    r: usize,
    buf: &mut Vec<u8>,
    date: &mut DateBytes,
) -> u128 {
    let job = Some(view.job(r).as_bytes());
    let group = view.group(r);
    let kind = Some(group.kind().as_str().as_bytes());
    match group {
        Group::Invoice { vendor, invoice } => hash_framed(
            buf,
            head,
            &[
                job,
                kind,
                Some(vendor.unwrap_or("").as_bytes()),
                Some(invoice.unwrap_or("").as_bytes()),
            ],
        ),
        Group::Payroll { day, batch } => hash_framed(
            buf,
            head,
            &[job, kind, Some(date.format(day)), Some(batch.as_bytes())],
        ),
        Group::Expense { ty, day, batch } => hash_framed(
            buf,
            head,
            &[
                job,
                kind,
                Some(ty.as_bytes()),
                Some(date.format(day)),
                Some(batch.as_bytes()),
            ],
        ),
    }
}

/// [`line_hash`] of every row of `view`: what the project stage dedups by (two rows with one
/// natural key would be one line in Procore).
pub fn line_hashes(company: &str, view: &TransactionView) -> Vec<u128> {
    let head = line_head(company);
    let mut buf = Vec::with_capacity(256);
    (0..view.len())
        .map(|r| line_hash(view, &head, r, &mut buf))
        .collect()
}

/// Origin ids of every row: (line item ids, direct cost ids).
pub fn origin_ids(company: &str, view: &TransactionView) -> Result<(StringArray, StringArray)> {
    let n = view.len();
    let line_head = line_head(company);
    let dc_head = framed(&[b"direct_cost", company.as_bytes()]);
    let mut lines = IdColumn::new(&format!("jcsync:{company}:line:"), n);
    let mut dcs = IdColumn::new(&format!("jcsync:{company}:dc:"), n);
    let mut buf = Vec::with_capacity(256);
    let mut date = DateBytes::default();
    for r in 0..n {
        lines.push(line_hash(view, &line_head, r, &mut buf));
        dcs.push(direct_cost_hash(view, &dc_head, r, &mut buf, &mut date));
    }
    Ok((lines.finish()?, dcs.finish()?))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    use std::sync::Arc;

    use arrow::array::{
        Array, ArrayRef, Date32Array, Decimal128Array, Int64Array, RecordBatch, UInt64Array,
    };

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
                crate::model::schema::SOURCE_LINE,
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
                    DirectCostKey::of(&view, r).origin_id(company),
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
}
