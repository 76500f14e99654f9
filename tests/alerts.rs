//! Alerts through the real binary: rules in the configuration file, the
//! four scenarios (a brute-force login burst, one person browsing 200
//! patients, a night-time export, a first-time admin action) each raising
//! exactly its alert while matching background traffic raises none, every
//! alert provable in the log, the webhook's signature checked by a real
//! receiver, a window that spans a restart, and bad rule files refused at
//! start with the line named.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    Server, auditor_get as get, create_key, create_key_for_app, get_json, hashes, log_verifiers,
    submit, verify_checkpoint,
};
use serde_json::{Value, json};
use veritrail::merkle::{self, Hash};

const SECRET: &str = "a-webhook-secret-of-some-length";

/// The four scenario rules (one of each kind).
const RULES: &str = include_str!("fixtures/alert-rules.toml");

fn ev(actor: &str, action: &str, outcome: &str, rtype: &str, subject: &str, at: &str) -> Value {
    json!({
        "actor": { "id": actor, "type": "user" },
        "action": action,
        "resource": { "type": rtype, "id": format!("{rtype}-{subject}") },
        "subject": subject,
        "purpose": "treatment",
        "outcome": outcome,
        "occurred_at": at,
    })
}

/// `2026-11-25T<hh>:<mm>:<ss>Z` (a Wednesday), `s` seconds after `hh:mm`.
fn at(hh: u32, mm: u32, s: u32) -> String {
    let t = hh * 3600 + mm * 60 + s;
    format!(
        "2026-11-25T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

fn indexes(answer: &Value) -> Vec<u64> {
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

/// A webhook receiver: a real local HTTP server that keeps every body it
/// is sent with its signature header.
/// Each post received: its body and its signature header.
type Posts = Arc<Mutex<Vec<(Vec<u8>, Option<String>)>>>;

struct Receiver {
    url: String,
    got: Posts,
}

async fn receiver() -> Receiver {
    let got: Posts = Arc::default();
    let keep = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    let sig = headers
                        .get("veritrail-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    keep.lock().unwrap().push((body.to_vec(), sig));
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, got }
}

/// The HMAC-SHA256 signature, computed independently of the server's code.
fn expected_signature(body: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Writes the configuration file: the rules, and the webhook if any.
fn config(dir: &std::path::Path, webhook: Option<&str>, rules: &str) -> std::path::PathBuf {
    let secret = dir.join("webhook.secret");
    std::fs::write(&secret, SECRET).unwrap();
    let mut text = String::from("[alerts]\ncheckpoint_interval_s = 1\n");
    if let Some(url) = webhook {
        text += &format!(
            "webhook_url = {url:?}\nwebhook_secret_file = {:?}\nwebhook_backoff_ms = 20\n",
            secret.display().to_string()
        );
    }
    text += rules;
    let path = dir.join("veritrail.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A log on `dir` with the configuration file `cfg`: the server, its URL,
/// a writer key of app `clinic` and an auditor key.
async fn start(dir: &std::path::Path, cfg: &std::path::Path) -> (Server, String, String, String) {
    let server = Server::start(
        &dir.join("log"),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--checkpoint-interval-ms",
            "50",
        ],
    );
    let url = server.url.clone();
    let admin = server.admin_key();
    let clinic = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
    let auditor = create_key(&url, &admin, "dpo", "auditor").await;
    (server, url, clinic, auditor)
}

/// Every alert the log lists, newest first, following the cursor.
async fn all_alerts(url: &str, auditor: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page_url = match &cursor {
            Some(c) => format!("{url}/v1/alerts?limit=2&cursor={c}"),
            None => format!("{url}/v1/alerts?limit=2"),
        };
        let (status, audit, page) = get(&page_url, auditor).await;
        assert_eq!(status, 200, "{page}");
        assert!(audit.is_some(), "listing alerts is itself recorded");
        out.extend(page["alerts"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// Checks that the alert at `index` is in the log under a signed
/// checkpoint: its body is the log's own `alert.raised` event and its
/// inclusion proof verifies.
async fn assert_provable(
    url: &str,
    auditor: &str,
    alert: &Value,
    verifiers: &[Box<dyn veritrail::note::NoteVerifier>],
) {
    let index = alert["index"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let one = loop {
        let (status, _, one) = get(&format!("{url}/v1/events/{index}"), auditor).await;
        assert_eq!(status, 200, "{one}");
        if !one["inclusion_proof"].is_null() {
            break one;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covers alert {index}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(one["app"], "veritrail");
    assert_eq!(one["event"]["action"], "alert.raised");
    assert_eq!(one["event"]["actor"]["id"], "veritrail-alerts");
    assert_eq!(one["event"]["resource"]["id"], alert["alert"]["rule"]);
    let leaf_hash = merkle::leaf_hash(one["leaf"].as_str().unwrap().as_bytes());
    assert_eq!(
        Hash::from_base64(alert["leaf_hash"].as_str().unwrap()).unwrap(),
        leaf_hash
    );
    let cp = verify_checkpoint(one["checkpoint"].as_str().unwrap(), verifiers);
    merkle::verify_inclusion(
        index,
        cp.size,
        &leaf_hash,
        &hashes(&one["inclusion_proof"]["audit_path"]),
        &cp.root,
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_scenario_raises_exactly_its_alert_and_background_traffic_none() {
    let hook = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Some(&hook.url), RULES);
    let (_server, url, clinic, auditor) = start(dir.path(), &cfg).await;

    // Background traffic that every rule sees and none may fire on. The
    // first-seen rule learns on Tuesday: alice's admin actions are known.
    submit(
        &url,
        &clinic,
        vec![
            ev(
                "alice",
                "admin.user.create",
                "success",
                "user",
                "u1",
                "2026-11-24T09:00:00Z",
            ),
            ev(
                "alice",
                "admin.role.grant",
                "success",
                "user",
                "u1",
                "2026-11-24T09:05:00Z",
            ),
        ],
    )
    .await;
    let mut background = Vec::new();
    for a in 0..20 {
        // Five failures per person in ten minutes is not more than five.
        for i in 0..5 {
            background.push(ev(
                &format!("staff{a}"),
                "login",
                "failure",
                "session",
                "s",
                &at(10, a, i * 30),
            ));
        }
        background.push(ev(
            &format!("staff{a}"),
            "login",
            "success",
            "session",
            "s",
            &at(10, a, 59),
        ));
    }
    // 150 distinct patients in five minutes is not more than 150; many
    // reads of a few patients are not breadth.
    for p in 0..150 {
        background.push(ev(
            "dr-busy",
            "record.read",
            "success",
            "patient_record",
            &format!("bp{p}"),
            &at(11, 0, p),
        ));
    }
    for i in 0..300 {
        background.push(ev(
            "dr-ward",
            "record.read",
            "success",
            "patient_record",
            &format!("wp{}", i % 10),
            &at(11, 0, i),
        ));
    }
    // Exports in office hours, and alice again with an action she knows.
    for i in 0..5 {
        background.push(ev(
            &format!("clerk{i}"),
            "export.csv",
            "success",
            "report",
            "r",
            &at(13, i, 0),
        ));
    }
    background.push(ev(
        "alice",
        "admin.role.grant",
        "success",
        "user",
        "u2",
        &at(12, 0, 0),
    ));
    for chunk in background.chunks(500) {
        submit(&url, &clinic, chunk.to_vec()).await;
    }
    assert!(
        all_alerts(&url, &auditor).await.is_empty(),
        "background traffic raised an alert"
    );

    // The four scenarios.
    let burst: Vec<Value> = (0..8)
        .map(|i| {
            ev(
                "mallory",
                "login",
                "failure",
                "session",
                "s",
                &at(14, 0, i * 5),
            )
        })
        .collect();
    let burst_idx = indexes(&submit(&url, &clinic, burst).await);
    let browse: Vec<Value> = (0..200)
        .map(|p| {
            ev(
                "dr-evil",
                "record.read",
                "success",
                "patient_record",
                &format!("p{p}"),
                &at(14, 10, p),
            )
        })
        .collect();
    let browse_idx = indexes(&submit(&url, &clinic, browse).await);
    // 23:30 UTC is 00:30 in Paris; the second export within the hour is the same alert.
    let night = vec![
        ev(
            "eve",
            "export.csv",
            "success",
            "report",
            "all",
            "2026-11-25T23:30:00Z",
        ),
        ev(
            "eve",
            "export.csv",
            "success",
            "report",
            "all",
            "2026-11-25T23:40:00Z",
        ),
    ];
    let night_idx = indexes(&submit(&url, &clinic, night).await);
    let admin_ev = vec![ev(
        "bob",
        "admin.role.grant",
        "success",
        "user",
        "u3",
        &at(15, 0, 0),
    )];
    let admin_idx = indexes(&submit(&url, &clinic, admin_ev).await);

    let alerts = all_alerts(&url, &auditor).await;
    let mut by_rule: Vec<(String, &Value)> = alerts
        .iter()
        .map(|a| {
            (
                a["alert"]["rule"].as_str().unwrap().to_string(),
                &a["alert"],
            )
        })
        .collect();
    by_rule.sort_by(|a, b| a.0.cmp(&b.0));
    let rules: Vec<&str> = by_rule.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        rules,
        [
            "first-admin",
            "login-burst",
            "night-export",
            "patient-browsing"
        ],
        "{alerts:#?}"
    );
    let alert = |rule: &str| by_rule.iter().find(|(r, _)| r == rule).unwrap().1;

    let burst_alert = alert("login-burst");
    assert_eq!(burst_alert["group"], json!({ "actor": "mallory" }));
    assert_eq!(burst_alert["count"], 6);
    assert_eq!(burst_alert["events"], json!(burst_idx[..6]));
    assert_eq!(burst_alert["window_start"], "2026-11-25T14:00:00.000Z");
    assert_eq!(burst_alert["window_end"], "2026-11-25T14:00:25.000Z");

    let browse_alert = alert("patient-browsing");
    assert_eq!(browse_alert["group"], json!({ "actor": "dr-evil" }));
    assert_eq!(browse_alert["count"], 151);
    assert_eq!(browse_alert["events"], json!(browse_idx[..151]));
    // The alert names its group, not the patients it counted.
    assert!(!browse_alert.to_string().contains("\"p1"), "{browse_alert}");

    let night_alert = alert("night-export");
    assert_eq!(night_alert["group"], json!({ "actor": "eve" }));
    assert_eq!(night_alert["events"], json!([night_idx[0]]));

    let admin_alert = alert("first-admin");
    assert_eq!(
        admin_alert["group"],
        json!({ "actor": "bob", "action": "admin.role.grant" })
    );
    assert_eq!(admin_alert["events"], json!(admin_idx));

    // Each alert is an event of the log with an inclusion proof.
    let verifiers = log_verifiers(&get_json(&format!("{url}/v1/log")).await);
    for a in &alerts {
        assert_provable(&url, &auditor, a, &verifiers).await;
    }
    // Only this rule's alerts when asked.
    let (_, _, one_rule) = get(&format!("{url}/v1/alerts?rule=night-export"), &auditor).await;
    assert_eq!(one_rule["alerts"].as_array().unwrap().len(), 1);
    let (status, _, bad) = get(&format!("{url}/v1/alerts?limit=0"), &auditor).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad["error"]["message"].as_str().unwrap().contains("limit"));
    let (status, _, _) = get(&format!("{url}/v1/alerts"), &clinic).await;
    assert_eq!(status, 403, "writers do not read alerts");

    // The webhook got the same four alerts, each signed with the secret.
    let deadline = Instant::now() + Duration::from_secs(20);
    while hook.got.lock().unwrap().len() < 4 {
        assert!(
            Instant::now() < deadline,
            "the webhook got {} alerts",
            hook.got.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = hook.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4);
    let mut posted: Vec<String> = Vec::new();
    for (body, sig) in &got {
        assert_eq!(
            sig.as_deref(),
            Some(expected_signature(body).as_str()),
            "signature of {}",
            String::from_utf8_lossy(body)
        );
        let v: Value = serde_json::from_slice(body).unwrap();
        let listed = alerts
            .iter()
            .find(|a| a["index"] == v["index"])
            .expect("the posted alert is the logged one");
        assert_eq!(listed["alert"], v["alert"]);
        posted.push(v["alert"]["rule"].as_str().unwrap().to_string());
    }
    posted.sort();
    assert_eq!(posted, rules);

    // Prometheus counts them per rule.
    let metrics = String::from_utf8(common::get_bytes(&format!("{url}/metrics")).await).unwrap();
    assert!(
        metrics.contains("veritrail_alerts_total{rule=\"login-burst\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("veritrail_alerts_webhook_total{result=\"delivered\"} 4"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_spans_a_restart_still_fires() {
    window_spans_a_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_checkpointed_before_a_kill_still_fires() {
    window_spans_a_restart(true).await;
}

/// Three logins, a restart (graceful, or SIGKILL once a periodic
/// checkpoint has written them), three more: one alert counting all six.
async fn window_spans_a_restart(kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), None, RULES);
    let (server, url, clinic, auditor) = start(dir.path(), &cfg).await;
    let before: Vec<Value> = (0..3)
        .map(|i| ev("mallory", "login", "failure", "session", "s", &at(9, 0, i)))
        .collect();
    let before_idx = indexes(&submit(&url, &clinic, before).await);
    assert!(all_alerts(&url, &auditor).await.is_empty());

    let server = if kill {
        // The second periodic checkpoint (every second here) to complete
        // after the answer began after it: it wrote the counted logins.
        let done = checkpoints(&url).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while checkpoints(&url).await < done + 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint completed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // No shutdown, so no checkpoint at shutdown.
        server.crash_restart()
    } else {
        server.restart()
    };
    let after: Vec<Value> = (0..3)
        .map(|i| ev("mallory", "login", "failure", "session", "s", &at(9, 5, i)))
        .collect();
    let after_idx = indexes(&submit(&url, &clinic, after).await);
    let alerts = all_alerts(&url, &auditor).await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0]["alert"];
    assert_eq!(a["rule"], "login-burst");
    assert_eq!(a["count"], 6);
    let both: Vec<u64> = before_idx.into_iter().chain(after_idx).collect();
    assert_eq!(a["events"], json!(both));
    drop(server);
}

/// How many checkpoints of the windows have completed so far.
async fn checkpoints(url: &str) -> u64 {
    let metrics = String::from_utf8(common::get_bytes(&format!("{url}/metrics")).await).unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("veritrail_alerts_checkpoints_total "))
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[test]
fn bad_rule_files_are_refused_at_start_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let rule = "[alerts]\n[[alerts.rule]]\nname = \"r\"\nkind = \"threshold\"\nmore_than = 5\n";
    for (n, (text, line, words)) in [
        (format!("{rule}window = \"10m\"\ngroupby = \"actor\"\n"), 7, "groupby"),
        (format!("{rule}window = \"ten minutes\"\n"), 6, "not a duration"),
        (
            "[alerts]\n[[alerts.rule]]\nname = \"n\"\nkind = \"time_of_day\"\ntime_zone = \"Europe/Atlantis\"\nallowed_hours = \"07:00-19:00\"\n".to_string(),
            5,
            "unknown time zone",
        ),
        (
            format!("{rule}window = \"10m\"\n\n[[alerts.rule]]\nname = \"r\"\nkind = \"threshold\"\nmore_than = 1\nwindow = \"1m\"\n"),
            9,
            "already defined",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("bad{n}.toml"));
        std::fs::write(&path, &text).unwrap();
        let data = dir.path().join(format!("log{n}"));
        let err = match Server::try_start(&data, &["--config", path.to_str().unwrap()]) {
            Ok(_) => panic!("the server started with {text}"),
            Err(e) => e,
        };
        assert!(err.contains(&format!("line {line}")), "wanted line {line}: {err}");
        assert!(err.contains(words), "wanted {words:?}: {err}");
        assert!(!data.join("db").exists(), "nothing was created for a refused configuration");
    }
}

#[test]
fn alerts_test_replays_a_file_offline_and_prints_what_would_fire() {
    let dir = tempfile::tempdir().unwrap();
    let rules = config(dir.path(), None, RULES);
    let mut lines = Vec::new();
    // Five failures (quiet), then a sixth (fires), then a night export with the app given.
    for i in 0..6 {
        lines.push(ev("mallory", "login", "failure", "session", "s", &at(9, 0, i)).to_string());
    }
    lines.push(String::new());
    lines.push(
        json!({ "app": "billing", "event": ev("eve", "export.csv", "success", "report", "r", "2026-11-25T23:00:00Z") })
            .to_string(),
    );
    let events = dir.path().join("events.jsonl");
    let replay = || {
        common::veritrail(
            &[
                "alerts",
                "test",
                "--rules",
                rules.to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
            ],
            &[],
        )
    };
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let ran = replay();
    assert!(ran.ok(), "{}", ran.all());
    let fired: Vec<Value> = ran
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(fired.len(), 2, "{}", ran.stdout);
    assert_eq!(fired[0]["alert"]["rule"], "login-burst");
    assert_eq!(fired[0]["alert"]["events"], json!([1, 2, 3, 4, 5, 6]));
    assert_eq!(fired[1]["alert"]["rule"], "night-export");
    assert_eq!(fired[1]["line"], 8);
    assert!(ran.stderr.contains("7 events, 2 alerts"), "{}", ran.stderr);

    // A bad event names its line; a bad rule file its line too.
    std::fs::write(&events, format!("{}\n{{\"actor\": 1}}\n", lines[0])).unwrap();
    let ran = replay();
    assert!(!ran.ok());
    assert!(ran.stderr.contains("line 2"), "{}", ran.stderr);
    std::fs::write(
        &rules,
        "[alerts]\n[[alerts.rule]]\nname = \"x\"\nkind = \"often\"\n",
    )
    .unwrap();
    let ran = replay();
    assert!(!ran.ok());
    assert!(
        ran.stderr.contains("line 4") && ran.stderr.contains("unknown kind"),
        "{}",
        ran.stderr
    );
}
