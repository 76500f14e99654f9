//! Evidence bundles and tlog-proof files, end to end: exported over HTTP,
//! verified offline (the server is stopped first) by `veritrail
//! verify-bundle`, and every kind of tampering is caught at the right line.

mod common;

use std::path::Path;

use common::{Server, create_key, create_key_for_app, get_json, http, submit, veritrail};
use serde_json::{Value, json};

fn ev(i: usize) -> Value {
    let mut e = json!({
        "actor": { "id": format!("dr{}", i % 2), "type": "user" },
        "action": "record.read",
        "resource": { "type": "patient_record", "id": format!("r{i}") },
        "purpose": "treatment",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00Z",
        "context": { "ward": format!("ward{i}"), "n": i },
    });
    if !i.is_multiple_of(5) {
        e["subject"] = json!(format!("p{}", i % 2));
    }
    e
}

struct Verify {
    ok: bool,
    out: String,
}

fn verify(file: &Path, vkeys: &[&str]) -> Verify {
    let mut args = vec!["verify-bundle", file.to_str().unwrap()];
    for k in vkeys {
        args.extend(["--vkey", k]);
    }
    let ran = veritrail(&args, &[]);
    Verify {
        ok: ran.ok(),
        out: ran.all(),
    }
}

/// Changes the character `offset` bytes after the first `marker` on `line`
/// into another one of its kind, so the line stays valid JSON.
fn flip_after(line: &str, marker: &str, offset: usize) -> String {
    let mut at = line
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} not in {line}"))
        + marker.len()
        + offset;
    let mut bytes = line.as_bytes().to_vec();
    while !bytes[at].is_ascii_alphanumeric() {
        at += 1;
    }
    bytes[at] = match bytes[at] {
        b'0'..=b'8' => bytes[at] + 1,
        b'9' => b'0',
        b'a'..=b'e' | b'A'..=b'Y' => bytes[at] + 1,
        b'f' => b'a',
        b'Z' | b'g'..=b'z' => b'b',
        other => panic!("won't flip {:?}", other as char),
    };
    String::from_utf8(bytes).unwrap()
}

fn with_line(lines: &[String], n: usize, new: String) -> String {
    let mut l = lines.to_vec();
    l[n] = new;
    l.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_verify_offline_and_name_the_tampered_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("log"), &["--checkpoint-interval-ms", "50"]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
    let auditor = create_key(&url, &admin, "jane", "auditor").await;
    let receipt = submit(&url, &writer, (0..20).map(ev).collect()).await;
    // Event 3's leaf index (the log's own records come first).
    let third = receipt["events"][3]["index"].as_u64().unwrap();
    let log = get_json(&format!("{url}/v1/log")).await;
    let ecdsa = log["verifier_keys"]["ecdsa"].as_str().unwrap().to_string();
    let ed25519 = log["verifier_keys"]["ed25519"]
        .as_str()
        .unwrap()
        .to_string();

    let export = |query: &'static str| {
        let (url, auditor) = (url.clone(), auditor.clone());
        async move {
            let resp = http()
                .get(format!("{url}/v1/export?{query}"))
                .bearer_auth(&auditor)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
            assert!(
                resp.headers().contains_key("veritrail-audit-index"),
                "exports are logged"
            );
            resp.text().await.unwrap()
        }
    };
    let p1 = export("subject=p1").await;
    let everything = export("").await;
    let proof = http()
        .get(format!("{url}/v1/events/{third}/tlog-proof"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Offline from here on.
    server.stop();

    let file = dir.path().join("p1.ndjson");
    std::fs::write(&file, &p1).unwrap();
    let v = verify(&file, &[&ecdsa, &ed25519]);
    assert!(v.ok, "{}", v.out);
    let p1_events = (0..20usize)
        .filter(|i| !i.is_multiple_of(5) && i % 2 == 1)
        .count();
    assert!(
        v.out.contains(&format!("OK: {p1_events} event(s)")),
        "{}",
        v.out
    );
    let all_file = dir.path().join("all.ndjson");
    std::fs::write(&all_file, &everything).unwrap();
    let v = verify(&all_file, &[&ed25519]);
    assert!(v.ok, "{}", v.out);
    assert!(
        v.out.contains("OK: 20 event(s)"),
        "the export holds the events a checkpoint covered: {}",
        v.out
    );

    let lines: Vec<String> = p1.lines().map(str::to_string).collect();
    assert_eq!(lines.len(), p1_events + 2);
    let last = lines.len() - 1;
    let header: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(header["type"], "veritrail-evidence-bundle");
    assert_eq!(header["query"]["subject"], "p1");
    let event: Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(event["event"]["subject"], "p1");

    let tampered = dir.path().join("tampered.ndjson");
    let cases: Vec<(&str, usize, String)> = vec![
        ("checkpoint tree size", 1, flip_after(&lines[0], "\\n", 0)),
        ("checkpoint root hash", 1, flip_after(&lines[0], "\\n", 4)),
        (
            "checkpoint signature",
            1,
            flip_after(&lines[0], "\u{2014} ", 40),
        ),
        ("event body", 2, flip_after(&lines[1], "\"ward\":\"ward", 0)),
        (
            "event subject",
            3,
            flip_after(&lines[2], "\"subject\":\"p", 0),
        ),
        ("salt", 2, flip_after(&lines[1], "\"salt\":\"", 10)),
        (
            "leaf commitment",
            2,
            flip_after(&lines[1], "commitment\\\":\\\"", 3),
        ),
        ("leaf hash", 2, flip_after(&lines[1], "\"leaf_hash\":\"", 5)),
        (
            "inclusion proof",
            2,
            flip_after(&lines[1], "\"inclusion_proof\":[\"", 7),
        ),
        ("leaf index", 2, flip_after(&lines[1], "\"index\":", 0)),
        (
            "end count",
            last + 1,
            flip_after(&lines[last], "\"events\":", 0),
        ),
    ];
    for (what, line, text) in cases {
        let n = if line == last + 1 { last } else { line - 1 };
        std::fs::write(&tampered, with_line(&lines, n, text)).unwrap();
        let v = verify(&tampered, &[&ecdsa, &ed25519]);
        assert!(!v.ok, "{what}: tampering was not detected");
        assert!(
            v.out.contains(&format!("line {line}:")),
            "{what}: wrong line reported: {}",
            v.out
        );
    }
    // A removed event is caught by the count; a cut file by the missing end.
    let mut removed = lines.clone();
    removed.remove(2);
    std::fs::write(&tampered, removed.join("\n") + "\n").unwrap();
    let v = verify(&tampered, &[&ecdsa]);
    assert!(
        !v.ok && v.out.contains(&format!("line {last}:")),
        "{}",
        v.out
    );
    std::fs::write(&tampered, lines[..last].join("\n") + "\n").unwrap();
    let v = verify(&tampered, &[&ecdsa]);
    assert!(!v.ok && v.out.contains("truncated"), "{}", v.out);
    // Someone else's key proves nothing.
    let other = veritrail::note::keys::LogKeys::generate().unwrap();
    let other_vkey = other
        .verifier_keys(header["origin"].as_str().unwrap())
        .unwrap()
        .ed25519;
    let v = verify(&file, &[&other_vkey]);
    assert!(!v.ok && v.out.contains("line 1:"), "{}", v.out);

    // The tlog-proof file verifies offline too, and tampering is caught.
    let proof_file = dir.path().join("event3.tlog-proof");
    std::fs::write(&proof_file, &proof).unwrap();
    let v = verify(&proof_file, &[&ecdsa, &ed25519]);
    assert!(
        v.ok && v.out.contains("OK: 1 event(s)"),
        "{}\n{proof}",
        v.out
    );
    let plines: Vec<String> = proof.split('\n').map(str::to_string).collect();
    assert_eq!(plines[2], format!("index {third}"));
    let mut bad = plines.clone();
    bad[2] = format!("index {}", third + 1);
    std::fs::write(&proof_file, bad.join("\n")).unwrap();
    assert!(!verify(&proof_file, &[&ecdsa]).ok);
    let mut bad = plines.clone();
    bad[3] = flip_after(&bad[3], "", 2);
    std::fs::write(&proof_file, bad.join("\n")).unwrap();
    let v = verify(&proof_file, &[&ecdsa]);
    assert!(!v.ok && v.out.contains("line 3:"), "{}", v.out);
}
