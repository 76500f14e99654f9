//! The admin actions reach the log: API keys created (the first admin key
//! by the log itself at its first start) and revoked, a backup, a
//! retention policy and a legal hold created and removed, an erasure.
//! Each is an audit event of the log's own app naming the acting key's id
//! (key names are not unique), and an auditor lists them, paged, through
//! `GET /v1/admin/actions`. Against the real server.

mod common;

use common::{Server, call, create_key, http, submit};
use reqwest::Method;
use serde_json::{Value, json};

/// The key id inside a token `vt_<id>_<secret>`.
fn key_id(token: &str) -> String {
    token.split('_').nth(1).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_action_is_an_audit_event_naming_the_acting_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let url = server.url.clone();
    let admin = server.admin_key();
    // A second admin key with the same name as the first: only ids tell
    // them apart.
    let (status, second) = call(
        Method::POST,
        &format!("{url}/v1/admin/keys"),
        &admin,
        Some(json!({"name": "admin", "role": "admin"})),
    )
    .await;
    assert_eq!(status, 201, "{second}");
    let second = second["key"].as_str().unwrap().to_string();
    let writer = create_key(&url, &second, "clinic", "writer").await;
    let auditor = create_key(&url, &admin, "aud", "auditor").await;
    submit(
        &url,
        &writer,
        vec![json!({
            "actor": {"id": "dr", "type": "user"}, "action": "record.read",
            "resource": {"type": "doc", "id": "d"}, "subject": "patient-1",
            "purpose": "care", "outcome": "success", "occurred_at": "2026-11-25T10:00:00Z",
        })],
    )
    .await;
    // A writer cannot list them.
    let (status, _) = call(
        Method::GET,
        &format!("{url}/v1/admin/actions"),
        &writer,
        None,
    )
    .await;
    assert_eq!(status, 403);
    // The first admin key is recorded by the log itself; then each key by
    // the admin key that made it.
    let mut expected: Vec<(&str, String)> = vec![
        ("admin.key.create", String::new()),
        ("admin.key.create", key_id(&admin)),
        ("admin.key.create", key_id(&second)),
        ("admin.key.create", key_id(&admin)),
    ];
    let created = [&admin, &second, &writer, &auditor].map(|t| key_id(t));
    let step = |method: Method, path: &str, key: &str, body: Option<Value>| {
        let (url, key, path) = (url.clone(), key.to_string(), path.to_string());
        async move {
            let resp = http()
                .request(method, format!("{url}{path}"))
                .bearer_auth(&key)
                .json(&body.unwrap_or(Value::Null))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let audit = resp.headers().get("veritrail-audit-index").is_some();
            let text = resp.text().await.unwrap_or_default();
            assert!(status < 300, "{path}: {status} {text}");
            assert!(audit, "{path}: no audit index header");
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
        }
    };
    let hold = step(
        Method::POST,
        "/v1/admin/holds",
        &second,
        Some(json!({"app": "other", "reason": "case 1"})),
    )
    .await;
    expected.push(("admin.hold.create", key_id(&second)));
    let hold_id = hold["id"].as_str().unwrap();
    step(
        Method::DELETE,
        &format!("/v1/admin/holds/{hold_id}"),
        &admin,
        None,
    )
    .await;
    expected.push(("admin.hold.release", key_id(&admin)));
    let policy = step(
        Method::POST,
        "/v1/admin/retention",
        &admin,
        Some(json!({"app": "other", "keep_days": 30})),
    )
    .await;
    expected.push(("admin.retention.set", key_id(&admin)));
    let policy_id = policy["id"].as_str().unwrap();
    step(
        Method::DELETE,
        &format!("/v1/admin/retention/{policy_id}"),
        &second,
        None,
    )
    .await;
    expected.push(("admin.retention.remove", key_id(&second)));
    step(
        Method::POST,
        "/v1/erasure",
        &second,
        Some(json!({"subject": "patient-1", "reason": "request"})),
    )
    .await;
    expected.push(("admin.erasure", key_id(&second)));
    // The backup's answer is a stream, not JSON; read it whole.
    let resp = common::start_backup(&url, &admin).await;
    assert!(resp.headers().get("veritrail-audit-index").is_some());
    assert!(!resp.bytes().await.unwrap().is_empty());
    expected.push(("admin.backup", key_id(&admin)));
    // Revoking a key is recorded before it takes effect; the answer names
    // its audit event.
    let revoked = step(
        Method::DELETE,
        &format!("/v1/admin/keys/{}", key_id(&writer)),
        &second,
        None,
    )
    .await;
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    expected.push(("admin.key.revoke", key_id(&second)));
    // Refused key changes change nothing, in the keys or in the log.
    for (method, path, body, want) in [
        (Method::DELETE, "/v1/admin/keys/0123456789abcdef", None, 404),
        (
            Method::POST,
            "/v1/admin/keys",
            Some(json!({"name": "w", "role": "owner"})),
            400,
        ),
    ] {
        let (status, answer) = call(method, &format!("{url}{path}"), &admin, body).await;
        assert_eq!(status, want, "{path}: {answer}");
    }
    // The auditor pages through the admin actions, newest first.
    let mut listed = Vec::new();
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("{url}/v1/admin/actions?limit=3");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = call(Method::GET, &path, &auditor, None).await;
        assert_eq!(status, 200, "{page}");
        for a in page["actions"].as_array().unwrap() {
            // Only the log itself acts without a key: at its first start.
            let by_log = a["details"]["first_start"] == true;
            let kind = if by_log { "service" } else { "api_key" };
            assert_eq!(a["actor"]["type"], kind, "{a}");
            all.push(a.clone());
            listed.push((
                a["action"].as_str().unwrap().to_string(),
                a["actor"]["key_id"].as_str().unwrap_or("").to_string(),
                a["resource"].clone(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(listed.len() < 100, "the listing never ends");
    }
    listed.reverse();
    let got: Vec<(&str, String)> = listed
        .iter()
        .map(|(a, k, _)| (a.as_str(), k.clone()))
        .collect();
    assert_eq!(got, expected);
    all.reverse();
    // Each key action names the key's id and role, and never a secret.
    let key_actions: Vec<&Value> = all
        .iter()
        .filter(|a| a["action"].as_str().unwrap().starts_with("admin.key."))
        .collect();
    let mut named: Vec<String> = key_actions
        .iter()
        .map(|a| {
            let key = &a["details"]["key"];
            assert_eq!(a["resource"]["type"], "api_key", "{a}");
            assert_eq!(a["resource"]["id"], key["id"], "{a}");
            assert!(key["role"].is_string(), "{a}");
            key["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(key_actions[0]["details"]["key"]["role"], "admin");
    assert_eq!(key_actions[2]["details"]["key"]["role"], "writer");
    assert_eq!(key_actions[2]["details"]["key"]["app"], "clinic");
    assert_eq!(named.pop().unwrap(), key_id(&writer), "the revoked key");
    assert_eq!(named, created);
    let text = serde_json::to_string(&all).unwrap();
    for token in [&admin, &second, &writer, &auditor] {
        let secret = token.rsplit('_').next().unwrap();
        assert!(!text.contains(secret), "a key's secret reached the log");
    }
    // The erasure names its subject by pseudonym only.
    let erasure = &listed
        .iter()
        .find(|(a, _, _)| a == "admin.erasure")
        .unwrap()
        .2;
    assert_eq!(erasure["type"], "subject");
    assert_ne!(erasure["id"], "patient-1");
}
