//! Conformance: direct cost writes (one-at-a-time and bulk sync), validation, origin_id matching,
//! shuffled results, lists and the inspection totals.

mod sandbox_support;

use reqwest::Method;
use sandbox_support::*;
use serde_json::{json, Value};

fn origins(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["origin_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn header_sync_creates_then_updates_by_origin_id() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let created = api
        .sync_headers(
            PROJECT_1001,
            json!([{
                "direct_cost_type": "invoice",
                "vendor_id": VENDOR_V100,
                "invoice_number": "INV-1",
                "direct_cost_date": "2024-03-01",
                "received_date": "2024-03-02",
                "payment_date": "2024-03-30",
                "status": "approved",
                "description": "Concrete",
                "origin_id": "jc:AP:1001:V100:INV-1",
                "origin_data": "{\"run\":1}"
            }]),
        )
        .await;
    assert_eq!(created["errors"], json!([]));
    let dc = &created["entities"][0];
    let id = dc["id"].as_i64().unwrap();
    assert!(id > i64::from(u32::MAX), "ids exceed 32 bits");
    assert_eq!(dc["vendor"]["id"], VENDOR_V100);
    assert_eq!(dc["status"], "approved");

    // Same origin_id, no id: an update, not a duplicate.
    let updated = api
        .sync_headers(
            PROJECT_1001,
            json!([{"origin_id": "jc:AP:1001:V100:INV-1", "description": "Concrete, corrected"}]),
        )
        .await;
    assert_eq!(updated["entities"][0]["id"], id);
    assert_eq!(updated["entities"][0]["description"], "Concrete, corrected");
    assert_eq!(updated["entities"][0]["invoice_number"], "INV-1");

    // By id works too.
    let by_id = api
        .sync_headers(PROJECT_1001, json!([{"id": id, "status": "pending"}]))
        .await;
    assert_eq!(by_id["entities"][0]["status"], "pending");

    let listed = api
        .get_json(&format!(
            "/rest/v1.0/projects/{PROJECT_1001}/direct_costs?filters[origin_id]=jc:AP:1001:V100:INV-1"
        ))
        .await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(sandbox.snapshot().direct_costs.len(), 1);
}

#[tokio::test]
async fn every_header_rule_is_reported_per_item_with_the_input() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let existing = api.expense(PROJECT_1001, "dc-existing").await;
    let cases = [
        (
            json!({"direct_cost_type": "rebate", "direct_cost_date": "2024-01-01", "origin_id": "a"}),
            "direct_cost_type",
            "is not included in the list",
        ),
        (
            json!({"direct_cost_date": "2024-01-01", "origin_id": "b"}),
            "direct_cost_type",
            "can't be blank",
        ),
        (
            json!({"direct_cost_type": "invoice", "direct_cost_date": "2024-01-01", "origin_id": "c"}),
            "vendor",
            "can't be blank",
        ),
        (
            json!({"direct_cost_type": "invoice", "vendor_id": 12345, "direct_cost_date": "2024-01-01", "origin_id": "c2"}),
            "vendor",
            "does not exist",
        ),
        (
            json!({"direct_cost_type": "expense", "direct_cost_date": "01/02/2024", "origin_id": "d"}),
            "direct_cost_date",
            "is not a valid date (expected YYYY-MM-DD)",
        ),
        (
            json!({"direct_cost_type": "expense", "direct_cost_date": "2024-01-01", "payment_date": "2024-02-30", "origin_id": "e"}),
            "payment_date",
            "is not a valid date (expected YYYY-MM-DD)",
        ),
        (
            json!({"direct_cost_type": "expense", "origin_id": "f"}),
            "direct_cost_date",
            "can't be blank",
        ),
        (
            json!({"direct_cost_type": "expense", "direct_cost_date": "2024-01-01", "status": "paid", "origin_id": "g"}),
            "status",
            "is not included in the list",
        ),
        (
            json!({"id": existing, "direct_cost_type": "payroll"}),
            "direct_cost_type",
            "can't be changed",
        ),
        (
            json!({"id": 99, "description": "ghost"}),
            "id",
            "does not exist",
        ),
    ];
    for (input, field, message) in cases {
        let body = api.sync_headers(PROJECT_1001, json!([input.clone()])).await;
        let errors = only_error(&body);
        assert_eq!(errors[field], json!([message]), "{input} → {body}");
        // The error entry is the input plus its errors.
        let mut echoed = body["errors"][0].clone();
        echoed.as_object_mut().unwrap().remove("errors");
        assert_eq!(echoed, input);
    }
    let not_object = api.sync_headers(PROJECT_1001, json!(["oops"])).await;
    assert_eq!(
        only_error(&not_object)["base"],
        json!(["must be a JSON object"])
    );
    // Nothing was created by the failures.
    assert_eq!(sandbox.snapshot().direct_costs.len(), 1);
}

#[tokio::test]
async fn origin_id_is_unique_across_the_company() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    api.expense(PROJECT_1001, "shared-origin").await;
    let body = api
        .sync_headers(
            PROJECT_1002,
            json!([{"direct_cost_type": "expense", "direct_cost_date": "2024-01-01", "origin_id": "shared-origin"}]),
        )
        .await;
    assert_eq!(
        only_error(&body)["origin_id"],
        json!(["has already been taken"])
    );
    let lines = api
        .get_json(&format!("/rest/v1.0/projects/{PROJECT_1002}/direct_costs"))
        .await;
    assert_eq!(lines, json!([]));
}

#[tokio::test]
async fn line_sync_validates_and_stores_amounts_exactly() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let dc = api.expense(PROJECT_1001, "dc-1").await;
    let other_project_dc = api.expense(PROJECT_1002, "dc-2").await;
    let body = api
        .sync_lines(
            PROJECT_1001,
            json!([
                {"direct_cost_id": dc, "wbs_code_id": WBS_1001_01_100_L, "amount": "0.10", "origin_id": "l1",
                 "quantity": "3", "unit_cost": 0.0333, "description": "labor"},
                {"direct_cost_id": dc, "wbs_code_id": WBS_1001_01_100_L, "amount": 0.2, "origin_id": "l2"},
                {"direct_cost_id": dc, "wbs_code_id": WBS_1001_01_100_M, "amount": "-1234567.89", "origin_id": "l3"},
                {"direct_cost_id": dc, "wbs_code_id": WBS_1002_01_100_L, "amount": "1", "origin_id": "bad-wbs"},
                {"direct_cost_id": 42, "wbs_code_id": WBS_1001_01_100_L, "amount": "1", "origin_id": "bad-dc"},
                {"direct_cost_id": other_project_dc, "wbs_code_id": WBS_1001_01_100_L, "amount": "1", "origin_id": "dc-elsewhere"},
                {"wbs_code_id": WBS_1001_01_100_L, "amount": "1", "origin_id": "no-dc"},
                {"direct_cost_id": dc, "wbs_code_id": WBS_1001_01_100_L, "amount": "ten", "origin_id": "bad-amount"},
                {"direct_cost_id": dc, "wbs_code_id": WBS_1001_01_100_L, "origin_id": "no-amount"},
                {"direct_cost_id": dc, "amount": "1", "origin_id": "no-wbs"},
                {"id": 7, "amount": "1", "origin_id": "ghost"}
            ]),
        )
        .await;
    assert_eq!(body["entities"].as_array().unwrap().len(), 3, "{body}");
    let mut expected: Vec<(&str, &str, &str)> = vec![
        ("bad-wbs", "wbs_code_id", "does not exist in this project"),
        ("bad-dc", "direct_cost_id", "does not exist"),
        ("dc-elsewhere", "direct_cost_id", "does not exist"),
        ("no-dc", "direct_cost_id", "can't be blank"),
        ("bad-amount", "amount", "is not a number"),
        ("no-amount", "amount", "can't be blank"),
        ("no-wbs", "wbs_code_id", "can't be blank"),
        ("ghost", "id", "does not exist"),
    ];
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), expected.len(), "{body}");
    for e in errors {
        let origin = e["origin_id"].as_str().unwrap();
        let pos = expected.iter().position(|(o, _, _)| *o == origin).unwrap();
        let (_, field, message) = expected.remove(pos);
        assert_eq!(e["errors"][field], json!([message]), "{e}");
    }

    let l1 = body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["origin_id"] == "l1")
        .unwrap();
    assert_eq!(l1["amount"], "0.10");
    assert_eq!(l1["unit_cost"], "0.0333");
    assert_eq!(l1["wbs_code"]["flat_code"], "01-100.L");

    // The header's total and the inspection totals are exact sums.
    let dcs = api
        .get_json(&format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs"))
        .await;
    assert_eq!(dcs[0]["grand_total"], "-1234567.59");
    let summary: Value = reqwest::get(format!("{}/_sandbox/direct_costs", sandbox.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let p1001 = &summary["projects"][0];
    assert_eq!(p1001["project_number"], "1001");
    assert_eq!(p1001["direct_costs"], 1);
    assert_eq!(p1001["line_items"], 3);
    assert_eq!(p1001["by_budget_code"]["01-100.L"]["total"], "0.30");
    assert_eq!(p1001["by_budget_code"]["01-100.M"]["total"], "-1234567.89");

    // Lines list, filtered.
    let listed = api
        .get_json(&format!(
            "/rest/v1.0/projects/{PROJECT_1001}/direct_costs/line_items?filters[origin_id]=l2"
        ))
        .await;
    assert_eq!(listed[0]["amount"], "0.2");
}

#[tokio::test]
async fn line_upsert_by_origin_id_updates_and_cannot_move_direct_costs() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let dc = api.expense(PROJECT_1001, "dc-a").await;
    let dc_b = api.expense(PROJECT_1001, "dc-b").await;
    let line = json!({"direct_cost_id": dc, "wbs_code_id": WBS_1001_01_100_L, "amount": "10.00", "origin_id": "line-a"});
    let first = api.sync_lines(PROJECT_1001, json!([line])).await;
    let id = first["entities"][0]["id"].as_i64().unwrap();
    let again = api
        .sync_lines(
            PROJECT_1001,
            json!([{"origin_id": "line-a", "amount": "12.50"}]),
        )
        .await;
    assert_eq!(again["entities"][0]["id"], id);
    assert_eq!(again["entities"][0]["amount"], "12.50");
    let moved = api
        .sync_lines(
            PROJECT_1001,
            json!([{"origin_id": "line-a", "direct_cost_id": dc_b}]),
        )
        .await;
    assert_eq!(
        only_error(&moved)["direct_cost_id"],
        json!(["can't be changed"])
    );
    assert_eq!(sandbox.snapshot().line_items.len(), 1);
}

#[tokio::test]
async fn sync_results_come_back_shuffled() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let inputs: Vec<Value> = (0..20)
        .map(|i| json!({"direct_cost_type": "expense", "direct_cost_date": "2024-01-01", "origin_id": format!("o{i:02}")}))
        .collect();
    let sent: Vec<String> = (0..20).map(|i| format!("o{i:02}")).collect();
    let mut differed = 0;
    for _ in 0..3 {
        // Re-sending updates the same records; only the order of the answer varies.
        let body = api.sync_headers(PROJECT_1001, json!(inputs)).await;
        let got = origins(&body["entities"]);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, sent, "every input answered exactly once");
        if got != sent {
            differed += 1;
        }
    }
    assert!(differed >= 1, "results must not come back in input order");
    assert_eq!(sandbox.snapshot().direct_costs.len(), 20);
}

#[tokio::test]
async fn sync_refuses_oversized_and_malformed_bodies_without_panicking() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let path = format!("/rest/v1.0/projects/{PROJECT_1001}/direct_costs/line_items/sync");
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"origin_id": i})).collect();
    let resp = api.patch(&path, &json!({ "updates": too_many })).await;
    assert_eq!(resp.status(), 422);
    let body: Value = resp.json().await.unwrap();
    assert!(body["errors"]["updates"][0]
        .as_str()
        .unwrap()
        .contains("1000"));

    let garbage = api
        .request(Method::PATCH, &path)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    let no_updates = api.patch(&path, &json!({"records": []})).await;
    assert_eq!(no_updates.status(), 400);
    let unknown_project = api
        .patch(
            "/rest/v1.0/projects/12/direct_costs/sync",
            &json!({"updates": []}),
        )
        .await;
    assert_eq!(unknown_project.status(), 404);
    // Still serving.
    assert_eq!(
        api.sync_lines(PROJECT_1001, json!([])).await["entities"],
        json!([])
    );
}

#[tokio::test]
async fn post_creates_a_direct_cost_with_at_most_100_lines() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let path = format!("/rest/v1.1/projects/{PROJECT_1001}/direct_costs");
    let line = |i: usize| json!({"wbs_code_id": WBS_1001_01_100_L, "amount": "1.01", "origin_id": format!("pl{i}")});
    let resp = api
        .post(
            &path,
            &json!({"direct_cost": {
                "direct_cost_type": "payroll", "direct_cost_date": "2024-05-31", "origin_id": "payroll-1",
                "line_items": (0..100).map(line).collect::<Vec<_>>()
            }}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["line_items"].as_array().unwrap().len(), 100);
    assert_eq!(body["grand_total"], "101.00");
    assert_eq!(body["status"], "draft", "Procore's default status");

    let too_many = api
        .post(
            &path,
            &json!({"direct_cost": {
                "direct_cost_type": "payroll", "direct_cost_date": "2024-05-31", "origin_id": "payroll-2",
                "line_items": (100..201).map(line).collect::<Vec<_>>()
            }}),
        )
        .await;
    assert_eq!(too_many.status(), 422);

    let invalid = api
        .post(
            &path,
            &json!({"direct_cost": {
                "direct_cost_type": "expense", "direct_cost_date": "2024-05-31", "origin_id": "payroll-1",
                "line_items": [{"wbs_code_id": WBS_1002_01_100_L, "amount": "1"}]
            }}),
        )
        .await;
    assert_eq!(invalid.status(), 422);
    let errors: Value = invalid.json().await.unwrap();
    assert_eq!(
        errors["errors"]["origin_id"],
        json!(["has already been taken"])
    );
    assert_eq!(
        errors["errors"]["line_items[0].wbs_code_id"],
        json!(["does not exist in this project"])
    );
    let missing = api.post(&path, &json!({"nothing": 1})).await;
    assert_eq!(missing.status(), 400);
    assert_eq!(sandbox.snapshot().direct_costs.len(), 1);
}
