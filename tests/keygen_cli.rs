//! `veritrail keygen` end to end: the real binary writes loadable keys and prints the
//! verifier keys that match them, and never overwrites existing keys.

mod common;

use std::process::Command;

use common::binary;
use veritrail::note::keys::{ECDSA_KEY_FILE, ED25519_KEY_FILE, LogKeys};
use veritrail::note::parse_verifier_key;

fn keygen(origin: &str, out: &std::path::Path) -> std::process::Output {
    Command::new(binary())
        .args(["keygen", "--origin", origin, "--out"])
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn keygen_writes_keys_and_prints_their_verifier_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("keys");
    let run = keygen("example.com/log", &out);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stdout = String::from_utf8(run.stdout).unwrap();
    // `<algorithm> <vkey>`, padded so the keys line up.
    let lines: Vec<(&str, &str)> = stdout
        .lines()
        .map(|l| {
            let (alg, vkey) = l.split_once(' ').unwrap();
            (alg, vkey.trim_start())
        })
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!((lines[0].0, lines[1].0), ("ecdsa", "ed25519"));

    let loaded = LogKeys::load_from_dir(&out).unwrap();
    let vkeys = loaded.verifier_keys("example.com/log").unwrap();
    assert_eq!(
        (lines[0].1, lines[1].1),
        (vkeys.ecdsa.as_str(), vkeys.ed25519.as_str())
    );
    for (_, vkey) in &lines {
        assert_eq!(parse_verifier_key(vkey).unwrap().name(), "example.com/log");
    }

    // A second run refuses and leaves the keys alone.
    let before = std::fs::read(out.join(ECDSA_KEY_FILE)).unwrap();
    let again = keygen("example.com/log", &out);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read(out.join(ECDSA_KEY_FILE)).unwrap(), before);
    assert!(out.join(ED25519_KEY_FILE).exists());
}

#[test]
fn keygen_rejects_an_origin_that_cannot_be_a_key_name() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("keys");
    let run = keygen("example.com/a log", &out);
    assert!(!run.status.success());
    assert!(!out.exists(), "nothing is written for a bad origin");
}
