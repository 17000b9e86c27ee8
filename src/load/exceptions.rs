//! The load's side of open exceptions ([`crate::ledger::exceptions`]): the staged row of a line
//! quarantined at load, kept exactly (Arrow IPC) so that a later run can retry it; the retry of
//! the open exceptions a run's snapshot does not hold, fed to the planner in bounded batches; the
//! capture of new exceptions' rows from a run's staged files; and what the report says.
//!
//! A stored row is one Arrow IPC record batch message of one row of the staged schema
//! ([`enriched_schema`]), zstd-compressed, after an 8-byte fingerprint of that schema: decoded,
//! it is the staged row bit for bit (money stays Decimal128). A row written under another staged schema (a
//! later jcsync changed it) is not retried, and says so in the log.

use std::collections::HashSet;
use std::io::Cursor;
use std::path::Path;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::error::{Error, Result};
use crate::ledger::{Ledger, RunExceptions};
use crate::model::schema::enriched_schema;
use crate::model::view::TransactionView;

/// The end-of-stream marker of an Arrow IPC stream.
const EOS: [u8; 8] = [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0];

/// Open exceptions retried per planned batch.
pub const RETRY_BATCH_ROWS: usize = 1024;

fn ipc_error(e: arrow::error::ArrowError) -> Error {
    Error::from(e)
}

/// The IPC stream prefix (the schema message) of the staged schema, and its fingerprint.
fn schema_prefix() -> Result<(Vec<u8>, [u8; 8])> {
    let schema = enriched_schema();
    let mut w = StreamWriter::try_new(Vec::new(), &schema).map_err(ipc_error)?;
    w.finish().map_err(ipc_error)?;
    let mut bytes = w.into_inner().map_err(ipc_error)?;
    if !bytes.ends_with(&EOS) {
        return Err(codec_error("an Arrow IPC stream without its end marker"));
    }
    bytes.truncate(bytes.len() - EOS.len());
    let print = xxh3_64(&bytes).to_le_bytes();
    Ok((bytes, print))
}

fn codec_error(message: &str) -> Error {
    Error::TaskFailed {
        stage: "load",
        message: format!("open exceptions: {message}"),
    }
}

/// Encodes staged rows for the ledger and decodes them back into batches.
pub struct RowCodec {
    prefix: Vec<u8>,
    print: [u8; 8],
}

impl RowCodec {
    /// The codec of the current staged schema.
    pub fn new() -> Result<RowCodec> {
        let (prefix, print) = schema_prefix()?;
        Ok(RowCodec { prefix, print })
    }

    /// Row `r` of a staged batch, exactly.
    pub fn encode(&self, batch: &RecordBatch, r: usize) -> Result<Vec<u8>> {
        let row = batch.slice(r, 1);
        let mut w = StreamWriter::try_new(Vec::new(), &row.schema()).map_err(ipc_error)?;
        w.write(&row).map_err(ipc_error)?;
        w.finish().map_err(ipc_error)?;
        let bytes = w.into_inner().map_err(ipc_error)?;
        let body = bytes
            .strip_prefix(self.prefix.as_slice())
            .and_then(|b| b.strip_suffix(&EOS))
            .ok_or_else(|| codec_error("a row that is not of the staged schema"))?;
        // The message is mostly metadata and padding (~6.6 KB for the staged schema): zstd
        // takes it to a few hundred bytes.
        let packed = zstd::bulk::compress(body, 3).map_err(|e| codec_error(&e.to_string()))?;
        let mut out = Vec::with_capacity(8 + packed.len());
        out.extend_from_slice(&self.print);
        out.extend_from_slice(&packed);
        Ok(out)
    }

    /// True when `row` was encoded under the current staged schema.
    pub fn readable(&self, row: &[u8]) -> bool {
        row.len() > 8 && row[..8] == self.print
    }

    /// One batch of the staged schema holding `rows` in order (each [`RowCodec::readable`]).
    pub fn decode(&self, rows: &[&[u8]]) -> Result<RecordBatch> {
        let mut buf = self.prefix.clone();
        for row in rows {
            if !self.readable(row) {
                return Err(codec_error("a stored row of another staged schema"));
            }
            let body = zstd::stream::decode_all(&row[8..])
                .map_err(|e| codec_error(&format!("a stored row does not decompress: {e}")))?;
            buf.extend_from_slice(&body);
        }
        buf.extend_from_slice(&EOS);
        let reader = StreamReader::try_new(Cursor::new(buf), None).map_err(ipc_error)?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(ipc_error)?;
        concat_batches(&enriched_schema(), &batches).map_err(ipc_error)
    }
}

/// The hash an open exception is known by while a run plans (16 bytes, not its origin_id).
pub fn id_hash(origin_id: &str) -> u128 {
    xxh3_128(origin_id.as_bytes())
}

/// Which open exceptions a run retries from their stored rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryScope {
    /// A deep sync: its snapshot is all of Sage in the `since` window (`YYYY-MM-DD`, None for
    /// the beginning of time). An exception in the window that the snapshot lacks is not
    /// retried: it left Sage (closed as gone once the run completes).
    Complete { since: Option<String> },
    /// An incremental sync or a replay: every open exception the snapshot lacks is retried.
    Partial,
}

/// The open exceptions of a load, and those its snapshot held.
pub struct ExceptionRetry {
    scope: RetryScope,
    open: HashSet<u128>,
    seen: Vec<String>,
}

impl ExceptionRetry {
    /// The open exceptions of `ledger`'s target (their hashes: 16 bytes each).
    pub fn new(ledger: &Ledger, scope: RetryScope, run_id: &str) -> Result<ExceptionRetry> {
        let mut open = HashSet::new();
        let mut after = String::new();
        loop {
            let page = ledger.open_exception_page(&after, 10_000, run_id, false)?;
            let Some(last) = page.last() else { break };
            after = last.origin_id.clone();
            open.extend(page.iter().map(|s| id_hash(&s.origin_id)));
        }
        Ok(ExceptionRetry {
            scope,
            open,
            seen: Vec::new(),
        })
    }

    /// Note the open exceptions a snapshot batch holds: they are planned from the snapshot,
    /// whose row supersedes the stored one.
    pub fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.open.is_empty() {
            return Ok(());
        }
        let view = TransactionView::new(batch)?;
        let Some(enriched) = view.enriched() else {
            return Ok(());
        };
        for r in 0..view.len() {
            let id = enriched.line_origin_id(r);
            if self.open.contains(&id_hash(id)) {
                self.seen.push(id.to_string());
            }
        }
        Ok(())
    }

    /// Mark what the snapshot held in the ledger, then hand the other open exceptions in scope
    /// to `plan`, [`RETRY_BATCH_ROWS`] at a time; `retried` learns each one's hash before its
    /// batch is planned. The number retried.
    pub fn feed(
        self,
        ledger: &std::sync::Mutex<Ledger>,
        run_id: &str,
        mut retried: impl FnMut(&[u128]),
        mut plan: impl FnMut(&RecordBatch) -> Result<()>,
    ) -> Result<u64> {
        let lock = || ledger.lock().unwrap_or_else(|p| p.into_inner());
        for chunk in self.seen.chunks(10_000) {
            let ids: Vec<&str> = chunk.iter().map(String::as_str).collect();
            lock().mark_exceptions(&ids, run_id, false)?;
        }
        if self.open.len() <= self.seen.len() {
            return Ok(0);
        }
        let codec = RowCodec::new()?;
        let mut after = String::new();
        let (mut total, mut unreadable) = (0u64, 0u64);
        loop {
            let page = lock().open_exception_page(&after, RETRY_BATCH_ROWS, run_id, true)?;
            let Some(last) = page.last() else { break };
            after = last.origin_id.clone();
            let mut ids = Vec::new();
            let mut rows: Vec<&[u8]> = Vec::new();
            for s in &page {
                if s.seen || !self.in_scope(s.accounting_date.as_deref()) {
                    continue;
                }
                match s.row.as_deref() {
                    Some(row) if codec.readable(row) => {
                        ids.push(s.origin_id.as_str());
                        rows.push(row);
                    }
                    _ => unreadable += 1,
                }
            }
            if rows.is_empty() {
                continue;
            }
            let batch = codec.decode(&rows)?;
            lock().mark_exceptions(&ids, run_id, true)?;
            let hashes: Vec<u128> = ids.iter().map(|id| id_hash(id)).collect();
            retried(&hashes);
            plan(&batch)?;
            total += rows.len() as u64;
        }
        if unreadable > 0 {
            tracing::warn!(
                unreadable,
                "open exceptions without a stored row of this jcsync's staged schema: not \
                 retried (they are retried when a sync's snapshot holds their row again)"
            );
        }
        tracing::info!(retried = total, "open exceptions retried from the ledger");
        Ok(total)
    }

    /// True when an exception the snapshot lacks is retried: always for a partial snapshot;
    /// for a complete one, only when it is dated before the window (the snapshot could not
    /// hold it).
    fn in_scope(&self, accounting_date: Option<&str>) -> bool {
        match &self.scope {
            RetryScope::Partial => true,
            RetryScope::Complete { since: None } => false,
            RetryScope::Complete { since: Some(s) } => {
                accounting_date.is_some_and(|d| d < s.as_str())
            }
        }
    }
}

/// Store the rows of the exceptions run `run_id` quarantined from its own snapshot, read back
/// from its staged files (`staged`, whole paths). Reads them only when there are such
/// exceptions; keeps in memory only their origin_ids and one staged batch at a time.
pub fn capture_rows(
    ledger: &mut Ledger,
    staged: &[std::path::PathBuf],
    run_id: &str,
) -> Result<u64> {
    let mut needed = ledger.exceptions_needing_rows(run_id)?;
    if needed.is_empty() {
        return Ok(0);
    }
    let codec = RowCodec::new()?;
    let mut stored = 0;
    for path in staged {
        if needed.is_empty() {
            break;
        }
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)?
            .with_batch_size(8192)
            .build()?;
        for batch in reader {
            let batch = batch?;
            let view = TransactionView::new(&batch)?;
            let Some(enriched) = view.enriched() else {
                continue;
            };
            let mut rows = Vec::new();
            for r in 0..view.len() {
                let id = enriched.line_origin_id(r);
                if needed.remove(id) {
                    rows.push((id.to_string(), codec.encode(&batch, r)?));
                }
            }
            stored += rows.len() as u64;
            ledger.store_exception_rows(&rows, run_id)?;
        }
    }
    if !needed.is_empty() {
        tracing::warn!(
            missing = needed.len(),
            "open exceptions whose row is not in the staged files: kept without a stored row"
        );
    }
    Ok(stored)
}

/// The staged files of a run directory listed in `files` (paths relative to it).
pub fn staged_paths(
    run_dir: &Path,
    files: &[crate::staging::FileEntry],
) -> Vec<std::path::PathBuf> {
    files
        .iter()
        .filter(|f| f.path.starts_with("staged/"))
        .map(|f| run_dir.join(&f.path))
        .collect()
}

/// What became of the lines a load retried from open exceptions, as its counts say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retried {
    pub retried: u64,
    pub loaded: u64,
    pub quarantined: u64,
    /// Amount of the `quarantined` lines, in cents.
    pub quarantined_cents: i64,
    pub pending: u64,
}

/// Open exceptions per reason, for the report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReasonTotal {
    pub reason_code: String,
    pub count: u64,
    /// Exact decimal text.
    pub amount: String,
}

/// `report.json`'s `exceptions`: what became of the target's open exceptions in the run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExceptionsReport {
    /// Open exceptions the snapshot lacked, loaded again from their stored rows.
    pub retried: u64,
    /// Of `retried`: loaded now, quarantined again, left pending (the load stopped).
    pub retried_loaded: u64,
    /// Still failing: they stay open exceptions, make the run exit with `[report]
    /// quarantine_exit_code`, and are listed with their reason in `retried_file` (not in
    /// `quarantine.parquet` nor in `counts.quarantined`: they are not rows of this snapshot).
    pub retried_quarantined: u64,
    /// Exact decimal text of the `retried_quarantined` lines' amount.
    pub retried_quarantined_amount: String,
    /// `quarantine_retried.parquet` when `retried_quarantined` > 0.
    pub retried_file: Option<String>,
    pub retried_pending: u64,
    /// Opened by this run.
    pub new: u64,
    /// Closed because their line loaded (retried, or planned from the snapshot).
    pub resolved: u64,
    /// Closed because their row left Sage.
    pub gone: u64,
    /// Open after the run.
    pub still_open: u64,
    pub open_by_reason: Vec<ReasonTotal>,
    /// retried = retried_loaded + retried_quarantined + retried_pending.
    pub reconciled: bool,
}

impl ExceptionsReport {
    /// The report of run `run_id`, from the ledger and the load's counts.
    pub fn of(ledger: &Ledger, run_id: &str, counts: Retried) -> Result<ExceptionsReport> {
        let RunExceptions {
            new,
            resolved,
            gone,
            still_open,
        } = ledger.run_exceptions(run_id)?;
        Ok(ExceptionsReport {
            retried: counts.retried,
            retried_loaded: counts.loaded,
            retried_quarantined: counts.quarantined,
            retried_quarantined_amount: crate::ledger::exceptions::cents_text(
                counts.quarantined_cents,
            ),
            retried_file: (counts.quarantined > 0)
                .then(|| crate::quarantine::writer::RETRIED_FILE.to_string()),
            retried_pending: counts.pending,
            new,
            resolved,
            gone,
            still_open,
            open_by_reason: ledger
                .open_exceptions_by_reason()?
                .into_iter()
                .map(|(reason_code, count, amount)| ReasonTotal {
                    reason_code,
                    count,
                    amount,
                })
                .collect(),
            reconciled: counts.retried == counts.loaded + counts.quarantined + counts.pending,
        })
    }

    /// The lines of the run summary (empty when the target has no exception activity).
    pub fn summary_lines(&self) -> Vec<String> {
        if self.retried + self.new + self.resolved + self.gone + self.still_open == 0 {
            return Vec::new();
        }
        let mut lines = vec![
            format!(
                "  exceptions       {:>10}  open (new {}, resolved {}, gone {})",
                self.still_open, self.new, self.resolved, self.gone
            ),
            format!(
                "    retried        {:>10}  (loaded {}, still open {}, pending {})",
                self.retried, self.retried_loaded, self.retried_quarantined, self.retried_pending
            ),
        ];
        if let Some(file) = &self.retried_file {
            lines.push(format!(
                "    STILL FAILING  {:>10}  {} (quarantined by earlier runs, failed again: \
                 listed with their reason in {file})",
                self.retried_quarantined, self.retried_quarantined_amount
            ));
        }
        for r in &self.open_by_reason {
            lines.push(format!(
                "    {:<22} {:>4}  {:>14}",
                r.reason_code, r.count, r.amount
            ));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        ArrayRef, Date32Array, Decimal128Array, Int64Array, StringArray, Time64MicrosecondArray,
        UInt64Array,
    };
    use arrow::datatypes::DataType;
    use std::sync::Arc;

    /// Four staged rows with every column filled (one NULL where the column allows it).
    fn staged_batch() -> RecordBatch {
        let schema = enriched_schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                let null = f.is_nullable();
                match f.data_type() {
                    DataType::Utf8 => Arc::new(StringArray::from(vec![
                        Some("1001"),
                        Some("ø ü (Rev)"),
                        if null { None } else { Some("x") },
                        Some(""),
                    ])),
                    DataType::Decimal128(p, s) => Arc::new(
                        Decimal128Array::from(vec![
                            Some(-268),
                            Some(99_999_999_999_999_999),
                            if null { None } else { Some(0) },
                            Some(1),
                        ])
                        .with_precision_and_scale(*p, *s)
                        .expect("decimal"),
                    ),
                    DataType::Date32 => Arc::new(Date32Array::from(vec![
                        Some(19_782),
                        Some(0),
                        if null { None } else { Some(1) },
                        Some(-1),
                    ])),
                    DataType::Int64 => Arc::new(Int64Array::from(vec![
                        Some(i64::MAX),
                        Some(7),
                        if null { None } else { Some(0) },
                        Some(-7),
                    ])),
                    DataType::UInt64 => Arc::new(UInt64Array::from(vec![2, 3, 4, u64::MAX])),
                    DataType::Time64(_) => Arc::new(Time64MicrosecondArray::from(vec![
                        Some(86_399_999_999),
                        Some(0),
                        if null { None } else { Some(1) },
                        Some(1_000),
                    ])),
                    other => panic!("a staged column of type {other}: add it to this test"),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).expect("staged batch")
    }

    #[test]
    fn a_staged_row_survives_the_ledger_exactly() {
        let batch = staged_batch();
        let codec = RowCodec::new().expect("codec");
        let rows: Vec<Vec<u8>> = (0..batch.num_rows())
            .map(|r| codec.encode(&batch, r).expect("encode"))
            .collect();
        let refs: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        let back = codec.decode(&refs).expect("decode");
        assert_eq!(back, batch, "every column, every value");
        let one = codec.decode(&refs[2..3]).expect("one");
        assert_eq!(one, batch.slice(2, 1));
        let mut other = rows[0].clone();
        other[0] ^= 1;
        assert!(!codec.readable(&other));
        assert!(codec.decode(&[other.as_slice()]).is_err());
    }
}
