//! Backup and restore through the real binary: a backup taken under load
//! restores into a log with the same origin and keys whose new checkpoints
//! are consistent with every checkpoint published before the backup; a
//! restored log refuses to start when it can see a newer (or different)
//! checkpoint of its own.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    Ran, Server, create_key, event, get_json, hashes, http, log_verifiers, submit,
    verify_checkpoint, veritrail_async,
};
use serde_json::{Value, json};
use veritrail::merkle;

const WRITERS: usize = 3;

#[derive(Default)]
struct Seen {
    /// (when answered, checkpoint note) for every checkpoint a writer got.
    checkpoints: Vec<(Instant, String)>,
    /// (when answered, index, leaf hash) for every acknowledged event.
    acked: Vec<(Instant, u64, String)>,
}

async fn write_until(
    url: String,
    key: String,
    w: usize,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
) {
    let client = http();
    let mut j = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let events: Vec<Value> = (0..5)
            .map(|k| event(j * 5 + k, Some(format!("w{w}-{j}-{k}"))))
            .collect();
        let wait = if j.is_multiple_of(2) {
            "?wait=checkpoint"
        } else {
            ""
        };
        let resp = client
            .post(format!("{url}/v1/events{wait}"))
            .bearer_auth(&key)
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        let now = Instant::now();
        let mut s = seen.lock().unwrap();
        for e in v["events"].as_array().unwrap() {
            s.acked.push((
                now,
                e["index"].as_u64().unwrap(),
                e["leaf_hash"].as_str().unwrap().to_string(),
            ));
        }
        if let Some(cp) = v["checkpoint"].as_str() {
            s.checkpoints.push((now, cp.to_string()));
        }
        j += 1;
    }
}

async fn run(args: &[&str]) -> Ran {
    veritrail_async(args, &[]).await
}

/// Appends `n` events with a checkpoint and returns the checkpoint note.
async fn append(url: &str, key: &str, tag: &str, n: usize) -> String {
    let mut note = String::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|&i| event(i, Some(format!("{tag}-{i}"))))
            .collect();
        note = submit(url, key, events).await["checkpoint"]
            .as_str()
            .unwrap()
            .to_string();
    }
    note
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_and_continues_without_forking() {
    let dir = tempfile::tempdir().unwrap();
    let old_data = dir.path().join("old");
    let old = Server::start(&old_data, &["--checkpoint-interval-ms", "50"]);
    let admin = old.admin_key();
    let log = get_json(&format!("{}/v1/log", old.url)).await;
    let verifiers = log_verifiers(&log);
    let mut keys = Vec::new();
    for w in 0..WRITERS {
        keys.push(create_key(&old.url, &admin, &format!("app-{w}"), "writer").await);
    }

    // Writers keep appending while the backup is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for (w, key) in keys.iter().enumerate() {
        tasks.push(tokio::spawn(write_until(
            old.url.clone(),
            key.clone(),
            w,
            stop.clone(),
            seen.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let backup_dir = dir.path().join("backup");
    let backup_started = Instant::now();
    let out = run(&[
        "backup",
        "--url",
        &old.url,
        "--admin-key-file",
        s(&old_data.join("admin.key")),
        "--to",
        s(&backup_dir),
    ])
    .await;
    assert!(out.ok(), "backup: {}", out.stderr);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup_dir.join("manifest.json")).unwrap()).unwrap();
    let backup_size = manifest["tree_size"].as_u64().unwrap();
    let backup_cp = verify_checkpoint(manifest["checkpoint"].as_str().unwrap(), &verifiers);
    assert!(backup_cp.size <= backup_size);
    assert_eq!(manifest["private_keys_included"], false);
    assert!(!backup_dir.join("log-ecdsa.pem").exists());

    let (before, acked_before): (Vec<String>, Vec<(u64, String)>) = {
        let s = seen.lock().unwrap();
        (
            s.checkpoints
                .iter()
                .filter(|(t, _)| *t < backup_started)
                .map(|(_, n)| n.clone())
                .collect(),
            s.acked
                .iter()
                .filter(|(t, _, _)| *t < backup_started)
                .map(|(_, i, h)| (*i, h.clone()))
                .collect(),
        )
    };
    assert!(
        !before.is_empty() && !acked_before.is_empty(),
        "load ran before the backup"
    );
    // Every acknowledged event is in the log now; some were not yet in the
    // backup.
    let final_size = get_json(&format!("{}/healthz", old.url)).await["committed_size"]
        .as_u64()
        .unwrap();
    assert!(
        backup_size < final_size,
        "the backup ({backup_size}) was taken while writers were still appending ({final_size})"
    );

    // The old server goes on publishing past the backup.
    let later = append(&old.url, &keys[0], "later", 50).await;
    let later_cp = verify_checkpoint(&later, &verifiers);
    assert!(later_cp.size > backup_size);
    let later_file = dir.path().join("later.checkpoint");
    std::fs::write(&later_file, &later).unwrap();
    let early_file = dir.path().join("early.checkpoint");
    std::fs::write(&early_file, &before[0]).unwrap();

    // Restore refuses a target that holds something, then restores.
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::write(restored.join("x"), "x").unwrap();
    let out = run(&[
        "restore",
        "--from",
        s(&backup_dir),
        "--data",
        s(&restored),
        "--keys",
        s(&old_data),
    ])
    .await;
    assert!(!out.ok());
    assert!(out.stderr.contains("not empty"));
    std::fs::remove_file(restored.join("x")).unwrap();
    let out = run(&[
        "restore",
        "--from",
        s(&backup_dir),
        "--data",
        s(&restored),
        "--keys",
        s(&old_data),
    ])
    .await;
    assert!(out.ok(), "restore: {}", out.stderr);
    let out = run(&["fsck", s(&restored)]).await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    // A second copy for the refusal cases below, before the first grows.
    let restored2 = dir.path().join("restored2");
    let out = run(&[
        "restore",
        "--from",
        s(&backup_dir),
        "--data",
        s(&restored2),
        "--keys",
        s(&old_data),
    ])
    .await;
    assert!(out.ok(), "second restore: {}", out.stderr);

    // The restored log: same origin and keys, every event acknowledged
    // before the backup at its index, and it continues.
    // The master key is kept apart from the data (and from backups).
    let master = format!("{}.master.key", old_data.display());
    let new = Server::start(
        &restored,
        &[
            "--checkpoint-interval-ms",
            "50",
            "--master-key-file",
            &master,
        ],
    );
    let new_log = get_json(&format!("{}/v1/log", new.url)).await;
    assert_eq!(new_log["origin"], log["origin"]);
    assert_eq!(new_log["verifier_keys"], log["verifier_keys"]);
    // It signs its first checkpoint over the whole restored tree.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cp = get_json(&format!("{}/v1/checkpoint", new.url)).await;
        let size = cp["tree_size"].as_u64().unwrap();
        assert!(size == backup_cp.size || size == backup_size, "{cp}");
        if size == backup_size {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint over the restored tree"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (index, leaf) in &acked_before {
        let p = get_json(&format!(
            "{}/v1/proof/inclusion?index={index}&tree_size={backup_size}",
            new.url
        ))
        .await;
        assert_eq!(p["leaf_hash"].as_str().unwrap(), leaf, "leaf {index}");
    }
    let new_admin = std::fs::read_to_string(restored.join("admin.key")).unwrap();
    let writer = create_key(&new.url, new_admin.trim(), "app-new", "writer").await;
    // The restored log recorded its new admin key at its first start, then
    // the writer key: its 20 events come after.
    let restored_size = get_json(&format!("{}/healthz", new.url)).await["committed_size"]
        .as_u64()
        .unwrap();
    assert_eq!(restored_size, backup_size + 2);
    let next = append(&new.url, &writer, "after-restore", 20).await;
    let next_cp = verify_checkpoint(&next, &verifiers);
    assert_eq!(next_cp.size, restored_size + 20);
    // Consistent with every checkpoint published before the backup.
    let mut earlier: Vec<veritrail::note::Checkpoint> = before
        .iter()
        .map(|n| verify_checkpoint(n, &verifiers))
        .collect();
    earlier.push(backup_cp.clone());
    for cp in earlier.iter().filter(|c| c.size > 0) {
        let proof = get_json(&format!(
            "{}/v1/proof/consistency?first={}&second={}",
            new.url, cp.size, next_cp.size
        ))
        .await;
        merkle::verify_consistency(
            cp.size,
            next_cp.size,
            &cp.root,
            &next_cp.root,
            &hashes(&proof["consistency"]),
        )
        .unwrap_or_else(|e| panic!("checkpoint {} is not consistent: {e}", cp.size));
    }
    // A backup carries no search index: the restored log builds it from
    // the events on its first start, so an event from before the backup is
    // found by its subject.
    let auditor = create_key(&new.url, new_admin.trim(), "auditor", "auditor").await;
    let client = http();
    let get = |url: String| {
        let (client, auditor) = (client.clone(), auditor.clone());
        async move {
            let resp = client.get(url).bearer_auth(auditor).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.unwrap()
        }
    };
    for (index, _) in [acked_before.first(), acked_before.last()]
        .into_iter()
        .flatten()
    {
        let ev = get(format!("{}/v1/events/{index}", new.url)).await;
        let subject = ev["event"]["subject"].as_str().unwrap().to_string();
        let mut next = format!("{}/v1/events?subject={subject}&limit=1000", new.url);
        let found = loop {
            let page = get(next).await;
            let indexes: Vec<u64> = page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["index"].as_u64().unwrap())
                .collect();
            if indexes.contains(index) {
                break true;
            }
            match page["next_cursor"].as_str() {
                Some(c) => {
                    next = format!(
                        "{}/v1/events?subject={subject}&limit=1000&cursor={c}",
                        new.url
                    )
                }
                None => break false,
            }
        };
        assert!(
            found,
            "restored log: search for {subject} misses leaf {index}"
        );
    }
    // The restored log has diverged from what the old one published
    // later: grow it past that size, so the two disagree at that size.
    let grow = (later_cp.size - next_cp.size + 5) as usize;
    append(&new.url, &writer, "diverge", grow).await;
    assert!(new.stop().success());

    // A restored log that sees a newer checkpoint of its own refuses to start.
    let err = Server::try_start(
        &restored2,
        &[
            "--known-checkpoint",
            s(&later_file),
            "--master-key-file",
            &master,
        ],
    )
    .err()
    .expect("a backup older than published history must not start");
    assert!(
        err.contains("older than the log's published history"),
        "{err}"
    );
    let err = Server::try_start(
        &restored2,
        &["--known-checkpoint", &old.url, "--master-key-file", &master],
    )
    .err()
    .expect("the old server's checkpoint is newer too");
    assert!(
        err.contains("older than the log's published history"),
        "{err}"
    );
    // One that grew past it with other entries has forked: refused too.
    let err = Server::try_start(
        &restored,
        &[
            "--known-checkpoint",
            s(&later_file),
            "--master-key-file",
            &master,
        ],
    )
    .err()
    .expect("a forked log must not start");
    assert!(err.contains("does not match"), "{err}");
    // A checkpoint from before the backup is fine.
    let ok = Server::start(
        &restored2,
        &[
            "--known-checkpoint",
            s(&early_file),
            "--master-key-file",
            &master,
        ],
    );
    assert!(
        ok.stdout_lines
            .iter()
            .any(|l| l.contains("contains the published checkpoint of size")),
        "{:?}",
        ok.stdout_lines
    );
    assert!(ok.stop().success());
    // An unreadable source fails closed.
    let err = Server::try_start(
        &restored2,
        &["--known-checkpoint", s(&dir.path().join("missing"))],
    )
    .err()
    .expect("an unreadable known checkpoint must stop the start");
    assert!(err.contains("couldn't read the known checkpoint"), "{err}");
    drop(old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_needs_an_admin_key_and_an_empty_target() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let writer = create_key(&server.url, &server.admin_key(), "w", "writer").await;
    let out = veritrail_async(
        &[
            "backup",
            "--url",
            &server.url,
            "--to",
            s(&dir.path().join("b1")),
        ],
        &[("VERITRAIL_ADMIN_KEY", &writer)],
    )
    .await;
    assert!(!out.ok());
    assert!(out.stderr.contains("403"));
    let full = dir.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("x"), "x").unwrap();
    let out = run(&[
        "backup",
        "--url",
        &server.url,
        "--admin-key-file",
        s(&data.join("admin.key")),
        "--to",
        s(&full),
    ])
    .await;
    assert!(!out.ok());
    assert!(out.stderr.contains("not empty"));
}
