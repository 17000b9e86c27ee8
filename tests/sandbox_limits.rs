//! Conformance: the hourly and spike rate-limit windows, their headers, and 409 on concurrent
//! writes to one direct cost.

mod sandbox_support;

use std::time::Duration;

use jcsync::sandbox::{FaultKind, FaultRule, RateLimitConfig};
use sandbox_support::*;
use serde_json::json;

fn rate(resp: &reqwest::Response) -> (u32, u32, u64) {
    let n = |h| {
        header(resp, h)
            .and_then(|v| v.parse::<u64>().ok())
            .expect(h)
    };
    (
        n("x-rate-limit-limit") as u32,
        n("x-rate-limit-remaining") as u32,
        n("x-rate-limit-reset"),
    )
}

#[tokio::test]
async fn spike_then_hourly_window_refuse_with_429_and_honest_headers() {
    let mut config = demo_config();
    config.rate_limit = Some(RateLimitConfig {
        hourly_limit: 8,
        spike_limit: 5,
        hourly_window: Duration::from_secs(3600),
        spike_window: Duration::from_secs(2),
        hourly_spent_at_start: 0,
    });
    let sandbox = start(config).await;
    let api = Api::login(&sandbox).await;
    let ok_path = format!("/rest/v1.0/projects?company_id={COMPANY}");

    // Five requests fit the spike window; failed ones (404) count too.
    let first = api.get(&ok_path).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        rate(&first).0,
        5,
        "the spike window is closer to exhaustion"
    );
    assert_eq!(rate(&first).1, 4);
    for _ in 0..3 {
        assert_eq!(
            api.get("/rest/v1.0/projects/1/direct_costs").await.status(),
            404
        );
    }
    let fifth = api.get(&ok_path).await;
    assert_eq!(rate(&fifth).1, 0);

    let refused = api.get(&ok_path).await;
    assert_eq!(refused.status(), 429);
    let (limit, remaining, reset) = rate(&refused);
    assert_eq!((limit, remaining), (5, 0));
    assert!(
        reset >= unix_now() && reset <= unix_now() + 3,
        "spike resets within its window"
    );

    // Wait until Reset, as a client must; the spike window rolls over, the hourly one does not.
    while unix_now() < reset {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = api.get(&ok_path).await;
    assert_eq!(after.status(), 200);
    assert_eq!(
        rate(&after).0,
        8,
        "now the hourly window is closer to exhaustion"
    );
    assert_eq!(rate(&after).1, 2);
    assert_eq!(api.get(&ok_path).await.status(), 200);
    let last = api.get(&ok_path).await;
    assert_eq!(rate(&last).1, 0);

    let hourly = api.get(&ok_path).await;
    assert_eq!(hourly.status(), 429);
    let (limit, remaining, reset) = rate(&hourly);
    assert_eq!((limit, remaining), (8, 0));
    assert!(reset > unix_now() + 3500, "hourly resets in about an hour");

    let stats = sandbox.stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.count("GET /rest/v1.0/projects", "429"), 2);
    assert_eq!(
        stats.count("GET /rest/v1.0/projects/{project_id}/direct_costs", "404"),
        3
    );
}

#[tokio::test]
async fn rate_limit_headers_are_on_every_api_response_and_off_when_disabled() {
    let mut config = demo_config();
    config.rate_limit = Some(RateLimitConfig::default());
    let sandbox = start(config).await;
    let api = Api::login(&sandbox).await;
    let unauthorized = http()
        .get(format!("{}/rest/v1.0/vendors", sandbox.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(rate(&unauthorized).0, 100);
    let ok = api
        .get(&format!("/rest/v1.0/vendors?company_id={COMPANY}"))
        .await;
    assert_eq!(rate(&ok), (100, 99, rate(&ok).2));

    let off = start(demo_config()).await;
    let api = Api::login(&off).await;
    let resp = api
        .get(&format!("/rest/v1.0/vendors?company_id={COMPANY}"))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-rate-limit-limit").is_none());
}

#[tokio::test]
async fn concurrent_writes_to_one_direct_cost_get_409() {
    let mut config = demo_config();
    config.write_latency = Duration::from_millis(800);
    let sandbox = start(config).await;
    let api = Api::login(&sandbox).await;
    let dc = api.expense(PROJECT_1001, "contended").await;
    let other = api.expense(PROJECT_1001, "free").await;
    let path = format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs/sync");
    let lines_path = format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs/line_items/sync");
    let header_update = json!({"updates": [{"origin_id": "contended", "description": "first"}]});
    let line_create = json!({"updates": [{"direct_cost_id": dc, "wbs_code_id": WBS_1001_01_100_L, "amount": "5"}]});
    let (a, b) = tokio::join!(api.patch(&path, &header_update), async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        api.patch(&lines_path, &line_create).await
    });
    // Whichever got there first wins (normally the header update); the other is refused whole.
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    let header_won = a.status() == 200;
    let loser = if header_won { b } else { a };
    let conflict: serde_json::Value = loser.json().await.unwrap();
    assert_eq!(conflict["error"]["direct_cost_id"], dc);
    let after = sandbox.snapshot();
    assert_eq!(after.line_items.len(), usize::from(!header_won));
    assert_eq!(
        after.direct_costs[&dc].description.as_deref() == Some("first"),
        header_won
    );

    // Writes to different direct costs proceed side by side.
    let approve_contended = json!({"updates": [{"origin_id": "contended", "status": "approved"}]});
    let approve_other = json!({"updates": [{"id": other, "status": "approved"}]});
    let (c, d) = tokio::join!(
        api.patch(&path, &approve_contended),
        api.patch(&path, &approve_other),
    );
    assert_eq!((c.status().as_u16(), d.status().as_u16()), (200, 200));
    // Once the claim is released the same write succeeds.
    assert_eq!(api.patch(&lines_path, &line_create).await.status(), 200);
}

#[tokio::test]
async fn an_hour_nearly_spent_reports_the_hourly_window_until_a_spike_429_names_its_own() {
    let mut config = demo_config();
    config.rate_limit = Some(RateLimitConfig {
        spike_window: Duration::from_secs(2),
        hourly_spent_at_start: 3540,
        ..RateLimitConfig::default()
    });
    config.faults.rules = vec![FaultRule {
        kind: FaultKind::SpikeTooManyRequests,
        probability: 1.0,
        writes_only: true,
    }];
    config.max_faults = Some(1);
    let sandbox = start(config).await;
    let api = Api::login(&sandbox).await;
    let ok_path = format!("/rest/v1.0/projects?company_id={COMPANY}");

    // 60 left in the hour, 100 in the spike window: the hourly window is reported.
    let read = api.get(&ok_path).await;
    assert_eq!(read.status(), 200);
    let (limit, remaining, reset) = rate(&read);
    assert_eq!((limit, remaining), (3600, 59));
    assert!(
        reset > unix_now() + 3500,
        "the hourly reset is an hour away"
    );

    // The injected spike 429: the spike window's own headers, no Retry-After.
    let sync_path = format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs/sync");
    let body = json!({"updates": [{"direct_cost_type": "expense", "direct_cost_date": "2024-01-01", "origin_id": "spike"}]});
    let refused = api.patch(&sync_path, &body).await;
    assert_eq!(refused.status(), 429);
    let (limit, remaining, spike_reset) = rate(&refused);
    assert_eq!((limit, remaining), (100, 0));
    assert!(spike_reset <= unix_now() + 3, "the spike reset is near");
    assert_eq!(header(&refused, "retry-after"), None);
    assert!(sandbox.snapshot().direct_costs.is_empty());

    // The spike window really is spent: coming back before Reset is refused by the limiter.
    let early = api.get(&ok_path).await;
    assert_eq!(early.status(), 429);
    assert_eq!(rate(&early), (100, 0, spike_reset));
    while unix_now() < spike_reset {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = api.patch(&sync_path, &body).await;
    assert_eq!(after.status(), 200);
    assert_eq!(rate(&after).0, 3600, "the hourly window again");
    let stats = sandbox.stats();
    assert_eq!(stats.faults["429_spike"], 1);
    assert_eq!(stats.rate_limited, 1);
}
