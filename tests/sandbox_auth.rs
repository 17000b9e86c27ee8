//! Conformance: OAuth client credentials, bearer tokens and the company header.

mod sandbox_support;

use std::time::Duration;

use reqwest::Method;
use sandbox_support::*;
use serde_json::Value;

#[tokio::test]
async fn token_grant_returns_a_bearer_token_with_procores_shape() {
    let sandbox = start(demo_config()).await;
    let resp = token_response(sandbox.url(), "demo-client", "demo-secret").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 5400);
    assert!(body["access_token"].as_str().is_some_and(|t| t.len() >= 32));
    assert!(body["created_at"]
        .as_u64()
        .is_some_and(|t| t + 5 >= unix_now()));
}

#[tokio::test]
async fn wrong_secret_unknown_client_and_wrong_grant_are_refused() {
    let sandbox = start(demo_config()).await;
    let bad = token_response(sandbox.url(), "demo-client", "nope").await;
    assert_eq!(bad.status(), 401);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(
        token_response(sandbox.url(), "stranger", "demo-secret")
            .await
            .status(),
        401
    );
    let grant = http()
        .post(format!("{}/oauth/token", sandbox.url()))
        .form(&[("grant_type", "password"), ("client_id", "demo-client")])
        .send()
        .await
        .unwrap();
    assert_eq!(grant.status(), 400);
    let body: Value = grant.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn missing_or_invalid_bearer_token_is_401() {
    let sandbox = start(demo_config()).await;
    let url = format!("{}/rest/v1.0/projects?company_id={COMPANY}", sandbox.url());
    let none = http()
        .get(&url)
        .header("Procore-Company-Id", COMPANY.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 401);
    let forged = http()
        .get(&url)
        .bearer_auth("not-a-token")
        .header("Procore-Company-Id", COMPANY.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert!(header(&forged, "www-authenticate").is_some());
}

#[tokio::test]
async fn expired_token_is_401_and_a_new_token_works() {
    let mut config = demo_config();
    config.token_ttl = Duration::from_secs(1);
    let sandbox = start(config).await;
    let api = Api::login(&sandbox).await;
    let path = format!("/rest/v1.0/projects?company_id={COMPANY}");
    assert_eq!(api.get(&path).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(api.get(&path).await.status(), 401);
    let fresh = Api::login(&sandbox).await;
    assert_eq!(fresh.get(&path).await.status(), 200);
}

#[tokio::test]
async fn missing_company_header_is_answered_as_procore_does() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let resp = api
        .http
        .get(format!(
            "{}/rest/v1.0/projects?company_id={COMPANY}",
            api.base
        ))
        .bearer_auth(&api.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"], "Missing Procore-Company-Id header!");
}

#[tokio::test]
async fn a_company_the_app_does_not_belong_to_is_403() {
    let sandbox = start(demo_config()).await;
    let api = Api::login(&sandbox).await;
    let foreign = api
        .http
        .request(
            Method::GET,
            format!(
                "{}/rest/v1.0/projects/{PROJECT_1001}/direct_costs",
                api.base
            ),
        )
        .bearer_auth(&api.token)
        .header("Procore-Company-Id", "4294967397")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    // The company_id query parameter must match too.
    let mismatch = api.get("/rest/v1.0/projects?company_id=1").await;
    assert_eq!(mismatch.status(), 403);
    let missing = api.get("/rest/v1.0/vendors").await;
    assert_eq!(missing.status(), 400);
}
