//! Witnessing end to end through the real binaries: a log and two witnesses
//! with a policy of two, receipts cosigned by both, a witness restart, a
//! witness that is down, a split view between two copies of one log, and
//! the monitor that follows a log and detects the fork.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    Server, committed_size, create_key, event, get_json, hashes, http, post_events, veritrail,
    veritrail_async, write_witness_config,
};
use serde_json::{Value, json};
use veritrail::merkle::{self, Hash};
use veritrail::note::{Checkpoint, CosignatureVerifier, Note, NoteVerifier, parse_verifier_key};

struct Log {
    origin: String,
    vkeys: Vec<String>,
}

/// Creates a log in `data` (start, read its keys, stop).
async fn create_log(data: &Path) -> Log {
    let p = Server::start(data, &["--origin", "audit.example/log"]);
    let info = get_json(&format!("{}/v1/log", p.url)).await;
    p.stop();
    Log {
        origin: info["origin"].as_str().unwrap().to_string(),
        vkeys: vec![
            info["verifier_keys"]["ecdsa"].as_str().unwrap().to_string(),
            info["verifier_keys"]["ed25519"]
                .as_str()
                .unwrap()
                .to_string(),
        ],
    }
}

fn witness_config(dir: &Path, name: &str, log: &Log) -> PathBuf {
    let path = dir.join(format!("{}.toml", name.replace('/', "_")));
    let vkeys: Vec<&str> = log.vkeys.iter().map(String::as_str).collect();
    write_witness_config(&path, name, &log.origin, &vkeys);
    path
}

struct WitnessProc {
    proc: Server,
    vkey: String,
    data: PathBuf,
    config: PathBuf,
}

fn start_witness(data: &Path, config: &Path, listen: &str) -> WitnessProc {
    let proc = Server::run(
        &[
            "witness",
            "--data",
            data.to_str().unwrap(),
            "--listen",
            listen,
            "--config",
            config.to_str().unwrap(),
        ],
        data,
    );
    let vkey = proc.printed("witness verifier key ");
    WitnessProc {
        proc,
        vkey,
        data: data.to_path_buf(),
        config: config.to_path_buf(),
    }
}

impl WitnessProc {
    /// Stops and starts again on the same address and data.
    fn restart(self) -> WitnessProc {
        let proc = self.proc.restart();
        let vkey = proc.printed("witness verifier key ");
        WitnessProc { proc, vkey, ..self }
    }
}

fn start_log(data: &Path, witnesses: &[&WitnessProc], quorum: usize) -> Server {
    let mut args: Vec<String> = [
        "serve",
        "--data",
        data.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--checkpoint-interval-ms",
        "100",
        "--witness-timeout-ms",
        "1000",
        "--witness-quorum",
        &quorum.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for w in witnesses {
        args.extend(["--witness".into(), w.proc.url.clone(), w.vkey.clone()]);
    }
    Server::run(&args, data)
}

async fn writer_key(log: &Server, data: &Path) -> String {
    let admin = std::fs::read_to_string(data.join("admin.key")).unwrap();
    create_key(&log.url, admin.trim(), "app", "writer").await
}

async fn get_text(url: &str) -> (u16, String) {
    let resp = http().get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn post_raw(url: &str, body: Vec<u8>) -> (u16, String, String) {
    let resp = http().post(url).body(body).send().await.unwrap();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (resp.status().as_u16(), ct, resp.text().await.unwrap())
}

/// Verifies a receipt offline with the library: both log signatures, a
/// valid cosignature by each witness, and every event's inclusion proof
/// against the cosigned root.
fn verify_receipt(receipt: &Value, log: &Log, witnesses: &[&str]) -> Checkpoint {
    let note = Note::parse(receipt["checkpoint"].as_str().unwrap().as_bytes()).unwrap();
    let log_keys: Vec<Box<dyn NoteVerifier>> = log
        .vkeys
        .iter()
        .map(|k| parse_verifier_key(k).unwrap())
        .collect();
    let refs: Vec<&dyn NoteVerifier> = log_keys.iter().map(|k| k.as_ref()).collect();
    assert_eq!(note.verify(&refs).unwrap().len(), 2, "both log signatures");
    for w in witnesses {
        let v = CosignatureVerifier::from_verifier_key(w).unwrap();
        let ts = v
            .verified_timestamp(&note)
            .expect("a valid cosignature by each witness");
        assert!(ts > 1_600_000_000);
    }
    let cp = Checkpoint::parse(note.text()).unwrap();
    for e in receipt["events"].as_array().unwrap() {
        let p = &e["inclusion_proof"];
        assert_eq!(p["tree_size"].as_u64().unwrap(), cp.size);
        let leaf = Hash::from_base64(e["leaf_hash"].as_str().unwrap()).unwrap();
        merkle::verify_inclusion(
            e["index"].as_u64().unwrap(),
            cp.size,
            &leaf,
            &hashes(&p["audit_path"]),
            &cp.root,
        )
        .expect("inclusion proof verifies against the cosigned root");
    }
    cp
}

/// Polls until `f` returns Some, or panics after `secs`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_witnesses_cosign_receipts_survive_restarts_and_outages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let log = create_log(&data).await;
    let w1 = start_witness(
        &dir.path().join("w1"),
        &witness_config(dir.path(), "w1.example/witness", &log),
        "127.0.0.1:0",
    );
    let w2 = start_witness(
        &dir.path().join("w2"),
        &witness_config(dir.path(), "w2.example/witness", &log),
        "127.0.0.1:0",
    );
    assert!(
        w1.proc
            .stdout_lines
            .iter()
            .any(|l| l.contains("created a new witness"))
    );
    let server = start_log(&data, &[&w1, &w2], 2);
    let key = writer_key(&server, &data).await;
    let (w1_vkey, w2_vkey) = (w1.vkey.clone(), w2.vkey.clone());
    let vkeys = [w1_vkey.as_str(), w2_vkey.as_str()];

    // Baseline in the same run: receipts signed by the log alone.
    let mut baseline = Vec::new();
    for i in 0..40 {
        let started = Instant::now();
        let (status, _) = post_events(
            &server.url,
            &key,
            "?wait=checkpoint",
            vec![event(500 + i, None)],
        )
        .await;
        baseline.push(started.elapsed());
        assert_eq!(status, 200);
    }
    baseline.sort();

    // Receipts cosigned by both witnesses; measure the latency.
    let mut latencies = Vec::new();
    let mut last = None;
    for i in 0..40 {
        let started = Instant::now();
        let (status, receipt) =
            post_events(&server.url, &key, "?wait=witnessed", vec![event(i, None)]).await;
        latencies.push(started.elapsed());
        assert_eq!(status, 200, "{receipt}");
        assert_eq!(receipt["witnessed"], true);
        assert_eq!(receipt["cosignatures"].as_array().unwrap().len(), 2);
        let cp = verify_receipt(&receipt, &log, &vkeys);
        assert!(cp.size > i as u64);
        last = Some(cp);
    }
    latencies.sort();
    // The same receipts through `veritrail verify`, which checks the served
    // (witnessed) checkpoint's log signatures and both cosignatures, and the
    // newest event's inclusion.
    let newest = last.as_ref().unwrap().size - 1;
    let mut args: Vec<String> = vec!["verify".into(), "--url".into(), server.url.clone()];
    for k in &log.vkeys {
        args.extend(["--vkey".into(), k.clone()]);
    }
    for w in &vkeys {
        args.extend(["--witness-vkey".into(), (*w).to_string()]);
    }
    args.extend(["--index".into(), newest.to_string()]);
    let out = veritrail(&args, &[]);
    assert!(
        out.ok(),
        "veritrail verify with both witness keys: {}",
        out.all()
    );
    let mut wrong = args.clone();
    let at = wrong.iter().position(|a| a == vkeys[1]).unwrap();
    wrong[at] =
        "other.example/witness+00000000+BJg+GSVGUghLAAN8Wwt4c7RLcDgJL7S0DgcGbLQLDz/n".into();
    assert!(
        !veritrail(&wrong, &[]).ok(),
        "a witness key without a cosignature fails verify"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "POST /v1/events?wait=witnessed with two local witnesses (1 event, sequential, n={}): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms; baseline wait=checkpoint p50 {:.1} ms, p90 {:.1} ms (witnessed/baseline p50 = {:.1}x)",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(*latencies.last().unwrap()),
        ms(percentile(&baseline, 0.5)),
        ms(percentile(&baseline, 0.9)),
        percentile(&latencies, 0.5).as_secs_f64() / percentile(&baseline, 0.5).as_secs_f64(),
    );
    let last = last.unwrap();

    // Eight concurrent writers: checkpoints and witness rounds are shared.
    let mut tasks = Vec::new();
    for wr in 0..8 {
        let (url, key) = (server.url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..10 {
                let started = Instant::now();
                let (status, r) = post_events(
                    &url,
                    &key,
                    "?wait=witnessed",
                    vec![event(700 + wr * 10 + i, None)],
                )
                .await;
                assert_eq!(status, 200, "{r}");
                assert_eq!(r["witnessed"], true);
                lat.push(started.elapsed());
            }
            lat
        }));
    }
    let mut concurrent = Vec::new();
    for t in tasks {
        concurrent.extend(t.await.unwrap());
    }
    concurrent.sort();
    println!(
        "POST /v1/events?wait=witnessed, 8 concurrent writers (n={}): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        concurrent.len(),
        ms(percentile(&concurrent, 0.5)),
        ms(percentile(&concurrent, 0.9)),
        ms(*concurrent.last().unwrap()),
    );

    // The log serves the witnessed checkpoint, and lists its cosignatures.
    let (_, note) = get_text(&format!("{}/checkpoint", server.url)).await;
    let served = verify_receipt(&json!({ "checkpoint": note, "events": [] }), &log, &vkeys);
    assert!(served.size >= last.size);
    let v1 = get_json(&format!("{}/v1/checkpoint", server.url)).await;
    assert_eq!(v1["cosignatures"].as_array().unwrap().len(), 2, "{v1}");
    assert_eq!(v1["witnessed"], true);

    // Each witness serves what it cosigned at /<sha256(origin)>/checkpoint.
    let hash = veritrail::witness::origin_hash(&log.origin);
    let (status, w1_note) = get_text(&format!("{}/{hash}/checkpoint", w1.proc.url)).await;
    assert_eq!(status, 200);
    let w1_cp = verify_receipt(
        &json!({ "checkpoint": w1_note, "events": [] }),
        &log,
        &[&w1.vkey],
    );
    assert!(w1_cp.size >= last.size);
    let (status, _) = get_text(&format!("{}/{}/checkpoint", w1.proc.url, "0".repeat(64))).await;
    assert_eq!(status, 404);

    // A witness restart keeps its state: same checkpoint, and a client that
    // knows nothing learns the size from a 409.
    let w1 = w1.restart();
    assert!(
        !w1.proc
            .stdout_lines
            .iter()
            .any(|l| l.contains("created a new witness"))
    );
    assert_eq!(w1.vkey, vkeys[0], "the key survives a restart");
    let (_, again) = get_text(&format!("{}/{hash}/checkpoint", w1.proc.url)).await;
    assert_eq!(again, w1_note);
    let body = veritrail::witness::AddCheckpoint::format(0, &[], w1_note.as_bytes());
    let (status, ct, size) = post_raw(&format!("{}/add-checkpoint", w1.proc.url), body).await;
    assert_eq!((status, ct.as_str()), (409, "text/x.tlog.size"));
    assert_eq!(size, format!("{}\n", w1_cp.size));
    let (status, receipt) =
        post_events(&server.url, &key, "?wait=witnessed", vec![event(100, None)]).await;
    assert_eq!(status, 200, "{receipt}");
    let vkeys = [w1.vkey.as_str(), w2.vkey.as_str()];
    verify_receipt(&receipt, &log, &vkeys);

    // A witness that is down: appends go on, "witnessed" waits, nothing is lost.
    let w2_addr = w2.proc.addr().to_string();
    let (w2_data, w2_config) = (w2.data.clone(), w2.config.clone());
    w2.proc.kill();
    let before = get_json(&format!("{}/v1/checkpoint", server.url)).await["tree_size"]
        .as_u64()
        .unwrap();
    let mut appended = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let (status, r) = post_events(&server.url, &key, "", vec![event(200 + i, None)]).await;
        assert_eq!(status, 200, "appends go on while a witness is down: {r}");
        assert!(started.elapsed() < Duration::from_secs(2));
        appended.push(r["events"][0]["index"].as_u64().unwrap());
    }
    let (status, pending) =
        post_events(&server.url, &key, "?wait=witnessed", vec![event(300, None)]).await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["witnessed"], false);
    let pending_index = pending["events"][0]["index"].as_u64().unwrap();
    // Its receipt is still a valid log-signed one.
    let log_keys: Vec<Box<dyn NoteVerifier>> = log
        .vkeys
        .iter()
        .map(|k| parse_verifier_key(k).unwrap())
        .collect();
    common::verify_checkpoint(pending["checkpoint"].as_str().unwrap(), &log_keys);
    let served = get_json(&format!("{}/v1/checkpoint", server.url)).await;
    assert_eq!(
        served["tree_size"].as_u64().unwrap(),
        before,
        "the served (witnessed) checkpoint does not move without the quorum"
    );
    assert!(served["latest_signed_size"].as_u64().unwrap() > pending_index);
    let health = get_json(&format!("{}/healthz", server.url)).await;
    assert_eq!(
        health["status"], "ok",
        "a witness that is down is no alarm: {health}"
    );
    assert!(health["witnesses"][1]["last_error"].is_string(), "{health}");

    // The witness comes back: everything appended meanwhile gets witnessed.
    let w2 = start_witness(&w2_data, &w2_config, &w2_addr);
    assert_eq!(w2.vkey, w2_vkey);
    let cp = eventually(60, "the backlog to be witnessed", || async {
        let (_, note) = get_text(&format!("{}/checkpoint", server.url)).await;
        let v = json!({ "checkpoint": note, "events": [] });
        let cp = Checkpoint::parse(Note::parse(note.as_bytes()).ok()?.text()).ok()?;
        (cp.size > pending_index).then(|| verify_receipt(&v, &log, &vkeys))
    })
    .await;
    for index in appended.iter().chain([&pending_index]) {
        let p = get_json(&format!(
            "{}/v1/proof/inclusion?index={index}&tree_size={}",
            server.url, cp.size
        ))
        .await;
        let leaf = Hash::from_base64(p["leaf_hash"].as_str().unwrap()).unwrap();
        merkle::verify_inclusion(*index, cp.size, &leaf, &hashes(&p["audit_path"]), &cp.root)
            .unwrap();
    }
    let health = get_json(&format!("{}/healthz", server.url)).await;
    assert_eq!(health["status"], "ok", "{health}");
    server.stop();

    // A restarted log serves the stored witnessed checkpoint at once.
    let server = start_log(&data, &[&w1, &w2], 2);
    let v1 = get_json(&format!("{}/v1/checkpoint", server.url)).await;
    assert_eq!(v1["witnessed"], true, "{v1}");
    assert!(v1["tree_size"].as_u64().unwrap() >= cp.size);
    assert_eq!(v1["cosignatures"].as_array().unwrap().len(), 2);
}

/// A tiny webhook receiver: records every JSON body POSTed to it.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/alert",
        post(move |axum::Json(v): axum::Json<Value>| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(v);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alert", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

/// Runs `veritrail monitor` to completion; returns (exit code, stdout+stderr).
async fn monitor(args: Vec<String>) -> (i32, String) {
    let mut all = vec!["monitor".to_string()];
    all.extend(args);
    let out = veritrail_async(&all, &[]).await;
    (out.code, out.all())
}

fn monitor_args(url: &str, log: &Log, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["--url".to_string(), url.to_string(), "--once".into()];
    for k in &log.vkeys {
        a.extend(["--vkey".into(), k.clone()]);
    }
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_view_is_refused_by_the_witness_and_reported_by_monitors() {
    let dir = tempfile::tempdir().unwrap();
    let data_a = dir.path().join("a");
    let log = create_log(&data_a).await;
    // Some history before the fork (after the log's own records of its
    // keys); `prefix` entries in all.
    let prefix = {
        let p = Server::start(&data_a, &[]);
        let key = writer_key(&p, &data_a).await;
        let (status, _) = post_events(
            &p.url,
            &key,
            "?wait=checkpoint",
            (0..5).map(|i| event(i, None)).collect(),
        )
        .await;
        assert_eq!(status, 200);
        let size = committed_size(&p.url).await;
        p.stop();
        size
    };
    // Two copies of the same log.
    let data_b = dir.path().join("b");
    let status = Command::new("cp")
        .args(["-a", data_a.to_str().unwrap(), data_b.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    // The master key lives beside the data directory, not in it.
    std::fs::copy(
        dir.path().join("a.master.key"),
        dir.path().join("b.master.key"),
    )
    .unwrap();
    let w = start_witness(
        &dir.path().join("w"),
        &witness_config(dir.path(), "w.example/witness", &log),
        "127.0.0.1:0",
    );

    // Both copies run with the same witness, which cosigns their common
    // checkpoint (size `prefix`) for both.
    let a = start_log(&data_a, &[&w], 1);
    let b = start_log(&data_b, &[&w], 1);
    for log_url in [&a.url, &b.url] {
        eventually(10, "the common checkpoint to be witnessed", || async {
            let v = get_json(&format!("{log_url}/v1/checkpoint")).await;
            (v["witnessed"] == true && v["tree_size"] == prefix).then_some(())
        })
        .await;
    }

    // Branch A grows and is witnessed.
    let key_a = writer_key(&a, &data_a).await;
    let size_a = committed_size(&a.url).await;
    let (status, receipt_a) = post_events(
        &a.url,
        &key_a,
        "?wait=witnessed",
        (0..3).map(|i| event(1000 + i, None)).collect(),
    )
    .await;
    assert_eq!(status, 200, "{receipt_a}");
    let cp_a = verify_receipt(&receipt_a, &log, &[&w.vkey]);
    assert_eq!(cp_a.size, size_a + 3);

    // Monitor on branch A, requiring the witness, passes and keeps state.
    let state_a = dir.path().join("monitor-a.json");
    let (code, out) = monitor(monitor_args(
        &a.url,
        &log,
        &[
            "--witness-vkey",
            &w.vkey,
            "--state",
            state_a.to_str().unwrap(),
            "--full",
        ],
    ))
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(state_a.exists());

    // Branch B: same prefix, other events, same size. B's collector sends
    // the common size, learns A's from the witness's 409, retries from it
    // and gets 422.
    let key_b = writer_key(&b, &data_b).await;
    let (status, receipt_b) = post_events(
        &b.url,
        &key_b,
        "?wait=witnessed",
        (0..3).map(|i| event(2000 + i, None)).collect(),
    )
    .await;
    assert_eq!(
        status, 202,
        "the witness must not cosign branch B: {receipt_b}"
    );
    let note_b = receipt_b["checkpoint"].as_str().unwrap().to_string();
    let cp_b = Checkpoint::parse(Note::parse(note_b.as_bytes()).unwrap().text()).unwrap();
    assert_eq!(cp_b.size, cp_a.size);
    assert_ne!(cp_b.root, cp_a.root);

    // B raised an alarm: error-level log line, metric, degraded health.
    let health = eventually(10, "B's alarm", || async {
        let resp = http()
            .get(format!("{}/healthz", b.url))
            .send()
            .await
            .unwrap();
        let v: Value = resp.json().await.unwrap();
        (v["status"] == "degraded").then_some(v)
    })
    .await;
    assert!(
        health["problems"][0].as_str().unwrap().contains("ALARM"),
        "{health}"
    );
    let (_, metrics) = get_text(&format!("{}/metrics", b.url)).await;
    assert!(
        metrics.contains("veritrail_witness_alarms_total"),
        "{metrics}"
    );
    let health_a = get_json(&format!("{}/healthz", a.url)).await;
    assert_eq!(health_a["status"], "ok");

    // The witness answers B's checkpoint from its own state with 422 (same
    // size, other root) and from a stale size with 409 + its size.
    let body = veritrail::witness::AddCheckpoint::format(cp_a.size, &[], note_b.as_bytes());
    let (status, _, reason) = post_raw(&format!("{}/add-checkpoint", w.proc.url), body).await;
    assert_eq!(status, 422, "{reason}");
    let body = veritrail::witness::AddCheckpoint::format(prefix, &[], note_b.as_bytes());
    let (status, ct, size) = post_raw(&format!("{}/add-checkpoint", w.proc.url), body).await;
    assert_eq!(
        (status, ct.as_str(), size.as_str()),
        (409, "text/x.tlog.size", format!("{}\n", cp_a.size).as_str())
    );
    let hash = veritrail::witness::origin_hash(&log.origin);
    let (_, cosigned) = get_text(&format!("{}/{hash}/checkpoint", w.proc.url)).await;
    let cosigned = Checkpoint::parse(Note::parse(cosigned.as_bytes()).unwrap().text()).unwrap();
    assert_eq!(cosigned.root, cp_a.root, "the witness kept branch A");
    let (_, w_metrics) = get_text(&format!("{}/metrics", w.proc.url)).await;
    assert!(
        w_metrics.contains("veritrail_witness_refused_total{status=\"422\"}"),
        "{w_metrics}"
    );

    // Each monitor, given the checkpoint the other branch showed, reports
    // the fork: exit 1 and a webhook alert.
    let (hook, alerts) = webhook().await;
    let note_a = receipt_a["checkpoint"].as_str().unwrap().to_string();
    let file_a = dir.path().join("seen-by-a.checkpoint");
    let file_b = dir.path().join("seen-by-b.checkpoint");
    std::fs::write(&file_a, &note_a).unwrap();
    std::fs::write(&file_b, &note_b).unwrap();
    let (code, out) = monitor(monitor_args(
        &a.url,
        &log,
        &[
            "--compare-checkpoint",
            file_b.to_str().unwrap(),
            "--webhook",
            &hook,
        ],
    ))
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ALERT fork"), "{out}");
    let (code, out) = monitor(monitor_args(
        &b.url,
        &log,
        &[
            "--compare-checkpoint",
            file_a.to_str().unwrap(),
            "--webhook",
            &hook,
        ],
    ))
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ALERT fork"), "{out}");
    let seen = alerts.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|a| a["alert"] == "fork"));
    assert_eq!(seen[0]["checkpoint"].as_str().unwrap(), note_b);

    // The monitor that followed A, now pointed at B with A's state: B shows
    // a smaller tree than the one verified.
    let (code, out) = monitor(monitor_args(
        &b.url,
        &log,
        &["--state", state_a.to_str().unwrap(), "--webhook", &hook],
    ))
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ALERT rollback"), "{out}");
    // A witness the log does not use: its cosignature is missing.
    let stranger = veritrail::note::CosignatureSigner::new(
        "stranger.example/witness",
        ed25519_dalek::SigningKey::from_bytes(&[42; 32]),
        || 1u64,
    )
    .unwrap();
    let stranger = veritrail::note::NoteSigner::verifier_key(&stranger);
    let (code, out) = monitor(monitor_args(&a.url, &log, &["--witness-vkey", &stranger])).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ALERT missing_cosignature"), "{out}");
    assert_eq!(alerts.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_monitor_follows_a_growing_log_and_resumes_from_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let log = create_log(&data).await;
    let w = start_witness(
        &dir.path().join("w"),
        &witness_config(dir.path(), "w.example/witness", &log),
        "127.0.0.1:0",
    );
    let server = start_log(&data, &[&w], 1);
    let key = writer_key(&server, &data).await;
    let state = dir.path().join("monitor.json");
    let args = |extra: &[&str]| {
        let mut a = monitor_args(
            &server.url,
            &log,
            &[
                "--witness-vkey",
                &w.vkey,
                "--state",
                state.to_str().unwrap(),
                "--full",
            ],
        );
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let mut sizes = Vec::new();
    for round in 0..3 {
        // 300 events per round: bundles and tiles fill and go partial again.
        let events: Vec<Value> = (0..300).map(|i| event(round * 1000 + i, None)).collect();
        let (status, r) = post_events(&server.url, &key, "?wait=witnessed", events).await;
        assert_eq!(status, 200, "{r}");
        let (code, out) = monitor(args(&[])).await;
        assert_eq!(code, 0, "{out}");
        let s: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        let size = s["full"]["size"].as_u64().unwrap();
        sizes.push(size);
    }
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    assert!(sizes[2] >= 900);

    // A wrong log key or a witness the log does not use is an alert.
    let other = veritrail::note::keys::LogKeys::from_secret_bytes(&[5; 32], &[6; 32]).unwrap();
    let wrong = other.verifier_keys(&log.origin).unwrap().ed25519;
    let (code, out) = monitor(vec![
        "--url".into(),
        server.url.clone(),
        "--once".into(),
        "--vkey".into(),
        wrong,
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad_signature"), "{out}");
    // An unreachable log with --once is an operational error, not an alert.
    let (code, out) = monitor(vec![
        "--url".into(),
        "http://127.0.0.1:9".into(),
        "--once".into(),
        "--vkey".into(),
        log.vkeys[0].clone(),
    ])
    .await;
    assert_eq!(code, 2, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_monitor_rejects_a_tampered_tile_the_log_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let log = create_log(&data).await;
    let server = start_log(&data, &[], 0);
    let key = writer_key(&server, &data).await;
    // Two full entry bundles and level-0 tiles, and a partial third.
    for chunk in 0..6 {
        let events = (0..100).map(|i| event(chunk * 100 + i, None)).collect();
        let (status, body) = post_events(&server.url, &key, "?wait=checkpoint", events).await;
        assert_eq!(status, 200, "{body}");
    }
    let (code, out) = monitor(monitor_args(&server.url, &log, &["--full"])).await;
    assert_eq!(code, 0, "the untouched log passes: {out}");
    server.stop();

    // One bit of hash 7 of the full tile 0/000 (a file, as every full
    // tile): not on the right edge, so the log starts and serves it.
    let tile_file = data.join("db/objects/tile/0/000");
    let mut tile = std::fs::read(&tile_file).unwrap();
    tile[7 * 32 + 3] ^= 1;
    std::fs::write(&tile_file, tile).unwrap();
    let server = start_log(&data, &[], 0);
    let (code, out) = monitor(monitor_args(&server.url, &log, &["--full"])).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("ALERT bad_tiles"), "{out}");
    assert!(out.contains("tile/0/000"), "{out}");
}
