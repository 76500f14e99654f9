//! Erasure and backups, through the real binary: a backup carries no key,
//! so restoring it with the live log's current key store (proved with the
//! master key before restore says ok; another master key restores nothing)
//! brings back every event not erased since and none erased since, whether
//! a subject or one event of a busy day was erased; a copy of the key store
//! taken before the erasure, the copy the operations guide warns about,
//! opens them all again; and a backup taken while an erasure runs is one
//! consistent point.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Ran, Server, call, create_key_for_app, event, submit, veritrail_async};
use serde_json::{Value, json};
use veritrail::crypto::MasterKey;
use veritrail::note::keys::{ECDSA_KEY_FILE, ED25519_KEY_FILE};
use veritrail::store::sled::SledStore;
use veritrail::vault::{KEYRING_FILE, KeyringHome, Vault};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Submits `n` events from `from`, every third without a subject (one
/// busy app-day), each with `pad` bytes of context; returns index →
/// subject.
async fn fill(
    url: &str,
    key: &str,
    from: usize,
    n: usize,
    pad: usize,
) -> BTreeMap<u64, Option<String>> {
    let mut subjects = BTreeMap::new();
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|&i| {
                let mut e = event(i, Some(format!("e-{i}")));
                if i % 3 == 0 {
                    e.as_object_mut().unwrap().remove("subject");
                }
                if pad > 0 {
                    e["context"]["note"] = json!("x".repeat(pad));
                }
                e
            })
            .collect();
        let answer = submit(url, key, events.clone()).await;
        for (e, r) in events.iter().zip(answer["events"].as_array().unwrap()) {
            subjects.insert(
                r["index"].as_u64().unwrap(),
                e["subject"].as_str().map(str::to_string),
            );
        }
    }
    subjects
}

async fn backup(url: &str, data: &Path, to: &Path) -> u64 {
    let out = veritrail_async(
        &[
            "backup",
            "--url",
            url,
            "--admin-key-file",
            s(&data.join("admin.key")),
            "--to",
            s(to),
        ],
        &[],
    )
    .await;
    assert!(out.ok(), "backup: {}", out.stderr);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(to.join("manifest.json")).unwrap()).unwrap();
    manifest["tree_size"].as_u64().unwrap()
}

async fn erase(url: &str, admin: &str, body: Value) -> Value {
    let (status, out) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/erasure"),
        admin,
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    out
}

/// Runs `veritrail restore` of `backup` into `to` with the key store and
/// signing keys in `keys`, and `master` when given (else the master key
/// file beside `keys`).
async fn run_restore(backup: &Path, keys: &Path, to: &Path, master: Option<&Path>) -> Ran {
    let mut args = vec![
        "restore",
        "--from",
        s(backup),
        "--keys",
        s(keys),
        "--data",
        s(to),
    ];
    if let Some(m) = master {
        args.extend(["--master-key-file", s(m)]);
    }
    veritrail_async(&args, &[]).await
}

/// A directory holding the log's signing keys from `data`, as `restore
/// --keys` wants them, without a key store.
fn signing_keys_only(data: &Path, dir: &Path) {
    std::fs::create_dir(dir).unwrap();
    for pem in [ECDSA_KEY_FILE, ED25519_KEY_FILE] {
        std::fs::copy(data.join(pem), dir.join(pem)).unwrap();
    }
}

/// Restores `backup` into `to` with the key store of the running log in
/// `live`; returns restore's output.
async fn restore(backup: &Path, live: &Path, to: &Path) -> String {
    let out = run_restore(backup, live, to, None).await;
    assert!(out.ok(), "restore: {}", out.all());
    assert!(out.stdout.contains("with the master key"), "{}", out.stdout);
    out.stdout
}

/// A running log with events of [`fill`].
struct Log {
    server: Server,
    data: PathBuf,
    master: PathBuf,
    admin: String,
    writer: String,
    /// index → subject.
    subjects: BTreeMap<u64, Option<String>>,
}

/// A new log with `n` events of [`fill`], each with `pad` bytes of context.
async fn start_log(dir: &Path, n: usize, pad: usize) -> Log {
    let data = dir.join("log");
    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let admin = server.admin_key();
    let writer = create_key_for_app(&server.url, &admin, "clinic", "writer", "clinic").await;
    let subjects = fill(&server.url, &writer, 0, n, pad).await;
    Log {
        server,
        data,
        master: dir.join("log.master.key"),
        admin,
        writer,
        subjects,
    }
}

/// Which events below `size` of the stopped log in `data` open.
fn readable(data: &Path, master: &Path, size: u64) -> Vec<bool> {
    let master = MasterKey::parse(&std::fs::read_to_string(master).unwrap()).unwrap();
    let store = SledStore::open(&data.join("db")).unwrap();
    let vault = Vault::open(
        std::sync::Arc::new(store),
        &master,
        KeyringHome::File(data.join(KEYRING_FILE)),
    )
    .unwrap();
    (0..size)
        .map(|i| vault.event(i).unwrap().is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_backup_restores_with_the_live_keys_and_erasures_since_stay_erased() {
    let dir = tempfile::tempdir().unwrap();
    let Log {
        server,
        data,
        master,
        admin,
        writer,
        subjects,
    } = start_log(dir.path(), 600, 0).await;
    let url = server.url.clone();
    let backup_dir = dir.path().join("backup");
    let size = backup(&url, &data, &backup_dir).await;
    assert!(size >= 600);
    // A copy of the key store as it is before the erasures, beside the
    // log's signing keys: what docs/operations.md says defeats an erasure.
    let stale = dir.path().join("stale-keys");
    signing_keys_only(&data, &stale);
    let master_key = MasterKey::parse(&std::fs::read_to_string(&master).unwrap()).unwrap();
    veritrail::vault::copy_key_store(
        &data.join(veritrail::vault::KEYS_DIR),
        &stale.join(veritrail::vault::KEYS_DIR),
        &master_key,
    )
    .unwrap();

    // After the backup: a subject and one event of the busy day go.
    let out = erase(
        &url,
        &admin,
        json!({ "subject": "patient-3", "reason": "art. 17" }),
    )
    .await;
    assert_eq!(out["keys_destroyed"], 1, "{out}");
    // A subject-less event of the day, among hundreds.
    let one = *subjects
        .iter()
        .find(|(i, s)| **i >= 300 && s.is_none())
        .unwrap()
        .0;
    let out = erase(
        &url,
        &admin,
        json!({ "indexes": [one], "reason": "art. 17" }),
    )
    .await;
    assert_eq!(out["keys_replaced"], 0, "nothing re-sealed: {out}");
    fill(&url, &writer, 600, 100, 0).await;

    // Without this log's master key nothing is proved, and nothing restored.
    let other_master = dir.path().join("other.master.key");
    std::fs::write(&other_master, MasterKey::generate().unwrap().to_hex()).unwrap();
    let refused = dir.path().join("refused");
    let out = run_restore(&backup_dir, &data, &refused, Some(&other_master)).await;
    assert!(!out.ok(), "restored with another master key: {}", out.all());
    assert!(
        !refused.exists(),
        "a refused restore left {}",
        refused.display()
    );

    // Restored while the log runs, with its current key store.
    let restored = dir.path().join("restored");
    let said = restore(&backup_dir, &data, &restored).await;
    let erased_since = subjects
        .iter()
        .filter(|(i, s)| **i == one || s.as_deref() == Some("patient-3"))
        .count();
    assert!(
        said.contains(&format!("{} erased since", erased_since)),
        "{said}"
    );
    let opens = readable(&restored, &master, size);
    for (i, subject) in &subjects {
        let erased = *i == one || subject.as_deref() == Some("patient-3");
        assert_eq!(opens[*i as usize], !erased, "event {i} ({subject:?})");
    }
    // The backup alone opens nothing; with the stale copy of the key store
    // every erased event opens again, as the operations guide warns.
    let with_stale = dir.path().join("with-stale");
    let out = run_restore(&backup_dir, &stale, &with_stale, Some(&master)).await;
    assert!(out.ok(), "restore: {}", out.all());
    assert!(
        out.stdout.contains("store, 0 erased since"),
        "{}",
        out.stdout
    );
    assert!(readable(&with_stale, &master, size).iter().all(|o| *o));
    let bare = dir.path().join("bare");
    signing_keys_only(&data, &bare);
    let out = run_restore(
        &backup_dir,
        &bare,
        &dir.path().join("bare-restored"),
        Some(&master),
    )
    .await;
    assert!(!out.ok(), "restored without a key store: {}", out.all());

    // The restored log starts with the master key and answers 410 for
    // the events erased since the backup.
    let restored_server = Server::start(
        &restored,
        &[
            "--checkpoint-interval-ms",
            "50",
            "--master-key-file",
            s(&master),
        ],
    );
    let new_admin = std::fs::read_to_string(restored.join("admin.key")).unwrap();
    let auditor =
        common::create_key(&restored_server.url, new_admin.trim(), "aud", "auditor").await;
    let kept_subject = *subjects
        .iter()
        .find(|(_, s)| s.as_deref() == Some("patient-4"))
        .unwrap()
        .0;
    let erased_subject = *subjects
        .iter()
        .find(|(_, s)| s.as_deref() == Some("patient-3"))
        .unwrap()
        .0;
    for (i, want) in [
        (one, 410),
        (erased_subject, 410),
        (kept_subject, 200),
        (one + 3, 200),
    ] {
        let (status, body) = call(
            reqwest::Method::GET,
            &format!("{}/v1/events/{i}", restored_server.url),
            &auditor,
            None,
        )
        .await;
        assert_eq!(status, want, "event {i}: {body}");
    }
    restored_server.stop();
    server.stop();
}

/// The server's line once a backup's last piece was handed to the client.
const STREAMED: &str = "backup streamed";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_a_subject_is_erased_is_one_consistent_point() {
    let dir = tempfile::tempdir().unwrap();
    // About 20 MB of events: far more than the sockets and the pieces in
    // flight hold, so the backup is still being written while the client
    // pauses.
    let Log {
        server,
        data,
        master,
        admin,
        writer,
        subjects,
    } = start_log(dir.path(), 3000, 6500).await;
    let url = server.url.clone();
    let size = common::committed_size(&url).await;

    // The backup starts; the client takes its first piece and pauses.
    let mut resp = common::start_backup(&url, &admin).await;
    let mut snapshot = resp.chunk().await.unwrap().unwrap().to_vec();
    // Meanwhile two subjects are erased, their cleanup deletes their bodies
    // and postings, and more events arrive.
    for subject in ["patient-5", "patient-8"] {
        let out = erase(
            &url,
            &admin,
            json!({ "subject": subject, "reason": "art. 17" }),
        )
        .await;
        assert_eq!(out["keys_destroyed"], 1, "{out}");
    }
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while common::get_json(&format!("{url}/healthz")).await["erasure_cleanups_pending"] != 0 {
        assert!(
            std::time::Instant::now() < give_up,
            "the cleanup never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    fill(&url, &writer, 3000, 100, 0).await;
    assert!(
        !server.output().iter().any(|l| l.contains(STREAMED)),
        "the backup ended before the erasures: nothing was tested"
    );
    while let Some(piece) = resp.chunk().await.unwrap() {
        snapshot.extend_from_slice(&piece);
    }
    let backup_dir = dir.path().join("backup");
    std::fs::create_dir(&backup_dir).unwrap();
    std::fs::write(backup_dir.join("snapshot.vtb"), &snapshot).unwrap();

    // The backup's tree is the log as it was when it started: no erasure
    // record, no later event. Its events open as today's key store says:
    // the two subjects' not at all (whether the backup read their erasure's
    // tombstones, which records are copied as they are when read, or
    // restore records them as erased since), every other one whole.
    let restored = dir.path().join("restored");
    let said = restore(&backup_dir, &data, &restored).await;
    assert!(said.contains(&format!(": {size} entries,")), "{said}");
    let erased: Vec<u64> = subjects
        .iter()
        .filter(|(_, s)| matches!(s.as_deref(), Some("patient-5" | "patient-8")))
        .map(|(i, _)| *i)
        .collect();
    assert!(
        said.contains(&format!("events: {} open", size as usize - erased.len())),
        "{said}"
    );
    let opens = readable(&restored, &master, size);
    for (i, subject) in &subjects {
        assert_eq!(
            opens[*i as usize],
            !erased.contains(i),
            "event {i} ({subject:?})"
        );
    }
    let out = veritrail_async(
        &["fsck", s(&restored), "--master-key-file", s(&master)],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stdout);
    server.stop();
}

/// The admin actions `key` may list, in one page.
async fn admin_actions(url: &str, key: &str) -> Value {
    let (status, page) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/admin/actions?limit=1000"),
        key,
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page
}

/// A restore makes a new admin key while no server runs: the restored
/// log's first start records its creation (`admin.key.create` by the log,
/// naming its id, name and role, never its secret) in the tree before it
/// takes a request, and a later start records nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_logs_new_admin_key_is_recorded_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let Log {
        server,
        data,
        master,
        ..
    } = start_log(dir.path(), 30, 0).await;
    let backup_dir = dir.path().join("backup");
    let size = backup(&server.url, &data, &backup_dir).await;
    let restored = dir.path().join("restored");
    restore(&backup_dir, &data, &restored).await;
    let token = std::fs::read_to_string(restored.join("admin.key")).unwrap();
    let token = token.trim();
    let (id, secret) = {
        let mut parts = token.split('_').skip(1);
        (parts.next().unwrap(), parts.next().unwrap())
    };
    let started = || {
        Server::start(
            &restored,
            &[
                "--master-key-file",
                s(&master),
                "--checkpoint-interval-ms",
                "50",
            ],
        )
    };
    let restored_server = started();
    let url = restored_server.url.clone();
    let page = admin_actions(&url, token).await;
    assert!(!page.to_string().contains(secret), "no secret: {page}");
    let created: Vec<&Value> = page["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "admin.key.create" && a["resource"]["id"] == id)
        .collect();
    assert_eq!(created.len(), 1, "{page}");
    let action = created[0];
    assert_eq!(action["actor"]["type"], "service", "{action}");
    assert_eq!(action["details"]["key"]["id"], id, "{action}");
    assert_eq!(
        action["details"]["key"]["name"], "admin-restored",
        "{action}"
    );
    assert_eq!(action["details"]["key"]["role"], "admin", "{action}");
    // The record is a leaf of the restored tree, after the backup's.
    let index = action["index"].as_u64().unwrap();
    assert!(index >= size, "{index} < {size}");
    let (status, ev) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events/{index}"),
        token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{ev}");
    assert!(ev.to_string().contains("admin.key.create"), "{ev}");
    let leaf_hash = action["leaf_hash"].as_str().unwrap();
    assert!(ev.to_string().contains(leaf_hash), "{ev}");
    // A restart records nothing more.
    let restored_server = restored_server.restart();
    let page = admin_actions(&restored_server.url, token).await;
    let again = page["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "admin.key.create" && a["resource"]["id"] == id)
        .count();
    assert_eq!(again, 1, "{page}");
    drop(server);
}
