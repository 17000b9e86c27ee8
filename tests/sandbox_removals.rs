//! Conformance: removing direct costs and their lines (`DELETE`), listing one direct cost's
//! lines, the drift tools (`/_sandbox/…` and `SandboxHandle`), and the state file saved when an
//! embedded sandbox goes away with its runtime.

mod sandbox_support;

use std::str::FromStr;
use std::time::Duration;

use jcsync::sandbox::{
    DriftError, DriftLine, FaultConfig, FaultKind, FaultRule, ForeignDirectCost, ForeignIds,
    LineEdit, RateLimitConfig, SandboxHandle,
};
use reqwest::{Method, Response};
use rust_decimal::Decimal;
use sandbox_support::*;
use serde_json::{json, Value};

const DC_ROUTE: &str = "DELETE /rest/v1.0/projects/{project_id}/direct_costs/{direct_cost_id}";
const LINE_ROUTE: &str =
    "DELETE /rest/v1.0/projects/{project_id}/direct_costs/{direct_cost_id}/line_items/{id}";
const LIST_ROUTE: &str =
    "GET /rest/v1.0/projects/{project_id}/direct_costs/{direct_cost_id}/line_items";

fn dc_path(project: i64, dc: i64) -> String {
    format!("/rest/v1.0/projects/{project}/direct_costs/{dc}")
}

fn line_path(project: i64, dc: i64, line: i64) -> String {
    format!("/rest/v1.0/projects/{project}/direct_costs/{dc}/line_items/{line}")
}

fn money(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

async fn delete(api: &Api, path: &str) -> Response {
    api.request(Method::DELETE, path).send().await.unwrap()
}

/// An expense in project 1001 with one line per amount; returns its id and the lines' ids.
async fn expense_with_lines(api: &Api, origin: &str, amounts: &[&str]) -> (i64, Vec<i64>) {
    let dc = api.expense(PROJECT_1001, origin).await;
    let lines: Vec<Value> = amounts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            json!({"direct_cost_id": dc, "wbs_code_id": WBS_1001_01_100_L, "amount": a,
                   "description": format!("line {i}"), "origin_id": format!("{origin}-{i}"),
                   "origin_data": format!("run=7;seq={i}")})
        })
        .collect();
    let body = api.sync_lines(PROJECT_1001, json!(lines)).await;
    assert_eq!(body["errors"], json!([]), "{body}");
    let mut ids: Vec<i64> = body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    ids.sort_unstable();
    (dc, ids)
}

/// A hand-entered expense in project 1001, made through the handle (no request, no fault).
fn foreign(sandbox: &SandboxHandle, amounts: &[&str]) -> ForeignIds {
    sandbox
        .add_foreign_direct_cost(
            PROJECT_1001,
            &ForeignDirectCost {
                direct_cost_type: "expense".into(),
                direct_cost_date: "2024-04-02".into(),
                vendor_id: None,
                invoice_number: None,
                status: None,
                description: Some("entered by hand".into()),
                line_items: amounts
                    .iter()
                    .map(|a| DriftLine::new("01-100.L", money(a)))
                    .collect(),
            },
        )
        .unwrap()
}

fn project_1001(sandbox: &SandboxHandle) -> jcsync::sandbox::state::ProjectCosts {
    sandbox
        .cost_summary()
        .projects
        .into_iter()
        .find(|p| p.project_id == PROJECT_1001)
        .unwrap()
}

#[tokio::test]
async fn deleting_a_direct_cost_removes_it_with_its_lines_and_answers_its_id() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let (dc, _) = expense_with_lines(&api, "gone", &["10.00", "5.25"]).await;
    let (kept, _) = expense_with_lines(&api, "kept", &["1.10"]).await;
    assert_eq!(project_1001(&sandbox).line_items, 3);

    let resp = delete(&api, &dc_path(PROJECT_1001, dc)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "id": dc }));

    let costs = project_1001(&sandbox);
    assert_eq!((costs.direct_costs, costs.line_items), (1, 1));
    assert_eq!(costs.total, money("1.10"));
    assert_eq!(costs.by_budget_code["01-100.L"].total, money("1.10"));
    let lines = api
        .get_json(&format!(
            "/rest/v1.0/projects/{PROJECT_1001}/direct_costs/line_items"
        ))
        .await;
    assert_eq!(lines.as_array().unwrap().len(), 1);
    assert_eq!(lines[0]["direct_cost_id"], kept);

    // Gone for good: a second delete, a list of its lines, are 404s in Procore's shape.
    let again = delete(&api, &dc_path(PROJECT_1001, dc)).await;
    assert_eq!(again.status(), 404);
    let body: Value = again.json().await.unwrap();
    assert!(
        body["errors"].as_str().unwrap().contains("not found"),
        "{body}"
    );
    let list = api
        .get(&format!("{}/line_items", dc_path(PROJECT_1001, dc)))
        .await;
    assert_eq!(list.status(), 404);
    // Its origin ids are free again: re-sending them creates new records.
    let recreated = api.expense(PROJECT_1001, "gone").await;
    assert!(recreated > dc);
    let relined = api
        .sync_lines(
            PROJECT_1001,
            json!([{"direct_cost_id": recreated, "wbs_code_id": WBS_1001_01_100_L,
                    "amount": "10.00", "origin_id": "gone-0"}]),
        )
        .await;
    assert_eq!(relined["errors"], json!([]), "{relined}");

    let stats = sandbox.stats();
    assert_eq!(stats.count(DC_ROUTE, "200"), 1);
    assert_eq!(stats.count(DC_ROUTE, "404"), 1);
    assert_eq!(stats.count(LIST_ROUTE, "404"), 1);
}

#[tokio::test]
async fn the_v1_1_path_deletes_too() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let (dc, _) = expense_with_lines(&api, "v11", &["3"]).await;
    let path = format!("/rest/v1.1/projects/{PROJECT_1001}/direct_costs/{dc}");
    let resp = delete(&api, &path).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["id"], dc);
    assert_eq!(project_1001(&sandbox).direct_costs, 0);
    assert_eq!(
        sandbox.stats().count(
            "DELETE /rest/v1.1/projects/{project_id}/direct_costs/{id}",
            "200"
        ),
        1
    );
}

#[tokio::test]
async fn what_is_unknown_or_another_projects_is_not_found_and_stays() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let (dc, lines) = expense_with_lines(&api, "mine", &["1", "2"]).await;
    let (other_dc, other_lines) = expense_with_lines(&api, "other", &["4"]).await;
    let in_1002 = api.expense(PROJECT_1002, "elsewhere").await;
    for path in [
        dc_path(PROJECT_1002, dc),      // another project's direct cost
        dc_path(PROJECT_1001, in_1002), // ditto, the other way round
        dc_path(PROJECT_1001, 999),     // unknown id
        dc_path(PROJECT_1001, -1),      // nonsense id
        dc_path(5, dc),                 // unknown project
        line_path(PROJECT_1001, dc, other_lines[0]), // a line of another direct cost
        line_path(PROJECT_1001, other_dc, lines[0]),
        line_path(PROJECT_1002, dc, lines[0]), // the right ids under another project
        line_path(PROJECT_1001, dc, 999),
        line_path(PROJECT_1001, 999, lines[0]),
    ] {
        let resp = delete(&api, &path).await;
        assert_eq!(resp.status(), 404, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["errors"].is_string(), "{path}: {body}");
    }
    let after = sandbox.snapshot();
    assert_eq!((after.direct_costs.len(), after.line_items.len()), (3, 3));
    let text = delete(&api, "/rest/v1.0/projects/x/direct_costs/y/line_items/z").await;
    assert_eq!(text.status(), 404);
}

#[tokio::test]
async fn deleting_a_line_keeps_its_direct_cost_even_when_it_was_the_last() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let (dc, lines) = expense_with_lines(&api, "two", &["7.50", "2.50"]).await;

    let resp = delete(&api, &line_path(PROJECT_1001, dc, lines[0])).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), 0);
    let left = api
        .get_json(&format!("{}/line_items", dc_path(PROJECT_1001, dc)))
        .await;
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], lines[1]);
    assert_eq!(project_1001(&sandbox).total, money("2.50"));

    assert_eq!(
        delete(&api, &line_path(PROJECT_1001, dc, lines[1]))
            .await
            .status(),
        200
    );
    // Procore keeps the empty direct cost: removing it is the client's job.
    let headers = api
        .get_json(&format!(
            "/rest/v1.0/projects/{PROJECT_1001}/direct_costs?filters[origin_id]=two"
        ))
        .await;
    assert_eq!(headers[0]["id"], dc);
    assert_eq!(headers[0]["grand_total"], "0");
    let costs = project_1001(&sandbox);
    assert_eq!((costs.direct_costs, costs.line_items), (1, 0));
    assert!(costs.by_budget_code.is_empty());
    // The freed origin id can be sent again and makes a new line.
    let body = api
        .sync_lines(
            PROJECT_1001,
            json!([{"direct_cost_id": dc, "wbs_code_id": WBS_1001_01_100_L, "amount": "7.50", "origin_id": "two-0"}]),
        )
        .await;
    assert!(body["entities"][0]["id"].as_i64().unwrap() > lines[1]);
    assert_eq!(sandbox.stats().count(LINE_ROUTE, "200"), 2);
}

#[tokio::test]
async fn the_lines_of_one_direct_cost_page_like_every_list_with_every_field() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let (dc, lines) = expense_with_lines(
        &api,
        "paged",
        &["10.10", "0.01", "-3.00", "1234567.89", "5"],
    )
    .await;
    let (other, _) = expense_with_lines(&api, "not-these", &["99"]).await;
    let base = format!("{}/line_items", dc_path(PROJECT_1001, dc));

    let first = api.get(&format!("{base}?per_page=2")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "total"), Some("5"));
    assert_eq!(header(&first, "per-page"), Some("2"));
    let link = header(&first, "link").unwrap().to_owned();
    assert!(
        link.contains(&format!("{base}?page=2&per_page=2>; rel=\"next\"")),
        "{link}"
    );
    assert!(link.contains("page=3&per_page=2>; rel=\"last\""), "{link}");
    let page1: Value = first.json().await.unwrap();
    let last = api.get(&format!("{base}?page=3&per_page=2")).await;
    assert!(header(&last, "link").unwrap().contains("rel=\"prev\""));
    let page3: Value = last.json().await.unwrap();
    let mut seen: Vec<i64> = Vec::new();
    for page in [
        &page1,
        &api.get_json(&format!("{base}?page=2&per_page=2")).await,
        &page3,
    ] {
        seen.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_i64().unwrap()),
        );
    }
    assert_eq!(
        seen, lines,
        "every line once, in id order, none of another direct cost"
    );

    let all = api.get_json(&base).await;
    let li = &all[0];
    assert_eq!(li["direct_cost_id"], dc);
    assert_eq!(li["holder"]["id"], dc);
    assert!(li["holder"]["holder_type"].is_string());
    assert_eq!(li["wbs_code"]["id"], WBS_1001_01_100_L);
    assert_eq!(li["wbs_code"]["flat_code"], "01-100.L");
    assert_eq!(li["amount"], "10.10");
    assert_eq!(all[3]["amount"], "1234567.89");
    assert_eq!(li["description"], "line 0");
    assert_eq!(li["origin_id"], "paged-0");
    assert_eq!(li["origin_data"], "run=7;seq=0");
    assert!(li["created_at"].is_string() && li["updated_at"].is_string());

    // The project-wide list still serves every line, with the same fields.
    let everything = api
        .get_json(&format!(
            "/rest/v1.0/projects/{PROJECT_1001}/direct_costs/line_items?filters[direct_cost_id]={other}"
        ))
        .await;
    assert_eq!(everything.as_array().unwrap().len(), 1);
    assert_eq!(everything[0]["holder"]["id"], other);
    assert_eq!(everything[0]["wbs_code"]["flat_code"], "01-100.L");
    assert_eq!(sandbox.stats().count(LIST_ROUTE, "200"), 4);
}

#[tokio::test]
async fn the_new_routes_need_a_token_and_the_company_header() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let ids = foreign(&sandbox, &["1", "2"]);
    let (dc, line) = (ids.direct_cost_id, ids.line_item_ids[0]);
    let requests = [
        (Method::DELETE, dc_path(PROJECT_1001, dc)),
        (Method::DELETE, line_path(PROJECT_1001, dc, line)),
        (
            Method::GET,
            format!("{}/line_items", dc_path(PROJECT_1001, dc)),
        ),
    ];
    for (method, path) in &requests {
        let url = format!("{}{path}", sandbox.url());
        let anonymous = api
            .http
            .request(method.clone(), &url)
            .header("Procore-Company-Id", COMPANY.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), 401, "{method} {path}");
        let forged = api
            .http
            .request(method.clone(), &url)
            .bearer_auth("not-a-token")
            .header("Procore-Company-Id", COMPANY.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 401, "{method} {path}");
        let headless = api
            .http
            .request(method.clone(), &url)
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        assert_eq!(headless.status(), 400, "{method} {path}");
        let body: Value = headless.json().await.unwrap();
        assert_eq!(body["errors"], "Missing Procore-Company-Id header!");
    }
    let after = sandbox.snapshot();
    assert_eq!((after.direct_costs.len(), after.line_items.len()), (1, 2));
    assert_eq!(sandbox.stats().count(DC_ROUTE, "401"), 2);
    assert_eq!(sandbox.stats().count(LINE_ROUTE, "400"), 1);
}

#[tokio::test]
async fn deletes_on_a_direct_cost_another_write_holds_get_409() {
    let mut config = demo_config();
    config.write_latency = Duration::from_millis(600);
    let sandbox = start(config).await;
    let api = Api::login(&sandbox).await;
    let (dc, lines) = expense_with_lines(&api, "busy", &["1", "2", "3"]).await;
    let (free, free_lines) = expense_with_lines(&api, "free", &["4"]).await;

    // A line delete holds the direct cost: a second one, a delete of the whole direct cost and
    // a line sync on it are refused; a delete elsewhere proceeds.
    let lines_sync = format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs/line_items/sync");
    let update = json!({"updates": [{"id": lines[2], "amount": "30"}]});
    let (first, second, whole, synced, elsewhere) = tokio::join!(
        async { delete(&api, &line_path(PROJECT_1001, dc, lines[0])).await },
        async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            delete(&api, &line_path(PROJECT_1001, dc, lines[1])).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            delete(&api, &dc_path(PROJECT_1001, dc)).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            api.patch(&lines_sync, &update).await
        },
        async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            delete(&api, &line_path(PROJECT_1001, free, free_lines[0])).await
        },
    );
    assert_eq!(first.status(), 200);
    for loser in [second, whole, synced] {
        assert_eq!(loser.status(), 409);
        let body: Value = loser.json().await.unwrap();
        assert_eq!(body["error"]["direct_cost_id"], dc);
    }
    assert_eq!(elsewhere.status(), 200);
    let after = sandbox.snapshot();
    assert!(after.direct_costs.contains_key(&dc));
    assert_eq!(after.lines_of(dc).count(), 2);
    assert_eq!(sandbox.stats().count(LINE_ROUTE, "409"), 1);
    assert_eq!(sandbox.stats().count(DC_ROUTE, "409"), 1);

    // Two deletes of the same direct cost at once: one wins, the other is told to retry.
    let (a, b) = tokio::join!(
        async { delete(&api, &dc_path(PROJECT_1001, dc)).await },
        async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            delete(&api, &dc_path(PROJECT_1001, dc)).await
        }
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 409));
    // Once the claim is released, the retry learns it is gone.
    assert_eq!(delete(&api, &dc_path(PROJECT_1001, dc)).await.status(), 404);
}

/// A sandbox whose first write (and only that one) loses its response.
async fn losing_one_response() -> SandboxHandle {
    let mut config = demo_config();
    config.faults.rules = vec![FaultRule {
        kind: FaultKind::LostResponse,
        probability: 1.0,
        writes_only: true,
    }];
    config.max_faults = Some(1);
    start(config).await
}

#[tokio::test]
async fn a_delete_whose_response_is_lost_is_done_and_its_retry_is_404() {
    for whole in [true, false] {
        let sandbox = losing_one_response().await;
        let api = Api::login(&sandbox).await;
        let ids = foreign(&sandbox, &["8", "9"]);
        let (dc, line) = (ids.direct_cost_id, ids.line_item_ids[0]);
        let (path, route) = if whole {
            (dc_path(PROJECT_1001, dc), DC_ROUTE)
        } else {
            (line_path(PROJECT_1001, dc, line), LINE_ROUTE)
        };
        let lost = api.request(Method::DELETE, &path).send().await;
        let err = lost.expect_err("no response arrives");
        assert!(err.status().is_none() && !err.is_timeout(), "{err:?}");
        // Committed before the connection dropped: the retry finds nothing to delete.
        let retry = delete(&api, &path).await;
        assert_eq!(retry.status(), 404);
        let after = sandbox.snapshot();
        assert_eq!(after.direct_costs.contains_key(&dc), !whole);
        assert!(!after.line_items.contains_key(&line));
        let stats = sandbox.stats();
        assert_eq!(stats.count(route, "response_lost"), 1);
        assert_eq!(stats.count(route, "404"), 1);
        assert_eq!(stats.faults["lost_response"], 1);
    }
}

#[tokio::test]
async fn other_faults_reach_deletes_and_change_nothing() {
    for (kind, status) in [
        (FaultKind::ServiceUnavailable, 503),
        (FaultKind::Conflict, 409),
        (FaultKind::InternalServerError, 500),
    ] {
        let mut config = demo_config();
        config.faults = FaultConfig::always(kind);
        let sandbox = start(config).await;
        let api = Api::login(&sandbox).await;
        let ids = foreign(&sandbox, &["1"]);
        let resp = delete(&api, &dc_path(PROJECT_1001, ids.direct_cost_id)).await;
        assert_eq!(resp.status(), status, "{kind:?}");
        assert_eq!(sandbox.snapshot().line_items.len(), 1, "{kind:?}");
        assert_eq!(sandbox.stats().faults[kind.name()], 1);
    }
}

#[tokio::test]
async fn deletes_and_line_lists_spend_the_rate_limit_and_get_429_when_it_is_spent() {
    let mut config = demo_config();
    config.rate_limit = Some(RateLimitConfig {
        spike_limit: 3,
        spike_window: Duration::from_secs(60),
        ..RateLimitConfig::default()
    });
    let sandbox = start(config).await;
    let api = Api::login(&sandbox).await;
    let ids = foreign(&sandbox, &["1", "2"]);
    let dc = ids.direct_cost_id;
    let list = api
        .get(&format!("{}/line_items", dc_path(PROJECT_1001, dc)))
        .await;
    assert_eq!(list.status(), 200);
    assert_eq!(header(&list, "x-rate-limit-remaining"), Some("2"));
    let gone = delete(&api, &line_path(PROJECT_1001, dc, ids.line_item_ids[0])).await;
    assert_eq!(gone.status(), 200);
    assert_eq!(header(&gone, "x-rate-limit-remaining"), Some("1"));
    // A failed request counts too.
    assert_eq!(
        delete(&api, &dc_path(PROJECT_1001, 999)).await.status(),
        404
    );
    let refused = delete(&api, &dc_path(PROJECT_1001, dc)).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(header(&refused, "x-rate-limit-remaining"), Some("0"));
    assert_eq!(header(&refused, "x-rate-limit-limit"), Some("3"));
    assert!(sandbox.snapshot().direct_costs.contains_key(&dc));
    let stats = sandbox.stats();
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.count(DC_ROUTE, "429"), 1);
}

async fn admin(
    method: Method,
    sandbox: &SandboxHandle,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http().request(method, format!("{}{path}", sandbox.url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn admin_routes_drift_the_data_as_a_user_in_procore_would() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let (dc, lines) = expense_with_lines(&api, "synced", &["100.00", "50.00"]).await;
    let (target, _) = expense_with_lines(&api, "target", &["1.00"]).await;
    tokio::time::sleep(Duration::from_millis(5)).await;

    // Edit Synced Direct Cost Transactions: amount, budget code, description, direct cost.
    let edit = json!({"amount": "123.45", "wbs_code_id": WBS_1001_01_100_M,
                      "description": "fixed in Procore", "direct_cost_id": target});
    let (status, edited) = admin(
        Method::PATCH,
        &sandbox,
        &format!("/_sandbox/line_items/{}", lines[0]),
        Some(edit),
    )
    .await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["amount"], "123.45");
    assert_eq!(edited["direct_cost_id"], target);
    assert_eq!(edited["wbs_code"]["flat_code"], "01-100.M");
    assert_eq!(edited["origin_id"], "synced-0");
    assert_ne!(edited["updated_at"], edited["created_at"]);
    let moved = api
        .get_json(&format!("{}/line_items", dc_path(PROJECT_1001, target)))
        .await;
    assert_eq!(moved.as_array().unwrap().len(), 2);
    let costs = project_1001(&sandbox);
    assert_eq!(costs.by_budget_code["01-100.M"].total, money("123.45"));
    assert_eq!(costs.by_budget_code["01-100.L"].total, money("51.00"));
    let (status, _) = admin(
        Method::PATCH,
        &sandbox,
        "/_sandbox/line_items/1",
        Some(json!({"amount": "1"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = admin(
        Method::PATCH,
        &sandbox,
        &format!("/_sandbox/line_items/{}", lines[1]),
        Some(json!({"wbs_code_id": WBS_1002_01_100_L})),
    )
    .await;
    assert_eq!(status, 422, "a budget code of another project");
    let (status, _) = admin(
        Method::PATCH,
        &sandbox,
        &format!("/_sandbox/line_items/{}", lines[1]),
        Some(json!({"colour": "red"})),
    )
    .await;
    assert_eq!(status, 422);

    // A data import's duplicate: a raw line with an origin id another line holds.
    let raw = json!({"flat_code": "01-100.L", "amount": 50.5, "origin_id": "synced-1", "description": "imported twice"});
    let (status, dup) = admin(
        Method::POST,
        &sandbox,
        &format!("/_sandbox/direct_costs/{dc}/line_items"),
        Some(raw),
    )
    .await;
    assert_eq!(status, 201, "{dup}");
    assert_eq!(dup["amount"], "50.5");
    let twins = api
        .get_json(&format!(
            "/rest/v1.0/projects/{PROJECT_1001}/direct_costs/line_items?filters[origin_id]=synced-1"
        ))
        .await;
    assert_eq!(twins.as_array().unwrap().len(), 2);

    // Entered by hand: no origin id on the direct cost or its lines.
    let hand = json!({"direct_cost_type": "invoice", "direct_cost_date": "2024-06-30",
                      "vendor_id": VENDOR_V100, "invoice_number": "H-1",
                      "line_items": [{"wbs_code_id": WBS_1001_01_100_L, "amount": "10"},
                                     {"flat_code": "01-100.M", "amount": "-2.5", "description": "credit"}]});
    let (status, ids) = admin(
        Method::POST,
        &sandbox,
        &format!("/_sandbox/projects/{PROJECT_1001}/direct_costs"),
        Some(hand),
    )
    .await;
    assert_eq!(status, 201, "{ids}");
    let hand_dc = ids["direct_cost_id"].as_i64().unwrap();
    assert_eq!(ids["line_item_ids"].as_array().unwrap().len(), 2);
    let listed = api
        .get_json(&format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs"))
        .await;
    let entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == hand_dc)
        .unwrap();
    assert_eq!(
        (entry["origin_id"].clone(), entry["grand_total"].clone()),
        (Value::Null, json!("7.5"))
    );
    assert_eq!(entry["vendor"]["id"], VENDOR_V100);
    let bad = json!({"direct_cost_type": "expense", "direct_cost_date": "2024-06-30",
                     "line_items": [{"flat_code": "01-100.L", "amount": "1", "origin_id": "sneaky"}]});
    let (status, _) = admin(
        Method::POST,
        &sandbox,
        &format!("/_sandbox/projects/{PROJECT_1001}/direct_costs"),
        Some(bad),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = admin(
        Method::POST,
        &sandbox,
        "/_sandbox/projects/5/direct_costs",
        Some(json!({"direct_cost_type": "expense", "direct_cost_date": "2024-06-30"})),
    )
    .await;
    assert_eq!(status, 404);

    // Deleted in the UI.
    let (status, body) = admin(
        Method::DELETE,
        &sandbox,
        &format!("/_sandbox/line_items/{}", lines[1]),
        None,
    )
    .await;
    assert_eq!((status, body["id"].as_i64()), (200, Some(lines[1])));
    let (status, _) = admin(
        Method::DELETE,
        &sandbox,
        &format!("/_sandbox/line_items/{}", lines[1]),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = admin(
        Method::DELETE,
        &sandbox,
        &format!("/_sandbox/direct_costs/{hand_dc}"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["line_items_deleted"].as_u64()),
        (200, Some(2))
    );
    let (status, _) = admin(
        Method::DELETE,
        &sandbox,
        &format!("/_sandbox/direct_costs/{hand_dc}"),
        None,
    )
    .await;
    assert_eq!(status, 404);

    let costs = project_1001(&sandbox);
    assert_eq!((costs.direct_costs, costs.line_items), (2, 3));
    assert_eq!(costs.total, money("174.95"));
    // Drift is not Procore traffic: the gate neither counts nor limits it.
    assert!(sandbox
        .stats()
        .requests
        .keys()
        .all(|r| !r.contains("_sandbox")));
}

#[tokio::test]
async fn handle_drift_methods_act_directly() {
    let sandbox = start(demo_config()).await;
    let ids = foreign(&sandbox, &["3.30", "4.40"]);
    let other = foreign(&sandbox, &[]);
    let view = sandbox
        .edit_line_item(
            ids.line_item_ids[1],
            &LineEdit {
                amount: Some(money("4.45")),
                direct_cost_id: Some(other.direct_cost_id),
                ..LineEdit::default()
            },
        )
        .unwrap();
    assert_eq!(
        (view.amount.as_str(), view.direct_cost_id),
        ("4.45", other.direct_cost_id)
    );
    let mut dup = DriftLine::new("01-100.M", money("1"));
    dup.origin_id = Some("twice".into());
    let a = sandbox
        .add_raw_line_item(other.direct_cost_id, &dup)
        .unwrap();
    let b = sandbox
        .add_raw_line_item(other.direct_cost_id, &dup)
        .unwrap();
    assert_ne!(a, b);
    assert_eq!(sandbox.delete_direct_cost(other.direct_cost_id), Ok(3));
    assert_eq!(
        sandbox.delete_direct_cost(other.direct_cost_id),
        Err(DriftError::NotFound(format!(
            "Direct Cost {}",
            other.direct_cost_id
        )))
    );
    sandbox.delete_line_item(ids.line_item_ids[0]).unwrap();
    assert!(matches!(
        sandbox.delete_line_item(ids.line_item_ids[0]),
        Err(DriftError::NotFound(_))
    ));
    let costs = project_1001(&sandbox);
    assert_eq!(
        (costs.direct_costs, costs.line_items, costs.total),
        (1, 0, Decimal::ZERO)
    );
}

#[test]
fn a_sandbox_dropped_as_its_runtime_ends_has_saved_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut config = demo_config();
    config.state_file = Some(state.clone());
    // As `jcsync sync` runs an embedded sandbox: the handle is dropped with the run, and the
    // runtime goes away right after. On a current-thread runtime nothing runs once `block_on`
    // returns: the background save never gets its turn.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (dc, lines) = runtime.block_on(async {
        let sandbox = start(config.clone()).await;
        let api = Api::login(&sandbox).await;
        let made = expense_with_lines(&api, "first-run", &["12.34", "0.66"]).await;
        drop(sandbox);
        made
    });
    drop(runtime);
    let saved = std::fs::read_to_string(&state).expect("the state file is written");
    assert!(saved.contains("first-run-1"), "{saved}");

    let second = tokio::runtime::Runtime::new().unwrap();
    second.block_on(async {
        let sandbox = start(config).await;
        let costs = project_1001(&sandbox);
        assert_eq!((costs.direct_costs, costs.line_items), (1, 2));
        assert_eq!(costs.total, money("13.00"));
        let api = Api::login(&sandbox).await;
        let listed = api
            .get_json(&format!("{}/line_items", dc_path(PROJECT_1001, dc)))
            .await;
        assert_eq!(listed[1]["id"], lines[1]);
    });
}

#[tokio::test]
async fn a_shut_down_sandbox_keeps_its_deletes_and_drift_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut config = demo_config();
    config.state_file = Some(state.clone());
    let sandbox = start(config.clone()).await;
    let api = Api::login(&sandbox).await;
    let (gone, _) = expense_with_lines(&api, "deleted", &["1"]).await;
    let (kept, lines) = expense_with_lines(&api, "trimmed", &["2", "3"]).await;
    assert_eq!(
        delete(&api, &dc_path(PROJECT_1001, gone)).await.status(),
        200
    );
    assert_eq!(
        delete(&api, &line_path(PROJECT_1001, kept, lines[0]))
            .await
            .status(),
        200
    );
    let hand = foreign(&sandbox, &["40"]);
    // Shut down right away: the save it waits for holds every one of these writes.
    sandbox.shutdown().await;
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(!saved.contains("deleted") && !saved.contains("trimmed-0"));
    assert!(saved.contains("entered by hand"));

    let restarted = start(config).await;
    let snap = restarted.snapshot();
    assert!(!snap.direct_costs.contains_key(&gone));
    assert_eq!(
        snap.lines_of(kept).map(|l| l.id).collect::<Vec<_>>(),
        vec![lines[1]]
    );
    assert!(snap.direct_costs.contains_key(&hand.direct_cost_id));
    assert_eq!(project_1001(&restarted).total, money("43"));
    let api = Api::login(&restarted).await;
    assert_eq!(
        delete(&api, &dc_path(PROJECT_1001, gone)).await.status(),
        404
    );
    // Fresh ids stay above every id ever handed out, deleted ones included.
    let next = api.expense(PROJECT_1001, "after-restart").await;
    assert!(next > hand.line_item_ids[0]);
}
