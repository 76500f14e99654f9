//! Checks the tests run on what a log serves or stores: its checkpoints
//! verify under both log keys, proof hashes decode, and a stopped log's
//! stored bytes can be damaged on purpose.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Verifiers for both log keys listed by `/v1/log`.
pub fn log_verifiers(log: &Value) -> Vec<Box<dyn veritrail::note::NoteVerifier>> {
    ["ecdsa", "ed25519"]
        .iter()
        .map(|k| {
            veritrail::note::parse_verifier_key(log["verifier_keys"][k].as_str().unwrap()).unwrap()
        })
        .collect()
}

/// Verifies a checkpoint note with both log keys and returns its body.
pub fn verify_checkpoint(
    note: &str,
    verifiers: &[Box<dyn veritrail::note::NoteVerifier>],
) -> veritrail::note::Checkpoint {
    let parsed = veritrail::note::Note::parse(note.as_bytes()).unwrap();
    let refs: Vec<&dyn veritrail::note::NoteVerifier> =
        verifiers.iter().map(|v| v.as_ref()).collect();
    assert_eq!(
        parsed.verify(&refs).unwrap().len(),
        2,
        "both log signatures verify"
    );
    veritrail::note::Checkpoint::parse(parsed.text()).unwrap()
}

/// A JSON array of base64 hashes.
pub fn hashes(v: &Value) -> Vec<veritrail::merkle::Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| veritrail::merkle::Hash::from_base64(h.as_str().unwrap()).unwrap())
        .collect()
}

/// Flips bit 0 of byte `at` (from the end when negative) of the value under
/// `key` in the stopped log `data`, through sled itself (the backend's key
/// layout: one-byte prefixes, see the sled store).
pub fn flip_stored_byte(data: &Path, key: &[u8], at: isize) {
    let db = veritrail::store::sled::sled_config(&data.join("db"))
        .open()
        .unwrap();
    let tree = db.open_tree("log").unwrap();
    let mut value = tree
        .get(key)
        .unwrap()
        .unwrap_or_else(|| panic!("no value under {key:?}"))
        .to_vec();
    let at = if at < 0 {
        value.len() - at.unsigned_abs()
    } else {
        at as usize
    };
    value[at] ^= 0x01;
    tree.insert(key, value).unwrap();
    db.flush().unwrap();
}

/// The files under `dir` whose bytes contain `needle`: what a test of
/// encryption at rest or erasure looks for.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            found.extend(files_containing(&p, needle));
        } else if std::fs::read(&p)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(p);
        }
    }
    found
}
