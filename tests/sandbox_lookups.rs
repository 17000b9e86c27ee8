//! Conformance: projects, vendors, budget codes and pagination.

mod sandbox_support;

use sandbox_support::*;
use serde_json::{json, Value};

#[tokio::test]
async fn projects_list_the_sage_jobs_with_ids_beyond_32_bits() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let projects = api
        .get_json(&format!("/rest/v1.0/projects?company_id={COMPANY}"))
        .await;
    let numbers: Vec<&str> = projects
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["project_number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["1001", "1002", "1003"]);
    assert!(projects
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["id"].as_i64().unwrap() > i64::from(u32::MAX)));
}

#[tokio::test]
async fn lists_paginate_with_link_total_and_per_page_headers() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let first = api
        .get(&format!(
            "/rest/v1.0/projects?company_id={COMPANY}&per_page=2"
        ))
        .await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "total"), Some("3"));
    assert_eq!(header(&first, "per-page"), Some("2"));
    let link = header(&first, "link").unwrap().to_owned();
    assert!(link.contains("page=2&per_page=2>; rel=\"next\""), "{link}");
    assert!(link.contains("rel=\"last\""), "{link}");
    assert!(link.contains("company_id="), "{link}");
    let page: Value = first.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);

    // Follow rel="next" as a client would.
    let next = link
        .split(", ")
        .find(|l| l.ends_with("rel=\"next\""))
        .and_then(|l| l.split(['<', '>']).nth(1))
        .unwrap()
        .to_owned();
    let second = api
        .http
        .get(&next)
        .bearer_auth(&api.token)
        .header("Procore-Company-Id", COMPANY.to_string())
        .send()
        .await
        .unwrap();
    let link2 = header(&second, "link").unwrap().to_owned();
    assert!(!link2.contains("rel=\"next\""), "{link2}");
    assert!(link2.contains("rel=\"prev\""), "{link2}");
    let page2: Value = second.json().await.unwrap();
    assert_eq!(page2[0]["project_number"], "1003");
}

#[tokio::test]
async fn vendors_filter_by_origin_id() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let all = api
        .get_json(&format!("/rest/v1.0/vendors?company_id={COMPANY}"))
        .await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let v200 = api
        .get_json(&format!(
            "/rest/v1.0/vendors?company_id={COMPANY}&filters[origin_id]=V200"
        ))
        .await;
    assert_eq!(v200.as_array().unwrap().len(), 1);
    assert_eq!(v200[0]["origin_id"], "V200");
    let none = api
        .get_json(&format!(
            "/rest/v1.0/vendors?company_id={COMPANY}&filters[origin_id]=V999"
        ))
        .await;
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn budget_codes_cover_the_fixture_codes_per_project() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let codes = api
        .get_json(&format!(
            "/rest/v1.0/projects/{PROJECT_1001}/work_breakdown_structure/wbs_codes?per_page=1000"
        ))
        .await;
    let flat: Vec<&str> = codes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["flat_code"].as_str().unwrap())
        .collect();
    assert_eq!(flat.len(), 45);
    assert!(flat.contains(&"03-300.O"));
    assert!(flat.contains(&"2.02-200.E"));
    let other = api
        .get(&format!(
            "/rest/v1.0/projects/{PROJECT_1002}/work_breakdown_structure/wbs_codes"
        ))
        .await;
    assert_eq!(header(&other, "total"), Some("15"));
    let unknown = api
        .get("/rest/v1.0/projects/77/work_breakdown_structure/wbs_codes")
        .await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn bulk_create_adds_budget_codes_and_rejects_duplicates() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let path = format!(
        "/rest/v1.0/projects/{PROJECT_1002}/work_breakdown_structure/wbs_codes/bulk_create"
    );
    let resp = api
        .patch(
            &path,
            &json!({"bulk": [
                {"flat_code": "04-400.L", "description": "Masonry - Labor"},
                {"flat_code": "01-100.L"},
                {"description": "no code"}
            ]}),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["entities"].as_array().unwrap().len(), 1);
    assert_eq!(body["entities"][0]["flat_code"], "04-400.L");
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert!(errors
        .iter()
        .any(|e| e["errors"]["flat_code"][0] == "has already been taken"));
    assert!(errors
        .iter()
        .any(|e| e["errors"]["flat_code"][0] == "can't be blank"));
    let codes = api
        .get(&format!(
            "/rest/v1.0/projects/{PROJECT_1002}/work_breakdown_structure/wbs_codes"
        ))
        .await;
    assert_eq!(header(&codes, "total"), Some("16"));
}
