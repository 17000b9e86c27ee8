//! `jcsync check` against the embedded Procore sandbox: every job's project, the vendors and
//! budget codes Procore lacks, projects whose Direct Costs tool is off, refused logins; exact
//! rows and amounts, in the text report and in the JSON, and the exit status.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use jcsync::sandbox::{Sandbox, SandboxConfig};
use serde_json::Value;

/// One cost transaction of a synthetic Transaction (JC) file (the columns of
/// [`TRANSACTION_HEADER`]); `seq` keeps natural keys apart.
#[allow(clippy::too_many_arguments)]
fn txn(
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
    cost_txn(
        "check row",
        job,
        extra,
        code,
        cat,
        ty,
        amount,
        vendor,
        invoice,
        seq,
    )
}

/// Rows that all map onto the demo seed (fixtures/procore): 3 rows, 425.85.
fn clean_rows() -> Vec<String> {
    vec![
        txn("1001", "1", "01-100", "L", "PR cost", "100.10", "", "", 1),
        txn(
            "1001", "", "02-200", "M", "AP cost", "250.25", "V100", "INV-1", 2,
        ),
        txn("1002", "", "03-300", "E", "EQ cost", "75.50", "", "", 3),
    ]
}

/// A Sage company: the fixture dimensions and `rows` as the transactions.
fn sage_dir(dir: &Path, rows: &[String]) -> PathBuf {
    let sage = dir.join("sage");
    copy_dimension_fixtures(&sage);
    let mut text = format!("{TRANSACTION_HEADER}\n");
    for r in rows {
        text.push_str(r);
        text.push('\n');
    }
    std::fs::write(sage.join("JCT_CURRENT__TRANSACTION.csv"), text).expect("write transactions");
    sage
}

/// A copy of the demo Procore seed, with `project_tools` as its project_tools.json if given.
fn seed_dir(dir: &Path, project_tools: Option<&str>) -> PathBuf {
    let seed = dir.join("procore");
    std::fs::create_dir_all(&seed).expect("mkdir");
    for f in [
        "company.json",
        "projects.json",
        "vendors.json",
        "wbs_codes.json",
    ] {
        std::fs::copy(repo().join("fixtures/procore").join(f), seed.join(f)).expect("copy seed");
    }
    if let Some(t) = project_tools {
        std::fs::write(seed.join("project_tools.json"), t).expect("write project_tools.json");
    }
    seed
}

/// A pipeline whose target is the embedded sandbox seeded from `seed`.
fn sandbox_pipeline(dir: &Path, sage: &Path, seed: &Path, load: &str) -> PathBuf {
    let text = format!(
        "company = \"DEMO\"\n[source]\nkind = \"files\"\ndir = {sage:?}\nformat = \"csv\"\n\
         [stage]\ndir = {runs:?}\n[target]\nkind = \"sandbox\"\nseed = {seed:?}\n[load]\n{load}\n",
        sage = sage.display().to_string(),
        runs = dir.join("runs").display().to_string(),
        seed = seed.display().to_string(),
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("write pipeline");
    path
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn check(pipeline: &Path, json: bool, env: &[(&str, &str)]) -> Ran {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_jcsync"));
    cmd.arg("check").arg(pipeline);
    if json {
        cmd.arg("--json");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run jcsync check");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn parsed(r: &Ran) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}\n{}\n{}", r.stdout, r.stderr))
}

/// The entry of `list` whose `key` is `value`.
fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|e| e[key].as_str() == Some(value)))
        .unwrap_or_else(|| panic!("no {key} = {value} in {list:#}"))
}

#[test]
fn everything_that_maps_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sage = sage_dir(dir.path(), &clean_rows());
    let p = sandbox_pipeline(dir.path(), &sage, &seed_dir(dir.path(), None), "");
    let r = check(&p, false, &[]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("all 5 tables"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("3 read, 0 not direct costs (filtered), 3 cost rows for the load, 425.85"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("every cost row would load (exit 0)"),
        "{}",
        r.stdout
    );

    let j = parsed(&check(&p, true, &[]));
    assert_eq!(j["exit_code"], 0);
    assert_eq!(j["target"]["state"], "reached");
    assert_eq!(j["transactions"]["cost_rows"]["rows"], 3);
    assert_eq!(j["transactions"]["cost_rows"]["amount"], "425.85");
    let jobs = &j["mappings"]["jobs"];
    assert_eq!(find(jobs, "job", "1001")["project_id"], 4294968001_i64);
    assert_eq!(find(jobs, "job", "1001")["amount"], "350.35");
    assert_eq!(find(jobs, "job", "1002")["project_id"], 4294968002_i64);
    assert_eq!(j["mappings"]["missing_vendors"], serde_json::json!([]));
    assert_eq!(j["mappings"]["missing_budget_codes"], serde_json::json!([]));
    assert_eq!(j["mappings"]["direct_costs_tool"], serde_json::json!([]));
    assert_eq!(
        j["not_loaded"],
        serde_json::json!({"rows": 0, "amount": "0.00"})
    );
    // A check writes nothing: with a target that keeps a ledger (a sandbox with a state
    // file), no ledger (nor its lock) is created beside the runs.
    let state = dir.path().join("sandbox-state.json");
    let text = std::fs::read_to_string(&p).expect("pipeline");
    let seed_line = text
        .lines()
        .find(|l| l.starts_with("seed = "))
        .expect("seed line")
        .to_string();
    let with_state = text.replace(
        &seed_line,
        &format!(
            "{seed_line}\nstate_file = {:?}",
            state.display().to_string()
        ),
    );
    std::fs::write(&p, with_state).expect("write pipeline");
    let r = check(&p, false, &[]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    let runs = dir.path().join("runs");
    let written: Vec<String> = std::fs::read_dir(&runs)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("ledger"))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(written, Vec::<String>::new(), "check created {written:?}");
}

#[test]
fn a_missing_project_vendor_and_budget_code_are_named_with_rows_and_amounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rows = clean_rows();
    // Job 1004 is in Job (JC) but has no Procore project.
    rows.push(txn(
        "1004", "", "01-100", "L", "JC cost", "12.34", "", "", 4,
    ));
    rows.push(txn("1004", "", "01-100", "M", "JC cost", "0.66", "", "", 5));
    // V999 is no Procore vendor.
    rows.push(txn(
        "1001", "", "01-100", "M", "AP cost", "99.99", "V999", "INV-9", 6,
    ));
    // 09-999.L is no budget code of project 1002.
    rows.push(txn(
        "1002", "", "09-999", "L", "JC cost", "10.01", "", "", 7,
    ));
    let sage = sage_dir(dir.path(), &rows);
    let seed = seed_dir(dir.path(), None);
    let p = sandbox_pipeline(dir.path(), &sage, &seed, "");

    let r = check(&p, false, &[]);
    assert_eq!(r.code, Some(2), "{}\n{}", r.stdout, r.stderr);
    let line = |needle: &str| {
        r.stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", r.stdout))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("NO PROJECT"),
        "1004 NO PROJECT 2 rows 13.00 quarantined: unmapped_project"
    );
    assert_eq!(line("V999"), "V999 1 row 99.99");
    assert_eq!(
        line("09-999.L"),
        "job 1002 (project 4294968002): 09-999.L 1 row 10.01"
    );
    assert!(
        r.stdout
            .contains("4 rows for 123.00 would NOT load (exit 2)"),
        "{}",
        r.stdout
    );

    let j = parsed(&check(&p, true, &[]));
    assert_eq!(j["exit_code"], 2);
    let m = &j["mappings"];
    let job = find(&m["jobs"], "job", "1004");
    assert_eq!(job["project_id"], Value::Null);
    assert_eq!(job["rows"], 2);
    assert_eq!(job["amount"], "13.00");
    assert_eq!(
        job["not_loaded"],
        serde_json::json!({"rows": 2, "amount": "13.00"})
    );
    assert_eq!(
        m["missing_vendors"],
        serde_json::json!([{"vendor": "V999", "rows": 1, "amount": "99.99"}])
    );
    assert_eq!(
        m["missing_budget_codes"],
        serde_json::json!([{"job": "1002", "project_id": 4294968002_i64, "budget_code": "09-999.L",
                            "rows": 1, "amount": "10.01", "action": "quarantine"}])
    );
    assert_eq!(
        m["not_loaded_by_reason"],
        serde_json::json!([
            {"reason": "unmapped_project", "rows": 2, "amount": "13.00"},
            {"reason": "unmapped_vendor", "rows": 1, "amount": "99.99"},
            {"reason": "unmapped_budget_code", "rows": 1, "amount": "10.01"},
        ])
    );
    assert_eq!(
        j["not_loaded"],
        serde_json::json!({"rows": 4, "amount": "123.00"})
    );

    // With `create_missing_budget_codes`, the code would be created and its row loads.
    let p = sandbox_pipeline(
        dir.path(),
        &sage,
        &seed,
        "create_missing_budget_codes = true",
    );
    let j = parsed(&check(&p, true, &[]));
    assert_eq!(j["exit_code"], 2);
    assert_eq!(j["mappings"]["missing_budget_codes"][0]["action"], "create");
    assert_eq!(
        j["not_loaded"],
        serde_json::json!({"rows": 3, "amount": "112.99"})
    );
}

#[test]
fn a_project_whose_direct_costs_tool_is_off_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sage = sage_dir(dir.path(), &clean_rows());
    let tools =
        r#"[{"project_number": "1002", "engine_name": "direct_costs", "is_active": false}]"#;
    let p = sandbox_pipeline(dir.path(), &sage, &seed_dir(dir.path(), Some(tools)), "");
    let r = check(&p, false, &[]);
    assert_eq!(r.code, Some(2), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "job 1002 (project 4294968002): NOT ENABLED (inactive in the project's tools): 1 row"
        ),
        "{}",
        r.stdout
    );
    let j = parsed(&check(&p, true, &[]));
    assert_eq!(
        j["mappings"]["direct_costs_tool"],
        serde_json::json!([{"job": "1002", "project_id": 4294968002_i64, "state": "disabled",
                            "detail": "inactive in the project's tools", "rows": 1, "amount": "75.50"}])
    );
    assert_eq!(
        j["mappings"]["not_loaded_by_reason"],
        serde_json::json!([{"reason": "direct_costs_tool_disabled", "rows": 1, "amount": "75.50"}])
    );
}

#[test]
fn refused_credentials_exit_1_naming_the_status_and_never_the_secret() {
    let rt = runtime();
    let sandbox = rt
        .block_on(Sandbox::start(SandboxConfig::from_dir(
            repo().join("fixtures/procore"),
        )))
        .expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let sage = sage_dir(dir.path(), &clean_rows());
    let p = write_load_pipeline(dir.path(), &sage, sandbox.url(), sandbox.company_id(), "");
    let secret = "not-the-demo-secret-7f3a91";
    let env = [(CLIENT_ID_ENV, "demo-client"), (CLIENT_SECRET_ENV, secret)];
    let r = check(&p, false, &env);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    // The source part is still there.
    assert!(r.stdout.contains("all 5 tables"), "{}", r.stdout);
    assert!(
        r.stdout.contains("CANNOT USE PROCORE (HTTP 401)"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));

    let r = check(&p, true, &env);
    assert_eq!(r.code, Some(1));
    assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
    let j = parsed(&r);
    assert_eq!(j["exit_code"], 1);
    assert_eq!(j["target"]["state"], "unreachable");
    assert_eq!(j["target"]["status"], 401);
    assert_eq!(j["source"]["all_present"], true);
    assert_eq!(j["mappings"], Value::Null);
    // The right credentials reach the same sandbox: exit 0.
    let ok = check(
        &p,
        false,
        &[
            (CLIENT_ID_ENV, "demo-client"),
            (CLIENT_SECRET_ENV, "demo-secret"),
        ],
    );
    assert_eq!(ok.code, Some(0), "{}\n{}", ok.stdout, ok.stderr);
    drop(sandbox);
}

#[test]
fn the_sandbox_lists_and_updates_project_tools_as_procore_documents() {
    let rt = runtime();
    rt.block_on(async {
        let sandbox = Sandbox::start(SandboxConfig::from_dir(repo().join("fixtures/procore")))
            .await
            .expect("sandbox starts");
        let http = reqwest::Client::new();
        let bearer = format!("Bearer {}", sandbox_token(&http, sandbox.url()).await);
        let company = sandbox.company_id().to_string();
        let tools = format!("{}/rest/v1.0/projects/4294968002/tools", sandbox.url());
        let send = |req: reqwest::RequestBuilder| {
            req.header("Authorization", &bearer)
                .header("Procore-Company-Id", &company)
                .send()
        };
        let all: Value = send(http.get(&tools))
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let dc = find(&all, "engine_name", "direct_costs");
        assert_eq!(dc["is_active"], true);
        assert_eq!(dc["title"], "Direct Costs");
        let id = dc["id"].as_i64().expect("id");

        let off = send(
            http.patch(&tools)
                .json(&serde_json::json!({"tools": [{"id": id, "is_active": false}]})),
        )
        .await
        .expect("patch");
        assert_eq!(off.status(), 200);
        let inactive: Value = send(http.get(format!("{tools}?filters[is_active]=false")))
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        assert_eq!(
            find(&inactive, "engine_name", "direct_costs")["is_active"],
            false
        );
        assert_eq!(inactive.as_array().map(Vec::len), Some(1));

        // Direct costs of that project are refused; another project's are not.
        let list = |pid: &str| {
            http.get(format!(
                "{}/rest/v1.0/projects/{pid}/direct_costs",
                sandbox.url()
            ))
        };
        assert_eq!(send(list("4294968002")).await.expect("get").status(), 403);
        assert_eq!(send(list("4294968001")).await.expect("get").status(), 200);

        // A required tool cannot be turned off.
        let admin = find(&all, "engine_name", "admin")["id"].clone();
        let refused = send(
            http.patch(&tools)
                .json(&serde_json::json!({"tools": [{"id": admin, "is_active": false}]})),
        )
        .await
        .expect("patch");
        assert_eq!(refused.status(), 400);

        sandbox
            .set_tool_active(4294968002, "direct_costs", true)
            .expect("turn it back on");
        assert_eq!(send(list("4294968002")).await.expect("get").status(), 200);
        sandbox.shutdown().await;
    });
}

#[test]
fn a_procore_that_is_down_or_unreachable_exits_1_after_the_source_part() {
    let rt = runtime();
    let mut config = SandboxConfig::from_dir(repo().join("fixtures/procore"));
    config.faults =
        jcsync::sandbox::FaultConfig::always(jcsync::sandbox::FaultKind::ServiceUnavailable);
    let sandbox = rt.block_on(Sandbox::start(config)).expect("sandbox starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let sage = sage_dir(dir.path(), &clean_rows());
    let fast = "max_retry_secs = 1\nbackoff_base_ms = 10\nbackoff_cap_ms = 50";
    let env = [
        (CLIENT_ID_ENV, "demo-client"),
        (CLIENT_SECRET_ENV, "demo-secret"),
    ];
    let p = write_load_pipeline(dir.path(), &sage, sandbox.url(), sandbox.company_id(), fast);
    let r = check(&p, false, &env);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("all 5 tables"), "{}", r.stdout);
    assert!(
        r.stdout.contains("CANNOT USE PROCORE (HTTP 503)"),
        "{}",
        r.stdout
    );
    let j = parsed(&check(&p, true, &env));
    assert_eq!(j["target"]["status"], 503);
    drop(sandbox);

    // Nothing listens: no status, still exit 1 with the source part.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let p = write_load_pipeline(dir.path(), &sage, &url, 1, fast);
    let r = check(&p, true, &env);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    let j = parsed(&r);
    assert_eq!(j["target"]["state"], "unreachable");
    assert_eq!(j["target"]["status"], Value::Null);
    assert_eq!(j["source"]["all_present"], true);
}
