//! Planning alone, for instruction counts: a run's staged Parquet is read into memory first, then
//! planned into a sink that only counts records (what `cargo bench --bench stages -- plan` times,
//! on a fixed input and without timer noise).
//!
//! ```sh
//! cargo build --release --example plan_ir
//! valgrind --tool=callgrind --toggle-collect='plan_ir::plan_all' \
//!     target/release/examples/plan_ir runs/<run-id>
//! ```
//!
//! Prints lines, header records and requests; with `--toggle-collect` callgrind's total is the
//! planner's own instructions (reading Parquet is not counted).

use std::path::PathBuf;

use arrow::array::RecordBatch;
use jcsync::load::plan::{PlannedRequest, Planner, RequestSink, MAX_SYNC_RECORDS};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Counts records and requests, drops the rest.
#[derive(Default)]
struct CountingSink {
    headers: usize,
    lines: usize,
    requests: usize,
}

impl RequestSink for CountingSink {
    fn send(&mut self, request: PlannedRequest) -> jcsync::Result<()> {
        self.requests += 1;
        match &request {
            PlannedRequest::HeaderSync { .. } => self.headers += request.records(),
            PlannedRequest::LineSync { .. } => self.lines += request.records(),
        }
        Ok(())
    }
}

#[inline(never)]
fn plan_all(batches: &[RecordBatch], sink: &mut CountingSink) -> jcsync::Result<()> {
    let mut planner = Planner::new(MAX_SYNC_RECORDS);
    for b in batches {
        planner.process(b, sink)?;
    }
    planner.finish(sink)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: plan_ir RUN_DIR")?;
    let mut parts: Vec<PathBuf> = std::fs::read_dir(run.join("staged"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    parts.sort();
    let mut batches = Vec::new();
    for p in parts {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p)?)?.build()?;
        for b in reader {
            batches.push(b?);
        }
    }
    let mut sink = CountingSink::default();
    plan_all(&batches, &mut sink)?;
    println!(
        "{} lines, {} header records, {} requests",
        sink.lines, sink.headers, sink.requests
    );
    Ok(())
}
