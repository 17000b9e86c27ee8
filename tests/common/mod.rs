//! Shared helpers for the end-to-end tests: pipelines in temp dirs, reading run files back.
#![allow(dead_code)]

pub mod peer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use jcsync::config::Pipeline;
use jcsync::pipeline::{sync, RunOutcome, SyncOptions};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Write a pipeline file into `dir` reading `source_dir` and staging into `dir/runs`.
/// `extra` is appended (extra sections, e.g. `[report]`).
pub fn write_pipeline(
    dir: &Path,
    source_dir: &Path,
    format: &str,
    compression: &str,
    extra: &str,
) -> PathBuf {
    let text = format!(
        r#"company = "DEMO"
[source]
kind = "files"
dir = {source:?}
format = "{format}"
[stage]
dir = {runs:?}
compression = "{compression}"
row_group_rows = 16
[target]
kind = "dry-run"
{extra}
"#,
        source = source_dir.display().to_string(),
        runs = dir.join("runs").display().to_string(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

/// Run a sync of a pipeline file on a fresh runtime.
pub fn run_sync(pipeline: &Path) -> jcsync::Result<RunOutcome> {
    let p = Pipeline::load(pipeline)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(sync(&p, &SyncOptions::default()))
}

/// All rows of the Parquet files matching a prefix in a run dir, as one batch.
pub fn read_parquet(paths: &[PathBuf]) -> RecordBatch {
    let mut batches = Vec::new();
    let mut schema = None;
    for p in paths {
        let f = std::fs::File::open(p).expect("open parquet");
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .expect("parquet")
            .build()
            .expect("reader");
        schema.get_or_insert_with(|| arrow::record_batch::RecordBatchReader::schema(&reader));
        for b in reader {
            batches.push(b.expect("batch"));
        }
    }
    concat_batches(&schema.expect("at least one file"), &batches).expect("concat")
}

/// Staged part files of a run, sorted.
pub fn staged_files(run_dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(run_dir.join("staged"))
        .expect("staged dir")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

/// A text column as Vec<Option<String>>.
pub fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"));
    let c = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8).expect("cast");
    let s = c.as_string::<i32>();
    (0..s.len())
        .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
        .collect()
}

/// A u64 column.
pub fn u64s(batch: &RecordBatch, name: &str) -> Vec<u64> {
    let c = batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"));
    c.as_primitive::<arrow::datatypes::UInt64Type>()
        .values()
        .to_vec()
}

/// Read a CSV with a header as rows of column → value.
pub fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).expect("csv");
    let headers = r.headers().expect("headers").clone();
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}
