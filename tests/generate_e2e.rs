//! A generated company syncs end to end: into the embedded sandbox seeded with the generated
//! Procore seed, everything reconciles and nothing is unmapped.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use jcsync::config::FileFormat;
use jcsync::sandbox::Seed;
use jcsync::tools::generate::{generate, GenerateOptions, GenerateSummary};

fn generated(dir: &Path, format: FileFormat) -> GenerateSummary {
    generate(&GenerateOptions {
        transactions: 5_000,
        jobs: 8,
        seed: 42,
        out: dir.to_path_buf(),
        format,
    })
    .expect("generate")
}

fn sandbox_pipeline(dir: &Path, source: &Path, format: &str) -> std::path::PathBuf {
    let text = format!(
        r#"company = "GEN"
[source]
kind = "files"
dir = {source:?}
format = "{format}"
[stage]
dir = {runs:?}
[target]
kind = "sandbox"
seed = {seed:?}
rate_limit = false
[load]
hourly_limit = 1000000
spike_limit = 100000
[report]
quarantine_exit_code = 0
"#,
        source = source.display().to_string(),
        runs = dir.join("runs").display().to_string(),
        seed = source.join("procore").display().to_string(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

#[test]
fn generated_company_loads_into_its_sandbox_and_reconciles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("sage");
    let summary = generated(&data, FileFormat::Csv);
    let outcome = common::run_sync(&sandbox_pipeline(dir.path(), &data, "csv")).expect("sync");
    let report = &outcome.report;
    assert!(report.reconciled, "{:?}", report.counts);
    assert_eq!(report.counts.extracted, summary.transactions);
    assert_eq!(report.counts.filtered, summary.non_cost_rows);
    assert_eq!(report.counts.quarantined_total, summary.bad_rows());
    assert_eq!(report.counts.planned, summary.cost_rows);
    let load = report.load.as_ref().expect("a load report");
    assert!(load.failure.is_none(), "{:?}", load.failure);
    assert_eq!(
        load.counts.quarantined_total(),
        0,
        "the seed maps every project, vendor and budget code: {:?}",
        load.counts.quarantined
    );
    assert_eq!(report.counts.loaded, Some(summary.cost_rows));
}

#[test]
fn generated_seed_covers_every_planned_budget_code_project_and_vendor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("sage");
    generated(&data, FileFormat::Parquet);
    let pipeline = common::write_pipeline(dir.path(), &data, "parquet", "zstd", "");
    let outcome = common::run_sync(&pipeline).expect("sync");
    assert!(outcome.report.reconciled);
    let seed = Seed::load_dir(&data.join("procore")).expect("seed");
    let projects: BTreeSet<&str> = seed
        .projects
        .iter()
        .map(|p| p.project_number.as_str())
        .collect();
    let codes: BTreeSet<(String, String)> = seed
        .wbs_codes
        .iter()
        .map(|w| {
            (
                w.project_number.clone().unwrap_or_default(),
                w.flat_code.clone(),
            )
        })
        .collect();
    for t in &outcome.report.totals {
        assert!(projects.contains(t.job.as_str()), "job {}", t.job);
        let cc = t.cost_code.as_deref().unwrap_or("");
        let cat = t.category.as_deref().unwrap_or("");
        let flat = match &t.extra {
            Some(e) => format!("{e}.{cc}.{cat}"),
            None => format!("{cc}.{cat}"),
        };
        assert!(
            codes.contains(&(t.job.clone(), flat.clone())),
            "{} {flat}",
            t.job
        );
    }
    let vendors: BTreeSet<&str> = seed
        .vendors
        .iter()
        .filter_map(|v| v.origin_id.as_deref())
        .collect();
    let staged = common::read_parquet(&common::staged_files(&outcome.run_dir));
    for v in common::strings(&staged, "vendor").into_iter().flatten() {
        assert!(vendors.contains(v.as_str()), "vendor {v}");
    }
}
