//! Explicit limits through the real binary: a key over its rate limit gets
//! 429 with Retry-After and a JSON error, and other keys are unaffected.

mod common;

use common::{Server, create_key, event, http};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_over_its_rate_limit_gets_429_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("veritrail.toml");
    std::fs::write(&config, "rate_limit_per_second = 1\nrate_limit_burst = 5\n").unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let url = server.url.clone();
    let admin = server.admin_key();
    let noisy = create_key(&url, &admin, "noisy", "writer").await;
    let quiet = create_key(&url, &admin, "quiet", "writer").await;
    let size0 = common::committed_size(&url).await;
    let client = http();
    let mut statuses = Vec::new();
    let mut throttled: Option<reqwest::Response> = None;
    for i in 0..8 {
        let resp = client
            .post(format!("{url}/v1/events"))
            .bearer_auth(&noisy)
            .json(&event(i, None))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 && throttled.is_none() {
            throttled = Some(resp);
        }
    }
    assert_eq!(
        &statuses[..5],
        &[200; 5],
        "the burst is allowed: {statuses:?}"
    );
    assert!(
        statuses[5..].contains(&429),
        "beyond the burst the key is throttled: {statuses:?}"
    );
    let resp = throttled.unwrap();
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    let resp = client
        .post(format!("{url}/v1/events"))
        .bearer_auth(&quiet)
        .json(&event(99, None))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "another key is not affected");
    let size = common::committed_size(&url).await;
    let accepted = statuses.iter().filter(|s| **s == 200).count() as u64 + 1;
    assert_eq!(
        size - size0,
        accepted,
        "throttled requests appended nothing"
    );
}

/// The value of an unlabelled gauge in a Prometheus exposition.
fn gauge(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The queue gauges of a server: events and bytes admitted.
async fn queue_gauges(url: &str) -> (f64, f64) {
    let text = http()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (
        gauge(&text, "veritrail_queue_events"),
        gauge(&text, "veritrail_queue_bytes"),
    )
}

/// Waits until the server shows `n` events admitted to its queue.
async fn wait_until_queued(url: &str, n: f64) {
    let mut seen = (0.0, 0.0);
    for _ in 0..300 {
        seen = queue_gauges(url).await;
        if seen.0 == n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{n} events never showed as queued (last seen {seen:?})");
}

/// Posts `body` to /v1/events: status, Retry-After, JSON answer.
async fn submit(
    url: String,
    writer: String,
    body: Value,
) -> (u16, Option<reqwest::header::HeaderValue>, Value) {
    let resp = http()
        .post(format!("{url}/v1/events"))
        .bearer_auth(&writer)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp.headers().get("retry-after").cloned();
    (status, retry, resp.json::<Value>().await.unwrap())
}

/// `count` events in one request body.
fn events(first: usize, count: usize) -> Value {
    serde_json::json!({ "events": (first..first + count).map(|i| event(i, None)).collect::<Vec<_>>() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded_in_events_and_bytes_not_only_in_requests() {
    let dir = tempfile::tempdir().unwrap();
    // Each batch waits four seconds for company, so what is admitted stays
    // admitted while the test knocks again.
    let server = Server::start(
        &dir.path().join("data"),
        &[
            "--batch-max-delay-ms",
            "4000",
            "--queue-max-events",
            "10",
            "--queue-max-bytes",
            "65536",
        ],
    );
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key(&url, &admin, "app", "writer").await;
    let size0 = common::committed_size(&url).await;
    let post = |body: Value| submit(url.clone(), writer.clone(), body);
    // Eight events are admitted and wait for their batch.
    let first = tokio::spawn(post(events(0, 8)));
    wait_until_queued(&url, 8.0).await;
    let (_, bytes) = queue_gauges(&url).await;
    assert!(bytes > 8.0 * 256.0, "queued bytes counted: {bytes}");
    // Three more would make eleven: pushback, and nothing is appended.
    let (status, retry, body) = post(events(100, 3)).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry.is_some(), "503 carries Retry-After");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    // Two fit.
    let second = tokio::spawn(post(events(200, 2)));
    wait_until_queued(&url, 10.0).await;
    let (s1, _, b1) = first.await.unwrap();
    let (s2, _, b2) = second.await.unwrap();
    assert_eq!((s1, s2), (200, 200), "{b1} {b2}");
    // Answered submissions give their budget back.
    wait_until_queued(&url, 0.0).await;
    assert_eq!(queue_gauges(&url).await, (0.0, 0.0));
    let (status, _, body) = post(events(300, 10)).await;
    assert_eq!(status, 200, "{body}");
    let log = common::get_json(&format!("{url}/v1/log")).await;
    assert_eq!(log["tree_size"], size0 + 20, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_budget_pushes_back_on_large_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--batch-max-delay-ms", "2000", "--queue-max-bytes", "4096"],
    );
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key(&url, &admin, "app", "writer").await;
    let big = |i: usize| {
        let mut e = event(i, None);
        e["context"] = serde_json::json!({ "note": "x".repeat(3000) });
        e
    };
    let post = |body: Value| {
        let answer = submit(url.clone(), writer.clone(), body);
        async move { answer.await.0 }
    };
    // One large event fits in 4 KiB; while it waits, a second would not.
    let first = tokio::spawn(post(big(0)));
    wait_until_queued(&url, 1.0).await;
    assert_eq!(post(big(1)).await, 503);
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(post(big(2)).await, 200);
}
