//! Throughput of the sandbox on 1000-record sync bodies, rate limit off, over real HTTP on
//! 127.0.0.1 (client and server share the machine). Run with
//! `cargo bench --bench sandbox_throughput`; numbers live in docs/BENCHMARKS-sandbox.md.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use jcsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

const COMPANY: i64 = 4_294_967_396;
const PROJECT_1001: i64 = 4_294_968_001;
/// The first of the 45 budget codes of project 1001.
const FIRST_WBS_1001: i64 = 4_294_970_001;
const RECORDS: usize = 1000;
const DIRECT_COSTS_PER_BODY: usize = 10;

#[derive(serde::Deserialize)]
struct Answer {
    #[allow(dead_code)]
    entities: serde::de::IgnoredAny,
    errors: Vec<serde::de::IgnoredAny>,
}

struct Bench {
    sandbox: SandboxHandle,
    http: reqwest::Client,
    token: String,
}

impl Bench {
    async fn patch(&self, path: &str, body: Vec<u8>) {
        let resp = self
            .http
            .patch(format!("{}{path}", self.sandbox.url()))
            .bearer_auth(&self.token)
            .header("Procore-Company-Id", COMPANY.to_string())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sync request");
        assert_eq!(resp.status(), 200);
        // Skim the answer without building it, so the client's own cost stays small.
        let bytes = resp.bytes().await.expect("sync body");
        let answer: Answer = serde_json::from_slice(&bytes).expect("sync json");
        assert!(answer.errors.is_empty(), "bench bodies are valid");
    }
}

fn headers_path() -> String {
    format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs/sync")
}

fn lines_path() -> String {
    format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs/line_items/sync")
}

fn header_body(prefix: &str) -> Vec<u8> {
    let updates: Vec<Value> = (0..RECORDS)
        .map(|i| {
            json!({
                "direct_cost_type": "invoice", "vendor_id": 4_294_969_100_i64,
                "invoice_number": format!("INV-{i}"), "direct_cost_date": "2024-03-01",
                "status": "approved", "description": "bench header",
                "origin_id": format!("{prefix}-{i}"),
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "updates": updates })).expect("json")
}

fn line_body(prefix: &str, direct_costs: &[i64]) -> Vec<u8> {
    let updates: Vec<Value> = (0..RECORDS)
        .map(|i| {
            json!({
                "direct_cost_id": direct_costs[i % direct_costs.len()],
                "wbs_code_id": FIRST_WBS_1001 + (i % 45) as i64,
                "amount": format!("{}.{:02}", i * 7 % 5000, i % 100),
                "quantity": "1", "unit_cost": format!("{}.{:02}", i * 7 % 5000, i % 100),
                "description": "bench line",
                "origin_id": format!("{prefix}-{i}"),
            })
        })
        .collect();
    serde_json::to_vec(&json!({ "updates": updates })).expect("json")
}

async fn setup() -> (Bench, Vec<Vec<i64>>) {
    let mut config =
        SandboxConfig::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/procore"));
    config.rate_limit = None;
    let sandbox = Sandbox::start(config).await.expect("sandbox");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let token: Value = http
        .post(format!("{}/oauth/token", sandbox.url()))
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
    let token = token["access_token"].as_str().expect("token").to_owned();
    let bench = Bench {
        sandbox,
        http,
        token,
    };
    // Four disjoint groups of direct costs, so concurrent line bodies never meet a 409.
    let mut groups = Vec::new();
    for g in 0..4 {
        let updates: Vec<Value> = (0..DIRECT_COSTS_PER_BODY)
            .map(|i| json!({"direct_cost_type": "expense", "direct_cost_date": "2024-03-01", "origin_id": format!("group{g}-dc{i}")}))
            .collect();
        let resp: Value = bench
            .http
            .patch(format!("{}{}", bench.sandbox.url(), headers_path()))
            .bearer_auth(&bench.token)
            .header("Procore-Company-Id", COMPANY.to_string())
            .json(&json!({ "updates": updates }))
            .send()
            .await
            .expect("headers")
            .json()
            .await
            .expect("headers json");
        groups.push(
            resp["entities"]
                .as_array()
                .expect("entities")
                .iter()
                .filter_map(|e| e["id"].as_i64())
                .collect(),
        );
    }
    (bench, groups)
}

fn throughput(c: &mut Criterion) {
    let rt = Runtime::new().expect("runtime");
    let (bench, groups) = rt.block_on(setup());
    let mut group = c.benchmark_group("sandbox");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Elements(RECORDS as u64));

    // Steady state: the same 1000 lines re-sent (origin_id upsert → updates).
    let update_body = line_body("steady", &groups[0]);
    rt.block_on(bench.patch(&lines_path(), update_body.clone()));
    group.bench_function("line_items_sync_1000_updates", |b| {
        b.iter(|| rt.block_on(bench.patch(&lines_path(), update_body.clone())))
    });

    let header_update = header_body("hdr");
    rt.block_on(bench.patch(&headers_path(), header_update.clone()));
    group.bench_function("direct_costs_sync_1000_updates", |b| {
        b.iter(|| rt.block_on(bench.patch(&headers_path(), header_update.clone())))
    });

    // Four clients at once, each on its own direct costs: 4000 records per iteration.
    let bodies: Vec<Vec<u8>> = groups
        .iter()
        .enumerate()
        .map(|(g, dcs)| line_body(&format!("par{g}"), dcs))
        .collect();
    group.throughput(Throughput::Elements(4 * RECORDS as u64));
    let path = lines_path();
    group.bench_function("line_items_sync_1000_updates_x4_concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let sends = bodies.iter().map(|body| bench.patch(&path, body.clone()));
                futures::future::join_all(sends).await;
            })
        })
    });
    // Growth: 1000 new lines per request (last, as it grows the state by ~1000 lines per iteration).
    group.throughput(Throughput::Elements(RECORDS as u64));
    let mut n = 0u64;
    group.bench_function("line_items_sync_1000_creates", |b| {
        b.iter_batched(
            || {
                n += 1;
                line_body(&format!("new{n}"), &groups[1])
            },
            |body| rt.block_on(bench.patch(&lines_path(), body)),
            BatchSize::PerIteration,
        )
    });

    group.finish();
    rt.block_on(bench.sandbox.shutdown());
}

criterion_group!(benches, throughput);
criterion_main!(benches);
