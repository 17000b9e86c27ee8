//! Shared helpers of the sandbox conformance tests: start an embedded sandbox on 127.0.0.1 and
//! talk to it over real HTTP with reqwest, as a Procore client would.
#![allow(dead_code)]

use std::time::Duration;

use jcsync::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};

/// Fixture ids (see `fixtures/procore/`): above 2^32 on purpose.
pub const COMPANY: i64 = 4_294_967_396;
pub const PROJECT_1001: i64 = 4_294_968_001;
pub const PROJECT_1002: i64 = 4_294_968_002;
pub const VENDOR_V100: i64 = 4_294_969_100;
/// `01-100.L` in project 1001.
pub const WBS_1001_01_100_L: i64 = 4_294_970_001;
/// `01-100.M` in project 1001.
pub const WBS_1001_01_100_M: i64 = 4_294_970_002;
/// `01-100.L` in project 1002.
pub const WBS_1002_01_100_L: i64 = 4_294_970_046;

/// The demo seed, rate limits off, no faults.
pub fn demo_config() -> SandboxConfig {
    let mut c = SandboxConfig::from_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/procore"));
    c.rate_limit = None;
    c
}

pub async fn start(config: SandboxConfig) -> SandboxHandle {
    Sandbox::start(config).await.expect("sandbox starts")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Requests a token with the given credentials; returns the raw response.
pub async fn token_response(base: &str, id: &str, secret: &str) -> Response {
    http()
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("token request")
}

/// A logged-in client of the demo company.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
    pub company: i64,
}

impl Api {
    pub async fn login(sandbox: &SandboxHandle) -> Api {
        let resp = token_response(sandbox.url(), "demo-client", "demo-secret").await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("token json");
        Api {
            http: http(),
            base: sandbox.url().to_owned(),
            token: body["access_token"].as_str().expect("token").to_owned(),
            company: COMPANY,
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Procore-Company-Id", self.company.to_string())
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.expect("GET")
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self.get(path).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.expect("json")
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Response {
        self.request(Method::PATCH, path)
            .json(body)
            .send()
            .await
            .expect("PATCH")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    /// PATCH …/direct_costs/sync; asserts 200 and returns the body.
    pub async fn sync_headers(&self, project: i64, updates: Value) -> Value {
        let resp = self
            .patch(
                &format!("/rest/v1.0/projects/{project}/direct_costs/sync"),
                &json!({ "updates": updates }),
            )
            .await;
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("json")
    }

    /// PATCH …/direct_costs/line_items/sync; asserts 200 and returns the body.
    pub async fn sync_lines(&self, project: i64, updates: Value) -> Value {
        let resp = self
            .patch(
                &format!("/rest/v1.0/projects/{project}/direct_costs/line_items/sync"),
                &json!({ "updates": updates }),
            )
            .await;
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("json")
    }

    /// Creates an expense header and returns its id.
    pub async fn expense(&self, project: i64, origin: &str) -> i64 {
        let body = self
            .sync_headers(
                project,
                json!([{
                    "direct_cost_type": "expense",
                    "direct_cost_date": "2024-03-01",
                    "status": "approved",
                    "origin_id": origin,
                }]),
            )
            .await;
        assert_eq!(body["errors"], json!([]), "{body}");
        body["entities"][0]["id"].as_i64().expect("id")
    }
}

/// The `errors` object of the only error entry of a sync response.
pub fn only_error(body: &Value) -> &Value {
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(body["entities"], json!([]), "{body}");
    &errors[0]["errors"]
}

pub fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}
