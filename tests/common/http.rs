//! HTTP calls the tests make against a running log: one client, key
//! creation through the admin API, and the requests every test file needs
//! (submit events, read JSON with or without a key).
//!
//! Helpers named `submit`/`get_json` assert success; `call` and
//! `post_events` return the status so the test asserts it.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

/// An HTTP client with a generous timeout.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// Creates an API key through the admin API and returns the token.
pub async fn create_key(url: &str, admin: &str, name: &str, role: &str) -> String {
    new_key(url, admin, json!({ "name": name, "role": role })).await
}

/// Creates an API key with an explicit app id (writers) and returns the token.
pub async fn create_key_for_app(
    url: &str,
    admin: &str,
    name: &str,
    role: &str,
    app: &str,
) -> String {
    new_key(
        url,
        admin,
        json!({ "name": name, "role": role, "app": app }),
    )
    .await
}

/// Creates an API key and revokes it; returns the token, which no longer
/// opens anything.
pub async fn create_revoked_key(url: &str, admin: &str, name: &str, role: &str) -> String {
    let token = create_key(url, admin, name, role).await;
    // A token is `vt_<key id>_<secret>`.
    let id = token.split('_').nth(1).unwrap();
    let resp = http()
        .delete(format!("{url}/v1/admin/keys/{id}"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "revoking a key");
    token
}

async fn new_key(url: &str, admin: &str, body: Value) -> String {
    let resp = http()
        .post(format!("{url}/v1/admin/keys"))
        .bearer_auth(admin)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "creating a key");
    let v: Value = resp.json().await.unwrap();
    v["key"].as_str().unwrap().to_string()
}

/// GET a JSON document.
pub async fn get_json(url: &str) -> Value {
    let resp = http().get(url).send().await.unwrap();
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert!(status.is_success(), "GET {url}: {status}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The number of entries the log at `url` has made durable: a test's own
/// appends are counted from it, since the log records its own admin
/// actions (the first admin key, each key created) too.
/// A degraded log (503: a checkpoint is late on a loaded machine) still
/// says its size.
pub async fn committed_size(url: &str) -> u64 {
    let resp = http().get(format!("{url}/healthz")).send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(
        status.is_success() || status == 503,
        "GET /healthz: {status}: {body}"
    );
    body["committed_size"]
        .as_u64()
        .unwrap_or_else(|| panic!("GET /healthz: {status}: no committed_size in {body}"))
}

/// GET raw bytes.
pub async fn get_bytes(url: &str) -> Vec<u8> {
    let resp = http().get(url).send().await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.bytes().await.unwrap().to_vec()
}

/// Starts a backup (`POST /v1/admin/backup`) with an admin key: the
/// streamed answer, its status checked, its body not yet read.
pub async fn start_backup(url: &str, admin: &str) -> reqwest::Response {
    let resp = http()
        .post(format!("{url}/v1/admin/backup"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "POST /v1/admin/backup");
    resp
}

/// GET a JSON document with a bearer key.
pub async fn get_json_auth(url: &str, key: &str) -> Value {
    let resp = http().get(url).bearer_auth(key).send().await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.unwrap()
}

/// Any request with a bearer key and an optional JSON body: the status and
/// the JSON answer (`Null` when the answer is not JSON).
pub async fn call(method: Method, url: &str, key: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = http().request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// POSTs `events` as one batch to `/v1/events{query}` (`query` is empty or
/// starts with `?`): the status and the JSON answer.
pub async fn post_events(url: &str, key: &str, query: &str, events: Vec<Value>) -> (u16, Value) {
    let resp = http()
        .post(format!("{url}/v1/events{query}"))
        .bearer_auth(key)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// Appends `events` as one batch, waits for a checkpoint that covers them,
/// and returns the answer (per-event receipts and the checkpoint note).
pub async fn submit(url: &str, key: &str, events: Vec<Value>) -> Value {
    let (status, body) = post_events(url, key, "?wait=checkpoint", events).await;
    assert_eq!(status, 200, "submitting events: {body}");
    body
}

/// An authenticated GET: the status, the leaf index of the audit event the
/// read appended (its `veritrail-audit-index` header), and the JSON body
/// (null when there is none).
pub async fn auditor_get(url: &str, key: &str) -> (u16, Option<u64>, Value) {
    let resp = http().get(url).bearer_auth(key).send().await.unwrap();
    let status = resp.status().as_u16();
    let audit = resp
        .headers()
        .get("veritrail-audit-index")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, audit, body)
}
