//! The origin ids and request bytes of a generated company are pinned: Procore already holds
//! these ids, so a change to the id scheme, the grouping rule or the payload serializer turns
//! every later sync into duplicates or needless updates. The fixtures' ids are pinned in
//! `demo_e2e.rs`; this covers the generator's wider mix (every cost type, payroll periods,
//! invoices across jobs, 3,912 lines). The digests were written by the binary before the
//! restructure of issue 15 (`c0bf492`).

mod common;

use std::path::Path;

use jcsync::config::FileFormat;
use jcsync::tools::generate::{generate, GenerateOptions};
use sha2::{Digest, Sha256};

/// sha256 of the sorted `line_origin_id,direct_cost_origin_id\n` lines of the staged rows.
const STAGED_IDS_SHA256: &str = "3510b17256784fad0938c0fa0749a679d547b63775f8ca667ae8de9d58f201ff";
/// sha256 of the dry run's `requests.ndjson`.
const REQUESTS_SHA256: &str = "7ab649cebb69f0c0cd28988854c0ca9087c7f3eebbbd1d928324c27b7887dc99";

fn dry_run_pipeline(dir: &Path, source: &Path) -> std::path::PathBuf {
    let text = format!(
        "company = \"GEN\"\n[source]\nkind = \"files\"\ndir = {:?}\nformat = \"csv\"\n[stage]\ndir = {:?}\n[target]\nkind = \"dry-run\"\n[report]\nquarantine_exit_code = 0\n",
        source.display().to_string(),
        dir.join("runs").display().to_string(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

#[test]
fn a_generated_companys_origin_ids_and_requests_never_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("sage");
    generate(&GenerateOptions {
        transactions: 5_000,
        jobs: 8,
        seed: 42,
        out: data.clone(),
        format: FileFormat::Csv,
    })
    .expect("generate");
    let outcome = common::run_sync(&dry_run_pipeline(dir.path(), &data)).expect("sync");
    let staged = common::read_parquet(&common::staged_files(&outcome.run_dir));
    let lines = common::strings(&staged, "line_origin_id");
    let dcs = common::strings(&staged, "direct_cost_origin_id");
    assert_eq!(lines.len(), 3_912, "staged rows");
    let mut pairs: Vec<String> = lines
        .iter()
        .zip(&dcs)
        .map(|(l, d)| {
            format!(
                "{},{}\n",
                l.as_deref().expect("line id"),
                d.as_deref().expect("direct cost id")
            )
        })
        .collect();
    pairs.sort();
    assert!(pairs[0].starts_with("jcsync:GEN:line:"), "{}", pairs[0]);
    assert_eq!(
        hex::encode(Sha256::digest(pairs.concat().as_bytes())),
        STAGED_IDS_SHA256,
        "the staged origin ids changed"
    );
    let requests = std::fs::read(outcome.run_dir.join("requests.ndjson")).expect("requests");
    assert_eq!(
        requests.iter().filter(|&&b| b == b'\n').count(),
        18,
        "request lines"
    );
    assert_eq!(
        hex::encode(Sha256::digest(&requests)),
        REQUESTS_SHA256,
        "the dry run's requests changed"
    );
}
