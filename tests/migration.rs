//! A data directory written by the version before storage layout 2 (a
//! sled key per event) opens with the same tree, checkpoint, events,
//! erasures, idempotency ids and leaf-hash lookups, and fsck finds it
//! clean afterwards. The fixture and how it was made:
//! `tests/fixtures/layout1/README.md`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, auditor_get, binary, create_key, create_key_for_app, event, get_bytes};
use reqwest::Method;

const ROOT: &str = "MucGPVx02GU8b2E+rSOs3FqhzXHvuMI4a+b76e+GnLs=";

fn unpack(to: &Path) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/layout1/log.tar.gz");
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success(), "unpacking {}", fixture.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_layout_1_is_converted_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    unpack(dir.path());
    let data = dir.path().join("log");

    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let url = server.url.clone();
    let note = String::from_utf8(get_bytes(&format!("{url}/checkpoint")).await).unwrap();
    let lines: Vec<&str> = note.lines().collect();
    assert_eq!(
        &lines[..3],
        &["fixture.example/layout1", "702", ROOT],
        "{note}"
    );

    let admin = server.admin_key();
    let auditor = create_key(&url, &admin, "auditor", "auditor").await;
    // Bodies: kept, erased by subject, erased by index.
    let (status, _, body) = auditor_get(&format!("{url}/v1/events/42"), &auditor).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["event"]["context"]["n"], 42, "{body}");
    assert_eq!(body["event"]["id"], "evt-42", "{body}");
    for erased in [5, 18, 300] {
        let (status, _, body) = auditor_get(&format!("{url}/v1/events/{erased}"), &auditor).await;
        assert_eq!(status, 410, "leaf {erased}: {body}");
    }
    let (status, _, body) = auditor_get(&format!("{url}/v1/events/699"), &auditor).await;
    assert_eq!(
        (status, &body["event"]["id"]),
        (200, &serde_json::json!("evt-699")),
        "{body}"
    );

    // Idempotency ids: a retried event gets its first index.
    let writer = create_key_for_app(&url, &admin, "again", "writer", "app-b").await;
    let (status, answer) = common::post_events(
        &url,
        &writer,
        "",
        vec![
            event(7, Some("evt-7".into())),
            event(700, Some("evt-new".into())),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let receipts = answer["events"].as_array().unwrap();
    assert_eq!(receipts[0]["index"], 7, "{answer}");
    assert_eq!(receipts[0]["duplicate"], true, "{answer}");
    assert_eq!(receipts[1]["duplicate"], false, "{answer}");

    // Leaf hashes of converted leaves are found.
    let leaf_hash = receipts[0]["leaf_hash"].as_str().unwrap();
    let hash = leaf_hash.replace('+', "-").replace('/', "_");
    let (status, proof) = common::call(
        Method::GET,
        &format!("{url}/v1/proof/inclusion?hash={hash}"),
        "",
        None,
    )
    .await;
    assert_eq!(status, 200, "{proof}");
    assert_eq!(proof["leaf_index"], 7, "{proof}");

    // Its keys were moved into the key store, and the keyring is gone.
    assert!(data.join("keys/root").is_file());
    assert!(!data.join("keyring").exists());
    // Erasing an event of the earlier key format keeps the others of its
    // subject's key (re-sealed once, under keys of their own); erasing a
    // subject destroys every one of its events.
    for body in [
        serde_json::json!({ "indexes": [42], "reason": "art. 17" }),
        serde_json::json!({ "subject": "patient-7", "reason": "art. 17" }),
    ] {
        let (status, out) = common::call(
            Method::POST,
            &format!("{url}/v1/erasure"),
            &admin,
            Some(body),
        )
        .await;
        assert_eq!(status, 200, "{out}");
    }
    for (index, want) in [(42, 410), (42 + 13, 200), (7, 410), (7 + 13, 410), (8, 200)] {
        let (status, _, body) = auditor_get(&format!("{url}/v1/events/{index}"), &auditor).await;
        assert_eq!(status, want, "leaf {index}: {body}");
    }

    assert!(server.stop().success());
    let out = Command::new(binary())
        .arg("fsck")
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.trim_end().ends_with("clean"), "{stdout}");
}
