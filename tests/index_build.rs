//! The search index built in the background by the real binary, killed
//! with SIGKILL halfway: a log whose index is far behind its tree serves at
//! once (writes accepted, searches 503 with `Retry-After`, `/healthz`
//! showing progress), a restart resumes from the stored watermark rather
//! than from zero, and once built every acknowledged event is found
//! exactly once, by when it occurred.
//!
//! The log is grown with the largest `--search-index-flush-events`, so
//! nothing of the index is written out, and killed: its whole tree is
//! behind the stored index. It is then served with a flush of 1,024
//! events, far below that gap, so the index is built in the background and
//! its progress stored every 1,024 events. Its steps are paced at
//! [`PAUSE_MS`] (`--background-step-pause-ms`), so the build takes at
//! least that pause times its steps however fast the machine is, and the
//! test sees it halfway.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{Server, create_key, create_key_for_app, get_json, http, post_events};
use serde_json::{Value, json};

/// Events grown before the index is dropped behind: they occurred in March.
const GROWN: usize = 20_000;
/// Events per request.
const BATCH: usize = 500;
/// Events written while the index builds: they occurred in November.
const LIVE: usize = 100;
/// The flush of the restarted server: the background build's threshold
/// and the step of its stored progress.
const FLUSH: u64 = 1024;
/// The pause after each background step of 256 events: a build of
/// [`GROWN`] events lasts at least 78 of them, about 8 s.
const PAUSE_MS: &str = "100";
/// How long the index may take to build before the test gives up.
const PATIENCE: Duration = Duration::from_secs(120);

fn clinical(id: String, resource: String, subject: usize, occurred: String) -> Value {
    json!({
        "actor": { "id": format!("dr-{}", subject % 7), "type": "user" },
        "action": "record.read",
        "resource": { "type": "patient_record", "id": resource },
        "subject": format!("patient-{}", subject % 13),
        "purpose": "treatment",
        "outcome": if subject.is_multiple_of(5) { "denied" } else { "success" },
        "occurred_at": occurred,
        "id": id,
    })
}

fn march(n: usize) -> Value {
    clinical(
        format!("grown-{n}"),
        format!("rec-{n}"),
        n,
        format!("2026-03-{:02}T{:02}:00:00Z", 1 + n % 31, n % 24),
    )
}

fn november(n: usize) -> Value {
    clinical(
        format!("live-{n}"),
        format!("live-{n}"),
        n,
        format!("2026-11-{:02}T09:30:00Z", 1 + n % 30),
    )
}

/// Appends `events` and returns their indexes (none may be a duplicate).
async fn append(url: &str, key: &str, events: Vec<Value>) -> Vec<u64> {
    let (status, body) = post_events(url, key, "", events).await;
    assert_eq!(status, 200, "writing: {body}");
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["duplicate"], json!(false), "{r}");
            r["index"].as_u64().unwrap()
        })
        .collect()
}

/// `/healthz`'s `search_index`.
async fn index_state(url: &str) -> Value {
    get_json(&format!("{url}/healthz")).await["search_index"].clone()
}

/// Where the build started, from the server's log line announcing it:
/// `(indexed, size)`.
fn build_started(server: &Server) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = server
            .stderr
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("building the search index in the background"))
            .cloned();
        if let Some(line) = line {
            let field = |name: &str| -> u64 {
                let plain: String = strip_ansi(&line);
                let at = plain
                    .find(&format!("{name}="))
                    .unwrap_or_else(|| panic!("no {name} in {plain:?}"));
                plain[at + name.len() + 1..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            return (field("indexed"), field("size"));
        }
        assert!(
            Instant::now() < deadline,
            "the server did not say it builds the index: {:?}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Every leaf index a search finds, page after page; panics on a leaf
/// found twice.
async fn found(url: &str, auditor: &str, query: &str) -> (BTreeSet<u64>, Value) {
    let mut leaves = BTreeSet::new();
    let mut cursor = String::new();
    let mut first_total = Value::Null;
    loop {
        let resp = http()
            .get(format!("{url}/v1/events?{query}&limit=1000{cursor}"))
            .bearer_auth(auditor)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{query}");
        let page: Value = resp.json().await.unwrap();
        if first_total.is_null() {
            first_total = page["total"].clone();
        }
        for hit in page["events"].as_array().unwrap() {
            let index = hit["index"].as_u64().unwrap();
            assert!(leaves.insert(index), "{query}: leaf {index} found twice");
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return (leaves, first_total),
        }
    }
}

fn serve(data: &std::path::Path, flush: u64) -> Server {
    let flush = flush.to_string();
    Server::try_start_env(
        data,
        &[
            "--search-index-flush-events",
            &flush,
            "--background-step-pause-ms",
            PAUSE_MS,
        ],
        &[("VERITRAIL_LOG", "info")],
    )
    .unwrap_or_else(|e| panic!("server did not start: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_index_build_survives_kill_9_and_resumes_from_its_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // A log of GROWN events none of which reached the stored index.
    let server = Server::start(&data, &["--search-index-flush-events", "131072"]);
    let admin = server.admin_key();
    let writer = create_key_for_app(&server.url, &admin, "ehr", "writer", "ehr").await;
    let auditor = create_key(&server.url, &admin, "inspector", "auditor").await;
    // Leaf index → n, two batches at a time.
    let mut grown = BTreeMap::new();
    for pair in (0..GROWN).collect::<Vec<_>>().chunks(2 * BATCH) {
        let (a, b) = pair.split_at(pair.len() / 2);
        let (ia, ib) = tokio::join!(
            append(&server.url, &writer, a.iter().map(|&n| march(n)).collect()),
            append(&server.url, &writer, b.iter().map(|&n| march(n)).collect()),
        );
        grown.extend(ia.into_iter().zip(a.iter().copied()));
        grown.extend(ib.into_iter().zip(b.iter().copied()));
    }
    assert_eq!(grown.len(), GROWN);
    server.kill();

    // Served with a flush far below that gap: the index builds in the
    // background while the server answers.
    let server = serve(&data, FLUSH);
    let url = server.url.clone();
    let (from, size) = build_started(&server);
    assert_eq!(from, 0, "nothing of the index was stored");
    assert!(size >= GROWN as u64, "{size}");
    let resp = http()
        .get(format!("{url}/v1/events?subject=patient-3"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "a search while the index builds");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "{retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    let mut live = BTreeSet::new();
    live.extend(append(&url, &writer, (0..LIVE / 2).map(november).collect()).await);
    let state = index_state(&url).await;
    assert_eq!(state["state"], "building", "{state}");
    assert!(state["target"].as_u64().unwrap() >= size, "{state}");

    // Killed once the build stored some progress (a few flushes).
    let deadline = Instant::now() + PATIENCE;
    let indexed_at_kill = loop {
        let state = index_state(&url).await;
        assert_eq!(
            state["state"], "building",
            "the build ended before the test could kill it: grow GROWN"
        );
        let indexed = state["indexed"].as_u64().unwrap();
        assert!(indexed <= state["target"].as_u64().unwrap(), "{state}");
        if indexed >= 4 * FLUSH {
            break indexed;
        }
        assert!(Instant::now() < deadline, "the build stalled: {state}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    server.kill();

    // The restart resumes from the stored watermark: not from zero, and
    // not past what had been indexed.
    let server = serve(&data, FLUSH);
    let url = server.url.clone();
    let (resumed, size) = build_started(&server);
    assert!(
        resumed > 0 && resumed <= indexed_at_kill,
        "resumed at {resumed}, killed at {indexed_at_kill}"
    );
    assert!(size >= (GROWN + LIVE / 2) as u64, "{size}");
    println!("killed at {indexed_at_kill} indexed, resumed at {resumed} of {size}");
    live.extend(append(&url, &writer, (LIVE / 2..LIVE).map(november).collect()).await);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let state = index_state(&url).await;
        if state["state"] == "ready" {
            break;
        }
        assert_eq!(state["state"], "building", "{state}");
        assert!(
            Instant::now() < deadline,
            "the build did not finish: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Every acknowledged event exactly once, before and during the build.
    let (all, total) = found(&url, &auditor, "app=ehr").await;
    let in_tree: BTreeSet<u64> = grown.keys().copied().collect();
    let mut acked = in_tree.clone();
    acked.extend(&live);
    assert_eq!(all, acked);
    assert_eq!(total, json!({ "count": GROWN + LIVE, "exact": true }));
    // By when they occurred.
    let (in_march, total) = found(
        &url,
        &auditor,
        "since=2026-03-01T00:00:00Z&until=2026-04-01T00:00:00Z",
    )
    .await;
    assert_eq!(in_march, in_tree);
    assert_eq!(total, json!({ "count": GROWN, "exact": true }));
    let (in_november, _) = found(
        &url,
        &auditor,
        "since=2026-11-01T00:00:00Z&until=2026-12-01T00:00:00Z",
    )
    .await;
    assert_eq!(in_november, live);
    let (denied_on_the_2nd, _) = found(
        &url,
        &auditor,
        "outcome=denied&since=2026-03-02T00:00:00Z&until=2026-03-03T00:00:00Z",
    )
    .await;
    let want: BTreeSet<u64> = grown
        .iter()
        .filter(|&(_, n)| n % 31 == 1 && n.is_multiple_of(5))
        .map(|(&i, _)| i)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(denied_on_the_2nd, want);
    let (in_december, _) = found(
        &url,
        &auditor,
        "since=2026-12-01T00:00:00Z&until=2027-01-01T00:00:00Z",
    )
    .await;
    assert!(in_december.is_empty(), "{in_december:?}");
    server.stop();
}
