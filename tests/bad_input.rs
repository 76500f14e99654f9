//! Bad input of every kind gets the right 4xx and a JSON error, and changes
//! nothing: the tree, the checkpoint and the keys are as before.

mod common;

use common::{
    Server, committed_size, create_key, create_revoked_key, event, get_json, get_json_auth, http,
    submit,
};
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

/// A log with some history (so "beyond the tree" has a boundary), keys of
/// every kind, and what it looked like before the bad requests.
struct Fixture {
    _server: Server,
    _dir: tempfile::TempDir,
    url: String,
    admin: String,
    writer: String,
    auditor: String,
    revoked: String,
    before: Value,
    keys_before: Value,
    /// The tree size before the bad requests: the log's own records of
    /// the keys above, then three events.
    size: u64,
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("data"), &[]);
        let url = server.url.clone();
        let admin = server.admin_key();
        let writer = create_key(&url, &admin, "billing", "writer").await;
        let auditor = create_key(&url, &admin, "aud", "auditor").await;
        let revoked = create_revoked_key(&url, &admin, "gone", "writer").await;

        let size0 = committed_size(&url).await;
        submit(&url, &writer, (0..3).map(|i| event(i, None)).collect()).await;
        let size = committed_size(&url).await;
        assert_eq!(size, size0 + 3);
        let before = get_json(&format!("{url}/v1/checkpoint")).await;
        let keys_before = get_json_auth(&format!("{url}/v1/admin/keys"), &admin).await;
        Fixture {
            _server: server,
            _dir: dir,
            url,
            admin,
            writer,
            auditor,
            revoked,
            before,
            keys_before,
            size,
        }
    }

    fn w(&self) -> Option<&str> {
        Some(self.writer.as_str())
    }

    /// Sends each case and checks its status and its JSON error; then checks
    /// that nothing changed.
    async fn expect(&self, cases: &[Case]) {
        // A fresh connection per case: the server answers an oversize body 413
        // before reading it and closes that connection, and a pooled client could
        // race that close with its next request (IncompleteMessage).
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .unwrap();
        for c in cases {
            let send = || {
                let mut req = client.request(c.method.clone(), format!("{}{}", self.url, c.path));
                if let Some(a) = &c.auth {
                    req = req.header("authorization", format!("Bearer {a}"));
                }
                if !c.body.is_empty() {
                    req = req
                        .header("content-type", c.content_type.unwrap())
                        .body(c.body.clone());
                }
                req.send()
            };
            // The server answers an oversize body before reading it and
            // closes the connection: a client still writing the body may
            // see the close (a broken pipe) before the answer. That is TCP,
            // not the server's answer, so such a case is sent again (the
            // check below that nothing changed still covers every send).
            let mut resp = send().await;
            for _ in 0..5 {
                match &resp {
                    Err(e) if e.is_request() && !e.is_timeout() => resp = send().await,
                    _ => break,
                }
            }
            let resp = resp.unwrap();
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
        self.nothing_changed().await;
    }

    /// The tree, the checkpoint and the keys are as before.
    async fn nothing_changed(&self) {
        let url = &self.url;
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        let after = get_json(&format!("{url}/v1/checkpoint")).await;
        assert_eq!(after["tree_size"], self.before["tree_size"]);
        assert_eq!(after["root_hash"], self.before["root_hash"]);
        assert_eq!(
            get_json(&format!("{url}/healthz")).await["committed_size"],
            json!(self.size)
        );
        let keys_after = get_json_auth(&format!("{url}/v1/admin/keys"), &self.admin).await;
        assert_eq!(keys_after, self.keys_before);
    }
}

const EV: &str = "/v1/events";

/// A valid event, the base every bad one is made from.
fn ok() -> Value {
    event(1, None)
}

/// A bad event body submitted by the writer.
fn bad_event(what: &'static str, f: &Fixture, body: Vec<u8>, status: u16) -> Case {
    case(what, Method::POST, EV, f.w(), body, status)
}

/// A GET without a key.
fn bad_get(what: &'static str, path: &str, status: u16) -> Case {
    case(what, Method::GET, path, None, vec![], status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitting_without_a_writer_key_is_refused() {
    let f = Fixture::start().await;
    let unknown = format!("vt_0000000000000000_{}", "0".repeat(64));
    let post = Method::POST;
    f.expect(&[
        case("no key", post.clone(), EV, None, js(ok()), 401),
        case("garbage key", post.clone(), EV, Some("nope"), js(ok()), 401),
        case(
            "well-formed unknown key",
            post.clone(),
            EV,
            Some(&unknown),
            js(ok()),
            401,
        ),
        case(
            "revoked key",
            post.clone(),
            EV,
            Some(&f.revoked),
            js(ok()),
            401,
        ),
        case(
            "admin key cannot write",
            post.clone(),
            EV,
            Some(&f.admin),
            js(ok()),
            403,
        ),
        case(
            "auditor key cannot write",
            post,
            EV,
            Some(&f.auditor),
            js(ok()),
            403,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_that_are_not_an_event_get_400() {
    let f = Fixture::start().await;
    f.expect(&[
        bad_event("malformed JSON", &f, b"{\"actor\":".to_vec(), 400),
        bad_event("not UTF-8", &f, vec![0xff, 0xfe, 0x00], 400),
        bad_event("a JSON array", &f, js(json!([ok()])), 400),
        bad_event("a number", &f, b"42".to_vec(), 400),
        bad_event("empty object", &f, js(json!({})), 400),
        bad_event("empty batch", &f, js(json!({ "events": [] })), 400),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_missing_or_invalid_fields_get_400() {
    let f = Fixture::start().await;
    let forged_app = with(ok(), "/action", json!("x"))
        .as_object()
        .cloned()
        .map(|mut m| {
            m.insert("app".into(), json!("forged"));
            Value::Object(m)
        })
        .unwrap();
    f.expect(&[
        bad_event("missing actor.id", &f, js(without(ok(), "/actor/id")), 400),
        bad_event(
            "missing occurred_at",
            &f,
            js(without(ok(), "/occurred_at")),
            400,
        ),
        bad_event(
            "actor.id not a string",
            &f,
            js(with(ok(), "/actor/id", json!(7))),
            400,
        ),
        bad_event("unknown field", &f, js(forged_app), 400),
        bad_event(
            "bad outcome",
            &f,
            js(with(ok(), "/outcome", json!("maybe"))),
            400,
        ),
        bad_event(
            "bad time",
            &f,
            js(with(ok(), "/occurred_at", json!("yesterday"))),
            400,
        ),
        bad_event(
            "bad ip",
            &f,
            js(with(ok(), "/actor/ip", json!("999.1.1.1"))),
            400,
        ),
        bad_event(
            "over-long action",
            &f,
            js(with(ok(), "/action", json!("a".repeat(5000)))),
            400,
        ),
        bad_event(
            "one bad event spoils the batch",
            &f,
            js(json!({ "events": [ok(), ok(), ok(), without(ok(), "/purpose")] })),
            400,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_names_the_offending_event_and_field() {
    let f = Fixture::start().await;
    let resp = http()
        .post(format!("{}/v1/events", f.url))
        .bearer_auth(&f.writer)
        .json(&json!({ "events": [ok(), ok(), ok(), without(ok(), "/purpose")] }))
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
    f.nothing_changed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_bodies_over_the_limits_get_413() {
    let f = Fixture::start().await;
    f.expect(&[
        bad_event(
            "too many events",
            &f,
            js(json!({ "events": vec![ok(); 1001] })),
            413,
        ),
        bad_event(
            "oversize body",
            &f,
            js(json!({ "events": [with(ok(), "/purpose", json!("p".repeat(5 << 20)))] })),
            413,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_query_parameters_and_content_types_are_refused() {
    let f = Fixture::start().await;
    let post = Method::POST;
    let mut text_plain = case("wrong content type", post.clone(), EV, f.w(), js(ok()), 415);
    text_plain.content_type = Some("text/plain");
    f.expect(&[
        case(
            "unknown wait",
            post.clone(),
            &format!("{EV}?wait=forever"),
            f.w(),
            js(ok()),
            400,
        ),
        case(
            "unknown query parameter",
            post,
            &format!("{EV}?debug=1"),
            f.w(),
            js(ok()),
            400,
        ),
        text_plain,
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tile_paths_get_400_and_tiles_beyond_the_tree_404() {
    let f = Fixture::start().await;
    f.expect(&[
        bad_get("tile width 0", "/tile/0/000.p/0", 400),
        bad_get("tile width 256", "/tile/0/000.p/256", 400),
        bad_get("tile leading zero group", "/tile/0/x000/001", 400),
        bad_get("tile short index", "/tile/0/01", 400),
        bad_get("tile level 64", "/tile/64/000", 400),
        bad_get("tile traversal", "/tile/0/..%2F..%2Fetc%2Fpasswd", 400),
        bad_get("tile entries garbage", "/tile/entries/abc", 400),
        bad_get(
            "tile beyond the tree",
            &format!("/tile/0/000.p/{}", f.size + 1),
            404,
        ),
        bad_get("full tile beyond the tree", "/tile/0/000", 404),
        bad_get("bundle beyond the tree", "/tile/entries/001", 404),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proof_queries_get_400_and_unknown_hashes_404() {
    let f = Fixture::start().await;
    let inclusion = "/v1/proof/inclusion";
    let unknown_hash = format!("{inclusion}?hash={}&tree_size=3", "A".repeat(43));
    f.expect(&[
        bad_get(
            "proof index beyond size",
            &format!("{inclusion}?index={0}&tree_size={0}", f.size),
            400,
        ),
        bad_get(
            "proof size beyond tree",
            &format!("{inclusion}?index=0&tree_size={}", f.size + 1),
            400,
        ),
        bad_get(
            "proof negative index",
            &format!("{inclusion}?index=-1&tree_size=3"),
            400,
        ),
        bad_get(
            "proof overflowing index",
            &format!("{inclusion}?index=18446744073709551616&tree_size=3"),
            400,
        ),
        bad_get("proof non-numeric", &format!("{inclusion}?index=abc"), 400),
        bad_get(
            "proof index and hash",
            &format!("{inclusion}?index=0&hash=AAAA&tree_size=3"),
            400,
        ),
        bad_get(
            "proof short hash",
            &format!("{inclusion}?hash=AAAA&tree_size=3"),
            400,
        ),
        bad_get("proof unknown hash", &unknown_hash, 404),
        bad_get(
            "consistency reversed",
            "/v1/proof/consistency?first=3&second=2",
            400,
        ),
        bad_get(
            "consistency beyond tree",
            "/v1/proof/consistency?first=1&second=99",
            400,
        ),
        bad_get(
            "consistency missing first",
            "/v1/proof/consistency?second=2",
            400,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_administration_is_refused() {
    let f = Fixture::start().await;
    let (post, keys) = (Method::POST, "/v1/admin/keys");
    let admin = Some(f.admin.as_str());
    f.expect(&[
        case(
            "create key: bad role",
            post.clone(),
            keys,
            admin,
            js(json!({"name":"x","role":"root"})),
            400,
        ),
        case(
            "create key: bad name",
            post.clone(),
            keys,
            admin,
            js(json!({"name":"a b","role":"writer"})),
            400,
        ),
        case(
            "create key: unknown field",
            post.clone(),
            keys,
            admin,
            js(json!({"name":"x","role":"writer","admin":true})),
            400,
        ),
        case(
            "create key: writer key",
            post.clone(),
            keys,
            f.w(),
            js(json!({"name":"x","role":"admin"})),
            403,
        ),
        case(
            "create key: no key",
            post,
            keys,
            None,
            js(json!({"name":"x","role":"admin"})),
            401,
        ),
        case(
            "revoke unknown key",
            Method::DELETE,
            "/v1/admin/keys/0000000000000000",
            admin,
            vec![],
            404,
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_get_404_and_wrong_methods_405() {
    let f = Fixture::start().await;
    f.expect(&[
        bad_get("unknown route", "/v2/everything", 404),
        case(
            "wrong method",
            Method::DELETE,
            "/checkpoint",
            None,
            vec![],
            405,
        ),
        case(
            "wrong method on a tile",
            Method::DELETE,
            "/tile/0/000",
            None,
            vec![],
            405,
        ),
    ])
    .await;
    // The hot public reads (tiles, proofs) are routed apart from the rest:
    // their 405 is the API's own answer too, naming the method and path.
    for path in ["/tile/0/000", "/v1/proof/inclusion", "/checkpoint"] {
        let resp = reqwest::Client::new()
            .delete(format!("{}{path}", f.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(
            v["error"]["message"],
            format!("DELETE is not allowed on {path}"),
            "{path}"
        );
    }
}
