//! The checkpoint-acceptance policy against the shared vectors in
//! `tests/vectors/checkpoint-policy.json`, which the web console's
//! `web/js/checkpoint-policy.js` is tested on too (`tests/js/`).
//!
//! The vectors were made once by `write_vectors` below (run it with
//! `cargo test --test checkpoint_policy -- --ignored` to make them again)
//! from real keys and real signatures; each case's expected verdict is
//! written by hand there, never computed by the policy under test.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use veritrail::merkle::{self, Hash};
use veritrail::note::keys::LogKeys;
use veritrail::note::{
    Checkpoint, CheckpointPolicy, CosignatureSigner, CosignatureVerifier, Known, Note, NoteSigner,
    parse_verifier_key,
};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/checkpoint-policy.json"
);

/// Runs one case: the policy's verdict, as the vectors name it.
fn verdict(case: &Value) -> (String, Value) {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    };
    let log_keys: Vec<_> = strings(&case["log_keys"])
        .iter()
        .map(|k| parse_verifier_key(k).unwrap())
        .collect();
    let witnesses: Vec<_> = strings(&case["witness_keys"])
        .iter()
        .map(|k| CosignatureVerifier::from_verifier_key(k).unwrap())
        .collect();
    let mut policy = CheckpointPolicy::new(log_keys);
    if let Some(q) = case["log_quorum"].as_u64() {
        policy = policy.with_log_quorum(q as usize).unwrap();
    }
    let quorum = case["witness_quorum"].as_u64().unwrap_or(0) as usize;
    let policy = policy.with_witnesses(witnesses, quorum).unwrap();
    let known = case.get("known").filter(|k| !k.is_null()).map(|k| Known {
        origin: k["origin"].as_str().unwrap().to_string(),
        size: k["size"].as_u64().unwrap(),
        root: Hash::from_base64(k["root"].as_str().unwrap()).unwrap(),
    });
    match policy.check(case["note"].as_str().unwrap().as_bytes(), known.as_ref()) {
        Ok(a) => (
            "accept".into(),
            json!({
                "log_signatures": a.log_signatures,
                "cosignatures": a.cosignatures,
            }),
        ),
        Err(r) => (r.rule().into(), Value::Null),
    }
}

#[test]
fn the_policy_gives_every_vector_its_verdict() {
    let text = std::fs::read_to_string(VECTORS).unwrap();
    let vectors: Value = serde_json::from_str(&text).unwrap();
    let cases = vectors["cases"].as_array().unwrap();
    assert!(cases.len() >= 15, "only {} cases", cases.len());
    let mut rules = std::collections::BTreeSet::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (got, accepted) = verdict(case);
        assert_eq!(got, case["expect"].as_str().unwrap(), "case {name}");
        rules.insert(got.clone());
        if got == "accept" {
            assert_eq!(
                accepted["log_signatures"], case["log_signatures"],
                "case {name}"
            );
            assert_eq!(
                accepted["cosignatures"], case["cosignatures"],
                "case {name}"
            );
        }
    }
    // Every rule is exercised by at least one vector.
    for rule in [
        "accept",
        "malformed",
        "origin_mismatch",
        "bad_log_signature",
        "missing_log_signature",
        "bad_cosignature",
        "too_few_cosignatures",
        "origin_changed",
        "smaller_than_known",
        "root_differs_at_known_size",
    ] {
        assert!(rules.contains(rule), "no vector for {rule}");
    }
}

// ---- making the vectors ------------------------------------------------------

const ORIGIN: &str = "example.com/veritrail";

fn checkpoint(origin: &str, size: u64) -> Checkpoint {
    Checkpoint {
        origin: origin.into(),
        size,
        root: merkle::leaf_hash(format!("{origin} {size}").as_bytes()),
        extensions: vec![],
    }
}

fn signed(cp: &Checkpoint, signers: &[&dyn NoteSigner]) -> Note {
    let mut note = cp.to_note().unwrap();
    for s in signers {
        note.sign(*s).unwrap();
    }
    note
}

fn text(note: &Note) -> String {
    String::from_utf8(note.to_bytes()).unwrap()
}

/// `note` with the signature line of `signer` replaced by one it made over
/// another text: right key name and ID, wrong signature.
fn with_wrong_signature(note: &Note, signer: &dyn NoteSigner) -> String {
    let other = signed(&checkpoint(ORIGIN, 999), &[signer]);
    let line = other.signatures()[0].to_line();
    let name = format!("\u{2014} {} ", line.split(' ').nth(1).unwrap());
    let mut out = String::new();
    let full = text(note);
    for l in full.split_inclusive('\n') {
        let same_key = l.starts_with(&name) && {
            let ours = l.split(' ').nth(2).unwrap();
            let theirs = line.split(' ').nth(2).unwrap();
            STANDARD.decode(ours.trim_end()).unwrap()[..4]
                == STANDARD.decode(theirs.trim_end()).unwrap()[..4]
        };
        if same_key {
            out.push_str(&line);
            if !line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(l);
        }
    }
    assert_ne!(out, full, "no signature of {name} to replace");
    out
}

fn witness(seed: u8, name: &str, at: u64) -> CosignatureSigner {
    CosignatureSigner::new(
        name,
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32]),
        move || at,
    )
    .unwrap()
}

#[test]
#[ignore = "writes tests/vectors/checkpoint-policy.json; run once, by hand"]
fn write_vectors() {
    let keys = LogKeys::from_secret_bytes(&[11u8; 32], &[12u8; 32]).unwrap();
    let s = keys.signers(ORIGIN).unwrap();
    let v = keys.verifier_keys(ORIGIN).unwrap();
    let other_v = keys.verifier_keys("other.example/log").unwrap();
    let log = json!([v.ecdsa, v.ed25519]);
    let (a, b, c) = (
        witness(21, "witness-a.example", 1_760_000_001),
        witness(22, "witness-b.example", 1_760_000_002),
        witness(23, "witness-c.example", 1_760_000_003),
    );
    let wkeys = json!([a.verifier().verifier_key(), b.verifier().verifier_key()]);
    let cp5 = checkpoint(ORIGIN, 5);
    let root5 = cp5.root.to_base64();
    let both = signed(&cp5, &[&s.ecdsa, &s.ed25519]);
    let ed_only = signed(&cp5, &[&s.ed25519]);
    let ab = signed(&cp5, &[&s.ecdsa, &s.ed25519, &a, &b]);
    let a_only = signed(&cp5, &[&s.ecdsa, &s.ed25519, &a]);
    let ac = signed(&cp5, &[&s.ecdsa, &s.ed25519, &a, &c]);
    let witnesses_only = signed(&cp5, &[&a, &b]);
    let not_a_checkpoint = {
        let mut n = Note::new("hello\nthis is not a checkpoint\n").unwrap();
        n.sign(&s.ecdsa).unwrap();
        n.sign(&s.ed25519).unwrap();
        n
    };
    let known =
        |origin: &str, size: u64, root: &str| json!({"origin": origin, "size": size, "root": root});
    let other_root = merkle::empty_root().to_base64();
    let case = |name: &str, note: String, extra: Value, expect: &str| {
        let mut c = json!({
            "name": name,
            "note": note,
            "log_keys": log,
            "witness_keys": [],
            "witness_quorum": 0,
            "expect": expect,
        });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases = vec![
        case(
            "both log signatures, no witness required",
            text(&both),
            json!({"log_signatures": [0, 1], "cosignatures": []}),
            "accept",
        ),
        case(
            "two of two witnesses cosigned",
            text(&ab),
            json!({"witness_keys": wkeys, "witness_quorum": 2,
                   "log_signatures": [0, 1], "cosignatures": [[0, 1_760_000_001u64], [1, 1_760_000_002u64]]}),
            "accept",
        ),
        case(
            "one of two witnesses is enough for a quorum of one",
            text(&a_only),
            json!({"witness_keys": wkeys, "witness_quorum": 1,
                   "log_signatures": [0, 1], "cosignatures": [[0, 1_760_000_001u64]]}),
            "accept",
        ),
        case(
            "a cosignature by an unknown witness is ignored",
            text(&ac),
            json!({"witness_keys": wkeys, "witness_quorum": 1,
                   "log_signatures": [0, 1], "cosignatures": [[0, 1_760_000_001u64]]}),
            "accept",
        ),
        case(
            "one log signature is enough when the quorum says so",
            text(&ed_only),
            json!({"log_quorum": 1, "log_signatures": [1], "cosignatures": []}),
            "accept",
        ),
        case(
            "a larger checkpoint than the known one",
            text(&both),
            json!({"known": known(ORIGIN, 4, &other_root), "log_signatures": [0, 1], "cosignatures": []}),
            "accept",
        ),
        case(
            "the known checkpoint again",
            text(&both),
            json!({"known": known(ORIGIN, 5, &root5), "log_signatures": [0, 1], "cosignatures": []}),
            "accept",
        ),
        case(
            "not a signed note",
            "example.com/veritrail\n5\nno signatures\n".into(),
            json!({}),
            "malformed",
        ),
        case(
            "a signed note that is not a checkpoint",
            text(&not_a_checkpoint),
            json!({}),
            "malformed",
        ),
        case(
            "log keys of another origin",
            text(&both),
            json!({"log_keys": [other_v.ecdsa, other_v.ed25519]}),
            "origin_mismatch",
        ),
        case(
            "a wrong ECDSA log signature",
            with_wrong_signature(&both, &s.ecdsa),
            json!({}),
            "bad_log_signature",
        ),
        case(
            "a wrong Ed25519 log signature, even when one signature would do",
            with_wrong_signature(&both, &s.ed25519),
            json!({"log_quorum": 1}),
            "bad_log_signature",
        ),
        case(
            "a missing log signature",
            text(&ed_only),
            json!({}),
            "missing_log_signature",
        ),
        case(
            "witness cosignatures alone are not log signatures",
            text(&witnesses_only),
            json!({"log_quorum": 1, "witness_keys": wkeys, "witness_quorum": 2}),
            "missing_log_signature",
        ),
        case(
            "a wrong cosignature by a configured witness",
            with_wrong_signature(&ab, &b),
            json!({"witness_keys": wkeys, "witness_quorum": 1}),
            "bad_cosignature",
        ),
        case(
            "too few witnesses",
            text(&a_only),
            json!({"witness_keys": wkeys, "witness_quorum": 2}),
            "too_few_cosignatures",
        ),
        case(
            "an unknown witness does not count towards the quorum",
            text(&ac),
            json!({"witness_keys": wkeys, "witness_quorum": 2}),
            "too_few_cosignatures",
        ),
        case(
            "smaller than the known checkpoint",
            text(&both),
            json!({"known": known(ORIGIN, 6, &other_root)}),
            "smaller_than_known",
        ),
        case(
            "another root at the known size",
            text(&both),
            json!({"known": known(ORIGIN, 5, &other_root)}),
            "root_differs_at_known_size",
        ),
        case(
            "a known checkpoint of another log",
            text(&both),
            json!({"known": known("other.example/log", 5, &root5)}),
            "origin_changed",
        ),
    ];
    let out = json!({
        "description": "Checkpoint-acceptance policy vectors (src/note/policy.rs, web/js/checkpoint-policy.js). Each case: a signed checkpoint note, the log's verifier keys (log_quorum of them must sign; all when absent), the witnesses' cosignature keys (witness_quorum of them must cosign), an optional known checkpoint (size, base64 root), and the verdict: accept (with the indexes of the log keys that signed and [witness index, timestamp] of each cosignature) or the name of the rule that failed.",
        "cases": cases,
    });
    let mut text = serde_json::to_string_pretty(&out).unwrap();
    text.push('\n');
    std::fs::write(VECTORS, text).unwrap();
}
