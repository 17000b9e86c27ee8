//! Shared helpers for the end-to-end tests: pipelines in temp dirs, reading run files back.
#![allow(dead_code)]

pub mod forwarder;
pub mod peer;
pub mod process;
pub mod webhook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use jcsync::config::Pipeline;
use jcsync::pipeline::{sync, RunOutcome, SyncOptions};

/// A two-thread runtime for tests that run the embedded sandbox beside a sync.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

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

/// Env var names a test pipeline reads the sandbox credentials from.
pub const CLIENT_ID_ENV: &str = "JCSYNC_TEST_CLIENT_ID";
pub const CLIENT_SECRET_ENV: &str = "JCSYNC_TEST_CLIENT_SECRET";

/// Make the demo seed's credentials available under the test env names (same values everywhere,
/// so setting them from parallel tests is harmless).
pub fn set_sandbox_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var(CLIENT_ID_ENV, "demo-client");
        std::env::set_var(CLIENT_SECRET_ENV, "demo-secret");
    });
}

/// A pipeline loading `source_dir` into the Procore API at `url` (a test sandbox).
pub fn write_load_pipeline(
    dir: &Path,
    source_dir: &Path,
    url: &str,
    company_id: i64,
    load: &str,
) -> PathBuf {
    let text = format!(
        r#"company = "DEMO"
[source]
kind = "files"
dir = {source:?}
format = "csv"
[stage]
dir = {runs:?}
[target]
kind = "procore"
api_url = "{url}"
login_url = "{url}"
company_id = {company_id}
client_id_env = "{CLIENT_ID_ENV}"
client_secret_env = "{CLIENT_SECRET_ENV}"
[load]
{load}
"#,
        source = source_dir.display().to_string(),
        runs = dir.join("runs").display().to_string(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

/// Copy the Sage fixtures into `to` (so a test can change them).
pub fn copy_sage_fixtures(to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(repo().join("fixtures/sage")).expect("fixtures") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy");
    }
}

/// Header of a synthetic Transaction (JC) file: the columns jcsync reads, no excluded ones.
pub const TRANSACTION_HEADER: &str = "Job,Extra,Cost_Code,Category,Transaction_Type,Transaction_Date,Accounting_Date,Description,Units,Unit_Cost,Amount,Vendor,Invoice,Dist_Sequence,Application_of_Origin,Batch,Run,Sequence,Commitment,Commitment_Line_Item,Period_End_Date,Date_Stamp,Time_Stamp";

/// Copy the four dimension tables of the fixtures into `to` (a test then writes its own
/// transactions there).
pub fn copy_dimension_fixtures(to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for t in [
        "JCM_MASTER__JOB",
        "GLM_MASTER__ACCOUNT_PREFIX_A",
        "GLM_MASTER__ACCOUNT",
        "APM_MASTER__INVOICE",
    ] {
        std::fs::copy(
            repo().join(format!("fixtures/sage/{t}.csv")),
            to.join(format!("{t}.csv")),
        )
        .expect("copy");
    }
}

/// Writes the sandbox received (PATCH syncs and POSTs to its REST routes).
pub fn sandbox_writes(stats: &jcsync::sandbox::Stats) -> u64 {
    stats
        .requests
        .iter()
        .filter(|(route, _)| route.starts_with("PATCH") || route.starts_with("POST /rest"))
        .flat_map(|(_, by)| by.values())
        .sum()
}

/// Expected totals per (project number, flat budget code), from `fixtures/expected/totals.csv`.
pub fn expected_budget_totals() -> BTreeMap<(String, String), String> {
    read_csv(&repo().join("fixtures/expected/totals.csv"))
        .into_iter()
        .map(|r| {
            let flat = if r["extra"].is_empty() {
                format!("{}.{}", r["cost_code"], r["category"])
            } else {
                format!("{}.{}.{}", r["extra"], r["cost_code"], r["category"])
            };
            ((r["job"].clone(), flat), r["amount"].clone())
        })
        .collect()
}

/// Totals per (project number, flat budget code) in a sandbox, amounts with 2 decimals.
pub fn sandbox_budget_totals(
    summary: &jcsync::sandbox::CostSummary,
) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    for p in &summary.projects {
        for (code, t) in &p.by_budget_code {
            out.insert(
                (p.project_number.clone(), code.clone()),
                format!("{:.2}", t.total),
            );
        }
    }
    out
}

/// Every origin_id in the sandbox is unique, and the counts are what the fixtures plan.
pub fn assert_no_duplicates(db: &jcsync::sandbox::Db, direct_costs: usize, lines: usize) {
    let dc: Vec<_> = db
        .direct_costs
        .values()
        .filter_map(|d| d.origin_id.clone())
        .collect();
    let li: Vec<_> = db
        .line_items
        .values()
        .filter_map(|l| l.origin_id.clone())
        .collect();
    let dc_set: std::collections::BTreeSet<_> = dc.iter().collect();
    let li_set: std::collections::BTreeSet<_> = li.iter().collect();
    assert_eq!(dc.len(), dc_set.len(), "duplicate direct cost origin_id");
    assert_eq!(li.len(), li_set.len(), "duplicate line origin_id");
    assert_eq!(db.direct_costs.len(), direct_costs, "direct costs");
    assert_eq!(db.line_items.len(), lines, "line items");
}

/// The fixture company plans this many direct costs and lines (`fixtures/expected/`).
pub const FIXTURE_DIRECT_COSTS: usize = 21;
pub const FIXTURE_LINES: usize = 35;

/// What Procore holds once the fixture company is fully loaded: every planned direct cost and
/// line once, budget totals to the cent.
pub fn assert_fixture_company_loaded(sandbox: &jcsync::sandbox::SandboxHandle) {
    assert_no_duplicates(&sandbox.snapshot(), FIXTURE_DIRECT_COSTS, FIXTURE_LINES);
    assert_eq!(
        sandbox_budget_totals(&sandbox.cost_summary()),
        expected_budget_totals()
    );
}

/// Every file below `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

/// A bearer token from a sandbox at `url` for the demo seed's client (`demo-client`), as an
/// app gets one from Procore's `POST /oauth/token` (client credentials).
pub async fn sandbox_token(http: &reqwest::Client, url: &str) -> String {
    let token: serde_json::Value = http
        .post(format!("{url}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "demo-client"),
            ("client_secret", "demo-secret"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    token["access_token"]
        .as_str()
        .expect("access token")
        .to_string()
}

/// One cost transaction row (the columns of `TRANSACTION_HEADER`), described `{label} {seq}`;
/// `seq` keeps keys apart.
#[allow(clippy::too_many_arguments)]
pub fn cost_txn(
    label: &str,
    job: &str,
    extra: &str,
    code: &str,
    cat: &str,
    ty: &str,
    amount: &str,
    vendor: &str,
    invoice: &str,
    seq: u32,
) -> String {
    format!(
        "{job},{extra},{code},{cat},{ty},2024-03-01,2024-03-04,{label} {seq},1,{amount},{amount},{vendor},{invoice},1,JC,B{seq},500,{seq},,,,2024-03-04,08:00:00"
    )
}
