//! `veritrail serve` on PostgreSQL and an S3-compatible bucket: the real
//! binary over a throwaway PostgreSQL and s3s-fs (`scripts/lib/`). Appends
//! with checkpoint receipts that verify, tiles, proofs, search and a
//! restart; then the bucket's static copy, served by a plain static file
//! server over s3s-fs's directory, verifies with `veritrail verify` and
//! `veritrail monitor --full`, and with the tlog_tiles crate.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::services::{ObjectServer, Postgres, free_port, remote_flags};
use common::{
    Server, auditor_get, committed_size, create_key, event, get_bytes, get_json, hashes,
    log_verifiers, submit, verify_checkpoint, veritrail_async,
};
use serde_json::Value;
use veritrail::merkle::{self, Hash};

const ORIGIN: &str = "remote.test/log";

/// The server's flags and environment for the remote backend.
fn remote_args(pg: &Postgres, s3: &ObjectServer) -> Vec<String> {
    let mut args = vec!["--origin".into(), ORIGIN.into()];
    args.extend(remote_flags(pg, s3));
    args.extend(["--checkpoint-interval-ms".into(), "50".into()]);
    args
}

fn start(data: &Path, pg: &Postgres, s3: &ObjectServer) -> Server {
    let args = remote_args(pg, s3);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::try_start_env(data, &args, &env).unwrap_or_else(|e| panic!("server did not start: {e}"))
}

/// Appends `n` events from `first` in one request with `wait=checkpoint`,
/// checks the receipt (both signatures on the checkpoint, each event's
/// inclusion proof into it) and returns the checkpoint's size.
async fn append_verified(url: &str, key: &str, first: usize, n: usize, log: &Value) -> u64 {
    let events: Vec<Value> = (first..first + n)
        .map(|i| event(i, Some(format!("ev-{i}"))))
        .collect();
    let answer = submit(url, key, events).await;
    let cp = verify_checkpoint(
        answer["checkpoint"].as_str().expect("a checkpoint receipt"),
        &log_verifiers(log),
    );
    for e in answer["events"].as_array().unwrap() {
        let index = e["index"].as_u64().unwrap();
        let leaf = Hash::from_base64(e["leaf_hash"].as_str().unwrap()).unwrap();
        let p = get_json(&format!(
            "{url}/v1/proof/inclusion?index={index}&tree_size={}",
            cp.size
        ))
        .await;
        merkle::verify_inclusion(index, cp.size, &leaf, &hashes(&p["audit_path"]), &cp.root)
            .unwrap_or_else(|e| panic!("inclusion of {index}: {e}"));
    }
    cp.size
}

/// A plain static file server (Python's http.server) over `dir`.
struct StaticServer {
    child: Child,
    port: u16,
}

impl StaticServer {
    fn start(dir: &Path) -> StaticServer {
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        // From here on, Drop kills and reaps it on every path.
        let server = StaticServer { child, port };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the static file server did not start");
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_and_a_bucket_then_verify_the_static_copy() {
    let pg = Postgres::start();
    let s3 = ObjectServer::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &pg, &s3);
    assert!(
        !data.join("db").exists(),
        "the remote backend keeps no database in the data directory"
    );
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key(&url, &admin, "remote-app", "writer").await;
    let auditor = create_key(&url, &admin, "remote-auditor", "auditor").await;
    let log = get_json(&format!("{url}/v1/log")).await;
    // The log's own records (its keys) come first: event `i` is leaf
    // `size0 + i`.
    let size0 = committed_size(&url).await;
    assert!(size0 < 256, "{size0}");

    // Three batches: the first completes the first tile and bundle.
    let mut size = 0;
    for (first, n) in [(0, 300), (300, 1), (301, 40)] {
        size = append_verified(&url, &writer, first, n, &log).await;
    }
    assert_eq!(size, size0 + 341);
    // An idempotent resend gets its first index.
    let again = submit(&url, &writer, vec![event(7, Some("ev-7".into()))]).await;
    assert_eq!(again["events"][0]["index"], size0 + 7);
    assert_eq!(again["events"][0]["duplicate"], true);

    // Tiles: the full one is in the bucket, identical to what is served.
    let full = get_bytes(&format!("{url}/tile/0/000")).await;
    assert_eq!(full.len(), 256 * 32);
    assert_eq!(
        std::fs::read(s3.bucket_dir().join("audit/tile/0/000")).unwrap(),
        full
    );
    let width = size - 256;
    let partial = get_bytes(&format!("{url}/tile/0/001.p/{width}")).await;
    assert_eq!(partial.len() as u64, width * 32);

    // Search, through the vault (sealed bodies in PostgreSQL).
    let (status, _, found) =
        auditor_get(&format!("{url}/v1/events?subject=patient-7"), &auditor).await;
    assert_eq!(status, 200, "{found}");
    let hits = found["events"].as_array().unwrap();
    assert!(!hits.is_empty(), "search finds subject patient-7: {found}");

    // Restart: the log comes back from PostgreSQL and the bucket.
    let state = dir.path().join("verify-state.json");
    let vkeys: Vec<String> = ["ecdsa", "ed25519"]
        .iter()
        .map(|k| log["verifier_keys"][k].as_str().unwrap().to_string())
        .collect();
    let verify = |url: String, extra: Vec<String>| {
        let mut a = vec!["verify".to_string(), "--url".into(), url];
        for k in &vkeys {
            a.extend(["--vkey".to_string(), k.clone()]);
        }
        a.extend(extra);
        a
    };
    let ran = veritrail_async(
        &verify(
            url.clone(),
            vec!["--state".into(), state.display().to_string()],
        ),
        &[],
    )
    .await;
    assert!(ran.ok(), "{}", ran.all());
    let server = server.restart();
    let url = server.url.clone();
    // The audited search above appended its own audit record.
    let size = append_verified(&url, &writer, 341, 200, &log).await;
    assert!(size >= size0 + 541, "{size}");
    let ran = veritrail_async(
        &verify(
            url.clone(),
            vec![
                "--state".into(),
                state.display().to_string(),
                "--index".into(),
                (size0 + 300).to_string(),
            ],
        ),
        &[],
    )
    .await;
    assert!(
        ran.ok(),
        "the restarted log extends the one verified before: {}",
        ran.all()
    );

    // The static copy: a plain file server over the bucket's directory.
    let files = StaticServer::start(&s3.bucket_dir());
    let static_url = format!("http://127.0.0.1:{}/audit", files.port);
    let ran = veritrail_async(&verify(static_url.clone(), vec![]), &[]).await;
    assert!(ran.ok(), "verify on the static copy: {}", ran.all());
    let mut monitor = vec!["monitor".to_string(), "--url".into(), static_url.clone()];
    for k in &vkeys {
        monitor.extend(["--vkey".to_string(), k.clone()]);
    }
    monitor.extend([
        "--full".into(),
        "--once".into(),
        "--state".into(),
        dir.path().join("monitor-state.json").display().to_string(),
    ]);
    let ran = veritrail_async(&monitor, &[]).await;
    assert!(ran.ok(), "monitor --full on the static copy: {}", ran.all());

    // tlog_tiles, independently: every entry of the static bundles hashed
    // into its stored-hash layout gives the static checkpoint's root.
    // The static checkpoint is copied after its commit, off the write's
    // path: it reaches the latest size shortly after.
    let copied_by = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let cp = loop {
        let note = get_bytes(&format!("{static_url}/checkpoint")).await;
        let cp = verify_checkpoint(std::str::from_utf8(&note).unwrap(), &log_verifiers(&log));
        if cp.size >= size || std::time::Instant::now() > copied_by {
            break cp;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(cp.size >= size, "the static checkpoint reaches the latest");
    let mut stored: Vec<tlog_tiles::Hash> = Vec::new();
    for n in 0..cp.size.div_ceil(256) {
        let width = (cp.size - n * 256).min(256);
        let path = veritrail::tiles::Tile {
            level: 0,
            index: n,
            width: width as u16,
        }
        .entries_path();
        let bundle = get_bytes(&format!("{static_url}/{path}")).await;
        let entries = veritrail::tiles::decode_bundle(&bundle).unwrap();
        assert_eq!(entries.len() as u64, width);
        for (i, entry) in entries.iter().enumerate() {
            let index = n * 256 + i as u64;
            let new =
                tlog_tiles::stored_hashes(index, entry, &common::Stored(stored.clone())).unwrap();
            stored.extend(new);
        }
    }
    let root = tlog_tiles::tree_hash(cp.size, &common::Stored(stored)).unwrap();
    assert_eq!(
        Hash(root.0),
        cp.root,
        "tlog_tiles computes the checkpoint's root"
    );
    server.stop();
}

/// Posts one event with `id` and `wait=checkpoint`: the status, whether a
/// `Retry-After` came with it, and the body.
async fn post_one(url: &str, key: &str, n: usize) -> (u16, bool, Value) {
    post_events(url, key, n, 1).await
}

/// Posts events `n..n + count` in one request, as [`post_one`].
async fn post_events(url: &str, key: &str, n: usize, count: usize) -> (u16, bool, Value) {
    let events: Vec<Value> = (n..n + count)
        .map(|i| event(i, Some(format!("fault-{i}"))))
        .collect();
    let resp = common::http()
        .post(format!("{url}/v1/events?wait=checkpoint"))
        .bearer_auth(key)
        .json(&serde_json::json!({ "events": events }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().contains_key("retry-after");
    (status, retry, resp.json().await.unwrap_or(Value::Null))
}

/// Writes `per_request` events at a time for about ten seconds while a
/// service is down: every answer is 200 or a 503 with Retry-After; returns
/// the events acknowledged.
async fn write_through_outage(
    url: &str,
    key: &str,
    from: usize,
    per_request: usize,
) -> Vec<(usize, u64)> {
    let mut acked = Vec::new();
    let mut refused = 0;
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut n = from;
    while std::time::Instant::now() < until {
        let (status, retry, body) = post_events(url, key, n, per_request).await;
        match status {
            200 => {
                for (i, e) in body["events"].as_array().unwrap().iter().enumerate() {
                    acked.push((n + i, e["index"].as_u64().unwrap()));
                }
            }
            503 => {
                assert!(retry, "a 503 says when to retry: {body}");
                refused += 1;
            }
            other => panic!("unexpected status {other}: {body}"),
        }
        n += per_request;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(refused > 0, "the outage refused writes");
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_then_the_bucket_down_for_ten_seconds_each() {
    let mut pg = Postgres::start();
    let mut s3 = ObjectServer::start();
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &pg, &s3);
    let url = server.url.clone();
    let writer = create_key(&url, &server.admin_key(), "fault-app", "writer").await;
    let log = get_json(&format!("{url}/v1/log")).await;
    append_verified(&url, &writer, 0, 10, &log).await;

    pg.stop();
    let mut acked = write_through_outage(&url, &writer, 1000, 1).await;
    pg.resume();
    // Without the bucket, PostgreSQL still takes the batches that complete
    // no tile (the static copy catches up later); the first batch that
    // completes a full tile or bundle is refused until the bucket is back.
    // 20 events a request complete the first one within the outage.
    s3.stop();
    acked.extend(write_through_outage(&url, &writer, 2000, 20).await);
    s3.resume();

    // The log resumes by itself; events sent again keep their first index.
    let size = append_verified(&url, &writer, 10, 5, &log).await;
    for (n, index) in &acked {
        let (status, _, body) = post_one(&url, &writer, *n).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["events"][0]["index"].as_u64(), Some(*index));
        assert_eq!(body["events"][0]["duplicate"], true);
    }
    let note = get_bytes(&format!("{url}/checkpoint")).await;
    let cp = verify_checkpoint(std::str::from_utf8(&note).unwrap(), &log_verifiers(&log));
    assert!(cp.size >= size);
    server.stop();
}
