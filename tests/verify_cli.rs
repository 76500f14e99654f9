//! `veritrail verify` against the real server, and against a proxy in front of
//! it that tampers with one answer at a time: every tampering, fork and
//! rollback must be rejected with exit status 1 and a message naming what
//! failed, and must leave the state file as it was.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::{Ran, Server, create_key, event, get_json, http, veritrail_async};
use serde_json::{Value, json};
use veritrail::merkle::Hash;
use veritrail::note::keys::LogKeys;
use veritrail::note::{CosignatureSigner, Ed25519Signer, Note, NoteSigner};

/// A running log with a writer key and its verifier keys.
struct Log {
    server: Server,
    _dir: tempfile::TempDir,
    writer: String,
    origin: String,
    vkeys: Vec<String>,
    /// The entries the log holds before the test's events: its own
    /// records of its keys.
    base: u64,
}

async fn start_log() -> Log {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--origin", "verify.test/log"]);
    let writer = create_key(&server.url, &server.admin_key(), "verify-app", "writer").await;
    let base = common::committed_size(&server.url).await;
    let info = get_json(&format!("{}/v1/log", server.url)).await;
    let vkeys = ["ecdsa", "ed25519"]
        .iter()
        .map(|k| info["verifier_keys"][k].as_str().unwrap().to_string())
        .collect();
    Log {
        server,
        _dir: dir,
        writer,
        origin: info["origin"].as_str().unwrap().to_string(),
        vkeys,
        base,
    }
}

/// Submits `n` events and waits for a checkpoint that includes them; returns
/// the per-event answers.
async fn submit(log: &Log, first: usize, n: usize) -> Vec<Value> {
    let events: Vec<Value> = (first..first + n).map(|i| event(i, None)).collect();
    let v = common::submit(&log.server.url, &log.writer, events).await;
    v["events"].as_array().unwrap().clone()
}

async fn verify(url: &str, args: &[String]) -> Ran {
    let mut all = vec!["verify".to_string(), "--url".to_string(), url.to_string()];
    all.extend(args.iter().cloned());
    veritrail_async(&all, &[]).await
}

fn vkey_args(vkeys: &[String]) -> Vec<String> {
    vkeys
        .iter()
        .flat_map(|k| ["--vkey".to_string(), k.clone()])
        .collect()
}

fn args(vkeys: &[String], extra: &[&str], state: Option<&Path>) -> Vec<String> {
    let mut a = vkey_args(vkeys);
    a.extend(extra.iter().map(|s| s.to_string()));
    if let Some(s) = state {
        a.extend(["--state".to_string(), s.display().to_string()]);
    }
    a
}

fn read_state(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_growing_log_and_proves_leaves() {
    let log = start_log().await;
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("state.json");
    let url = &log.server.url;

    // The log's own records come first: event `i` is leaf `b + i`.
    let b = log.base;
    let first = submit(&log, 0, 3).await;
    let one = (b + 1).to_string();
    let run = verify(url, &args(&log.vkeys, &["--index", &one], Some(&state))).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains(&format!("size {}", b + 3)),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("log signature   ok: ecdsa"));
    assert!(run.stdout.contains("log signature   ok: ed25519"));
    assert!(run.stdout.contains("trusting this one as the first seen"));
    assert!(run.stdout.contains(&format!(
        "inclusion       ok: leaf {} in the tree of size {}",
        b + 1,
        b + 3
    )));
    assert!(run.stdout.contains(&format!(
        "leaf hash {}",
        first[1]["leaf_hash"].as_str().unwrap()
    )));
    // The printed leaf is the one the server acknowledged for that event.
    let commitment = first[1]["commitment"].as_str().unwrap();
    assert!(
        run.stdout
            .contains(&format!("\"commitment\":\"{commitment}\"")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("\"app\":\"verify-app\""));
    assert!(run.stdout.trim_end().ends_with("verified"));
    let saved = read_state(&state);
    assert_eq!(saved["origin"], json!(log.origin));
    assert_eq!(saved["size"], json!(b + 3));

    // The log grows past a tile boundary; the next run checks consistency.
    let more = submit(&log, 3, 300).await;
    let leaf = (b + 290).to_string();
    let run = verify(url, &args(&log.vkeys, &["--index", &leaf], Some(&state))).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains(&format!(
            "consistency     ok: size {} -> {} extends the checkpoint seen before",
            b + 3,
            b + 303
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("tile/entries/001.p/{}", b + 303 - 256)),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&format!(
        "\"commitment\":\"{}\"",
        more[287]["commitment"].as_str().unwrap()
    )));
    assert_eq!(read_state(&state)["size"], json!(b + 303));
    let root = Hash::from_base64(read_state(&state)["root"].as_str().unwrap()).unwrap();
    let cp = get_json(&format!("{url}/v1/checkpoint")).await;
    assert_eq!(root.to_base64(), cp["root_hash"].as_str().unwrap());

    // Nothing new: same size, same root. One log key is enough.
    let run = verify(url, &args(&log.vkeys[1..], &[], Some(&state))).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout
            .contains(&format!("same size {} and root", b + 303)),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("ecdsa"));

    // An index beyond the checkpoint is a usage error.
    let beyond = (b + 303).to_string();
    let run = verify(url, &args(&log.vkeys, &["--index", &beyond], None)).await;
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("not in the checkpoint's tree of size {beyond}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_fail_and_bad_arguments_are_usage_errors() {
    let log = start_log().await;
    submit(&log, 0, 2).await;
    let url = &log.server.url;

    // A key with the right name but another key: the log never signed with it.
    let stranger = LogKeys::generate()
        .unwrap()
        .verifier_keys(&log.origin)
        .unwrap();
    for wrong in [&stranger.ecdsa, &stranger.ed25519] {
        let run = verify(url, &vkey_args(std::slice::from_ref(wrong))).await;
        assert_eq!(run.code, 1, "{}", run.all());
        assert!(
            run.stderr
                .contains(&format!("no signature by log key {wrong}")),
            "{}",
            run.stderr
        );
    }
    // One right key does not excuse a wrong one.
    let mixed = vec![log.vkeys[0].clone(), stranger.ed25519.clone()];
    assert_eq!(verify(url, &vkey_args(&mixed)).await.code, 1);
    // The key of another log.
    let other = LogKeys::generate()
        .unwrap()
        .verifier_keys("other.test/log")
        .unwrap();
    let run = verify(url, &vkey_args(&[other.ed25519])).await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains("origin is \"verify.test/log\""),
        "{}",
        run.stderr
    );

    // Usage and network errors exit 2.
    let run = verify(url, &vkey_args(&["not-a-key".to_string()])).await;
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("log key not-a-key"));
    assert_eq!(verify(url, &[]).await.code, 2, "--vkey is required");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let run = verify(&closed, &vkey_args(&log.vkeys)).await;
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("couldn't reach"), "{}", run.stderr);
    let help = verify(url, &["--help".to_string()]).await;
    assert!(help.stdout.contains("Exit status: 0"), "{}", help.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forks_and_rollbacks_against_the_state_file_are_detected() {
    let log = start_log().await;
    submit(&log, 0, 5).await;
    let url = &log.server.url;
    let dir = tempfile::tempdir().unwrap();
    let honest = dir.path().join("honest.json");
    assert_eq!(
        verify(url, &args(&log.vkeys, &[], Some(&honest)))
            .await
            .code,
        0
    );
    let seen = read_state(&honest);
    // The log's own records, then the five events.
    let (b, size) = (log.base, log.base + 5);
    let other_root = veritrail::merkle::leaf_hash(b"another history").to_base64();

    let cases: [(&str, Value, String); 4] = [
        (
            "same size, other root",
            json!({ "origin": log.origin, "size": size, "root": other_root, "note": "x" }),
            format!("FORK: the checkpoint of size {size} has root"),
        ),
        (
            "smaller size, other root",
            json!({ "origin": log.origin, "size": b + 3, "root": other_root, "note": "x" }),
            format!(
                "FORK: the consistency proof from size {} to {size} does not verify",
                b + 3
            ),
        ),
        (
            "a larger tree than the log has",
            json!({ "origin": log.origin, "size": b + 9, "root": seen["root"], "note": "x" }),
            format!(
                "ROLLBACK/FORK: the log's checkpoint has size {size}, smaller than the size {}",
                b + 9
            ),
        ),
        (
            "another log",
            json!({ "origin": "elsewhere.test/log", "size": size, "root": seen["root"], "note": "x" }),
            "ORIGIN CHANGED".to_string(),
        ),
    ];
    for (what, st, expect) in cases {
        let path = dir.path().join("forked.json");
        let bytes = serde_json::to_vec(&st).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let run = verify(url, &args(&log.vkeys, &[], Some(&path))).await;
        assert_eq!(run.code, 1, "{what}: {}", run.all());
        assert!(run.stderr.contains(&expect), "{what}: {}", run.stderr);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what}: state changed"
        );
    }

    // A corrupt state file is an error of its own, not a verdict on the log.
    let path = dir.path().join("corrupt.json");
    std::fs::write(&path, b"{\"size\":").unwrap();
    let run = verify(url, &args(&log.vkeys, &[], Some(&path))).await;
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("not a state file"), "{}", run.stderr);
}

/// What the proxy changes in the upstream's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tamper {
    Nothing,
    CheckpointSignature,
    AuditPath,
    ConsistencyProof,
    EntryBundleLeaf,
    Cosign,
    CosignBadly,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    tamper: Arc<Mutex<Tamper>>,
    witness: Arc<CosignatureSigner>,
}

impl Proxy {
    fn set(&self, t: Tamper) {
        *self.tamper.lock().unwrap() = t;
    }
}

/// Starts a proxy in front of `upstream` on 127.0.0.1:0.
async fn start_proxy(upstream: &str, witness: CosignatureSigner) -> (String, Proxy) {
    let proxy = Proxy {
        upstream: upstream.to_string(),
        tamper: Arc::new(Mutex::new(Tamper::Nothing)),
        witness: Arc::new(witness),
    };
    let app = Router::new().fallback(forward).with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), proxy)
}

async fn forward(State(p): State<Proxy>, uri: Uri) -> Response {
    let target = format!(
        "{}{}",
        p.upstream,
        uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    let resp = http().get(target).send().await.unwrap();
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let body = resp.bytes().await.unwrap().to_vec();
    let tamper = *p.tamper.lock().unwrap();
    let path = uri.path();
    let body = match (tamper, path) {
        (Tamper::CheckpointSignature, "/checkpoint") => flip_first_signature(&body),
        (Tamper::AuditPath, "/v1/proof/inclusion") => flip_hash_in(&body, "audit_path"),
        (Tamper::ConsistencyProof, "/v1/proof/consistency") => flip_hash_in(&body, "consistency"),
        (Tamper::EntryBundleLeaf, bundle) if bundle.starts_with("/tile/entries/") => {
            alter_leaves(&body)
        }
        (Tamper::Cosign, "/checkpoint") => cosign(&body, &p.witness, false),
        (Tamper::CosignBadly, "/checkpoint") => cosign(&body, &p.witness, true),
        _ => body,
    };
    (status, body).into_response()
}

fn flip_first_signature(note: &[u8]) -> Vec<u8> {
    let parsed = Note::parse(note).unwrap();
    let mut out = Note::new(parsed.text()).unwrap();
    for (i, s) in parsed.signatures().iter().enumerate() {
        let mut s = s.clone();
        if i == 0 {
            s.signature[5] ^= 0x01;
        }
        out.add_signature(s);
    }
    out.to_bytes()
}

fn flip_hash_in(body: &[u8], field: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(body).unwrap();
    let first = v[field][0]
        .as_str()
        .expect("a non-empty proof to tamper with");
    let mut bytes = STANDARD.decode(first).unwrap();
    bytes[7] ^= 0x80;
    v[field][0] = json!(STANDARD.encode(bytes));
    serde_json::to_vec(&v).unwrap()
}

/// Changes one hex digit of every leaf's commitment: still well-formed
/// leaves, but not the ones in the tree.
fn alter_leaves(bundle: &[u8]) -> Vec<u8> {
    let entries = veritrail::tiles::decode_bundle(bundle).unwrap();
    let altered: Vec<Vec<u8>> = entries
        .into_iter()
        .map(|e| {
            let mut text = String::from_utf8(e).unwrap();
            let at = text.find("\"commitment\":\"").unwrap() + "\"commitment\":\"".len();
            let c = if &text[at..at + 1] == "0" { "1" } else { "0" };
            text.replace_range(at..at + 1, c);
            text.into_bytes()
        })
        .collect();
    veritrail::tiles::encode_bundle(&altered).unwrap()
}

fn cosign(note: &[u8], witness: &CosignatureSigner, badly: bool) -> Vec<u8> {
    let mut parsed = Note::parse(note).unwrap();
    parsed.sign(witness).unwrap();
    if badly {
        let mut sigs = parsed.signatures().to_vec();
        let last = sigs.last_mut().unwrap();
        last.signature[20] ^= 0x01;
        parsed.add_signature(last.clone());
    }
    parsed.to_bytes()
}

fn witness_key(seed: u8) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampering_server_is_caught() {
    let log = start_log().await;
    let witness =
        CosignatureSigner::new("witness.test/w1", witness_key(7), || 1_800_000_000).unwrap();
    let (url, proxy) = start_proxy(&log.server.url, witness).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    submit(&log, 0, 6).await;

    // Through the honest proxy everything verifies.
    let run = verify(&url, &args(&log.vkeys, &["--index", "2"], Some(&state))).await;
    assert_eq!(run.code, 0, "{}", run.all());
    submit(&log, 6, 5).await;
    let before = std::fs::read(&state).unwrap();
    // The log's own records, then six events, then five.
    let (six, eleven) = (log.base + 6, log.base + 11);

    let cases = [
        (
            Tamper::CheckpointSignature,
            "the checkpoint's signature by log key".to_string(),
        ),
        (
            Tamper::AuditPath,
            format!("the inclusion proof of leaf 2 in the tree of size {eleven} does not verify"),
        ),
        (
            Tamper::ConsistencyProof,
            format!("FORK: the consistency proof from size {six} to {eleven} does not verify"),
        ),
        (
            Tamper::EntryBundleLeaf,
            format!("leaf 2 in entry bundle tile/entries/000.p/{eleven} hashes to"),
        ),
    ];
    for (tamper, expect) in cases {
        proxy.set(tamper);
        let run = verify(&url, &args(&log.vkeys, &["--index", "2"], Some(&state))).await;
        assert_eq!(run.code, 1, "{tamper:?}: {}", run.all());
        assert!(run.stderr.contains(&expect), "{tamper:?}: {}", run.stderr);
        assert!(run.stderr.contains("VERIFICATION FAILED"));
        assert!(!run.stdout.contains("verified\n"), "{tamper:?}");
        assert_eq!(
            std::fs::read(&state).unwrap(),
            before,
            "{tamper:?} moved the state"
        );
    }

    // And once the proxy is honest again, the state moves on.
    proxy.set(Tamper::Nothing);
    let run = verify(&url, &args(&log.vkeys, &["--index", "2"], Some(&state))).await;
    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        run.stdout.contains(&format!("size {six} -> {eleven}")),
        "{}",
        run.stdout
    );
    assert_eq!(read_state(&state)["size"], json!(eleven));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_witness_cosignatures_are_checked() {
    let log = start_log().await;
    let witness =
        CosignatureSigner::new("witness.test/w1", witness_key(7), || 1_800_000_000).unwrap();
    let cosig_vkey = witness.verifier_key();
    let (url, proxy) = start_proxy(&log.server.url, witness).await;
    submit(&log, 0, 2).await;
    let as_ed25519 = Ed25519Signer::new("witness.test/w1", witness_key(7))
        .unwrap()
        .verifier_key();
    let stranger = CosignatureSigner::new("witness.test/w2", witness_key(8), || 0)
        .unwrap()
        .verifier_key();
    let with_witness = |w: &str| {
        let mut a = vkey_args(&log.vkeys);
        a.extend(["--witness-vkey".to_string(), w.to_string()]);
        a
    };

    // The log serves no cosignatures itself yet.
    let run = verify(&url, &with_witness(&cosig_vkey)).await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr
            .contains(&format!("no cosignature by witness {cosig_vkey}")),
        "{}",
        run.stderr
    );

    proxy.set(Tamper::Cosign);
    for key in [&cosig_vkey, &as_ed25519] {
        let run = verify(&url, &with_witness(key)).await;
        assert_eq!(run.code, 0, "{key}: {}", run.all());
        assert!(
            run.stdout
                .contains("cosignature     ok: witness witness.test/w1"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("2027-01-15T08:00:00.000Z"),
            "{}",
            run.stdout
        );
    }
    let run = verify(&url, &with_witness(&stranger)).await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(run.stderr.contains("no cosignature by witness"));

    proxy.set(Tamper::CosignBadly);
    let run = verify(&url, &with_witness(&cosig_vkey)).await;
    assert_eq!(run.code, 1, "{}", run.all());
    assert!(
        run.stderr.contains(&format!(
            "cosignature by witness {cosig_vkey} does not verify"
        )),
        "{}",
        run.stderr
    );
    // Without --witness-vkey a cosignature is neither needed nor checked.
    assert_eq!(verify(&url, &vkey_args(&log.vkeys)).await.code, 0);
}
