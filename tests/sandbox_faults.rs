//! Conformance: each injected fault, as a reqwest client sees it.

mod sandbox_support;

use std::time::{Duration, Instant};

use jcsync::sandbox::{FaultConfig, FaultKind, FaultRule, RateLimitConfig};
use sandbox_support::*;
use serde_json::json;

async fn faulty(kind: FaultKind) -> jcsync::sandbox::SandboxHandle {
    let mut config = demo_config();
    config.faults = FaultConfig::always(kind);
    config.faults.slow_delay = Duration::from_millis(400);
    config.faults.retry_after_secs = 7;
    config.rate_limit = Some(RateLimitConfig::default());
    start(config).await
}

fn projects() -> String {
    format!("/rest/v1.0/projects?company_id={COMPANY}")
}

#[tokio::test]
async fn injected_429_looks_like_an_exhausted_limit_with_retry_after() {
    let sandbox = faulty(FaultKind::TooManyRequests).await;
    let api = Api::login(&sandbox).await;
    let resp = api.get(&projects()).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "retry-after"), Some("7"));
    assert_eq!(header(&resp, "x-rate-limit-remaining"), Some("0"));
    let reset: u64 = header(&resp, "x-rate-limit-reset")
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset >= unix_now() + 6);
    assert_eq!(sandbox.stats().faults["429"], 1);
}

#[tokio::test]
async fn injected_5xx_statuses_reach_the_client() {
    for (kind, status) in [
        (FaultKind::InternalServerError, 500),
        (FaultKind::BadGateway, 502),
        (FaultKind::ServiceUnavailable, 503),
    ] {
        let sandbox = faulty(kind).await;
        let api = Api::login(&sandbox).await;
        let resp = api.get(&projects()).await;
        assert_eq!(resp.status(), status);
        let retry_after = header(&resp, "retry-after");
        if kind == FaultKind::ServiceUnavailable {
            assert_eq!(retry_after, Some("7"));
        } else {
            assert_eq!(retry_after, None);
        }
        assert_eq!(sandbox.stats().faults[kind.name()], 1);
    }
}

#[tokio::test]
async fn slow_responses_arrive_late_but_complete() {
    let sandbox = faulty(FaultKind::Slow).await;
    let api = Api::login(&sandbox).await;
    let started = Instant::now();
    let resp = api.get(&projects()).await;
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn connection_reset_is_a_connection_error_and_nothing_is_written() {
    let sandbox = faulty(FaultKind::ConnectionReset).await;
    let api = Api::login(&sandbox).await;
    let result = api
        .request(
            reqwest::Method::PATCH,
            &format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs/sync"),
        )
        .json(&json!({"updates": [{"direct_cost_type": "expense", "direct_cost_date": "2024-01-01", "origin_id": "reset"}]}))
        .send()
        .await;
    let err = result.expect_err("the connection is dropped");
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    assert!(sandbox.snapshot().direct_costs.is_empty());
    assert_eq!(
        sandbox.stats().count(
            "PATCH /rest/v1.0/projects/{project_id}/direct_costs/sync",
            "connection_reset"
        ),
        1
    );
}

#[tokio::test]
async fn lost_response_commits_the_write_then_drops_the_connection() {
    let mut config = demo_config();
    config.faults.rules = vec![FaultRule {
        kind: FaultKind::LostResponse,
        probability: 1.0,
        writes_only: true,
    }];
    let sandbox = start(config).await;
    let api = Api::login(&sandbox).await;
    let result = api
        .request(
            reqwest::Method::PATCH,
            &format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs/sync"),
        )
        .json(&json!({"updates": [{"direct_cost_type": "expense", "direct_cost_date": "2024-01-01", "origin_id": "lost"}]}))
        .send()
        .await;
    let err = result.expect_err("no response arrives");
    assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
    // Reads are not faulted (writes_only): the write is there.
    let found = api
        .get_json(&format!(
            "/rest/v1.0/projects/{PROJECT_1001}/direct_costs?filters[origin_id]=lost"
        ))
        .await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(sandbox.stats().faults["lost_response"], 1);
}

#[tokio::test]
async fn the_same_fault_seed_misbehaves_the_same_way() {
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let mut config = demo_config();
        config.faults.rules = vec!["503:0.5".parse().unwrap()];
        config.faults.seed = 7;
        let sandbox = start(config).await;
        let api = Api::login(&sandbox).await;
        let mut run = Vec::new();
        for _ in 0..16 {
            run.push(api.get(&projects()).await.status().as_u16());
        }
        statuses.push(run);
    }
    assert_eq!(statuses[0], statuses[1]);
    assert!(statuses[0].contains(&503) && statuses[0].contains(&200));
}

#[tokio::test]
async fn injected_409_hits_only_direct_cost_writes_and_writes_nothing() {
    let mut config = demo_config();
    config.faults = FaultConfig::always(FaultKind::Conflict);
    config.max_faults = Some(2);
    let sandbox = start(config).await;
    let api = Api::login(&sandbox).await;
    // Reads and budget-code writes are never eligible.
    assert_eq!(api.get(&projects()).await.status(), 200);
    let bulk = api
        .patch(
            &format!(
                "/rest/v1.0/projects/{PROJECT_1002}/work_breakdown_structure/wbs_codes/bulk_create"
            ),
            &json!({"bulk": [{"flat_code": "09-900.Q", "description": "new"}]}),
        )
        .await;
    assert_eq!(bulk.status(), 201);

    let path = format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs/sync");
    let body = json!({"updates": [{"direct_cost_type": "expense", "direct_cost_date": "2024-01-01", "origin_id": "contended"}]});
    for _ in 0..2 {
        let resp = api.patch(&path, &body).await;
        assert_eq!(resp.status(), 409);
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(
            answer["errors"],
            "Direct Cost does not support concurrent requests"
        );
        assert!(sandbox.snapshot().direct_costs.is_empty());
    }
    // Past the cap the write goes through.
    assert_eq!(api.patch(&path, &body).await.status(), 200);
    assert_eq!(sandbox.snapshot().direct_costs.len(), 1);
    let stats = sandbox.stats();
    assert_eq!(stats.faults["409"], 2);
    assert_eq!(
        stats.count(
            "PATCH /rest/v1.0/projects/{project_id}/direct_costs/sync",
            "409"
        ),
        2
    );
}
