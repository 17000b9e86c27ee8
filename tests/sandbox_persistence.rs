//! Conformance: a sandbox with a state file keeps its data across a restart; the inspection
//! endpoints describe what it saw.

mod sandbox_support;

use sandbox_support::*;
use serde_json::{json, Value};

#[tokio::test]
async fn restarted_sandbox_keeps_direct_costs_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut config = demo_config();
    config.state_file = Some(state.clone());

    let sandbox = start(config.clone()).await;
    let api = Api::login(&sandbox).await;
    let dc = api.expense(PROJECT_1001, "kept").await;
    api.sync_lines(
        PROJECT_1001,
        json!([{"direct_cost_id": dc, "wbs_code_id": WBS_1001_01_100_L, "amount": "99.99", "origin_id": "kept-line"}]),
    )
    .await;
    // Saved shortly after the write, without waiting for a clean shutdown.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("kept-line"));
    sandbox.shutdown().await;

    let restarted = start(config).await;
    let api = Api::login(&restarted).await;
    let found = api
        .get_json(&format!(
            "/rest/v1.0/projects/{PROJECT_1001}/direct_costs?filters[origin_id]=kept"
        ))
        .await;
    assert_eq!(found[0]["id"], dc);
    assert_eq!(found[0]["grand_total"], "99.99");
    // Re-sending after the restart is still an update.
    let again = api
        .sync_headers(
            PROJECT_1001,
            json!([{"origin_id": "kept", "status": "approved"}]),
        )
        .await;
    assert_eq!(again["entities"][0]["id"], dc);
    // New ids do not collide with saved ones.
    let next = api.expense(PROJECT_1001, "new").await;
    assert!(next > dc);
}

#[tokio::test]
async fn inspection_reports_requests_by_route_and_status() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    api.get(&format!("/rest/v1.0/projects?company_id={COMPANY}"))
        .await;
    api.get("/rest/v1.0/projects/5/direct_costs").await;
    api.get("/rest/v9/nowhere").await;
    let stats: Value = reqwest::get(format!("{}/_sandbox/stats", sandbox.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"]["POST /oauth/token"]["200"], 1);
    assert_eq!(stats["requests"]["GET /rest/v1.0/projects"]["200"], 1);
    assert_eq!(
        stats["requests"]["GET /rest/v1.0/projects/{project_id}/direct_costs"]["404"],
        1
    );
    assert_eq!(stats["requests"]["GET (unmatched)"]["404"], 1);
    assert_eq!(stats["rate_limited"], 0);
    let state: Value = reqwest::get(format!("{}/_sandbox/state", sandbox.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["company"]["id"], COMPANY);
}
