//! Legal holds listed by the subject the admin typed, through the real
//! binary: admins see it, other roles are refused, the data directory never
//! holds it in plaintext, and once the subject is erased a backup taken
//! while the hold existed no longer opens it.

mod common;

use std::path::Path;

use common::{
    Server, call, create_key, create_key_for_app, files_containing, submit, veritrail_async,
};
use serde_json::{Value, json};

async fn holds(url: &str, key: &str) -> (u16, Value) {
    call(
        reqwest::Method::GET,
        &format!("{url}/v1/admin/holds"),
        key,
        None,
    )
    .await
}

fn held<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["holds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id)
        .unwrap_or_else(|| panic!("hold {id} not listed: {list}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test]
async fn holds_list_the_typed_subject_to_admins_and_its_erasure_makes_every_copy_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key_for_app(&url, &admin, "w", "writer", "clinic").await;
    let auditor = create_key(&url, &admin, "a", "auditor").await;
    // One subject with events, one with none yet.
    let with_events = "Hold-Marker Ann Example";
    let without = "Hold-Marker Bo Nobody";
    submit(
        &url,
        &writer,
        vec![json!({
            "actor": { "id": "dr-1", "type": "user" }, "action": "record.read",
            "resource": { "type": "record", "id": "r-1" }, "subject": with_events,
            "purpose": "treatment", "outcome": "success",
            "occurred_at": "2026-03-02T10:00:00Z",
        })],
    )
    .await;
    let mut ids = Vec::new();
    for (subject, reason) in [(with_events, "case 1"), (without, "case 2")] {
        let (status, hold) = call(
            reqwest::Method::POST,
            &format!("{url}/v1/admin/holds"),
            &admin,
            Some(json!({ "subject": subject, "reason": reason })),
        )
        .await;
        assert_eq!(status, 201, "{hold}");
        assert_eq!(hold["subject"], subject);
        assert_eq!(hold["subject_form"], "typed");
        assert_eq!(hold["subject_pseudonym"].as_str().unwrap().len(), 64);
        assert!(hold.get("subject_sealed").is_none(), "{hold}");
        ids.push(hold["id"].as_str().unwrap().to_string());
    }
    let (status, app_hold) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/admin/holds"),
        &admin,
        Some(json!({ "app": "clinic", "reason": "case 3" })),
    )
    .await;
    assert_eq!(status, 201, "{app_hold}");
    assert!(app_hold.get("subject_form").is_none(), "{app_hold}");

    let (status, list) = holds(&url, &admin).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(held(&list, &ids[0])["subject"], with_events);
    assert_eq!(held(&list, &ids[1])["subject"], without);
    assert_eq!(held(&list, &ids[1])["subject_form"], "typed");
    // Admins only.
    for key in [&auditor, &writer] {
        let (status, body) = holds(&url, key).await;
        assert_eq!(status, 403, "{body}");
        assert!(!body.to_string().contains("Hold-Marker"), "{body}");
    }
    // The log's record of a hold names the pseudonym alone.
    let (status, records) = call(
        reqwest::Method::GET,
        &format!("{url}/v1/events?action=admin.hold.create&include_audit=true"),
        &auditor,
        None,
    )
    .await;
    assert_eq!(status, 200, "{records}");
    assert!(
        !records["events"].as_array().unwrap().is_empty()
            && !records.to_string().contains("Hold-Marker"),
        "{records}"
    );

    // A backup while the holds stand.
    let backup = dir.path().join("backup");
    let out = veritrail_async(
        &[
            "backup",
            "--url",
            &url,
            "--admin-key-file",
            s(&data.join("admin.key")),
            "--to",
            s(&backup),
        ],
        &[],
    )
    .await;
    assert!(out.ok(), "backup: {}", out.all());
    assert!(
        files_containing(&backup, b"Hold-Marker").is_empty(),
        "the backup holds a subject in plaintext"
    );

    // The hold blocks the erasure of its subject; released, the subject is
    // erased.
    let erase = json!({ "subject": without, "reason": "art. 17" });
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/erasure"),
        &admin,
        Some(erase.clone()),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = call(
        reqwest::Method::DELETE,
        &format!("{url}/v1/admin/holds/{}", ids[1]),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("{url}/v1/erasure"),
        &admin,
        Some(erase),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["keys_destroyed"].as_u64().unwrap() >= 1, "{body}");
    server.stop();
    assert!(
        files_containing(&data, b"Hold-Marker").is_empty(),
        "the data directory holds a subject in plaintext"
    );

    // The backup restored with the key store as it is now: the erased
    // subject's hold no longer opens, the other still does.
    let restored = dir.path().join("restored");
    let out = veritrail_async(
        &[
            "restore",
            "--from",
            s(&backup),
            "--data",
            s(&restored),
            "--keys",
            s(&data),
        ],
        &[],
    )
    .await;
    assert!(out.ok(), "restore: {}", out.all());
    let master = format!("{}.master.key", data.display());
    let again = Server::start(&restored, &["--master-key-file", &master]);
    let (status, list) = holds(&again.url, &again.admin_key()).await;
    assert_eq!(status, 200, "{list}");
    let gone = held(&list, &ids[1]);
    assert_eq!(gone["subject_form"], "unreadable", "{gone}");
    assert!(gone.get("subject").is_none(), "{gone}");
    assert_eq!(held(&list, &ids[0])["subject"], with_events);
    again.stop();
}
