//! `veritrail bench` end to end: the load generator against a real server
//! and the storage ceiling on a temporary directory, with small counts. No
//! timing thresholds: these check that the runs complete and that what they
//! report agrees with what the log holds.

mod common;

use std::process::Command;

use common::{Server, binary, create_key, get_json};
use serde_json::Value;

/// Runs `veritrail bench <args> --json` and returns its report.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(binary())
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("run veritrail bench");
    assert!(
        out.status.success(),
        "veritrail bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bench output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn assert_sane_latency(r: &Value) {
    let (p50, p99, max) = (
        r["p50_ms"].as_f64().unwrap(),
        r["p99_ms"].as_f64().unwrap(),
        r["max_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "latency {r}");
    assert!(r["events_per_s"].as_f64().unwrap() > 0.0, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_ingest_appends_every_event_it_reports() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let key = create_key(&server.url, &server.admin_key(), "bench", "writer").await;
    let url = server.url.clone();

    let run = |extra: &'static [&'static str]| {
        let (url, key) = (url.clone(), key.clone());
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["ingest", "--url", &url, "--key", &key];
            args.extend_from_slice(extra);
            bench(&args)
        })
    };

    // Batched: 300 events in requests of 40 (the last one short).
    let batched = run(&["--clients", "3", "--events", "300", "--batch-size", "40"])
        .await
        .unwrap();
    assert_eq!(batched["events"], 300);
    assert_eq!(batched["requests"], 8);
    assert_eq!(batched["distinct_indices"], 300);
    assert_eq!(batched["duplicates"], 0);
    assert_eq!(batched["mode"], "durable");
    assert_sane_latency(&batched);

    // Single events from several clients.
    let single = run(&["--clients", "8", "--events", "200", "--batch-size", "1"])
        .await
        .unwrap();
    assert_eq!(single["events"], 200);
    assert_eq!(single["requests"], 200);
    assert_eq!(single["distinct_indices"], 200);
    assert_sane_latency(&single);

    // Waiting for checkpoints: every answer carried one covering its event.
    let cp = run(&[
        "--clients",
        "4",
        "--events",
        "40",
        "--batch-size",
        "1",
        "--wait-checkpoint",
        "--without-ids",
    ])
    .await
    .unwrap();
    assert_eq!(cp["mode"], "checkpoint");
    assert_eq!(cp["events"], 40);
    assert_eq!(cp["distinct_indices"], 40);
    assert_sane_latency(&cp);
    assert_eq!(
        cp["max_checkpoint_size"], 540,
        "the last answer covers the whole log"
    );

    // The log holds exactly what the runs reported.
    let log = get_json(&format!("{}/v1/log", server.url)).await;
    assert_eq!(log["tree_size"], 540);
    server.stop();
}

#[test]
fn bench_ingest_fails_loudly_on_a_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let bogus = format!("vt_{}_{}", "0".repeat(16), "0".repeat(64));
    let out = Command::new(binary())
        .args(["bench", "ingest", "--url", &server.url, "--key", &bogus])
        .args(["--events", "10", "--batch-size", "5", "--clients", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a refused request fails the run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bench_sled_writes_the_log_layout_durably() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sled");
    let db_arg = db.to_str().unwrap();
    let r = bench(&[
        "sled", "--dir", db_arg, "--events", "1000", "--batch", "300",
    ]);
    assert_eq!(r["events"], 1000);
    assert_eq!(r["batches"], 4);
    // Per event at least the stored event, the leaf-hash index and the
    // dedupe key; plus the bundles, tiles and tree size per batch.
    assert!(r["keys"].as_u64().unwrap() > 3000, "{r}");
    let per_event = r["bytes_per_event"].as_f64().unwrap();
    let floor = r["stored_event_bytes"].as_f64().unwrap() + r["leaf_bytes"].as_f64().unwrap();
    assert!(per_event > floor, "{r}");
    assert!(r["events_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["commit_p50_ms"].as_f64().unwrap() <= r["commit_p99_ms"].as_f64().unwrap());
    assert!(db.join("db").is_file(), "sled's data file exists");

    // A second run refuses to reuse a database.
    let out = Command::new(binary())
        .args(["bench", "sled", "--dir", db_arg, "--events", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
