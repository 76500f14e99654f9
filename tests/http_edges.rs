//! Edges of the HTTP layer, against the real server: a client that stops
//! reading a streamed answer (an export, a backup) is cut after the stall
//! timeout instead of pinning the thread that produces it, and query
//! strings that are too long or not UTF-8 get the API's JSON error on
//! every route.

mod common;

use std::time::{Duration, Instant};

use common::{Server, auditor_get, committed_size, create_key, get_json, http, post_events};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;

/// The server's stall timeout in this test (`stream_stall_timeout_s`).
const STALL_S: u64 = 1;
/// The warning the server logs when it cuts a stalled answer.
const CUT: &str = "stopped reading a streamed answer";

/// An event with a context of about 7 KiB, so a few thousand of them make
/// answers far larger than what the sockets buffer.
fn bulky(n: usize) -> Value {
    json!({
        "actor": {"id": format!("user-{n}"), "type": "user"}, "action": "record.read",
        "resource": {"type": "doc", "id": format!("d-{n}")}, "purpose": "care",
        "outcome": "success", "occurred_at": "2026-11-25T10:00:00Z",
        "context": {"note": "x".repeat(7000)},
    })
}

/// Sends `request` on a connection with a small receive buffer, reads the
/// answer's head, stops reading until the server says it cut a stalled
/// answer, then reads the rest: whether the (chunked) body was complete.
async fn stall_then_read(server: &Server, request: String) -> bool {
    let addr = server.url.trim_start_matches("http://").parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 512];
    let n = conn.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let before = server
        .output
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(CUT))
        .count();
    let waited = Instant::now();
    while server
        .output
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(CUT))
        .count()
        == before
    {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "the server never gave up on a client that stopped reading"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut rest = Vec::new();
    // A cut connection may end in a reset rather than a clean close.
    let _ = tokio::time::timeout(Duration::from_secs(60), conn.read_to_end(&mut rest)).await;
    rest.ends_with(b"\r\n0\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_an_export_or_a_backup_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("veritrail.toml");
    std::fs::write(&config, format!("stream_stall_timeout_s = {STALL_S}\n")).unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key(&url, &admin, "clinic", "writer").await;
    let auditor = create_key(&url, &admin, "aud", "auditor").await;
    // About 25 MB of events: more than the sockets and the pieces in
    // flight hold.
    for batch in 0..8 {
        let events = (0..450).map(|i| bulky(batch * 450 + i)).collect();
        let (status, body) = post_events(&url, &writer, "?wait=checkpoint", events).await;
        assert_eq!(status, 200, "{body}");
    }
    let request = |method: &str, path: &str, key: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\n\
             content-length: 0\r\nconnection: close\r\n\r\n"
        )
    };
    let complete =
        stall_then_read(&server, request("GET", "/v1/export?app=clinic", &auditor)).await;
    assert!(
        !complete,
        "a stalled export must end cut, not look complete"
    );
    let complete = stall_then_read(&server, request("POST", "/v1/admin/backup", &admin)).await;
    assert!(
        !complete,
        "a stalled backup must end cut, not look complete"
    );
    // A client that reads gets the whole answer.
    let resp = http()
        .get(format!("{url}/v1/export?app=clinic&limit=10"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.lines().last().unwrap().contains("\"events\":10"),
        "{}",
        text.lines().last().unwrap()
    );
}

/// Every route and method of the OpenAPI document (whose route-parity test
/// keeps it equal to the router), with its path parameters filled in and
/// the key its tag needs.
async fn every_route<'k>(
    url: &str,
    keys: &'k [(&str, String)],
) -> Vec<(String, String, Option<&'k str>)> {
    let doc = get_json(&format!("{url}/v1/openapi.json")).await;
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let path = path
            .replace("{index}", "0")
            .replace("{id}", "x")
            .replace("{path}", "0/000");
        for (method, op) in item.as_object().unwrap() {
            let tag = op["tags"][0].as_str().unwrap();
            let key = keys
                .iter()
                .find(|(t, _)| *t == tag)
                .map(|(_, k)| k.as_str());
            out.push((method.to_uppercase(), path.clone(), key));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_or_non_utf8_query_strings_get_a_json_error_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let auditor = create_key(&url, &admin, "aud", "auditor").await;
    let writer = create_key(&url, &admin, "clinic", "writer").await;
    let keys = [
        ("admin", admin.clone()),
        ("auditor", auditor.clone()),
        ("writer", writer),
    ];
    let routes = every_route(&url, &keys).await;
    for route in ["/v1/events", "/v1/export", "/v1/admin/backup", "/healthz"] {
        assert!(
            routes.iter().any(|(_, p, _)| p == route),
            "{route}: {routes:?}"
        );
    }
    let size = committed_size(&url).await;
    // Raw requests: an HTTP client refuses to send a 100 KiB target. Past
    // 64 KiB the HTTP layer refuses the head; past 8 KiB the API does.
    let addr = url.trim_start_matches("http://").to_string();
    for (method, route, key) in &routes {
        for (query, status) in [
            ("actor=%FF%FE".to_string(), 400),
            ("%FF%FE=x".to_string(), 400),
            (format!("actor={}", "a".repeat(16 << 10)), 414),
            (format!("actor={}", "a".repeat(100 << 10)), 414),
        ] {
            let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let auth = key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
            let request = format!(
                "{method} {route}?{query} HTTP/1.1\r\nhost: x\r\n{auth}\
                 content-type: application/json\r\ncontent-length: 0\r\n\
                 connection: close\r\n\r\n"
            );
            conn.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            conn.read_to_end(&mut answer).await.unwrap();
            let answer = String::from_utf8_lossy(&answer).to_string();
            let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
            let what = format!(
                "{method} {route} ?{:.20} ({} bytes): {head}",
                query,
                query.len()
            );
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{what}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-type: application/json"),
                "{what}"
            );
            let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            assert!(body["error"]["code"].is_string(), "{what}: {body}");
            assert!(body["error"]["message"].is_string(), "{what}: {body}");
        }
    }
    // Nothing was written, searched or listed: the log has not grown (no
    // event, no audit record of a read or an admin action).
    assert_eq!(committed_size(&url).await, size);
    let (status, _, page) = auditor_get(
        &format!("{url}/v1/events?app=veritrail&limit=1000"),
        &auditor,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let reads: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["action"].as_str().unwrap().starts_with("audit."))
        .collect();
    assert!(reads.is_empty(), "{reads:?}");
}
