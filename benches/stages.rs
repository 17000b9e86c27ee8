//! Throughput of each pipeline stage alone, in rows/s, on a generated company.
//!
//! `cargo bench --bench stages` (rows: `JCSYNC_BENCH_ROWS`, default 200 000). The company is
//! generated once per run into a temp dir (CSV and Parquet); each stage is then measured on the
//! output of the one before it, held in memory, so a stage's number is its own cost.
//! Numbers live in BENCHMARKS.md.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use jcsync::config::{FileFormat, PipelineConfig};
use jcsync::extract::SageSource;
use jcsync::load::plan::{PlannedRequest, Planner, RequestSink, MAX_SYNC_RECORDS};
use jcsync::model::schema::enriched_schema;
use jcsync::staging::{staged_part_name, writer_properties, ParquetFileSet};
use jcsync::tools::generate::{generate, GenerateOptions};
use jcsync::transform::enrich::invoices::DEFAULT_INVOICE_MEMORY;
use jcsync::transform::enrich::{Dimensions, Enricher};
use jcsync::transform::project::Projector;

/// Counts requests and drops them: the plan stage's own cost, without serialization.
struct CountingSink(usize);

impl RequestSink for CountingSink {
    fn send(&mut self, request: PlannedRequest) -> jcsync::Result<()> {
        self.0 += request.records();
        Ok(())
    }
}

fn config(dir: &Path, format: &str) -> PipelineConfig {
    PipelineConfig::parse(&format!(
        "company = \"GEN\"\n[source]\nkind = \"files\"\ndir = {:?}\nformat = \"{format}\"\n[target]\nkind = \"dry-run\"\n",
        dir.display().to_string()
    ))
    .expect("bench config")
}

fn extract_all(config: &PipelineConfig) -> Vec<RecordBatch> {
    let source = SageSource::open(config).expect("source");
    source
        .transactions()
        .expect("transactions")
        .map(|t| t.expect("typed").batch)
        .collect()
}

fn dimensions(config: &PipelineConfig, spill: std::path::PathBuf) -> Arc<Dimensions> {
    let source = SageSource::open(config).expect("source");
    let (dims, _) =
        Dimensions::load(&source, spill, DEFAULT_INVOICE_MEMORY, |_| Ok(())).expect("dimensions");
    Arc::new(dims)
}

fn rows(batches: &[RecordBatch]) -> u64 {
    batches.iter().map(|b| b.num_rows() as u64).sum()
}

fn stages(c: &mut Criterion) {
    let n: u64 = std::env::var("JCSYNC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let csv_dir = tmp.path().join("csv");
    let parquet_dir = tmp.path().join("parquet");
    for (dir, format) in [
        (&csv_dir, FileFormat::Csv),
        (&parquet_dir, FileFormat::Parquet),
    ] {
        generate(&GenerateOptions {
            transactions: n,
            jobs: 50,
            seed: 1,
            out: dir.clone(),
            format,
        })
        .expect("generate");
    }
    let csv = config(&csv_dir, "csv");
    let parquet = config(&parquet_dir, "parquet");

    let extracted = extract_all(&csv);
    let mut projector = Projector::new(&csv);
    let projected: Vec<RecordBatch> = extracted
        .iter()
        .map(|b| projector.process(b).expect("project").batch)
        .collect();
    let dims = dimensions(&csv, tmp.path().join("invoices"));
    let enricher = Enricher::new(dims.clone(), "GEN", "JCT_CURRENT__TRANSACTION");
    let enriched: Vec<RecordBatch> = projected
        .iter()
        .map(|b| enricher.process(b).expect("enrich").batch)
        .collect();

    let mut g = c.benchmark_group("stage");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));

    g.throughput(Throughput::Elements(n));
    g.bench_function("extract_csv", |b| b.iter(|| rows(&extract_all(&csv))));
    g.bench_function("extract_parquet", |b| {
        b.iter(|| rows(&extract_all(&parquet)))
    });
    g.bench_function("project", |b| {
        b.iter(|| {
            let mut p = Projector::new(&csv);
            extracted
                .iter()
                .map(|x| p.process(x).expect("project").batch.num_rows())
                .sum::<usize>()
        })
    });

    g.throughput(Throughput::Elements(rows(&projected)));
    g.bench_function("enrich", |b| {
        b.iter(|| {
            projected
                .iter()
                .map(|x| enricher.process(x).expect("enrich").batch.num_rows())
                .sum::<usize>()
        })
    });

    g.throughput(Throughput::Elements(rows(&enriched)));
    let props =
        writer_properties(&csv.stage, &jcsync::model::schema::enriched_schema()).expect("props");
    g.bench_function("stage_write", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("run dir"),
            |run_dir| {
                let mut set = ParquetFileSet::new(
                    run_dir.path(),
                    staged_part_name,
                    enriched_schema(),
                    props.clone(),
                    csv.stage.part_rows,
                );
                for x in &enriched {
                    set.write(x).expect("write");
                }
                set.finish().expect("finish").len()
            },
            BatchSize::PerIteration,
        )
    });
    g.bench_function("plan", |b| {
        b.iter(|| {
            let mut planner = Planner::new(MAX_SYNC_RECORDS);
            let mut sink = CountingSink(0);
            for x in &enriched {
                planner.process(x, &mut sink).expect("plan");
            }
            planner.finish(&mut sink).expect("finish");
            sink.0
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
