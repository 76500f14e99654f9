//! Encryption at rest, through the real binary: no event content, subject
//! or actor reaches the data directory in plaintext, and a log refuses to
//! start without its own master key.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::{Server, create_key_for_app, http, submit};
use serde_json::{Value, json};

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The files of `dir` that contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .collect()
}

fn marked_event(n: usize) -> Value {
    json!({
        "actor": { "id": format!("ACTOR-MARKER-{n}"), "type": "user" },
        "action": "record.read",
        "resource": { "type": "patient_record", "id": format!("rec-{n}") },
        "subject": format!("SUBJECT-MARKER-{n}"),
        "purpose": "treatment",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00Z",
        "context": { "note": format!("CONTEXT-MARKER-{n}") },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_content_reaches_the_disk_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let key_path = dir.path().join("log.master.key");
    assert!(
        server
            .stdout_lines
            .iter()
            .any(|l| l.contains("created the master key") && l.contains("log.master.key")),
        "the server says where the new master key is: {:?}",
        server.stdout_lines
    );
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let writer = create_key_for_app(
        &server.url,
        &server.admin_key(),
        "w",
        "writer",
        "appname-control",
    )
    .await;
    let mut events: Vec<Value> = (0..40).map(marked_event).collect();
    events.push(json!({
        "actor": { "id": "ACTOR-MARKER-nosubject", "type": "service" },
        "action": "export.run",
        "resource": { "type": "batch", "id": "b-1" },
        "purpose": "billing",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00Z",
        "context": { "note": "CONTEXT-MARKER-nosubject" },
    }));
    let receipt = submit(&server.url, &writer, events).await;
    let third = receipt["events"][3]["index"].as_u64().unwrap();
    server.stop();

    // The scan does find what is public (the app id is in every leaf) ...
    assert!(!files_containing(&data, "appname-control").is_empty());
    // ... and none of what is private.
    for marker in [
        "SUBJECT-MARKER",
        "ACTOR-MARKER",
        "CONTEXT-MARKER",
        "patient_record",
        "treatment",
    ] {
        let found = files_containing(&data, marker);
        assert!(found.is_empty(), "{marker} found in plaintext in {found:?}");
    }
    let master = std::fs::read_to_string(&key_path).unwrap();
    for f in files_under(&data) {
        let bytes = std::fs::read(&f).unwrap();
        let raw = hex::decode(master.trim()).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == raw.as_slice()),
            "the master key is stored in {f:?}"
        );
    }

    // The log refuses to start without its key, and with another key.
    let moved = dir.path().join("elsewhere.key");
    std::fs::rename(&key_path, &moved).unwrap();
    let err = Server::try_start(&data, &[])
        .err()
        .expect("starts without its key");
    assert!(err.contains("master key was not found"), "{err}");
    assert!(
        !key_path.exists(),
        "no new key is created for an existing log"
    );
    let other = "11".repeat(32);
    let err = try_start_with_env(&data, &other)
        .err()
        .expect("starts with a wrong key");
    assert!(err.contains("not this log's"), "{err}");
    // With the right key (from a file given by flag) it serves the events again.
    let server = Server::start(&data, &["--master-key-file", moved.to_str().unwrap()]);
    let auditor = common::create_key(&server.url, &server.admin_key(), "aud", "auditor").await;
    let resp = http()
        .get(format!("{}/v1/events/{third}", server.url))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["event"]["subject"], "SUBJECT-MARKER-3");
    server.stop();
    let server =
        try_start_with_env(&data, master.trim()).expect("starts with the key in the environment");
    server.stop();
}

fn try_start_with_env(data: &Path, key: &str) -> Result<Server, String> {
    // SAFETY of the test: the variable is only read by the child process.
    common::Server::try_start_env(data, &[], &[("VERITRAIL_MASTER_KEY", key)])
}
