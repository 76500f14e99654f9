//! Bad input of every kind gets the right 4xx and a JSON error, and changes
//! nothing: the tree, the checkpoint and the keys are as before.

mod common;

use common::{Server, create_key, event, get_json, http};
use reqwest::Method;
use serde_json::{Value, json};

struct Case {
    what: &'static str,
    method: Method,
    path: String,
    auth: Option<String>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
}

fn case(
    what: &'static str,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Vec<u8>,
    status: u16,
) -> Case {
    Case {
        what,
        method,
        path: path.to_string(),
        auth: auth.map(str::to_string),
        content_type: Some("application/json"),
        body,
        status,
    }
}

fn js(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn without(mut e: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    e.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    e
}

fn with(mut e: Value, pointer: &str, v: Value) -> Value {
    *e.pointer_mut(pointer).unwrap() = v;
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key(&url, &admin, "billing", "writer").await;
    let auditor = create_key(&url, &admin, "aud", "auditor").await;
    let revoked = create_key(&url, &admin, "gone", "writer").await;
    let keys = get_json_auth(&format!("{url}/v1/admin/keys"), &admin).await;
    let gone_id = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "gone")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = http()
        .delete(format!("{url}/v1/admin/keys/{gone_id}"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Some history, so that "beyond the tree" has a boundary.
    let resp = http()
        .post(format!("{url}/v1/events?wait=checkpoint"))
        .bearer_auth(&writer)
        .json(&json!({ "events": (0..3).map(|i| event(i, None)).collect::<Vec<_>>() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let before = get_json(&format!("{url}/v1/checkpoint")).await;
    let keys_before = get_json_auth(&format!("{url}/v1/admin/keys"), &admin).await;

    let w = Some(writer.as_str());
    let ok = event(1, None);
    let post = Method::POST;
    let get = Method::GET;
    let ev = "/v1/events";
    let mut cases = vec![
        case("no key", post.clone(), ev, None, js(ok.clone()), 401),
        case(
            "garbage key",
            post.clone(),
            ev,
            Some("nope"),
            js(ok.clone()),
            401,
        ),
        case(
            "well-formed unknown key",
            post.clone(),
            ev,
            Some(&format!("vt_0000000000000000_{}", "0".repeat(64))),
            js(ok.clone()),
            401,
        ),
        case(
            "revoked key",
            post.clone(),
            ev,
            Some(&revoked),
            js(ok.clone()),
            401,
        ),
        case(
            "admin key cannot write",
            post.clone(),
            ev,
            Some(&admin),
            js(ok.clone()),
            403,
        ),
        case(
            "auditor key cannot write",
            post.clone(),
            ev,
            Some(&auditor),
            js(ok.clone()),
            403,
        ),
        case(
            "malformed JSON",
            post.clone(),
            ev,
            w,
            b"{\"actor\":".to_vec(),
            400,
        ),
        case(
            "not UTF-8",
            post.clone(),
            ev,
            w,
            vec![0xff, 0xfe, 0x00],
            400,
        ),
        case(
            "a JSON array",
            post.clone(),
            ev,
            w,
            js(json!([ok.clone()])),
            400,
        ),
        case("a number", post.clone(), ev, w, b"42".to_vec(), 400),
        case("empty object", post.clone(), ev, w, js(json!({})), 400),
        case(
            "missing actor.id",
            post.clone(),
            ev,
            w,
            js(without(ok.clone(), "/actor/id")),
            400,
        ),
        case(
            "missing occurred_at",
            post.clone(),
            ev,
            w,
            js(without(ok.clone(), "/occurred_at")),
            400,
        ),
        case(
            "actor.id not a string",
            post.clone(),
            ev,
            w,
            js(with(ok.clone(), "/actor/id", json!(7))),
            400,
        ),
        case(
            "unknown field",
            post.clone(),
            ev,
            w,
            js(with(ok.clone(), "/action", json!("x"))
                .as_object()
                .cloned()
                .map(|mut m| {
                    m.insert("app".into(), json!("forged"));
                    Value::Object(m)
                })
                .unwrap()),
            400,
        ),
        case(
            "bad outcome",
            post.clone(),
            ev,
            w,
            js(with(ok.clone(), "/outcome", json!("maybe"))),
            400,
        ),
        case(
            "bad time",
            post.clone(),
            ev,
            w,
            js(with(ok.clone(), "/occurred_at", json!("yesterday"))),
            400,
        ),
        case(
            "bad ip",
            post.clone(),
            ev,
            w,
            js(with(ok.clone(), "/actor/ip", json!("999.1.1.1"))),
            400,
        ),
        case(
            "over-long action",
            post.clone(),
            ev,
            w,
            js(with(ok.clone(), "/action", json!("a".repeat(5000)))),
            400,
        ),
        case(
            "empty batch",
            post.clone(),
            ev,
            w,
            js(json!({ "events": [] })),
            400,
        ),
        case(
            "one bad event spoils the batch",
            post.clone(),
            ev,
            w,
            js(
                json!({ "events": [ok.clone(), ok.clone(), ok.clone(), without(ok.clone(), "/purpose")] }),
            ),
            400,
        ),
        case(
            "too many events",
            post.clone(),
            ev,
            w,
            js(json!({ "events": vec![ok.clone(); 1001] })),
            413,
        ),
        case(
            "oversize body",
            post.clone(),
            ev,
            w,
            js(json!({ "events": [with(ok.clone(), "/purpose", json!("p".repeat(5 << 20)))] })),
            413,
        ),
        case(
            "unknown wait",
            post.clone(),
            &format!("{ev}?wait=forever"),
            w,
            js(ok.clone()),
            400,
        ),
        case(
            "unknown query parameter",
            post.clone(),
            &format!("{ev}?debug=1"),
            w,
            js(ok.clone()),
            400,
        ),
        case(
            "tile width 0",
            get.clone(),
            "/tile/0/000.p/0",
            None,
            vec![],
            400,
        ),
        case(
            "tile width 256",
            get.clone(),
            "/tile/0/000.p/256",
            None,
            vec![],
            400,
        ),
        case(
            "tile leading zero group",
            get.clone(),
            "/tile/0/x000/001",
            None,
            vec![],
            400,
        ),
        case(
            "tile short index",
            get.clone(),
            "/tile/0/01",
            None,
            vec![],
            400,
        ),
        case(
            "tile level 64",
            get.clone(),
            "/tile/64/000",
            None,
            vec![],
            400,
        ),
        case(
            "tile traversal",
            get.clone(),
            "/tile/0/..%2F..%2Fetc%2Fpasswd",
            None,
            vec![],
            400,
        ),
        case(
            "tile entries garbage",
            get.clone(),
            "/tile/entries/abc",
            None,
            vec![],
            400,
        ),
        case(
            "tile beyond the tree",
            get.clone(),
            "/tile/0/000.p/4",
            None,
            vec![],
            404,
        ),
        case(
            "full tile beyond the tree",
            get.clone(),
            "/tile/0/000",
            None,
            vec![],
            404,
        ),
        case(
            "bundle beyond the tree",
            get.clone(),
            "/tile/entries/001",
            None,
            vec![],
            404,
        ),
        case(
            "proof index beyond size",
            get.clone(),
            "/v1/proof/inclusion?index=3&tree_size=3",
            None,
            vec![],
            400,
        ),
        case(
            "proof size beyond tree",
            get.clone(),
            "/v1/proof/inclusion?index=0&tree_size=4",
            None,
            vec![],
            400,
        ),
        case(
            "proof negative index",
            get.clone(),
            "/v1/proof/inclusion?index=-1&tree_size=3",
            None,
            vec![],
            400,
        ),
        case(
            "proof overflowing index",
            get.clone(),
            "/v1/proof/inclusion?index=18446744073709551616&tree_size=3",
            None,
            vec![],
            400,
        ),
        case(
            "proof non-numeric",
            get.clone(),
            "/v1/proof/inclusion?index=abc",
            None,
            vec![],
            400,
        ),
        case(
            "proof index and hash",
            get.clone(),
            "/v1/proof/inclusion?index=0&hash=AAAA&tree_size=3",
            None,
            vec![],
            400,
        ),
        case(
            "proof short hash",
            get.clone(),
            "/v1/proof/inclusion?hash=AAAA&tree_size=3",
            None,
            vec![],
            400,
        ),
        case(
            "proof unknown hash",
            get.clone(),
            &format!("/v1/proof/inclusion?hash={}&tree_size=3", "A".repeat(43)),
            None,
            vec![],
            404,
        ),
        case(
            "consistency reversed",
            get.clone(),
            "/v1/proof/consistency?first=3&second=2",
            None,
            vec![],
            400,
        ),
        case(
            "consistency beyond tree",
            get.clone(),
            "/v1/proof/consistency?first=1&second=99",
            None,
            vec![],
            400,
        ),
        case(
            "consistency missing first",
            get.clone(),
            "/v1/proof/consistency?second=2",
            None,
            vec![],
            400,
        ),
        case(
            "create key: bad role",
            post.clone(),
            "/v1/admin/keys",
            Some(&admin),
            js(json!({"name":"x","role":"root"})),
            400,
        ),
        case(
            "create key: bad name",
            post.clone(),
            "/v1/admin/keys",
            Some(&admin),
            js(json!({"name":"a b","role":"writer"})),
            400,
        ),
        case(
            "create key: unknown field",
            post.clone(),
            "/v1/admin/keys",
            Some(&admin),
            js(json!({"name":"x","role":"writer","admin":true})),
            400,
        ),
        case(
            "create key: writer key",
            post.clone(),
            "/v1/admin/keys",
            w,
            js(json!({"name":"x","role":"admin"})),
            403,
        ),
        case(
            "create key: no key",
            post.clone(),
            "/v1/admin/keys",
            None,
            js(json!({"name":"x","role":"admin"})),
            401,
        ),
        case(
            "revoke unknown key",
            Method::DELETE,
            "/v1/admin/keys/0000000000000000",
            Some(&admin),
            vec![],
            404,
        ),
        case(
            "unknown route",
            get.clone(),
            "/v2/everything",
            None,
            vec![],
            404,
        ),
        case(
            "wrong method",
            Method::DELETE,
            "/checkpoint",
            None,
            vec![],
            405,
        ),
    ];
    let mut text_plain = case(
        "wrong content type",
        post.clone(),
        ev,
        w,
        js(ok.clone()),
        415,
    );
    text_plain.content_type = Some("text/plain");
    cases.push(text_plain);

    // A fresh connection per case: the server answers an oversize body 413
    // before reading it and closes that connection, and a pooled client could
    // race that close with its next request (IncompleteMessage).
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .unwrap();
    for c in &cases {
        let mut req = client.request(c.method.clone(), format!("{url}{}", c.path));
        if let Some(a) = &c.auth {
            req = req.header("authorization", format!("Bearer {a}"));
        }
        if !c.body.is_empty() {
            req = req
                .header("content-type", c.content_type.unwrap())
                .body(c.body.clone());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, c.status, "{}: got {status} {text}", c.what);
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{}: error body is not JSON: {text}", c.what));
        assert!(
            v["error"]["code"].is_string() && v["error"]["message"].is_string(),
            "{}: {text}",
            c.what
        );
    }
    // The error names the offending position.
    let resp = client
        .post(format!("{url}/v1/events"))
        .bearer_auth(&writer)
        .json(&json!({ "events": [ok.clone(), ok.clone(), ok.clone(), without(ok.clone(), "/purpose")] }))
        .send()
        .await
        .unwrap();
    let msg = resp.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("events[3]") && msg.contains("purpose"),
        "{msg}"
    );

    // Nothing changed.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let after = get_json(&format!("{url}/v1/checkpoint")).await;
    assert_eq!(after["tree_size"], before["tree_size"]);
    assert_eq!(after["root_hash"], before["root_hash"]);
    assert_eq!(
        get_json(&format!("{url}/healthz")).await["committed_size"],
        json!(3)
    );
    let keys_after = get_json_auth(&format!("{url}/v1/admin/keys"), &admin).await;
    assert_eq!(keys_after, keys_before);
}

async fn get_json_auth(url: &str, key: &str) -> Value {
    let resp = http().get(url).bearer_auth(key).send().await.unwrap();
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.json().await.unwrap()
}
