//! `veritrail migrate`: a log built through the real server on sled (events
//! with subjects and idempotency ids, an erased subject, a legal hold, API
//! keys) moves onto a throwaway PostgreSQL and s3s-fs (`scripts/lib/`).
//! The first run is killed (SIGKILL) in the middle of the tree; the second
//! finishes it and checks it. The server then runs on the new backend:
//! `verify` with the state file saved before the move proves the new
//! deployment extends the old log, old idempotency ids answer their first
//! index, the erased subject stays erased, the hold still holds, searches
//! find the same events and the old API keys work.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::services::{ObjectServer, Postgres, remote_flags};
use common::{
    Server, binary, call, create_key, create_key_for_app, event, get_json, submit, veritrail_async,
};
use reqwest::Method;
use serde_json::{Value, json};

const ORIGIN: &str = "migrate.test/log";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Submits events `from..from + n` with ids, in requests of 100; events
/// of subjects `patient-<i % 13>`. Returns their leaf indexes in order
/// (the log also records its own admin actions as events).
async fn fill(url: &str, key: &str, from: usize, n: usize) -> Vec<u64> {
    let mut indexes = Vec::new();
    for start in (from..from + n).step_by(100) {
        let events = (start..(start + 100).min(from + n))
            .map(|i| event(i, Some(format!("e-{i}"))))
            .collect();
        let answer = submit(url, key, events).await;
        for e in answer["events"].as_array().unwrap() {
            indexes.push(e["index"].as_u64().unwrap());
        }
    }
    indexes
}

/// The leaf indexes a search finds.
async fn search(url: &str, auditor: &str, query: &str) -> Vec<u64> {
    let (status, found) = call(
        Method::GET,
        &format!("{url}/v1/events?{query}"),
        auditor,
        None,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    found["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

/// `POST {url}{path}` with `body`: the status.
async fn post(url: &str, path: &str, key: &str, body: Value) -> u16 {
    let (status, answer) = call(Method::POST, &format!("{url}{path}"), key, Some(body)).await;
    eprintln!("POST {path}: {status} {answer}");
    status
}

/// `GET {url}/v1/events/{index}`: the status and the answer.
async fn event_at(url: &str, key: &str, index: u64) -> (u16, Value) {
    call(Method::GET, &format!("{url}/v1/events/{index}"), key, None).await
}

async fn verify(url: &str, vkeys: &[String], state: &Path) -> common::Ran {
    let mut args = vec!["verify".to_string(), "--url".into(), url.into()];
    for k in vkeys {
        args.extend(["--vkey".to_string(), k.clone()]);
    }
    args.extend(["--state".to_string(), s(state).into()]);
    veritrail_async(&args, &[]).await
}

/// The arguments of `migrate` from `data` into the services.
fn migrate_args(data: &Path, master: &Path, pg: &Postgres, s3: &ObjectServer) -> Vec<String> {
    [
        "migrate",
        "--from",
        s(data),
        "--master-key-file",
        s(master),
        "--to-store",
        &pg.url(),
        "--objects",
        "s3://log/audit",
        "--objects-endpoint",
        &s3.endpoint(),
        "--batch-leaves",
        "256",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// Starts `migrate`, reads its output until it has committed the first
/// part of the tree, and kills it there.
fn migrate_and_kill_midway(args: &[String], env: &[(&'static str, String)]) {
    let mut child = Command::new(binary())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("veritrail migrate");
    let stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let midway = line.starts_with("copied leaves 256..");
        seen.push(line);
        if midway {
            break;
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "migrate finished before it was killed:\n{}",
        seen.join("\n")
    );
    assert!(
        seen.iter().any(|l| l.starts_with("copied leaves 256..")),
        "migrate never reached the tree:\n{}",
        seen.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_log_moves_to_postgres_and_a_bucket_and_extends_the_old_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let master = dir.path().join("log.master.key");

    // The log on sled, through the real server.
    let server = Server::start(
        &data,
        &["--origin", ORIGIN, "--checkpoint-interval-ms", "50"],
    );
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
    let auditor = create_key(&url, &admin, "dpo", "auditor").await;
    let indexes = fill(&url, &writer, 0, 1100).await;
    let hold = json!({ "subject": "patient-4", "reason": "case 9" });
    assert_eq!(post(&url, "/v1/admin/holds", &admin, hold).await, 201);
    let erase = json!({ "subject": "patient-3", "reason": "art. 17" });
    assert_eq!(post(&url, "/v1/erasure", &admin, erase).await, 200);
    // A subject's events and an app's, and an event of the erased subject.
    let by_subject = search(&url, &auditor, "subject=patient-5&limit=1000").await;
    let by_app = search(&url, &auditor, "app=clinic&limit=50").await;
    assert!(by_subject.len() > 80, "{by_subject:?}");
    let erased_index = indexes[3]; // patient-3
    assert_eq!(event_at(&url, &auditor, erased_index).await.0, 410);
    let info = get_json(&format!("{url}/v1/log")).await;
    let vkeys: Vec<String> = ["ecdsa", "ed25519"]
        .iter()
        .map(|k| info["verifier_keys"][k].as_str().unwrap().to_string())
        .collect();
    let state = dir.path().join("state.json");
    let run = verify(&url, &vkeys, &state).await;
    assert_eq!(run.code, 0, "{}", run.all());
    let old_size = saved_size(&state);
    assert!(old_size > 1100, "{old_size}");
    server.stop();

    // Moved, the first run killed in the middle of the tree.
    let pg = Postgres::start();
    let s3 = ObjectServer::start();
    let args = migrate_args(&data, &master, &pg, &s3);
    migrate_and_kill_midway(&args, &s3.env());
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = veritrail_async(&args, &env).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains("resuming the migration"),
        "{}",
        run.stdout
    );
    // The whole tree moved, at least up to the state file's checkpoint.
    let moved_size: u64 = run
        .stdout
        .split_once("migrating migrate.test/log: ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", run.stdout));
    assert!(moved_size >= old_size, "{moved_size} < {old_size}");
    assert!(
        run.stdout.contains(&format!(
            "migrated migrate.test/log: {moved_size} entries, root and checkpoint of size"
        )) && run.stdout.contains("identical"),
        "{}",
        run.stdout
    );
    // A finished destination is a log: a second migration is refused.
    let again = veritrail_async(&args, &env).await;
    assert_ne!(again.code, 0);
    assert!(
        again.all().contains("already holds a log"),
        "{}",
        again.all()
    );

    // The new deployment: the key files and admin key carried over.
    let moved = dir.path().join("moved");
    std::fs::create_dir(&moved).unwrap();
    for f in ["log-ecdsa.pem", "log-ed25519.pem", "admin.key"] {
        std::fs::copy(data.join(f), moved.join(f)).unwrap();
    }
    let mut args = remote_flags(&pg, &s3);
    args.extend(
        [
            "--checkpoint-interval-ms",
            "50",
            "--master-key-file",
            s(&master),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::try_start_env(&moved, &args, &env)
        .unwrap_or_else(|e| panic!("the server did not start on the migrated log: {e}"));
    let url = server.url.clone();
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|l| l.contains(&format!("origin migrate.test/log, {moved_size} entries"))),
        "{:?}",
        server.stdout_lines
    );
    // Searches find the same events; the erased one stays erased.
    assert_eq!(
        search(&url, &auditor, "subject=patient-5&limit=1000").await,
        by_subject
    );
    assert_eq!(search(&url, &auditor, "app=clinic&limit=50").await, by_app);
    assert!(
        search(&url, &auditor, "subject=patient-3&limit=1000")
            .await
            .is_empty()
    );
    assert_eq!(event_at(&url, &auditor, erased_index).await.0, 410);
    let (status, opened) = event_at(&url, &auditor, indexes[5]).await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["event"]["resource"]["id"], "rec-5", "{opened}");
    // The hold still holds.
    let erase = json!({ "subject": "patient-4", "reason": "art. 17" });
    assert_eq!(post(&url, "/v1/erasure", &admin, erase).await, 409);
    // The old writer key appends; an old idempotency id answers its first index.
    let again = submit(&url, &writer, vec![event(7, Some("e-7".into()))]).await;
    assert_eq!(again["events"][0]["index"], indexes[7], "{again}");
    assert_eq!(again["events"][0]["duplicate"], true, "{again}");
    let more = fill(&url, &writer, 1100, 300).await;
    assert!(more[0] >= moved_size, "{more:?}");
    // The state file saved before the move: the new log extends the old.
    let run = verify(&url, &vkeys, &state).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains(&format!(
            "consistency     ok: size {old_size} -> {} extends the checkpoint seen before",
            saved_size(&state)
        )),
        "{}",
        run.stdout
    );
    assert!(saved_size(&state) > more[299], "{}", saved_size(&state));
    server.stop();
}

/// The tree size of the checkpoint a `verify --state` file holds.
fn saved_size(state: &Path) -> u64 {
    let saved: Value = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
    saved["size"].as_u64().unwrap()
}
