//! Hostile input through a real socket: hundreds of distinct malformed
//! requests across every route (bad JSON, wrong types, huge numbers, bad
//! query parameters, path traversal, non-UTF-8, oversize and slow bodies,
//! chunked garbage, wrong credentials and methods, HTTP/1.1 garbage).
//!
//! Every case must get a clear 4xx (or 503) in time, with the API's JSON
//! error body wherever the server's own code answers (only the HTTP layer's
//! own rejections of protocol garbage may come without a body), and
//! afterwards the tree, its checkpoint, the API keys, retention policies and
//! legal holds are exactly as before, nothing panicked, and the server still
//! serves and accepts a valid write.
//!
//! Requests are written by hand over a `TcpStream`, so that what an HTTP
//! client would refuse or normalise (`..` segments, raw non-UTF-8 bytes,
//! lying `Content-Length`, broken chunking) reaches the server verbatim.

mod common;

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Server, create_key, create_key_for_app, event, get_json, get_json_auth, http};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The server's request timeout in this test (`request_timeout_s`).
const REQUEST_TIMEOUT_S: u64 = 1;
/// How long the client waits for a whole answer before calling it a hang.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How soon a connection the server drops without an answer must be closed.
const CLOSE_WITHIN: Duration = Duration::from_secs(REQUEST_TIMEOUT_S + 3);
/// Pause between the bytes of a trickled body: far slower than the
/// request timeout allows for any body in this test.
const TRICKLE: Duration = Duration::from_millis(250);
/// The server's body limits (defaults).
const MAX_EVENTS_BODY: usize = 4 << 20;
const MAX_OTHER_BODY: usize = 64 << 10;

#[derive(Clone, Debug)]
enum Length {
    /// The body's true length.
    Auto,
    /// No `Content-Length` (e.g. chunked bodies written by hand).
    Omit,
    /// This value, whatever the body.
    Given(String),
}

/// One hostile request and what it must get.
#[derive(Clone, Debug)]
struct Case {
    what: String,
    method: String,
    target: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    length: Length,
    /// Bytes sent verbatim instead of a request built from the fields above.
    raw: Option<Vec<u8>>,
    /// Write the body one byte at a time with this pause between bytes.
    trickle: Option<Duration>,
    /// Acceptable statuses.
    expect: Vec<u16>,
    /// The HTTP layer (hyper), not the application, rejects this: an empty
    /// body is acceptable (a non-empty one must still be the JSON error).
    http_layer: bool,
    /// Words the error message must contain (a regression's signature).
    says: Option<&'static str>,
    /// The server may close the connection without an answer instead (hyper
    /// does so when a head is not complete within the timeout), as long as
    /// it does so within `CLOSE_WITHIN`.
    may_close: bool,
}

fn req(what: impl Into<String>, method: &str, target: impl AsRef<[u8]>) -> Case {
    Case {
        what: what.into(),
        method: method.to_string(),
        target: target.as_ref().to_vec(),
        headers: Vec::new(),
        body: Vec::new(),
        length: Length::Auto,
        raw: None,
        trickle: None,
        expect: Vec::new(),
        http_layer: false,
        says: None,
        may_close: false,
    }
}

/// A request written byte for byte; the HTTP layer answers it.
fn raw(what: impl Into<String>, bytes: impl AsRef<[u8]>, expect: &[u16]) -> Case {
    let mut c = req(what, "RAW", "");
    c.raw = Some(bytes.as_ref().to_vec());
    c.expect = expect.to_vec();
    c.http_layer = true;
    c
}

impl Case {
    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Case {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    fn auth(self, token: &str) -> Case {
        self.header("authorization", format!("Bearer {token}"))
    }

    fn auth_opt(self, token: Option<&str>) -> Case {
        match token {
            Some(t) => self.auth(t),
            None => self,
        }
    }

    /// A body sent as `application/json`.
    fn json(self, body: impl AsRef<[u8]>) -> Case {
        self.header("content-type", "application/json").body(body)
    }

    fn body(mut self, body: impl AsRef<[u8]>) -> Case {
        self.body = body.as_ref().to_vec();
        self
    }

    fn length(mut self, length: Length) -> Case {
        self.length = length;
        self
    }

    fn trickle(mut self) -> Case {
        self.trickle = Some(TRICKLE);
        self
    }

    fn expect(mut self, statuses: &[u16]) -> Case {
        self.expect = statuses.to_vec();
        self
    }

    fn says(mut self, words: &'static str) -> Case {
        self.says = Some(words);
        self
    }

    fn may_close(mut self) -> Case {
        self.may_close = true;
        self
    }

    fn http_layer(mut self) -> Case {
        self.http_layer = true;
        self
    }

    /// The head and the body as written to the socket.
    fn bytes(&self) -> (Vec<u8>, Vec<u8>) {
        if let Some(raw) = &self.raw {
            // The rest of a raw request, if any, goes where a body would.
            return (raw.clone(), self.body.clone());
        }
        let mut head = Vec::new();
        head.extend_from_slice(self.method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(&self.target);
        head.extend_from_slice(b" HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
        for (name, value) in &self.headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        match &self.length {
            Length::Auto if !self.body.is_empty() => head
                .extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes()),
            Length::Auto | Length::Omit => {}
            Length::Given(v) => {
                head.extend_from_slice(format!("content-length: {v}\r\n").as_bytes())
            }
        }
        head.extend_from_slice(b"\r\n");
        (head, self.body.clone())
    }

    /// What makes two cases the same request: method, path and query,
    /// headers, a digest of the body (and of raw bytes), and how it is sent.
    fn identity(&self) -> Identity {
        let mut h = DefaultHasher::new();
        self.body.hash(&mut h);
        self.raw.hash(&mut h);
        (
            self.method.clone(),
            self.target.clone(),
            self.headers.clone(),
            h.finish(),
            format!("{:?}", self.length),
            self.trickle.is_some(),
        )
    }
}

/// Method, target, headers, body digest, `Content-Length` mode, trickled.
type Identity = (String, Vec<u8>, Vec<(String, Vec<u8>)>, u64, String, bool);

/// What came back on a connection.
enum Reply {
    /// A response.
    Answered(Answer),
    /// The server closed the connection without a byte, after this long.
    Closed(Duration),
}

/// An answer as read off the socket.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = find(rest, b"\r\n").ok_or("chunk size line without CRLF")?;
        let line = std::str::from_utf8(&rest[..eol]).map_err(|e| e.to_string())?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {line:?}: {e}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk")?;
    }
}

fn parse_answer(raw: &[u8], head_request: bool) -> Result<Answer, String> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| {
        format!(
            "no complete response head in {:?}",
            String::from_utf8_lossy(&raw[..raw.len().min(200)])
        )
    })?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("response head: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    answer.body = if head_request {
        Vec::new()
    } else if answer
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)?
    } else if let Some(len) = answer.header("content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length")?;
        rest.get(..len)
            .ok_or_else(|| format!("body shorter than its content-length {len}"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(answer)
}

/// Writes the case to a fresh connection and reads the whole answer (the
/// request says `connection: close`, so the answer ends at EOF).
async fn send(addr: &str, case: &Case) -> Result<Reply, String> {
    let started = Instant::now();
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut rd, mut wr) = stream.into_split();
    let (head, body) = case.bytes();
    let trickle = case.trickle;
    let writer = tokio::spawn(async move {
        if wr.write_all(&head).await.is_err() {
            return;
        }
        match trickle {
            Some(pause) => {
                for b in body.chunks(1) {
                    if wr.write_all(b).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(pause).await;
                }
            }
            None => {
                if wr.write_all(&body).await.is_err() {
                    return;
                }
            }
        }
        // Keep the write half open: a half-close could itself end the request.
        std::future::pending::<()>().await;
    });
    let mut got = Vec::new();
    let read = tokio::time::timeout(ANSWER_WITHIN, async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    writer.abort();
    match read {
        Err(_) => {
            return Err(format!(
                "no complete answer within {ANSWER_WITHIN:?} (a hang; {} bytes so far)",
                got.len()
            ));
        }
        // A reset after the answer (the server closed with our body unread)
        // loses nothing; a reset before any byte is a failure.
        Ok(Err(e)) if got.is_empty() => return Err(format!("read: {e}")),
        Ok(_) if got.is_empty() => return Ok(Reply::Closed(started.elapsed())),
        Ok(_) => {}
    }
    parse_answer(&got, case.method == "HEAD").map(Reply::Answered)
}

/// Checks one answer against its case; `Err` says what is wrong.
fn check(case: &Case, answer: &Answer) -> Result<(), String> {
    let text = String::from_utf8_lossy(&answer.body);
    let shown: String = text.chars().take(300).collect();
    if !case.expect.contains(&answer.status) {
        return Err(format!(
            "status {} (want one of {:?}): {shown}",
            answer.status, case.expect
        ));
    }
    if !(400..500).contains(&answer.status) && answer.status != 503 {
        return Err(format!("status {} is not a 4xx or 503", answer.status));
    }
    if case.http_layer && answer.body.is_empty() {
        return Ok(());
    }
    let ct = answer.header("content-type").unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(format!(
            "error body is {ct:?}, not application/json: {shown}"
        ));
    }
    if case.method == "HEAD" {
        // No body by definition; the headers said JSON.
        return Ok(());
    }
    let v: Value = serde_json::from_slice(&answer.body)
        .map_err(|_| format!("error body is not JSON: {shown}"))?;
    if !(v["error"]["code"].is_string() && v["error"]["message"].is_string()) {
        return Err(format!("error body lacks error.code/message: {shown}"));
    }
    if let Some(words) = case.says {
        let message = v["error"]["message"].as_str().unwrap_or("");
        if !message.contains(words) {
            return Err(format!("the message does not say {words:?}: {shown}"));
        }
    }
    Ok(())
}

/// `text` with the JSON string `"@@"` replaced by `token` (raw JSON bytes).
fn splice(template: &Value, token: &[u8]) -> Vec<u8> {
    let text = serde_json::to_vec(template).unwrap();
    let at = find(&text, b"\"@@\"").expect("the template has a slot");
    let mut out = text[..at].to_vec();
    out.extend_from_slice(token);
    out.extend_from_slice(&text[at + 4..]);
    out
}

/// `v` with the member at `pointer` set (added if absent) to `new`.
fn set(v: Value, pointer: &str, new: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    insert(v, parent, key, new)
}

fn insert(mut v: Value, pointer: &str, key: &str, new: Value) -> Value {
    v.pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{pointer} is an object"))
        .insert(key.to_string(), new);
    v
}

fn remove(mut v: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap()
        .remove(key)
        .unwrap_or_else(|| panic!("{pointer} exists"));
    v
}

fn js(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// One route that takes a JSON body: where, with which key, a valid body
/// (never sent as is), and which of its members is a string slot.
struct BodyRoute {
    path: &'static str,
    token: String,
    valid: Value,
    slot: &'static str,
}

/// A protected route with a request that would be valid for the right key.
struct Protected {
    method: &'static str,
    target: String,
    body: Option<Value>,
    /// Keys of roles that may not call it.
    wrong_roles: Vec<(&'static str, String)>,
}

struct Keys {
    admin: String,
    writer: String,
    other_writer: String,
    auditor: String,
    revoked: String,
    writer_id: String,
    /// The tree size the cases run against.
    size: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_clear_errors_and_change_nothing() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("veritrail.toml");
    std::fs::write(
        &config,
        format!("request_timeout_s = {REQUEST_TIMEOUT_S}\n"),
    )
    .unwrap();
    let mut server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let url = server.url.clone();
    let addr = url.trim_start_matches("http://").to_string();
    let admin = server.admin_key();
    let writer = create_key_for_app(&url, &admin, "billing", "writer", "billing").await;
    let other_writer = create_key_for_app(&url, &admin, "other", "writer", "other").await;
    let auditor = create_key(&url, &admin, "aud", "auditor").await;
    let revoked = create_key(&url, &admin, "gone", "admin").await;
    let listed = get_json_auth(&format!("{url}/v1/admin/keys"), &admin).await;
    let id_of = |name: &str| {
        listed["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let writer_id = id_of("billing");
    let resp = http()
        .delete(format!("{url}/v1/admin/keys/{}", id_of("gone")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Some history, signed, so that "beyond the tree" has a boundary.
    let size0 = get_json(&format!("{url}/healthz")).await["committed_size"]
        .as_u64()
        .unwrap();
    let resp = http()
        .post(format!("{url}/v1/events?wait=checkpoint"))
        .bearer_auth(&writer)
        .json(&json!({ "events": (0..3).map(|i| event(i, None)).collect::<Vec<_>>() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let before = State::read(&url, &admin).await;
    assert_eq!(before.tree_size, size0 + 3);
    let keys = Keys {
        admin,
        writer,
        other_writer,
        auditor,
        revoked,
        writer_id,
        size: before.tree_size,
    };

    let cases = all_cases(&keys);
    let distinct: HashSet<_> = cases.iter().map(Case::identity).collect();
    assert!(
        distinct.len() >= 200,
        "only {} distinct cases ({} in all)",
        distinct.len(),
        cases.len()
    );

    let answers: Vec<(usize, Result<Reply, String>)> =
        futures_util::stream::iter(cases.iter().enumerate().map(|(i, c)| {
            let addr = addr.clone();
            async move { (i, send(&addr, c).await) }
        }))
        .buffer_unordered(16)
        .collect()
        .await;
    let mut failures = Vec::new();
    for (i, answer) in &answers {
        let case = &cases[*i];
        let result = match answer {
            Ok(Reply::Answered(a)) => check(case, a),
            Ok(Reply::Closed(after)) if case.may_close && *after <= CLOSE_WITHIN => Ok(()),
            Ok(Reply::Closed(after)) => Err(format!("closed without an answer after {after:?}")),
            Err(e) => Err(e.clone()),
        };
        if let Err(e) = result {
            failures.push(format!("{}: {e}", case.what));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing changed: no entry was appended (a checkpoint would have been
    // signed within its interval), no key, policy or hold appeared or went.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = State::read(&url, &keys.admin).await;
    assert_eq!(after.tree_size, before.tree_size, "tree size");
    assert_eq!(after.root_hash, before.root_hash, "root hash");
    assert_eq!(
        after.committed_size, before.committed_size,
        "committed size"
    );
    assert_eq!(after.keys, before.keys, "API keys");
    assert_eq!(after.policies, before.policies, "retention policies");
    assert_eq!(after.holds, before.holds, "legal holds");

    // Still alive and serving: healthy, and a valid write works.
    let resp = http().get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "healthz after the onslaught");
    let resp = http()
        .post(format!("{url}/v1/events"))
        .bearer_auth(&keys.writer)
        .json(&event(7, None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a valid write after the onslaught");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server is still running"
    );
    let output = server.output.lock().unwrap().clone();
    let bad: Vec<&String> = output
        .iter()
        .filter(|l| l.to_ascii_lowercase().contains("panic"))
        .collect();
    assert!(bad.is_empty(), "the server panicked: {bad:#?}");
    eprintln!(
        "{} distinct hostile cases ({} sent) in {:?}",
        distinct.len(),
        cases.len(),
        started.elapsed()
    );
}

/// What must not change.
#[derive(Debug)]
struct State {
    tree_size: u64,
    root_hash: Value,
    committed_size: u64,
    keys: Value,
    policies: Value,
    holds: Value,
}

impl State {
    async fn read(url: &str, admin: &str) -> State {
        let cp = get_json(&format!("{url}/v1/checkpoint")).await;
        let health = get_json(&format!("{url}/healthz")).await;
        State {
            tree_size: cp["tree_size"].as_u64().unwrap(),
            root_hash: cp["root_hash"].clone(),
            committed_size: health["committed_size"].as_u64().unwrap(),
            keys: get_json_auth(&format!("{url}/v1/admin/keys"), admin).await,
            policies: get_json_auth(&format!("{url}/v1/admin/retention"), admin).await,
            holds: get_json_auth(&format!("{url}/v1/admin/holds"), admin).await,
        }
    }
}

fn all_cases(k: &Keys) -> Vec<Case> {
    let mut cases = Vec::new();
    cases.extend(wrong_methods(k));
    cases.extend(wrong_auth(k));
    cases.extend(json_bodies(k));
    cases.extend(query_params(k));
    cases.extend(paths(k));
    cases.extend(headers_and_sizes(k));
    cases.extend(protocol_garbage(k));
    cases
}

/// Every route, with every method it does not take: 405 (or 404 where a
/// method falls through to the console fallback).
fn wrong_methods(k: &Keys) -> Vec<Case> {
    let wid = k.writer_id.as_str();
    let routes: Vec<(String, &[&str])> = vec![
        ("/checkpoint".into(), &["GET"]),
        ("/tile/0/000.p/3".into(), &["GET"]),
        ("/tile/entries/000.p/3".into(), &["GET"]),
        ("/v1/checkpoint".into(), &["GET"]),
        ("/v1/log".into(), &["GET"]),
        ("/v1/proof/inclusion?index=0".into(), &["GET"]),
        ("/v1/proof/consistency?first=1".into(), &["GET"]),
        ("/healthz".into(), &["GET"]),
        ("/metrics".into(), &["GET"]),
        ("/v1/events".into(), &["GET", "POST"]),
        ("/v1/events/0".into(), &["GET"]),
        ("/v1/events/0/tlog-proof".into(), &["GET"]),
        ("/v1/export".into(), &["GET"]),
        ("/v1/admin/keys".into(), &["GET", "POST"]),
        (format!("/v1/admin/keys/{wid}"), &["DELETE"]),
        ("/v1/admin/backup".into(), &["POST"]),
        ("/v1/erasure".into(), &["POST"]),
        ("/v1/admin/retention".into(), &["GET", "POST"]),
        ("/v1/admin/retention/nope".into(), &["DELETE"]),
        ("/v1/admin/retention/run".into(), &["POST"]),
        ("/v1/admin/holds".into(), &["GET", "POST"]),
        ("/v1/admin/holds/nope".into(), &["DELETE"]),
    ];
    let methods = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW",
    ];
    let mut out = Vec::new();
    for (path, allowed) in &routes {
        for m in methods {
            if allowed.contains(&m) || (m == "HEAD" && allowed.contains(&"GET")) {
                continue;
            }
            out.push(
                req(format!("{m} {path}"), m, path)
                    .auth(&k.admin)
                    .expect(&[405]),
            );
        }
    }
    // Console paths take GET only; anything else is a JSON 404.
    for (m, path) in [
        ("POST", "/"),
        ("PUT", "/index.html"),
        ("DELETE", "/verify.html"),
        ("PATCH", "/js/api.js"),
    ] {
        out.push(
            req(format!("{m} {path} (console)"), m, path)
                .json(b"{}")
                .expect(&[404, 405]),
        );
    }
    out
}

/// Every protected route, with credentials that must not pass.
fn wrong_auth(k: &Keys) -> Vec<Case> {
    let admin_only = |m: &'static str, target: String, body: Option<Value>| Protected {
        method: m,
        target,
        body,
        wrong_roles: vec![("writer", k.writer.clone()), ("auditor", k.auditor.clone())],
    };
    let auditor_only = |target: &str| Protected {
        method: "GET",
        target: target.to_string(),
        body: None,
        wrong_roles: vec![("writer", k.writer.clone())],
    };
    let routes = vec![
        Protected {
            method: "POST",
            target: "/v1/events".into(),
            body: Some(event(1, None)),
            wrong_roles: vec![("admin", k.admin.clone()), ("auditor", k.auditor.clone())],
        },
        auditor_only("/v1/events?subject=patient-1"),
        auditor_only("/v1/events/0"),
        auditor_only("/v1/events/0/tlog-proof"),
        auditor_only("/v1/export"),
        admin_only(
            "POST",
            "/v1/admin/keys".into(),
            Some(json!({"name": "evil", "role": "admin"})),
        ),
        admin_only("GET", "/v1/admin/keys".into(), None),
        admin_only("DELETE", format!("/v1/admin/keys/{}", k.writer_id), None),
        admin_only("POST", "/v1/admin/backup".into(), None),
        admin_only(
            "POST",
            "/v1/erasure".into(),
            Some(json!({"indexes": [0], "reason": "r"})),
        ),
        admin_only(
            "POST",
            "/v1/admin/retention".into(),
            Some(json!({"keep_days": 1})),
        ),
        admin_only("GET", "/v1/admin/retention".into(), None),
        admin_only("DELETE", "/v1/admin/retention/nope".into(), None),
        admin_only("POST", "/v1/admin/retention/run".into(), None),
        admin_only(
            "POST",
            "/v1/admin/holds".into(),
            Some(json!({"app": "billing", "reason": "r"})),
        ),
        admin_only("GET", "/v1/admin/holds".into(), None),
        admin_only("DELETE", "/v1/admin/holds/nope".into(), None),
    ];
    let unknown = format!("vt_0123456789abcdef_{}", "0".repeat(64));
    let bad_auth: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("no key", None),
        ("Basic scheme", Some(b"Basic YWRtaW46YWRtaW4=".to_vec())),
        ("scheme alone", Some(b"Bearer".to_vec())),
        ("empty token", Some(b"Bearer ".to_vec())),
        ("malformed key", Some(b"Bearer vt_zz".to_vec())),
        (
            "well-formed unknown key",
            Some(format!("Bearer {unknown}").into_bytes()),
        ),
        (
            "revoked admin key",
            Some(format!("Bearer {}", k.revoked).into_bytes()),
        ),
        (
            "admin key with a byte more",
            Some(format!("Bearer {}0", k.admin).into_bytes()),
        ),
        (
            "admin key's secret changed",
            Some(format!("Bearer {}", flip_last(&k.admin)).into_bytes()),
        ),
        (
            "key id not hex",
            Some(format!("Bearer vt_{}_{}", "g".repeat(16), "0".repeat(64)).into_bytes()),
        ),
        ("non-UTF-8 token", Some(b"Bearer vt_\xff\xfe\x80".to_vec())),
        (
            "admin key after non-ASCII",
            Some([b"Bearer \xc3\xa9", k.admin.as_bytes()].concat()),
        ),
    ];
    let mut out = Vec::new();
    for r in &routes {
        let base = || {
            let c = req("", r.method, &r.target);
            match &r.body {
                Some(b) => c.json(js(b)),
                None => c,
            }
        };
        for (what, value) in &bad_auth {
            let mut c = base().expect(&[401]);
            c.what = format!("{} {}: {what}", r.method, r.target);
            if let Some(v) = value {
                c = c.header("authorization", v);
            }
            out.push(c);
        }
        for (role, token) in &r.wrong_roles {
            let mut c = base().auth(token).expect(&[403]);
            c.what = format!("{} {}: {role} key", r.method, r.target);
            out.push(c);
        }
    }
    // Two Authorization headers, the first one bad.
    out.push(
        req("two Authorization headers", "GET", "/v1/admin/keys")
            .header("authorization", "Bearer nope")
            .auth(&k.admin)
            .expect(&[400]),
    );
    out.push(
        req(
            "two Authorization headers, both good",
            "GET",
            "/v1/admin/keys",
        )
        .auth(&k.admin)
        .auth(&k.admin)
        .expect(&[400]),
    );
    // A writer of another app can only write as its own app.
    out.push(
        req("writer names another app", "POST", "/v1/events")
            .auth(&k.other_writer)
            .json(js(&insert(event(1, None), "", "app", json!("billing"))))
            .expect(&[400]),
    );
    out.push(
        req("writer makes itself a key", "POST", "/v1/admin/keys")
            .auth(&k.other_writer)
            .json(js(
                &json!({"name": "mine", "role": "writer", "app": "billing"}),
            ))
            .expect(&[403]),
    );
    out
}

fn flip_last(token: &str) -> String {
    let mut t = token.to_string();
    let last = t.pop().unwrap();
    t.push(if last == '0' { '1' } else { '0' });
    t
}

fn body_routes(k: &Keys) -> Vec<BodyRoute> {
    vec![
        BodyRoute {
            path: "/v1/events",
            token: k.writer.clone(),
            valid: event(1, None),
            slot: "purpose",
        },
        BodyRoute {
            path: "/v1/admin/keys",
            token: k.admin.clone(),
            valid: json!({"name": "evil", "role": "admin"}),
            slot: "name",
        },
        BodyRoute {
            path: "/v1/erasure",
            token: k.admin.clone(),
            valid: json!({"indexes": [0], "reason": "because"}),
            slot: "reason",
        },
        BodyRoute {
            path: "/v1/admin/retention",
            token: k.admin.clone(),
            valid: json!({"keep_days": 1, "action": "record.read"}),
            slot: "action",
        },
        BodyRoute {
            path: "/v1/admin/holds",
            token: k.admin.clone(),
            valid: json!({"app": "billing", "reason": "because"}),
            slot: "reason",
        },
    ]
}

/// Malformed JSON, wrong types, missing and extra members, huge numbers.
fn json_bodies(k: &Keys) -> Vec<Case> {
    let mut out = Vec::new();
    let nested_arrays = [vec![b'['; 10_000], vec![b']'; 10_000]].concat();
    let nested_objects = {
        let mut s = "{\"a\":".repeat(10_000).into_bytes();
        s.extend_from_slice(b"1");
        s.extend(std::iter::repeat_n(b'}', 10_000));
        s
    };
    for r in body_routes(k) {
        let valid = js(&r.valid);
        let post = |what: &str, body: Vec<u8>| {
            req(format!("POST {}: {what}", r.path), "POST", r.path)
                .auth(&r.token)
                .json(body)
                .expect(&[400])
        };
        // Malformed documents.
        let mut docs: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", valid[..valid.len() / 2].to_vec()),
            ("truncated by one byte", valid[..valid.len() - 1].to_vec()),
            ("trailing garbage", [&valid[..], b"x"].concat()),
            ("two documents", [&valid[..], &valid[..]].concat()),
            ("BOM", [&b"\xef\xbb\xbf"[..], &valid[..]].concat()),
            ("UTF-16LE", utf16le(&valid)),
            ("10k nested arrays", nested_arrays.clone()),
            ("10k nested objects", nested_objects.clone()),
            ("empty body", Vec::new()),
            ("whitespace", b" \r\n\t ".to_vec()),
            ("null", b"null".to_vec()),
            ("true", b"true".to_vec()),
            ("a number", b"42".to_vec()),
            ("a string", b"\"hello\"".to_vec()),
            ("an array of it", [&b"["[..], &valid[..], b"]"].concat()),
            ("binary", vec![0xff, 0xfe, 0x00, 0x01, 0x80]),
            ("single quotes", b"{'a': 1}".to_vec()),
            ("comment", [&b"/* hi */"[..], &valid[..]].concat()),
        ];
        // Bad tokens where a string belongs.
        let template = set(r.valid.clone(), &format!("/{}", r.slot), json!("@@"));
        for (what, token) in [
            ("NaN", &b"NaN"[..]),
            ("Infinity", b"Infinity"),
            ("-Infinity", b"-Infinity"),
            ("1e400", b"1e400"),
            ("invalid escape", b"\"a\\qb\""),
            ("lone high surrogate", b"\"\\ud800\""),
            ("lone low surrogate", b"\"\\udc00x\""),
            ("unterminated string", b"\"abc"),
            ("raw control character", b"\"a\x01b\""),
            ("raw newline in string", b"\"a\nb\""),
            ("non-UTF-8 in a string", b"\"a\xff\xfeb\""),
            ("overlong UTF-8", b"\"\xc0\xaf\""),
            ("UTF-8 encoded surrogate", b"\"\xed\xa0\x80\""),
            ("undefined", b"undefined"),
            ("hex number", b"0x10"),
            ("bare word", b"evil"),
        ] {
            docs.push((what, splice(&template, token)));
        }
        // Duplicate members: the same key twice, parsers disagree on which wins.
        let text = String::from_utf8(valid.clone()).unwrap();
        let dup = format!(
            "{{\"{}\":\"first\",{}",
            r.slot,
            text.strip_prefix('{').unwrap()
        );
        for (what, body) in docs {
            out.push(post(what, body));
        }
        // Regression: duplicate members were accepted (the last one won).
        out.push(post("duplicate key", dup.into_bytes()).says("duplicate member"));
        // An unknown member, and each member missing.
        out.push(post(
            "unknown member",
            js(&insert(r.valid.clone(), "", "x_extra", json!(1))),
        ));
        out.push(post("empty object", b"{}".to_vec()));
    }

    // Per-route wrong types and missing members.
    let ev = event(1, None);
    let w = &k.writer;
    let a = &k.admin;
    let mut typed: Vec<(&str, &String, Value, &str)> = Vec::new();
    for (pointer, bads) in [
        (
            "/actor",
            vec![json!("user"), json!(7), json!([]), json!(null)],
        ),
        (
            "/actor/id",
            vec![json!(7), json!(null), json!([]), json!({}), json!("")],
        ),
        ("/actor/type", vec![json!(7), json!(true), json!(null)]),
        (
            "/actor/ip",
            vec![json!(7), json!("999.1.1.1"), json!("::g"), json!([])],
        ),
        (
            "/action",
            vec![json!(7), json!(null), json!("a".repeat(5000)), json!("")],
        ),
        ("/resource", vec![json!("doc"), json!([]), json!(null)]),
        ("/resource/id", vec![json!(7), json!(null), json!(false)]),
        ("/resource/type", vec![json!(7), json!({})]),
        (
            "/subject",
            vec![json!(7), json!([]), json!({}), json!("s".repeat(5000))],
        ),
        (
            "/purpose",
            vec![json!(7), json!(null), json!(["treatment"])],
        ),
        (
            "/outcome",
            vec![json!(7), json!("maybe"), json!(null), json!("SUCCESS")],
        ),
        (
            "/occurred_at",
            vec![
                json!(7),
                json!(null),
                json!("yesterday"),
                json!("2026-13-45T00:00:00Z"),
                json!("2026-11-25T10:00:00"),
                json!("99999-01-01T00:00:00Z"),
                json!("2026-11-25T25:61:61Z"),
                json!(1.5e300),
            ],
        ),
        (
            "/id",
            vec![json!(7), json!([]), json!({}), json!("i".repeat(5000))],
        ),
        ("/context", vec![json!("x"), json!(7), json!([1])]),
    ] {
        for bad in bads {
            typed.push(("/v1/events", w, set(ev.clone(), pointer, bad), pointer));
        }
    }
    for pointer in [
        "/actor",
        "/actor/id",
        "/actor/type",
        "/action",
        "/resource",
        "/resource/id",
        "/resource/type",
        "/purpose",
        "/outcome",
        "/occurred_at",
    ] {
        typed.push(("/v1/events", w, remove(ev.clone(), pointer), pointer));
    }
    // Regression: a member named twice inside a nested object.
    let mut nested_dup = serde_json::to_string(&ev).unwrap();
    nested_dup = nested_dup.replacen("\"actor\":{", "\"actor\":{\"id\":\"mallory\",", 1);
    out.push(
        req("POST /v1/events: duplicate actor.id", "POST", "/v1/events")
            .auth(w)
            .json(nested_dup)
            .expect(&[400])
            .says("duplicate member"),
    );
    let mut context_dup = serde_json::to_string(&ev).unwrap();
    context_dup = context_dup.replacen("\"context\":{", "\"context\":{\"n\":0,", 1);
    out.push(
        req(
            "POST /v1/events: duplicate context member",
            "POST",
            "/v1/events",
        )
        .auth(w)
        .json(context_dup)
        .expect(&[400])
        .says("duplicate member"),
    );
    for (pointer, extra) in [("/actor", "role"), ("/resource", "owner")] {
        typed.push((
            "/v1/events",
            w,
            insert(ev.clone(), pointer, extra, json!("x")),
            pointer,
        ));
    }
    for batch in [
        json!({"events": []}),
        json!({"events": "x"}),
        json!({"events": {}}),
        json!({"events": [1]}),
        json!({"events": [[]]}),
        json!({"events": null}),
        json!({"events": [ev.clone()], "wait": "checkpoint"}),
        json!({"events": vec![ev.clone(); 1001]}),
    ] {
        typed.push(("/v1/events", w, batch, "/events"));
    }
    let key = json!({"name": "evil", "role": "writer", "app": "billing"});
    for (pointer, bad) in [
        ("/name", json!(42)),
        ("/name", json!(null)),
        ("/name", json!(["evil"])),
        ("/name", json!("a b")),
        ("/name", json!("")),
        ("/name", json!("n".repeat(1000))),
        ("/role", json!(42)),
        ("/role", json!("root")),
        ("/role", json!(null)),
        ("/role", json!(["admin"])),
        ("/app", json!(42)),
        ("/app", json!({})),
        ("/app", json!("not an app!")),
    ] {
        typed.push(("/v1/admin/keys", a, set(key.clone(), pointer, bad), pointer));
    }
    for pointer in ["/name", "/role"] {
        typed.push(("/v1/admin/keys", a, remove(key.clone(), pointer), pointer));
    }
    let erase = json!({"indexes": [0], "reason": "because"});
    for (pointer, bad) in [
        ("/indexes", json!("0")),
        ("/indexes", json!(0)),
        ("/indexes", json!([])),
        ("/indexes", json!([[0]])),
        ("/indexes", json!(["0"])),
        ("/indexes", json!([null])),
        ("/indexes", json!([-1])),
        ("/indexes", json!([1.5])),
        ("/indexes", json!([1e2])),
        ("/indexes", json!([99])),
        ("/indexes", json!([18446744073709551615u64])),
        ("/indexes", json!(vec![0; 10_001])),
        ("/reason", json!(42)),
        ("/reason", json!(null)),
        ("/reason", json!("")),
        ("/reason", json!("   ")),
        ("/reason", json!("a\u{0}b")),
        ("/reason", json!("r".repeat(513))),
    ] {
        typed.push(("/v1/erasure", a, set(erase.clone(), pointer, bad), pointer));
    }
    typed.push((
        "/v1/erasure",
        a,
        remove(erase.clone(), "/reason"),
        "/reason",
    ));
    typed.push((
        "/v1/erasure",
        a,
        remove(erase.clone(), "/indexes"),
        "/indexes",
    ));
    typed.push((
        "/v1/erasure",
        a,
        insert(erase.clone(), "", "subject", json!("patient-1")),
        "/subject",
    ));
    let by_subject = json!({"subject": "@@", "reason": "because"});
    for bad in [
        json!(42),
        json!([]),
        json!({}),
        json!(""),
        json!("s".repeat(300)),
    ] {
        typed.push((
            "/v1/erasure",
            a,
            set(by_subject.clone(), "/subject", bad),
            "/subject",
        ));
    }
    let policy = json!({"keep_days": 30, "app": "billing", "action": "record.read"});
    for (pointer, bad) in [
        ("/keep_days", json!("30")),
        ("/keep_days", json!(-1)),
        ("/keep_days", json!(1.5)),
        ("/keep_days", json!(4294967296u64)),
        ("/keep_days", json!(18446744073709551615u64)),
        ("/keep_days", json!(36501)),
        ("/keep_days", json!(null)),
        ("/keep_days", json!([30])),
        ("/keep_days", json!(true)),
        ("/app", json!(42)),
        ("/app", json!("")),
        ("/app", json!("no/slashes")),
        ("/action", json!({})),
        ("/action", json!("")),
        ("/action", json!("a".repeat(200))),
    ] {
        typed.push((
            "/v1/admin/retention",
            a,
            set(policy.clone(), pointer, bad),
            pointer,
        ));
    }
    typed.push((
        "/v1/admin/retention",
        a,
        remove(policy.clone(), "/keep_days"),
        "/keep_days",
    ));
    let hold = json!({"app": "billing", "reason": "because"});
    for (pointer, bad) in [
        ("/app", json!(42)),
        ("/app", json!([])),
        ("/app", json!("")),
        ("/reason", json!(42)),
        ("/reason", json!(null)),
        ("/reason", json!("")),
        ("/reason", json!("r".repeat(600))),
    ] {
        typed.push((
            "/v1/admin/holds",
            a,
            set(hold.clone(), pointer, bad),
            pointer,
        ));
    }
    typed.push((
        "/v1/admin/holds",
        a,
        remove(hold.clone(), "/reason"),
        "/reason",
    ));
    typed.push(("/v1/admin/holds", a, remove(hold.clone(), "/app"), "/app"));
    typed.push((
        "/v1/admin/holds",
        a,
        insert(hold.clone(), "", "subject", json!("patient-1")),
        "/subject",
    ));
    for (path, token, body, pointer) in typed {
        let expect: &[u16] = if body["events"].as_array().is_some_and(|e| e.len() > 1000) {
            &[413]
        } else {
            &[400, 404]
        };
        out.push(
            req(
                format!("POST {path}: {pointer} = {}", short(&body, pointer)),
                "POST",
                path,
            )
            .auth(token)
            .json(js(&body))
            .expect(expect),
        );
    }
    // Raw numbers serde_json would only parse into a float or refuse.
    for (path, template) in [
        (
            "/v1/erasure",
            json!({"indexes": ["@@"], "reason": "because"}),
        ),
        ("/v1/admin/retention", json!({"keep_days": "@@"})),
        ("/v1/events", set(ev.clone(), "/context/n", json!("@@"))),
    ] {
        for token in [
            &b"-0"[..],
            b"18446744073709551616",
            b"99999999999999999999999999999999",
            b"1e400",
            b"-1e400",
            b"1.0",
            b"0.0e0",
            b"01",
            b"+1",
            b".5",
            b"1.",
            b"--1",
        ] {
            if path == "/v1/events" && matches!(token, b"-0" | b"1.0" | b"0.0e0") {
                // Valid JSON numbers in an event's free-form context.
                continue;
            }
            let body = splice(&template, token);
            out.push(
                req(
                    format!("POST {path}: number {}", String::from_utf8_lossy(token)),
                    "POST",
                    path,
                )
                .auth(if path == "/v1/events" { w } else { a })
                .json(body)
                .expect(&[400]),
            );
        }
    }
    out
}

fn short(body: &Value, pointer: &str) -> String {
    let v = body.pointer(pointer).cloned().unwrap_or(Value::Null);
    let s = if body.pointer(pointer).is_none() {
        "<missing>".to_string()
    } else {
        v.to_string()
    };
    s.chars().take(40).collect()
}

fn utf16le(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0xff, 0xfe];
    for b in String::from_utf8_lossy(bytes).encode_utf16() {
        out.extend_from_slice(&b.to_le_bytes());
    }
    out
}

/// Query strings every handler must refuse before doing anything.
fn query_params(k: &Keys) -> Vec<Case> {
    let mut out = Vec::new();
    // Just beyond the tree.
    let beyond_index = format!("index={}", k.size);
    let beyond_size = format!("index=0&tree_size={}", k.size + 1);
    let beyond_first = format!("first={}", k.size + 1);
    let get = |q: &str, token: Option<&str>, expect: &[u16]| {
        req(format!("GET {q}"), "GET", q)
            .auth_opt(token)
            .expect(expect)
    };
    for q in [
        "index=-1&tree_size=3",
        "index=18446744073709551616&tree_size=3",
        "index=99999999999999999999999999&tree_size=3",
        "index=abc",
        "index=",
        "index=1.0",
        "index=1e3",
        "index=0x1",
        "index=%ff",
        "index=%00",
        "index=0&index=1",
        "index=0&tree_size=3&tree_size=3",
        "index=0&debug=1",
        "index[]=0",
        "index=0;tree_size=3",
        beyond_index.as_str(),
        "index=0&tree_size=0",
        beyond_size.as_str(),
        "index=0&tree_size=18446744073709551615",
        "index=0&tree_size=-0",
        "tree_size=3",
        "",
        "hash=AAAA&tree_size=3",
        "hash=!!!!&tree_size=3",
        "hash=%ff%fe&tree_size=3",
        "index=0&hash=AAAA&tree_size=3",
    ] {
        out.push(get(&format!("/v1/proof/inclusion?{q}"), None, &[400, 404]));
    }
    out.push(get(
        &format!("/v1/proof/inclusion?hash={}", "A".repeat(100)),
        None,
        &[400],
    ));
    for q in [
        "first=2&second=1",
        beyond_first.as_str(),
        "first=1&second=99",
        "first=1&second=18446744073709551616",
        "first=18446744073709551615",
        "first=-1",
        "first=abc",
        "first=",
        "first=1&first=2",
        "first=1&third=2",
        "second=2",
        "",
        "first=1.0&second=2",
        "first=%ef%bc%91",
    ] {
        out.push(get(&format!("/v1/proof/consistency?{q}"), None, &[400]));
    }
    // Auditor reads that must be refused before they are recorded: every
    // case here is invalid, so none appends an audit event.
    for route in ["/v1/events", "/v1/export"] {
        for q in [
            "limit=0",
            "limit=-1",
            "limit=100001",
            "limit=18446744073709551616",
            "limit=abc",
            "limit=",
            "limit=1&limit=2",
            "limit=%ff",
            "cursor=!!!",
            "cursor=",
            "cursor=AAAA",
            "cursor=%ff%fe",
            "since=yesterday",
            "until=2026-13-01T00:00:00Z",
            "since=",
            "since=2026-11-26T00:00:00Z&until=2026-11-25T00:00:00Z",
            "subject=",
            "actor=",
            "action=",
            "resource=",
            "app=",
            "subject=a&subject=b",
            "debug=1",
            "subject=patient-1&x=",
        ] {
            out.push(get(&format!("{route}?{q}"), Some(&k.auditor), &[400]));
        }
        for forged in [
            "v1:-1",
            "v1:18446744073709551616",
            "v2:1",
            "v1:1\u{0}",
            "v1:",
        ] {
            let c = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged);
            out.push(get(
                &format!("{route}?cursor={c}"),
                Some(&k.auditor),
                &[400],
            ));
        }
        let long = "s".repeat(257);
        out.push(get(
            &format!("{route}?subject={long}"),
            Some(&k.auditor),
            &[400],
        ));
    }
    out.push(get("/v1/events?limit=1001", Some(&k.auditor), &[400]));
    for q in [
        "wait=forever",
        "wait=",
        "wait=checkpoint&wait=durable",
        "wait=witnessed",
        "wait=%ff",
        "debug=1",
        "wait=CHECKPOINT",
    ] {
        out.push(
            req(
                format!("POST /v1/events?{q}"),
                "POST",
                format!("/v1/events?{q}"),
            )
            .auth(&k.writer)
            .json(js(&event(1, None)))
            .expect(&[400]),
        );
    }
    // Body-less admin actions refuse options they would ignore.
    for path in ["/v1/admin/retention/run", "/v1/admin/backup"] {
        // Regression: options were ignored and the action ran for real.
        for q in ["dry_run=1", "x="] {
            out.push(
                req(format!("POST {path}?{q}"), "POST", format!("{path}?{q}"))
                    .auth(&k.admin)
                    .expect(&[400])
                    .says("no query parameters"),
            );
        }
        for (what, body) in [
            ("a JSON option", &b"{\"dry_run\":true}"[..]),
            ("garbage", b"{\"a\":"),
            ("an array", b"[]"),
        ] {
            out.push(
                req(format!("POST {path} with {what}"), "POST", path)
                    .auth(&k.admin)
                    .json(body)
                    .expect(&[400])
                    .says(if what == "a JSON option" {
                        "no options"
                    } else {
                        ""
                    }),
            );
        }
    }
    out
}

/// Path traversal, odd encodings and absurd tile paths, on the tile route,
/// the parameterised routes and the console fallback.
fn paths(k: &Keys) -> Vec<Case> {
    let mut out = Vec::new();
    let tile = |p: &str, expect: &[u16]| req(format!("GET {p}"), "GET", p).expect(expect);
    for p in [
        "/tile/0/000.p/0",
        "/tile/0/000.p/256",
        "/tile/0/000.p/-1",
        "/tile/0/000.p/abc",
        "/tile/0/000.p/03",
        "/tile/0/000.p/3.p/3",
        "/tile/0/000.P/3",
        "/tile/0/x000/001",
        "/tile/0/x001",
        "/tile/0/01",
        "/tile/0/0000",
        "/tile/0/abc",
        "/tile/0/-01",
        "/tile/0/+01",
        "/tile/0/000/",
        "/tile/0/",
        "/tile/0",
        "/tile/",
        "/tile//0/000",
        "/tile/00/000",
        "/tile/64/000",
        "/tile/255/000",
        "/tile/-1/000",
        "/tile/99999999999999999999/000",
        "/tile/0/x999/x999/x999/x999/x999/x999/x999/000",
        "/tile/0/x018/x446/x744/x073/x709/x551/616",
        "/tile/entries/abc",
        "/tile/entries/000.p/0",
        "/tile/entries/x000",
        "/tile/entries/000.p/3/",
        "/tile/../checkpoint",
        "/tile/0/../../../etc/passwd",
        "/tile/0/..%2F..%2Fetc%2Fpasswd",
        "/tile/%2e%2e/%2e%2e/etc/passwd",
        "/tile/0/000%2Fp",
        "/tile/0/000%00",
        "/tile/0/%ff",
        "/tile/%20/000",
    ] {
        out.push(tile(p, &[400, 404]));
    }
    let long = format!("/tile/0/{}000", "x000/".repeat(2000));
    out.push(tile(&long, &[400, 404, 414]));
    // The first partial tile wider than the tree.
    let beyond_tile = format!("/tile/0/000.p/{}", k.size + 1);
    for p in [
        beyond_tile.as_str(),
        "/tile/0/001",
        "/tile/1/000",
        "/tile/entries/001",
    ] {
        out.push(tile(p, &[404]));
    }
    // Leaf indexes in auditor paths: refused before any read is recorded.
    for i in [
        "-1",
        "abc",
        "18446744073709551616",
        "1.0",
        "0x1",
        "1e2",
        "%00",
        "%20",
        "%ff",
        "0%2F..%2F..",
        "",
    ] {
        for suffix in ["", "/tlog-proof"] {
            let p = format!("/v1/events/{i}{suffix}");
            out.push(
                req(format!("GET {p}"), "GET", &p)
                    .auth(&k.auditor)
                    .expect(&[400, 404]),
            );
        }
    }
    for p in [
        "/v1/events/0/../../admin/keys",
        "/v1/events/0/tlog-proof/extra",
        "/v1/events/0/proof",
    ] {
        out.push(
            req(format!("GET {p}"), "GET", p)
                .auth(&k.auditor)
                .expect(&[404]),
        );
    }
    // Ids of keys, policies and holds.
    for base in ["/v1/admin/keys", "/v1/admin/retention", "/v1/admin/holds"] {
        for id in [
            "0000000000000000",
            "..%2F..%2Fetc",
            "%ff",
            "%00",
            "x".repeat(2000).as_str(),
        ] {
            let p = format!("{base}/{id}");
            out.push(
                req(format!("DELETE {}", &p[..p.len().min(60)]), "DELETE", &p)
                    .auth(&k.admin)
                    .expect(&[400, 404]),
            );
        }
        let p = format!("{base}/../../../etc/passwd");
        out.push(
            req(format!("DELETE {p}"), "DELETE", &p)
                .auth(&k.admin)
                .expect(&[404]),
        );
    }
    // The console fallback serves embedded files only.
    for p in [
        "/web/../Cargo.toml",
        "/../Cargo.toml",
        "/js/../../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2e%2e%2fCargo.toml",
        "/js/%2e%2e/%2e%2e/Cargo.toml",
        "/..%5c..%5cCargo.toml",
        "/index.html%00",
        "/index.html%00.js",
        "//etc/passwd",
        "/Cargo.toml",
        "/src/main.rs",
        "/.git/config",
        "/web/index.html",
        "/js/",
        "/js",
        "/..",
        "/%ff",
        "/js/api.js/",
        "/v2/everything",
        "/v1/",
        "/v1/admin",
    ] {
        out.push(req(format!("GET {p}"), "GET", p).expect(&[404]));
    }
    out
}

/// Content types, non-UTF-8 headers, oversize, lying and slow bodies,
/// chunked garbage.
fn headers_and_sizes(k: &Keys) -> Vec<Case> {
    let mut out = Vec::new();
    let routes = body_routes(k);
    for r in &routes {
        let valid = js(&r.valid);
        let post =
            |what: &str| req(format!("POST {}: {what}", r.path), "POST", r.path).auth(&r.token);
        for (what, ct) in [
            ("text/plain", &b"text/plain"[..]),
            ("form", b"application/x-www-form-urlencoded"),
            ("multipart", b"multipart/form-data; boundary=x"),
            ("application/jsonx", b"application/jsonx"),
            ("empty content type", b""),
            ("non-UTF-8 content type", b"application/json\xff"),
        ] {
            out.push(
                post(&format!("content type {what}"))
                    .header("content-type", ct)
                    .body(&valid)
                    .expect(&[415]),
            );
        }
        out.push(post("no content type").body(&valid).expect(&[415]));
        // One byte over the limit, in valid JSON so only the size is wrong.
        let limit = if r.path == "/v1/events" {
            MAX_EVENTS_BODY
        } else {
            MAX_OTHER_BODY
        };
        let mut big = valid.clone();
        big.pop();
        big.extend_from_slice(b",\"pad\":\"");
        let fill = limit + 1 - big.len() - 2;
        big.extend(std::iter::repeat_n(b'p', fill));
        big.extend_from_slice(b"\"}");
        assert_eq!(big.len(), limit + 1);
        out.push(
            post("one byte over the body limit")
                .json(&big)
                .expect(&[413]),
        );
        out.push(
            post("Content-Length over the limit, short body")
                .json(&valid)
                .length(Length::Given((limit + 1).to_string()))
                .expect(&[413, 408]),
        );
        // Content-Length lying both ways.
        out.push(
            post("Content-Length says more than is sent")
                .json(&valid)
                .length(Length::Given((valid.len() + 10).to_string()))
                .expect(&[408, 400]),
        );
        out.push(
            post("Content-Length says less than is sent")
                .json(&valid)
                .length(Length::Given((valid.len() / 2).to_string()))
                .expect(&[400]),
        );
        out.push(
            post("Content-Length 0 with a body")
                .json(&valid)
                .length(Length::Given("0".into()))
                .expect(&[400]),
        );
        out.push(
            post("huge Content-Length")
                .json(&valid)
                .length(Length::Given(u64::MAX.to_string()))
                // hyper refuses a length it cannot buffer, without a body.
                .http_layer()
                .expect(&[431, 413, 408, 400]),
        );
        // Slow bodies: trickled far slower than the request timeout.
        // Regression: the timeout's 408 came with an empty body.
        out.push(
            post("slow body")
                .json(&valid)
                .trickle()
                .expect(&[408])
                .says("request timeout"),
        );
        // Chunked bodies.
        let chunked = |what: &str, body: Vec<u8>, expect: &[u16]| {
            post(what)
                .header("content-type", "application/json")
                .header("transfer-encoding", "chunked")
                .body(body)
                .length(Length::Omit)
                .expect(expect)
        };
        let good_chunk = [
            format!("{:x}\r\n", valid.len()).into_bytes(),
            valid.clone(),
            b"\r\n".to_vec(),
        ]
        .concat();
        out.push(chunked(
            "chunk size not hex",
            b"zz\r\n{}\r\n0\r\n\r\n".to_vec(),
            &[400],
        ));
        out.push(chunked(
            "chunk size overflowing",
            b"fffffffffffffffffffff\r\n{}\r\n0\r\n\r\n".to_vec(),
            &[400, 413],
        ));
        out.push(chunked(
            "chunk longer than its size",
            [b"2\r\n".to_vec(), valid.clone(), b"\r\n0\r\n\r\n".to_vec()].concat(),
            &[400],
        ));
        out.push(chunked("no last chunk", good_chunk.clone(), &[408]));
        out.push(chunked(
            "chunked, one byte over the limit",
            [
                format!("{:x}\r\n", limit + 1).into_bytes(),
                vec![b' '; limit + 1],
                b"\r\n0\r\n\r\n".to_vec(),
            ]
            .concat(),
            &[413],
        ));
        out.push(
            chunked(
                "chunked, trickled",
                [good_chunk, b"0\r\n\r\n".to_vec()].concat(),
                &[408],
            )
            .trickle(),
        );
    }
    out
}

/// Garbage the HTTP layer itself must refuse (no body is required).
fn protocol_garbage(k: &Keys) -> Vec<Case> {
    let mut out = vec![
        raw("not HTTP", "GARBAGE\r\n\r\n", &[400]),
        raw("request line without a target", "GET\r\n\r\n", &[400]),
        raw(
            "bad method token",
            "G@T / HTTP/1.1\r\nhost: x\r\n\r\n",
            &[400],
        ),
        raw("HTTP/9.9", "GET / HTTP/9.9\r\nhost: x\r\n\r\n", &[400]),
        raw(
            "NUL in the target",
            b"GET /\0 HTTP/1.1\r\nhost: x\r\n\r\n",
            &[400],
        ),
        raw(
            "non-UTF-8 in the target",
            b"GET /\xff\xfe HTTP/1.1\r\nhost: x\r\n\r\n",
            &[400],
        ),
        raw(
            "non-UTF-8 in the query",
            b"GET /v1/proof/inclusion?index=\xff HTTP/1.1\r\nhost: x\r\n\r\n",
            &[400],
        ),
        raw(
            "space in the target",
            "GET /v1/log x HTTP/1.1\r\nhost: x\r\n\r\n",
            &[400],
        ),
        raw(
            "TLS hello on plain HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            &[400],
        ),
        raw(
            "header without a colon",
            "GET /healthz HTTP/1.1\r\nhost: x\r\nbroken header\r\n\r\n",
            &[400],
        ),
        raw(
            "space in a header name",
            "GET /healthz HTTP/1.1\r\nhost: x\r\nx y: z\r\n\r\n",
            &[400],
        ),
        raw(
            "obsolete line folding",
            "GET /healthz HTTP/1.1\r\nhost: x\r\nx-a: b\r\n c\r\n\r\n",
            &[400],
        ),
        raw(
            "Content-Length and Transfer-Encoding",
            "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            // Chunked wins (RFC 9112 §6.3) and the connection closes after.
            &[400, 401],
        ),
        raw(
            "two different Content-Lengths",
            "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}",
            &[400],
        ),
        raw(
            "negative Content-Length",
            "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n{}",
            &[400],
        ),
        raw(
            "non-numeric Content-Length",
            "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n{}",
            &[400],
        ),
        raw(
            "overflowing Content-Length",
            "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999999\r\n\r\n{}",
            &[400],
        ),
        raw(
            "unknown transfer coding",
            "POST /v1/events HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\n\r\n{}",
            &[400],
        ),
    ];
    // Regression: a head trickled slower than the request timeout held the
    // connection open for ever (no header read timeout).
    out.push(
        raw(
            "slow headers",
            "GET /healthz HTTP/1.1\r\nhost: x\r\n",
            &[408],
        )
        .body("x-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n")
        .trickle()
        .may_close(),
    );
    out.push(
        raw("slow request line", "POST /v1/events HT", &[408])
            .body("TP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}")
            .trickle()
            .may_close(),
    );
    // Regression: a connection that sent nothing was held open for ever
    // (HTTP version detection waited for a first byte without a deadline).
    out.push(raw("a silent connection", "", &[408]).may_close());
    let many: String = (0..200).map(|i| format!("x-h{i}: v\r\n")).collect();
    out.push(raw(
        "200 headers",
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}\r\n"),
        &[431],
    ));
    out.push(raw(
        "a 1 MiB header",
        format!(
            "GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(1 << 20)
        ),
        &[431],
    ));
    out.push(raw(
        "a 100 KiB target",
        format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(100 << 10)),
        &[414, 431, 400],
    ));
    // Protected routes with a raw non-UTF-8 Authorization value.
    out.push(
        req(
            "non-UTF-8 Authorization on an admin route",
            "GET",
            "/v1/admin/keys",
        )
        .header(
            "authorization",
            [b"Bearer ".as_slice(), &[0xff; 80]].concat(),
        )
        .expect(&[401]),
    );
    out.push(
        req(
            "Authorization with the admin key and a NUL",
            "GET",
            "/v1/admin/keys",
        )
        .header("authorization", format!("Bearer {}\0", k.admin))
        .http_layer()
        .expect(&[400, 401]),
    );
    out
}
