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
    let size = common::get_json(&format!("{url}/healthz")).await["committed_size"]
        .as_u64()
        .unwrap();
    let accepted = statuses.iter().filter(|s| **s == 200).count() as u64 + 1;
    assert_eq!(size, accepted, "throttled requests appended nothing");
}
