//! The invoice dimension, indexed in bounded memory.
//!
//! Invoice (AP) grows with the company (one invoice per AP document: 1.2M invoices in a
//! 10M-transaction company), so holding it whole would make a deep sync's memory grow with its
//! rows. The invoice table is streamed batch by batch instead: each invoice is keyed by the
//! 128-bit hash of its (vendor, number) ([`invoice_key`]) and encoded as one small record of the
//! five columns the join gathers. Records are held in memory up to a budget; past it they are
//! sorted and spilled as runs, which [`InvoiceIndexBuilder::finish`] merges into one sorted file.
//! Either way the index is a sequence of ~4 KiB blocks of sorted records with the first key of
//! each block in memory (16 + 8 bytes per block, ~0.4 MiB for 1.2M invoices): a lookup is one
//! binary search and one block read (a positioned read when the blocks are on disk), and the
//! lookups of one batch read each block once.
//!
//! A repeated (vendor, number) keeps its first row; the repeats are quarantined as they are read
//! (exactly, in bounded memory, by a [`KeySet`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, PrimitiveArray, RecordBatch, StringArray,
    StringBuilder,
};
use arrow::datatypes::Date32Type;

use crate::error::{Error, Result};
use crate::quarantine::{QuarantineBatch, ReasonCode, Rejection, StageName};
use crate::transform::dedup::KeySet;
use crate::transform::spill::{read_at, SpillDir};

/// The Sage template invoice key ('.~', '.~'): not an invoice.
pub const TEMPLATE_INVOICE: &str = ".~";
/// Bytes of encoded invoices held in memory; past it they spill to disk (~280k invoices of the
/// generated company's shape).
pub const DEFAULT_INVOICE_MEMORY: usize = 16 << 20;
/// Keys the repeat check holds in memory before it spills (see [`KeySet`]).
const RECENT_KEYS: usize = 1 << 16;
/// Target bytes of a block of records.
const BLOCK: usize = 4096;
/// A record on disk: the key (16 bytes), the payload length (4) and the payload.
const KEY_LEN: usize = 16;
const HEAD: usize = KEY_LEN + 4;
/// The columns the join gathers, in the order of the enriched schema.
const DATE_COLUMNS: [&str; 3] = ["invoice_date", "date_received", "payment_date"];
const TEXT_COLUMNS: [&str; 2] = ["description", "status"];

/// The 128-bit hash of an invoice's (vendor, number), each part length-prefixed so that no two
/// pairs frame to the same bytes. (A collision among even 10^9 invoices has odds below 10^-20.)
pub fn invoice_key(buf: &mut Vec<u8>, vendor: &str, number: &str) -> u128 {
    buf.clear();
    for part in [vendor, number] {
        buf.extend_from_slice(&(part.len() as u64).to_le_bytes());
        buf.extend_from_slice(part.as_bytes());
    }
    xxhash_rust::xxh3::xxh3_128(buf)
}

fn corrupt(what: &str) -> Error {
    Error::Spill {
        message: format!("invoice index: {what}"),
    }
}

/// One batch's invoice columns.
struct InvoiceColumns<'a> {
    vendor: &'a StringArray,
    number: &'a StringArray,
    dates: [&'a PrimitiveArray<Date32Type>; 3],
    texts: [&'a StringArray; 2],
}

impl<'a> InvoiceColumns<'a> {
    fn of(batch: &'a RecordBatch, table: &str) -> Result<InvoiceColumns<'a>> {
        let missing = |name: &str| Error::BatchShape {
            message: format!("{table}: column {name} missing or of the wrong type"),
        };
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| missing(name))
        };
        let date = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Date32Type>())
                .ok_or_else(|| missing(name))
        };
        Ok(InvoiceColumns {
            vendor: text("vendor")?,
            number: text("invoice")?,
            dates: [
                date(DATE_COLUMNS[0])?,
                date(DATE_COLUMNS[1])?,
                date(DATE_COLUMNS[2])?,
            ],
            texts: [text(TEXT_COLUMNS[0])?, text(TEXT_COLUMNS[1])?],
        })
    }

    /// The (vendor, number) of a row, or None for a row that is not an invoice (a NULL part, or
    /// the template invoice).
    fn key_parts(&self, row: usize) -> Option<(&'a str, &'a str)> {
        if self.vendor.is_null(row) || self.number.is_null(row) {
            return None;
        }
        let (v, i) = (self.vendor.value(row), self.number.value(row));
        (!(v == TEMPLATE_INVOICE && i == TEMPLATE_INVOICE)).then_some((v, i))
    }

    /// Append a row's payload: a byte of NULL flags (bit i for column i), the three dates
    /// (i32, little-endian, 0 when NULL), then each text as a u32 length and its bytes.
    fn encode(&self, row: usize, out: &mut Vec<u8>) {
        let mut flags = 0u8;
        for (i, d) in self.dates.iter().enumerate() {
            if d.is_null(row) {
                flags |= 1 << i;
            }
        }
        for (i, t) in self.texts.iter().enumerate() {
            if t.is_null(row) {
                flags |= 1 << (3 + i);
            }
        }
        out.push(flags);
        for d in &self.dates {
            let v = if d.is_null(row) { 0 } else { d.value(row) };
            out.extend_from_slice(&v.to_le_bytes());
        }
        for t in &self.texts {
            let v = if t.is_null(row) { "" } else { t.value(row) };
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }
}

/// Builders for the gathered columns.
struct Gathered {
    dates: [Date32Builder; 3],
    texts: [StringBuilder; 2],
}

impl Gathered {
    fn new(rows: usize, text_bytes: usize) -> Gathered {
        Gathered {
            dates: std::array::from_fn(|_| Date32Builder::with_capacity(rows)),
            texts: std::array::from_fn(|_| StringBuilder::with_capacity(rows, text_bytes)),
        }
    }

    fn append_null(&mut self) {
        for d in &mut self.dates {
            d.append_null();
        }
        for t in &mut self.texts {
            t.append_null();
        }
    }

    fn append(&mut self, payload: &[u8]) -> Result<()> {
        let flags = *payload.first().ok_or_else(|| corrupt("empty record"))?;
        let mut at = 1;
        let mut take = |n: usize| -> Result<&[u8]> {
            let bytes = payload
                .get(at..at + n)
                .ok_or_else(|| corrupt("record shorter than its fields"))?;
            at += n;
            Ok(bytes)
        };
        for (i, d) in self.dates.iter_mut().enumerate() {
            let mut v = [0u8; 4];
            v.copy_from_slice(take(4)?);
            if flags & (1 << i) != 0 {
                d.append_null();
            } else {
                d.append_value(i32::from_le_bytes(v));
            }
        }
        for (i, t) in self.texts.iter_mut().enumerate() {
            let mut len = [0u8; 4];
            len.copy_from_slice(take(4)?);
            let bytes = take(u32::from_le_bytes(len) as usize)?;
            if flags & (1 << (3 + i)) != 0 {
                t.append_null();
            } else {
                let s = std::str::from_utf8(bytes).map_err(|_| corrupt("text is not UTF-8"))?;
                t.append_value(s);
            }
        }
        Ok(())
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        let mut out: Vec<ArrayRef> = Vec::with_capacity(5);
        for d in &mut self.dates {
            out.push(Arc::new(d.finish()));
        }
        for t in &mut self.texts {
            out.push(Arc::new(t.finish()));
        }
        out
    }
}

/// Where each block starts, and the first key of each.
#[derive(Debug, Default)]
struct Blocks {
    fences: Vec<u128>,
    starts: Vec<u64>,
    len: u64,
    open: usize,
}

impl Blocks {
    /// Account for the next record (keys come in ascending order).
    fn add(&mut self, key: u128, record_len: usize) {
        if self.fences.is_empty() || self.open + record_len > BLOCK {
            self.fences.push(key);
            self.starts.push(self.len);
            self.open = 0;
        }
        self.open += record_len;
        self.len += record_len as u64;
    }

    /// The block that may hold `key`.
    fn find(&self, key: u128) -> Option<usize> {
        self.fences.partition_point(|f| *f <= key).checked_sub(1)
    }

    fn range(&self, block: usize) -> (u64, u64) {
        let end = self.starts.get(block + 1).copied().unwrap_or(self.len);
        (self.starts[block], end)
    }
}

/// The payload of `key` in a block of records, if it is there.
fn find_in_block(block: &[u8], key: u128) -> Result<Option<&[u8]>> {
    let mut at = 0;
    while at < block.len() {
        let head = block
            .get(at..at + HEAD)
            .ok_or_else(|| corrupt("truncated record"))?;
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&head[..KEY_LEN]);
        let mut l = [0u8; 4];
        l.copy_from_slice(&head[KEY_LEN..]);
        let len = u32::from_le_bytes(l) as usize;
        let k = u128::from_le_bytes(k);
        if k == key {
            return block
                .get(at + HEAD..at + HEAD + len)
                .map(Some)
                .ok_or_else(|| corrupt("truncated payload"));
        }
        if k > key {
            return Ok(None);
        }
        at += HEAD + len;
    }
    Ok(None)
}

fn write_record(out: &mut impl Write, key: u128, payload: &[u8]) -> std::io::Result<()> {
    out.write_all(&key.to_le_bytes())?;
    out.write_all(&(payload.len() as u32).to_le_bytes())?;
    out.write_all(payload)
}

/// A sorted run of records on disk, read back in order.
struct RunReader {
    input: BufReader<File>,
    path: PathBuf,
    key: u128,
    payload: Vec<u8>,
}

impl RunReader {
    /// Read the next record; false at the end of the run.
    fn advance(&mut self) -> Result<bool> {
        let mut head = [0u8; HEAD];
        match self.input.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(Error::io(&self.path, e)),
        }
        let mut k = [0u8; KEY_LEN];
        k.copy_from_slice(&head[..KEY_LEN]);
        let mut l = [0u8; 4];
        l.copy_from_slice(&head[KEY_LEN..]);
        self.key = u128::from_le_bytes(k);
        self.payload.resize(u32::from_le_bytes(l) as usize, 0);
        self.input
            .read_exact(&mut self.payload)
            .map_err(|e| Error::io(&self.path, e))?;
        Ok(true)
    }
}

/// What building the index did, for the logs and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct InvoiceIndexStats {
    pub invoices: u64,
    pub repeats: u64,
    pub spilled_runs: u64,
    pub blocks: u64,
    pub on_disk: bool,
}

/// `dir` with `-suffix` appended to its last component.
fn sibling(dir: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-{suffix}"));
    dir.with_file_name(name)
}

/// Streams the invoice table in; see the module documentation.
pub struct InvoiceIndexBuilder {
    table: String,
    budget: usize,
    dir: SpillDir,
    seen: KeySet,
    /// (key, offset of its payload in `heap`), for the invoices not yet spilled.
    entries: Vec<(u128, u32)>,
    /// Payloads, each a u32 length and its bytes.
    heap: Vec<u8>,
    runs: Vec<PathBuf>,
    key_buf: Vec<u8>,
    stats: InvoiceIndexStats,
}

/// The invoice dimension, indexed: see the module documentation.
pub struct InvoiceIndex {
    blocks: Blocks,
    storage: Storage,
    stats: InvoiceIndexStats,
    // Dropped last: the file it holds is closed first.
    _dir: SpillDir,
}

enum Storage {
    Memory(Vec<u8>),
    Disk { file: File, path: PathBuf },
}

impl InvoiceIndexBuilder {
    /// A builder for `table`, holding up to `budget` bytes of records in memory and spilling
    /// into `dir` (created when needed, removed with the index).
    pub fn new(table: &str, dir: PathBuf, budget: usize) -> InvoiceIndexBuilder {
        InvoiceIndexBuilder {
            table: table.to_string(),
            budget: budget.max(1),
            // A sibling, not a subdirectory: each directory is removed by its owner.
            seen: KeySet::new(sibling(&dir, "seen"), RECENT_KEYS),
            dir: SpillDir::new(dir),
            entries: Vec::new(),
            heap: Vec::new(),
            runs: Vec::new(),
            key_buf: Vec::with_capacity(64),
            stats: InvoiceIndexStats::default(),
        }
    }

    /// Index one typed batch of the invoice table. Returns its repeated invoices, set aside
    /// (the first row of each (vendor, number) is the one used).
    pub fn push(&mut self, batch: &RecordBatch) -> Result<Option<QuarantineBatch>> {
        let cols = InvoiceColumns::of(batch, &self.table)?;
        let mut repeats = Vec::new();
        for row in 0..batch.num_rows() {
            let Some((v, i)) = cols.key_parts(row) else {
                continue;
            };
            let key = invoice_key(&mut self.key_buf, v, i);
            if self.seen.first_line(key, row as u64)?.is_some() {
                repeats.push(Rejection {
                    row,
                    code: ReasonCode::DuplicateKey,
                    reason: format!(
                        "{}: invoice ({v:?}, {i:?}) repeats; the first row is used",
                        self.table
                    ),
                });
                continue;
            }
            let offset = u32::try_from(self.heap.len())
                .map_err(|_| corrupt("more than 4 GiB of invoices held in memory"))?;
            self.heap.extend_from_slice(&[0; 4]);
            let start = self.heap.len();
            cols.encode(row, &mut self.heap);
            let len = (self.heap.len() - start) as u32;
            self.heap[start - 4..start].copy_from_slice(&len.to_le_bytes());
            self.entries.push((key, offset));
            self.stats.invoices += 1;
            if self.heap.len() + self.entries.len() * 20 >= self.budget {
                self.spill()?;
            }
        }
        self.stats.repeats += repeats.len() as u64;
        if repeats.is_empty() {
            return Ok(None);
        }
        QuarantineBatch::from_rejections(StageName::Enrich, &self.table, batch, &repeats).map(Some)
    }

    fn payload(&self, offset: u32) -> &[u8] {
        let at = offset as usize;
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.heap[at..at + 4]);
        &self.heap[at + 4..at + 4 + u32::from_le_bytes(len) as usize]
    }

    /// Write the held records, sorted, as a run on disk.
    fn spill(&mut self) -> Result<()> {
        self.entries.sort_unstable_by_key(|(k, _)| *k);
        let (file, path) = self
            .dir
            .create(&format!("run-{:05}.bin", self.runs.len()))?;
        let mut out = BufWriter::with_capacity(1 << 16, file);
        for &(key, offset) in &self.entries {
            write_record(&mut out, key, self.payload(offset)).map_err(|e| Error::io(&path, e))?;
        }
        out.flush().map_err(|e| Error::io(&path, e))?;
        self.runs.push(path);
        self.entries.clear();
        self.heap.clear();
        self.stats.spilled_runs += 1;
        tracing::debug!(runs = self.runs.len(), "invoices spilled");
        Ok(())
    }

    /// The index: in memory if everything fit the budget, else the runs merged into one file.
    pub fn finish(mut self) -> Result<InvoiceIndex> {
        let mut blocks = Blocks::default();
        let storage = if self.runs.is_empty() {
            self.entries.sort_unstable_by_key(|(k, _)| *k);
            let mut bytes = Vec::with_capacity(self.heap.len() + self.entries.len() * KEY_LEN);
            for &(key, offset) in &self.entries {
                let payload = self.payload(offset);
                blocks.add(key, HEAD + payload.len());
                // Writing to a Vec cannot fail.
                let _ = write_record(&mut bytes, key, payload);
            }
            Storage::Memory(bytes)
        } else {
            if !self.entries.is_empty() {
                self.spill()?;
            }
            self.merge(&mut blocks)?
        };
        self.stats.blocks = blocks.fences.len() as u64;
        self.stats.on_disk = matches!(storage, Storage::Disk { .. });
        tracing::debug!(?self.stats, "invoice index built");
        Ok(InvoiceIndex {
            blocks,
            storage,
            stats: self.stats,
            _dir: self.dir,
        })
    }

    /// Merge the runs into one sorted file of blocks.
    fn merge(&mut self, blocks: &mut Blocks) -> Result<Storage> {
        let mut readers = Vec::with_capacity(self.runs.len());
        for path in &self.runs {
            let file = File::open(path).map_err(|e| Error::io(path, e))?;
            readers.push(RunReader {
                input: BufReader::with_capacity(1 << 16, file),
                path: path.clone(),
                key: 0,
                payload: Vec::new(),
            });
        }
        // (key, run): of equal keys the earlier run's (earlier rows) comes first.
        let mut heap = BinaryHeap::new();
        for (i, r) in readers.iter_mut().enumerate() {
            if r.advance()? {
                heap.push(Reverse((r.key, i)));
            }
        }
        let (file, path) = self.dir.create("invoices.bin")?;
        let mut out = BufWriter::with_capacity(1 << 16, &file);
        let mut last: Option<u128> = None;
        while let Some(Reverse((key, i))) = heap.pop() {
            let r = &mut readers[i];
            if last != Some(key) {
                blocks.add(key, HEAD + r.payload.len());
                write_record(&mut out, key, &r.payload).map_err(|e| Error::io(&path, e))?;
                last = Some(key);
            }
            if r.advance()? {
                heap.push(Reverse((r.key, i)));
            }
        }
        out.flush().map_err(|e| Error::io(&path, e))?;
        drop(out);
        drop(readers);
        for run in self.runs.drain(..) {
            if let Err(e) = std::fs::remove_file(&run) {
                tracing::warn!("cannot remove {}: {e}", run.display());
            }
        }
        Ok(Storage::Disk { file, path })
    }
}

impl InvoiceIndex {
    /// A builder: see [`InvoiceIndexBuilder::new`].
    pub fn builder(table: &str, dir: PathBuf, budget: usize) -> InvoiceIndexBuilder {
        InvoiceIndexBuilder::new(table, dir, budget)
    }

    pub fn stats(&self) -> InvoiceIndexStats {
        self.stats
    }

    /// The invoice columns (invoice_date, date_received, payment_date, description, status) for
    /// each key: NULLs where the key is None or not an invoice.
    pub fn gather(&self, keys: &[Option<u128>]) -> Result<Vec<ArrayRef>> {
        // Look keys up block by block, so that each block is read once per batch.
        let mut wanted: Vec<(usize, usize)> = keys
            .iter()
            .enumerate()
            .filter_map(|(row, k)| Some((self.blocks.find((*k)?)?, row)))
            .collect();
        wanted.sort_unstable();
        let mut found: Vec<Option<(u32, u32)>> = vec![None; keys.len()];
        let mut payloads = Vec::new();
        let mut read_buf = Vec::new();
        let mut current = usize::MAX;
        let mut block: &[u8] = &[];
        for (b, row) in wanted {
            if b != current {
                block = self.block(b, &mut read_buf)?;
                current = b;
            }
            if let Some(key) = keys[row] {
                if let Some(p) = find_in_block(block, key)? {
                    found[row] = Some((payloads.len() as u32, p.len() as u32));
                    payloads.extend_from_slice(p);
                }
            }
        }
        let mut out = Gathered::new(keys.len(), payloads.len());
        for f in found {
            match f {
                Some((at, len)) => {
                    let (at, len) = (at as usize, len as usize);
                    out.append(&payloads[at..at + len])?;
                }
                None => out.append_null(),
            }
        }
        Ok(out.finish())
    }

    fn block<'a>(&'a self, b: usize, buf: &'a mut Vec<u8>) -> Result<&'a [u8]> {
        let (start, end) = self.blocks.range(b);
        match &self.storage {
            Storage::Memory(bytes) => bytes
                .get(start as usize..end as usize)
                .ok_or_else(|| corrupt("block out of range")),
            Storage::Disk { file, path } => {
                buf.resize((end - start) as usize, 0);
                read_at(file, buf, start).map_err(|e| Error::io(path, e))?;
                Ok(buf)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::{typed_schema, TableRole};
    use arrow::array::{Date32Array, UInt64Array};

    /// A typed invoice batch: (vendor, number, description) with dates derived from the index.
    fn batch(rows: &[(&str, &str, Option<&str>)]) -> RecordBatch {
        let schema = typed_schema(TableRole::Invoice);
        let n = rows.len();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "source_line" => Arc::new(UInt64Array::from_iter_values(1..=n as u64)),
                    "vendor" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                    "invoice" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                    "description" => Arc::new(StringArray::from_iter(rows.iter().map(|r| r.2))),
                    "status" => Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|r| r.1.len().to_string()),
                    )),
                    "invoice_date" => Arc::new(Date32Array::from_iter_values(
                        rows.iter().map(|r| r.1.len() as i32 * 1000),
                    )),
                    "date_received" => Arc::new(Date32Array::from_iter(
                        rows.iter().map(|r| r.2.map(|d| d.len() as i32)),
                    )),
                    _ => arrow::array::new_null_array(f.data_type(), n),
                }
            })
            .collect();
        RecordBatch::try_new(schema, columns).expect("invoice batch")
    }

    fn key(v: &str, i: &str) -> u128 {
        invoice_key(&mut Vec::new(), v, i)
    }

    fn build(
        batches: &[RecordBatch],
        budget: usize,
    ) -> (InvoiceIndex, Vec<QuarantineBatch>, tempfile::TempDir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut b = InvoiceIndex::builder("APM", tmp.path().join("inv"), budget);
        let mut q = Vec::new();
        for batch in batches {
            q.extend(b.push(batch).expect("push"));
        }
        (b.finish().expect("finish"), q, tmp)
    }

    fn rows(n: usize) -> Vec<(String, String, Option<String>)> {
        (0..n)
            .map(|i| {
                (
                    format!("V{:03}", i % 97),
                    format!("{i:0width$}", width = 1 + i % 7),
                    (i % 5 != 0).then(|| "d".repeat(i % 300)),
                )
            })
            .collect()
    }

    fn as_batch(rows: &[(String, String, Option<String>)]) -> RecordBatch {
        let r: Vec<(&str, &str, Option<&str>)> = rows
            .iter()
            .map(|(v, i, d)| (v.as_str(), i.as_str(), d.as_deref()))
            .collect();
        batch(&r)
    }

    /// Every invoice is found with its columns, and a key that is not an invoice gives NULLs.
    fn check_lookups(index: &InvoiceIndex, rows: &[(String, String, Option<String>)]) {
        let mut keys: Vec<Option<u128>> = rows.iter().map(|(v, i, _)| Some(key(v, i))).collect();
        keys.push(Some(key("nobody", "0")));
        keys.push(None);
        let cols = index.gather(&keys).expect("gather");
        assert_eq!(cols.len(), 5);
        let inv_date = cols[0].as_primitive::<Date32Type>();
        let received = cols[1].as_primitive::<Date32Type>();
        let paid = cols[2].as_primitive::<Date32Type>();
        let desc = cols[3].as_string::<i32>();
        let status = cols[4].as_string::<i32>();
        for (r, (_, i, d)) in rows.iter().enumerate() {
            assert_eq!(inv_date.value(r), i.len() as i32 * 1000, "row {r}");
            assert_eq!(received.is_null(r), d.is_none(), "row {r}");
            assert!(paid.is_null(r), "row {r}: payment_date was NULL");
            assert_eq!(desc.is_null(r), d.is_none(), "row {r}");
            if let Some(d) = d {
                assert_eq!(desc.value(r), d, "row {r}");
                assert_eq!(received.value(r), d.len() as i32, "row {r}");
            }
            assert_eq!(status.value(r), i.len().to_string(), "row {r}");
        }
        for r in rows.len()..keys.len() {
            for c in &cols {
                assert!(c.is_null(r), "row {r} is not an invoice");
            }
        }
    }

    #[test]
    fn in_memory_index_finds_every_invoice() {
        let rows = rows(5000);
        let (index, q, _tmp) = build(&[as_batch(&rows)], DEFAULT_INVOICE_MEMORY);
        assert!(q.is_empty());
        let stats = index.stats();
        assert!(!stats.on_disk);
        assert_eq!(stats.invoices, 5000);
        assert!(stats.blocks > 10, "{stats:?}");
        check_lookups(&index, &rows);
    }

    #[test]
    fn spilled_index_finds_exactly_what_the_in_memory_one_does() {
        let rows = rows(5000);
        let batches: Vec<RecordBatch> = rows.chunks(700).map(as_batch).collect();
        let (index, q, tmp) = build(&batches, 20_000);
        assert!(q.is_empty());
        let stats = index.stats();
        assert!(stats.on_disk, "{stats:?}");
        assert!(stats.spilled_runs >= 10, "{stats:?}");
        let dir = tmp.path().join("inv");
        let files: Vec<_> = std::fs::read_dir(&dir)
            .expect("spill dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(files, ["invoices.bin"], "the runs are merged and removed");
        check_lookups(&index, &rows);
        drop(index);
        assert!(!dir.exists(), "the spill directory goes with the index");
    }

    #[test]
    fn repeats_keep_the_first_row_and_are_quarantined_across_batches_and_spills() {
        let first = batch(&[("V1", "A", Some("first")), ("V1", "B", None)]);
        let second = batch(&[
            ("V2", "A", None),
            ("V1", "A", Some("second")),
            (TEMPLATE_INVOICE, TEMPLATE_INVOICE, None),
            (TEMPLATE_INVOICE, TEMPLATE_INVOICE, None),
        ]);
        for budget in [DEFAULT_INVOICE_MEMORY, 1] {
            let (index, q, _tmp) = build(&[first.clone(), second.clone()], budget);
            assert_eq!(index.stats().invoices, 3, "budget {budget}");
            assert_eq!(index.stats().repeats, 1);
            assert_eq!(q.len(), 1);
            let reasons = q[0].batch.column_by_name("reason").expect("reason");
            assert_eq!(
                reasons.as_string::<i32>().value(0),
                "APM: invoice (\"V1\", \"A\") repeats; the first row is used"
            );
            let cols = index
                .gather(&[
                    Some(key("V1", "A")),
                    Some(key(TEMPLATE_INVOICE, TEMPLATE_INVOICE)),
                ])
                .expect("gather");
            assert_eq!(cols[3].as_string::<i32>().value(0), "first");
            assert!(cols[3].is_null(1), "the template invoice is not indexed");
        }
    }

    #[test]
    fn nothing_is_left_on_disk_whichever_part_spilled() {
        let rows = rows(3000);
        let batches: Vec<RecordBatch> = rows.chunks(500).map(as_batch).collect();
        for budget in [DEFAULT_INVOICE_MEMORY, 20_000] {
            let tmp = tempfile::tempdir().expect("tempdir");
            let mut b = InvoiceIndexBuilder::new("APM", tmp.path().join("inv"), budget);
            // A repeat check that spills (the index itself only with the small budget).
            b.seen = KeySet::new(sibling(&tmp.path().join("inv"), "seen"), 100);
            for batch in &batches {
                b.push(batch).expect("push");
            }
            let index = b.finish().expect("finish");
            check_lookups(&index, &rows);
            drop(index);
            let left: Vec<_> = std::fs::read_dir(tmp.path())
                .expect("tmp")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert!(left.is_empty(), "budget {budget}: {left:?} left behind");
        }
    }

    #[test]
    fn a_record_larger_than_a_block_is_found() {
        let big = "x".repeat(3 * BLOCK);
        let b = batch(&[
            ("V", "1", Some("a")),
            ("V", "2", Some(&big)),
            ("V", "3", None),
        ]);
        for budget in [DEFAULT_INVOICE_MEMORY, 1] {
            let (index, _, _tmp) = build(std::slice::from_ref(&b), budget);
            let cols = index
                .gather(&[
                    Some(key("V", "2")),
                    Some(key("V", "3")),
                    Some(key("V", "1")),
                ])
                .expect("gather");
            let desc = cols[3].as_string::<i32>();
            assert_eq!(desc.value(0), big);
            assert!(desc.is_null(1));
            assert_eq!(desc.value(2), "a");
        }
    }

    #[test]
    fn a_corrupt_block_is_an_error_not_a_panic() {
        let key = 7u128;
        let mut block = Vec::new();
        write_record(&mut block, key, b"\0abc").expect("vec");
        assert!(find_in_block(&block, key).is_ok());
        block.truncate(block.len() - 2);
        assert!(find_in_block(&block, key).is_err());
        let mut g = Gathered::new(1, 0);
        assert!(g.append(b"\0abc").is_err(), "a short payload is an error");
    }
}
