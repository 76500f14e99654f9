//! Erasure, legal holds and retention through the real binary: erased
//! events answer 410 with when and why, search forgets the subject, the
//! keys that opened them are gone from the data directory, and every leaf,
//! tile, checkpoint and proof is unchanged and still verifies.

mod common;

use std::path::Path;

use common::services::{ObjectServer, Postgres, remote_flags};
use common::{
    Server, call, committed_size, create_key, create_key_for_app, files_containing, get_bytes,
    get_json, hashes, log_verifiers, submit, verify_checkpoint,
};
use serde_json::{Value, json};
use veritrail::crypto::MasterKey;
use veritrail::event::{LeafRecord, commitment};
use veritrail::merkle;
use veritrail::store::RecordSpace;
use veritrail::store::postgres::{BucketConfig, PgStore};
use veritrail::store::sled::SledStore;
use veritrail::vault::{KEYRING_FILE, KEYS_DIR, KeyringHome, Vault};

fn ev(subject: Option<&str>, actor: &str, note: &str) -> Value {
    let mut e = json!({
        "actor": { "id": actor, "type": "user" },
        "action": "record.read",
        "resource": { "type": "patient_record", "id": "r-1" },
        "purpose": "treatment",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00Z",
        "context": { "note": note },
    });
    if let Some(s) = subject {
        e["subject"] = json!(s);
    }
    e
}

/// Every tile and bundle of a tree of `size`, as served.
async fn tiles_at(url: &str, size: u64) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for t in veritrail::tiles::tiles_for_size(size) {
        out.push((
            t.hash_path(),
            get_bytes(&format!("{url}/{}", t.hash_path())).await,
        ));
        if t.level == 0 {
            out.push((
                t.entries_path(),
                get_bytes(&format!("{url}/{}", t.entries_path())).await,
            ));
        }
    }
    out
}

/// Opens the stopped log's database with its master key.
fn open_vault(data: &Path, key_file: &Path) -> Vault {
    let master = MasterKey::parse(&std::fs::read_to_string(key_file).unwrap()).unwrap();
    let store = SledStore::open(&data.join("db")).unwrap();
    Vault::open(
        std::sync::Arc::new(store),
        &master,
        KeyringHome::File(data.join(KEYRING_FILE)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_shreds_the_subject_and_leaves_the_tree_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let key_file = dir.path().join("log.master.key");
    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
    let auditor = create_key(&url, &admin, "jane", "auditor").await;
    // Event `i` below is leaf `first + i`, after the log's own records.
    let first = committed_size(&url).await;
    submit(
        &url,
        &writer,
        vec![
            ev(Some("ERASE-ME-SUBJ"), "ERASE-ME-ACTOR", "ERASE-ME-NOTE"), // 0
            ev(Some("KEEP-SUBJ"), "dr-keep", "keep note"),                // 1
            ev(Some("ERASE-ME-SUBJ"), "ERASE-ME-ACTOR", "ERASE-ME-NOTE"), // 2
            ev(None, "batch-job", "no subject"),                          // 3
        ],
    )
    .await;
    // An auditor reads event 0: that read is logged under the subject too.
    let (status, _) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events/{first}"),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let pseudonym =
        veritrail::crypto::MasterKey::parse(&std::fs::read_to_string(&key_file).unwrap())
            .unwrap()
            .index_key()
            .subject_pseudonym("ERASE-ME-SUBJ");

    // A legal hold blocks the erasure.
    let (status, hold) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/admin/holds"),
        &admin,
        Some(json!({ "subject": "ERASE-ME-SUBJ", "reason": "case 2026-17" })),
    )
    .await;
    assert_eq!(status, 201, "{hold}");
    assert_eq!(hold["subject_pseudonym"], json!(pseudonym));
    // Shown to the admin as typed; stored only sealed to the subject.
    assert_eq!(hold["subject"], "ERASE-ME-SUBJ", "{hold}");
    let erase = json!({ "subject": "ERASE-ME-SUBJ", "reason": "GDPR art. 17 request #88" });
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/erasure"),
        &admin,
        Some(erase.clone()),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events/{first}"),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 200, "nothing was erased");
    let hold_id = hold["id"].as_str().unwrap();
    let (status, _) = call(
        reqwest::Method::DELETE,
        &format!("{url}/v1/admin/holds/{hold_id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);

    // The state of the tree before the erasure.
    let before = get_json(&format!("{url}/v1/checkpoint")).await;
    let size = before["tree_size"].as_u64().unwrap();
    let tiles_before = tiles_at(&url, size).await;
    let mut proofs_before = Vec::new();
    for i in 0..size {
        proofs_before.push(
            get_json(&format!(
                "{url}/v1/proof/inclusion?index={i}&tree_size={size}"
            ))
            .await,
        );
    }

    // Stop once to note the subject's sealed bodies and the key store's
    // root as stored: a thief's old copies.
    server.stop();
    let stale: Vec<(u64, Vec<u8>)> = {
        let vault = open_vault(&data, &key_file);
        [first, first + 2]
            .iter()
            .map(|i| {
                let record = vault
                    .store()
                    .record(RecordSpace::Sealed, &i.to_be_bytes())
                    .unwrap()
                    .expect("a sealed body");
                assert!(vault.can_open_sealed(*i, &record).unwrap());
                (*i, record)
            })
            .collect()
    };
    let root_before = std::fs::read(data.join(KEYS_DIR).join("root")).unwrap();
    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let url = server.url.clone();

    let (status, out) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/erasure"),
        &admin,
        Some(erase),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    // The subject's key is gone now; its events' bodies go in the
    // background, and /healthz counts the erasures still being cleaned up.
    assert_eq!(out["erased"], json!([]), "{out}");
    assert_eq!(out["cleanup"], "pending", "{out}");
    assert_eq!(out["keys_destroyed"], 1);
    let erased = [first, first + 2];
    let mut health = healthz(&url).await;
    for _ in 0..200 {
        if health["erasure_cleanups_pending"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        health = healthz(&url).await;
    }
    assert_eq!(health["erasure_cleanups_pending"], 0, "{health}");

    // Reads answer 410 with when and why; search forgets the subject.
    let (status, gone) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events/{}", first + 2),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 410, "{gone}");
    assert_eq!(gone["erased"]["reason"], "GDPR art. 17 request #88");
    assert_eq!(gone["erased"]["cause"], "erasure");
    assert!(
        gone["erased"]["erased_at"]
            .as_str()
            .unwrap()
            .starts_with("20")
    );
    let (_, all) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events?limit=1000"),
        &auditor,
        None,
    )
    .await;
    assert!(!all.to_string().contains("ERASE-ME"), "{all}");
    let (status, kept) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events/{}", first + 1),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(kept["event"]["subject"], "KEEP-SUBJ");

    // The erasure is in the log, naming the subject only by pseudonym.
    let (_, erasures) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events?action=admin.erasure"),
        &auditor,
        None,
    )
    .await;
    let record = &erasures["events"][0];
    assert_eq!(record["event"]["resource"]["id"], json!(pseudonym));
    assert_eq!(
        record["event"]["context"]["details"]["reason"],
        "GDPR art. 17 request #88"
    );
    assert!(!record.to_string().contains("ERASE-ME-SUBJ"));

    // Every tile, leaf and proof of the old size is unchanged, and the new
    // checkpoint is consistent with the old one.
    assert_eq!(tiles_at(&url, size).await, tiles_before);
    for (i, p) in proofs_before.iter().enumerate() {
        let now = get_json(&format!(
            "{url}/v1/proof/inclusion?index={i}&tree_size={size}"
        ))
        .await;
        assert_eq!(&now, p);
    }
    let verifiers = log_verifiers(&get_json(&format!("{url}/v1/log")).await);
    let old_cp = verify_checkpoint(before["note"].as_str().unwrap(), &verifiers);
    for p in &proofs_before {
        let leaf = veritrail::merkle::Hash::from_base64(p["leaf_hash"].as_str().unwrap()).unwrap();
        let i = p["leaf_index"].as_u64().unwrap();
        merkle::verify_inclusion(i, size, &leaf, &hashes(&p["audit_path"]), &old_cp.root).unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let after = get_json(&format!("{url}/v1/checkpoint")).await;
    let new_cp = verify_checkpoint(after["note"].as_str().unwrap(), &verifiers);
    let c = get_json(&format!(
        "{url}/v1/proof/consistency?first={size}&second={}",
        new_cp.size
    ))
    .await;
    merkle::verify_consistency(
        size,
        new_cp.size,
        &old_cp.root,
        &new_cp.root,
        &hashes(&c["consistency"]),
    )
    .unwrap();
    server.stop();

    // On disk: no marker in plaintext, and with the master key the erased
    // events do not open — their key is gone.
    for marker in ["ERASE-ME-SUBJ", "ERASE-ME-ACTOR", "ERASE-ME-NOTE"] {
        assert!(
            files_containing(&data, marker.as_bytes()).is_empty(),
            "{marker}"
        );
    }
    {
        let vault = open_vault(&data, &key_file);
        for i in &erased {
            assert_eq!(vault.event(*i).unwrap(), None);
            assert_eq!(
                vault
                    .store()
                    .record(RecordSpace::Sealed, &i.to_be_bytes())
                    .unwrap(),
                None
            );
        }
        assert!(vault.event(first + 1).unwrap().is_some());
        // Old copies of the erased bodies open with no key that exists,
        // and the old key store root is gone from the data directory.
        for (i, record) in &stale {
            assert!(!vault.can_open_sealed(*i, record).unwrap(), "{i}");
        }
    }
    assert!(
        files_containing(&data, &root_before).is_empty(),
        "the old key store root is gone from the data directory"
    );

    // Search no longer finds the subject or its actor.
    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let url = server.url.clone();
    let (status, found) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events?subject=ERASE-ME-SUBJ"),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(found["events"].as_array().unwrap().len(), 0, "{found}");
    let (_, found) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events?actor=ERASE-ME-ACTOR"),
        &auditor,
        None,
    )
    .await;
    assert_eq!(found["events"].as_array().unwrap().len(), 0, "{found}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_expires_events_except_held_ones_and_logs_each_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let clinic = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
    let lab = create_key_for_app(&url, &admin, "lab", "writer", "lab").await;
    let auditor = create_key(&url, &admin, "jane", "auditor").await;
    // Event `i` below is leaf `first + i`, after the log's own records.
    let first = committed_size(&url).await;
    submit(
        &url,
        &clinic,
        vec![
            ev(None, "job", "clinic-0"),
            ev(Some("held-p"), "dr", "clinic-1"),
            ev(Some("p2"), "dr", "clinic-2"),
        ],
    )
    .await; // 0..3
    submit(
        &url,
        &lab,
        vec![ev(None, "job", "lab-3"), ev(Some("p2"), "dr", "lab-4")],
    )
    .await; // 3..5

    for (body, status) in [
        (json!({ "app": "clinic", "keep_days": 0 }), 201),
        (json!({ "app": "lab", "keep_days": 0 }), 201),
        (json!({ "app": "lab", "keep_days": 365 }), 201),
        (json!({ "keep_days": -1 }), 400),
        (json!({ "app": "Not An App", "keep_days": 1 }), 400),
    ] {
        let (s, b) = call(
            reqwest::Method::POST,
            &format!("{url}/v1/admin/retention"),
            &admin,
            Some(body),
        )
        .await;
        assert_eq!(s, status, "{b}");
    }
    for body in [
        json!({ "app": "lab", "reason": "litigation hold L-3" }),
        json!({ "subject": "held-p", "reason": "subject access dispute" }),
    ] {
        let (s, b) = call(
            reqwest::Method::POST,
            &format!("{url}/v1/admin/holds"),
            &admin,
            Some(body),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    // keep_days 0 expires what the log received before now.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (status, run) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/admin/retention/run"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["erased"], 2, "clinic-0 and clinic-2: {run}");
    assert_eq!(
        run["held"], 3,
        "clinic-1 (subject hold) and the two lab events: {run}"
    );

    for (i, want) in [(0, 410), (1, 200), (2, 410), (3, 200), (4, 200)] {
        let (s, body) = call(
            reqwest::Method::GET,
            &format!("{url}/v1/events/{}", first + i),
            &auditor,
            None,
        )
        .await;
        assert_eq!(s, want, "event {i}: {body}");
        if s == 410 {
            assert_eq!(body["erased"]["cause"], "retention");
        }
    }
    // The run is in the log.
    let (_, runs) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events?action=retention.run"),
        &auditor,
        None,
    )
    .await;
    assert_eq!(
        runs["events"][0]["event"]["context"]["details"]["expired"],
        2
    );
    // Erasure of a held app is refused too.
    let (s, _) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/erasure"),
        &admin,
        Some(json!({ "indexes": [first + 3], "reason": "x" })),
    )
    .await;
    assert_eq!(s, 409);
    let (s, _) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/erasure"),
        &admin,
        Some(json!({ "indexes": [99], "reason": "x" })),
    )
    .await;
    assert_eq!(s, 404);
    server.stop();
    assert!(files_containing(&data, b"clinic-0").is_empty());
    // Each expired event's own key is destroyed; nothing is re-sealed, and
    // p2's kept lab event reads as before.
    let vault = open_vault(&data, &dir.path().join("log.master.key"));
    assert_eq!(run["keys_destroyed"], 2, "{run}");
    assert_eq!(run["keys_replaced"], 0, "{run}");
    for i in [1, 3, 4] {
        assert!(vault.event(first + i).unwrap().is_some(), "{i}");
    }
}

/// Writes 2,500 events by actor `dr-a`, every other one of subject
/// GONE-SUBJ (three cleanup steps), the rest of KEEP-SUBJ, and erases
/// GONE-SUBJ, its cleanup pending.
async fn write_and_erase_half(url: &str, admin: &str, writer: &str) {
    let events: Vec<Value> = (0..2500)
        .map(|i| match i % 2 {
            0 => ev(Some("GONE-SUBJ"), "dr-a", "gone note"),
            _ => ev(Some("KEEP-SUBJ"), "dr-a", "kept note"),
        })
        .collect();
    for chunk in events.chunks(500) {
        submit(url, writer, chunk.to_vec()).await;
    }
    let (status, out) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/erasure"),
        admin,
        Some(json!({ "subject": "GONE-SUBJ", "reason": "art. 17" })),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["cleanup"], "pending", "{out}");
}

/// On PostgreSQL and a bucket, once an erased subject's bodies are
/// deleted, the largest page (1,000 events) of a search that passes over
/// them answers in full (it once ran past the request timeout), each hit
/// checked: its leaf hash, and its body and salt against the leaf's
/// commitment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_page_of_a_thousand_events_answers_after_an_erasure() {
    let backend = Backend::remote();
    let dir = tempfile::tempdir().unwrap();
    let server = backend.start(&dir.path().join("log"));
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
    let auditor = create_key(&url, &admin, "jane", "auditor").await;
    write_and_erase_half(&url, &admin, &writer).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while healthz(&url).await["erasure_cleanups_pending"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cleanup never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (status, found) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events?actor=dr-a&limit=1000"),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let hits = found["events"].as_array().unwrap();
    assert_eq!(hits.len(), 1000, "{}", found["total"]);
    let mut below = u64::MAX;
    for hit in hits {
        let index = hit["index"].as_u64().unwrap();
        assert!(index < below, "newest first, once each: {index}");
        below = index;
        assert_eq!(hit["event"]["subject"], "KEEP-SUBJ", "{hit}");
        assert_eq!(hit["event"]["actor"]["id"], "dr-a", "{hit}");
        let leaf = hit["leaf"].as_str().unwrap().as_bytes();
        assert_eq!(
            merkle::Hash::from_base64(hit["leaf_hash"].as_str().unwrap()).unwrap(),
            merkle::leaf_hash(leaf),
            "{index}"
        );
        let salt: [u8; 32] = hex::decode(hit["salt"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let canonical = serde_json_canonicalizer::to_vec(&hit["event"]).unwrap();
        assert_eq!(
            commitment(&salt, &canonical),
            LeafRecord::parse(leaf).unwrap().commitment,
            "{index}"
        );
    }
    drop(server);
}

/// `/healthz`, also while it answers 503 (degraded: entries waiting for a
/// checkpoint, as after a restart on PostgreSQL until the lease is taken).
async fn healthz(url: &str) -> Value {
    common::http()
        .get(format!("{url}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Where the log under test keeps its data.
enum Backend {
    /// The embedded default.
    Sled,
    /// PostgreSQL and a bucket, each a real server started here.
    Remote { pg: Postgres, s3: ObjectServer },
}

impl Backend {
    fn remote() -> Backend {
        Backend::Remote {
            pg: Postgres::start(),
            s3: ObjectServer::start(),
        }
    }

    fn start(&self, data: &Path) -> Server {
        let mut args = vec!["--checkpoint-interval-ms".to_string(), "50".into()];
        let mut env = Vec::new();
        if let Backend::Remote { pg, s3 } = self {
            args.extend(remote_flags(pg, s3));
            env = s3.env();
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Server::try_start_env(data, &args, &env)
            .unwrap_or_else(|e| panic!("server did not start: {e}"))
    }

    /// Opens the stopped log's records with its master key; the caller
    /// runs outside the test's runtime (the remote store has its own).
    fn open_vault(&self, data: &Path, key_file: &Path) -> Vault {
        let Backend::Remote { pg, s3 } = self else {
            return open_vault(data, key_file);
        };
        let master = MasterKey::parse(&std::fs::read_to_string(key_file).unwrap()).unwrap();
        let (id, secret) = match &s3.env()[..] {
            [(_, id), (_, secret)] => (id.clone(), secret.clone()),
            other => panic!("{other:?}"),
        };
        let bucket = BucketConfig {
            bucket: "log".into(),
            prefix: "audit".into(),
            endpoint: Some(s3.endpoint()),
            region: None,
            credentials: Some((id, secret)),
        };
        let store = PgStore::open(&pg.url(), &bucket).unwrap();
        Vault::open(std::sync::Arc::new(store), &master, KeyringHome::Store).unwrap()
    }
}

/// A subject's erasure answers before its events' bodies are deleted; a
/// kill -9 right after the answer loses none of it: the restarted log
/// still answers 410, searches find none of the subject's events, and the
/// background cleanup, resumed from its stored job, deletes their bodies
/// and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subjects_cleanup_resumes_after_kill_9_and_search_never_shows_its_events() {
    cleanup_resumes_after_kill_9(Backend::Sled).await;
}

/// The same on PostgreSQL and a bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_subjects_cleanup_resumes_after_kill_9() {
    cleanup_resumes_after_kill_9(Backend::remote()).await;
}

async fn cleanup_resumes_after_kill_9(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("log");
    let key_file = dir.path().join("log.master.key");
    let server = backend.start(&data);
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
    let auditor = create_key(&url, &admin, "jane", "auditor").await;
    let first = committed_size(&url).await;
    write_and_erase_half(&url, &admin, &writer).await;
    server.kill();

    let server = backend.start(&data);
    let url = server.url.clone();
    // On PostgreSQL the restarted frontend sequences (and so records
    // reads) once the killed one's lease has run out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while call(
        reqwest::Method::GET,
        &format!("{url}/v1/events/{first}"),
        &auditor,
        None,
    )
    .await
    .0 == 503
    {
        assert!(std::time::Instant::now() < deadline, "the log never led");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Erased from the first answer on, while the cleanup runs.
    let mut health = healthz(&url).await;
    for round in 0..400 {
        if round % 20 == 0 {
            let (status, gone) = call(
                reqwest::Method::GET,
                &format!("{url}/v1/events/{first}"),
                &auditor,
                None,
            )
            .await;
            assert_eq!(status, 410, "{gone}");
            for query in ["actor=dr-a&limit=100", "subject=GONE-SUBJ"] {
                let (status, found) = call(
                    reqwest::Method::GET,
                    &format!("{url}/v1/events?{query}"),
                    &auditor,
                    None,
                )
                .await;
                assert_eq!(status, 200, "{found}");
                assert!(!found.to_string().contains("GONE-SUBJ"), "{found}");
                if query.starts_with("actor") {
                    assert_eq!(found["events"].as_array().unwrap().len(), 100);
                } else {
                    assert_eq!(found["events"], json!([]), "{found}");
                }
            }
        }
        if health["erasure_cleanups_pending"] == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        health = healthz(&url).await;
    }
    assert_eq!(health["erasure_cleanups_pending"], 0, "{health}");
    server.stop();

    tokio::task::spawn_blocking(move || {
        let vault = backend.open_vault(&data, &key_file);
        for i in 0..2500u64 {
            let index = first + i;
            let sealed = vault
                .store()
                .record(RecordSpace::Sealed, &index.to_be_bytes())
                .unwrap();
            if i % 2 == 0 {
                assert_eq!(sealed, None, "{index}");
                assert_eq!(vault.tombstone(index).unwrap().unwrap().reason, "art. 17");
            } else {
                assert!(sealed.is_some(), "{index}");
                assert!(vault.event(index).unwrap().is_some(), "{index}");
            }
        }
        drop(dir);
    })
    .await
    .unwrap();
}
