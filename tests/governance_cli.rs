//! The admin and auditor CLI wrappers against a real server: API keys,
//! holds, erasure, retention and export, as an operator would type them.
//! The CLI's client and the server share their request and answer types;
//! these runs are where a disagreement between the two would show.

mod common;

use common::{Server, create_key, create_key_for_app, get_json, http, submit, veritrail};
use serde_json::json;

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let ran = veritrail(args, env);
    (ran.ok(), ran.all())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_hold_erase_expire_and_export_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("log"), &["--checkpoint-interval-ms", "50"]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
    let auditor = create_key(&url, &admin, "jane", "auditor").await;
    let mut events = Vec::new();
    for i in 0..4 {
        let mut e = common::event(i, None);
        e["subject"] = json!(if i < 2 { "Ann Example" } else { "bob" });
        events.push(e);
    }
    let receipt = submit(&url, &writer, events).await;
    // Event `i` is leaf `first + i`, after the log's own records.
    let first = receipt["events"][0]["index"].as_u64().unwrap();
    let third = (first + 2).to_string();
    let env = [("VERITRAIL_ADMIN_KEY", admin.as_str())];

    let (ok, out) = run(
        &[
            "holds",
            "create",
            "--url",
            &url,
            "--subject",
            "Ann Example",
            "--reason",
            "case 9",
        ],
        &env,
    );
    assert!(ok, "{out}");
    let hold: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (ok, out) = run(
        &[
            "erase",
            "--url",
            &url,
            "--subject",
            "Ann Example",
            "--reason",
            "art. 17",
        ],
        &env,
    );
    assert!(
        !ok && out.contains("409") && out.contains("legal hold"),
        "{out}"
    );
    let (ok, out) = run(&["holds", "list", "--url", &url], &env);
    assert!(
        ok && out.contains("case 9") && out.contains("Ann Example"),
        "{out}"
    );
    let (ok, out) = run(
        &[
            "holds",
            "release",
            "--url",
            &url,
            hold["id"].as_str().unwrap(),
        ],
        &env,
    );
    assert!(ok, "{out}");
    let (ok, out) = run(
        &[
            "erase",
            "--url",
            &url,
            "--subject",
            "Ann Example",
            "--reason",
            "art. 17",
        ],
        &env,
    );
    assert!(
        ok && out.contains("erased the subject: destroyed 1 data key(s)"),
        "{out}"
    );
    let (ok, out) = run(
        &[
            "erase",
            "--url",
            &url,
            "--index",
            &third,
            "--reason",
            "mistaken entry",
        ],
        &env,
    );
    assert!(ok && out.contains("erased 1 event(s)"), "{out}");
    let resp = http()
        .get(format!("{url}/v1/events/{first}"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 410);

    let (ok, out) = run(
        &[
            "retention",
            "set",
            "--url",
            &url,
            "--app",
            "clinic",
            "--keep-days",
            "0",
        ],
        &env,
    );
    assert!(ok, "{out}");
    let (ok, out) = run(&["retention", "list", "--url", &url], &env);
    assert!(ok && out.contains("\"keep_days\": 0"), "{out}");
    let (ok, out) = run(&["retention", "run", "--url", &url], &env);
    assert!(ok && out.contains("erased 1 expired event(s)"), "{out}");

    // The auditor exports the log's own records of the erasures (once a
    // checkpoint covers them) and verifies the bundle.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let bundle = dir.path().join("b.ndjson");
    let (ok, out) = run(
        &[
            "export",
            "--url",
            &url,
            "--app",
            "veritrail",
            "--action",
            "admin.erasure",
            "--out",
            bundle.to_str().unwrap(),
        ],
        &[("VERITRAIL_API_KEY", auditor.as_str())],
    );
    assert!(ok, "{out}");
    let log = get_json(&format!("{url}/v1/log")).await;
    let vkey = log["verifier_keys"]["ed25519"].as_str().unwrap();
    let (ok, out) = run(
        &["verify-bundle", bundle.to_str().unwrap(), "--vkey", vkey],
        &[],
    );
    assert!(ok && out.contains("OK: 2 event(s)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_create_list_and_revoke_api_keys_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("log"), &[]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let env = [("VERITRAIL_ADMIN_KEY", admin.as_str())];

    let o = veritrail(
        &[
            "keys",
            "create",
            "--url",
            &url,
            "--role",
            "writer",
            "--name",
            "billing",
            "--app",
            "billing-app",
        ],
        &env,
    );
    let stderr = &o.stderr;
    assert!(o.ok(), "{stderr}");
    assert!(
        stderr.starts_with("created writer key \"billing\" (id "),
        "{stderr}"
    );
    let token = o.stdout.trim().to_string();
    let id = token.split('_').nth(1).unwrap().to_string();
    assert!(stderr.contains(&format!("(id {id})")), "{stderr}");
    let submit = |n| {
        http()
            .post(format!("{url}/v1/events"))
            .bearer_auth(&token)
            .json(&common::event(n, None))
            .send()
    };
    assert_eq!(
        submit(0).await.unwrap().status(),
        200,
        "the new writer key works"
    );

    let (ok, out) = run(&["keys", "list", "--url", &url], &env);
    assert!(ok, "{out}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let billing = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(billing["name"], "billing");
    assert_eq!(billing["role"], "writer");
    assert_eq!(billing["app"], "billing-app");
    assert!(billing["revoked_at"].is_null(), "{out}");
    assert!(!out.contains(&token), "keys list shows no secret: {out}");

    let (ok, out) = run(&["keys", "revoke", "--url", &url, &id], &env);
    assert!(
        ok && out.starts_with(&format!("revoked {id} at 20")),
        "{out}"
    );
    assert_eq!(
        submit(1).await.unwrap().status(),
        401,
        "a revoked key is refused"
    );

    let (ok, out) = run(
        &[
            "keys", "create", "--url", &url, "--role", "boss", "--name", "x",
        ],
        &env,
    );
    assert!(!ok && out.contains("400") && out.contains("role"), "{out}");
}

/// `keys revoke` puts its argument in the URL path: it must stay one
/// segment there, or a crafted id reaches another route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_revoke_cannot_reach_another_route_through_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("log"), &[]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let env = [("VERITRAIL_ADMIN_KEY", admin.as_str())];
    let (ok, out) = run(
        &["retention", "set", "--url", &url, "--keep-days", "30"],
        &env,
    );
    assert!(ok, "{out}");
    let policy: serde_json::Value = serde_json::from_str(&out).unwrap();
    let policy_id = policy["id"].as_str().unwrap();

    // Unencoded, this id would make the call `DELETE /v1/admin/retention/<id>`.
    let crafted = format!("../retention/{policy_id}");
    let (ok, out) = run(&["keys", "revoke", "--url", &url, &crafted], &env);
    assert!(!ok && out.contains("404"), "{out}");
    let (ok, out) = run(&["retention", "list", "--url", &url], &env);
    assert!(
        ok && out.contains(policy_id),
        "the policy is still there: {out}"
    );

    for dots in [".", ".."] {
        let (ok, out) = run(&["keys", "revoke", "--url", &url, dots], &env);
        assert!(!ok && out.contains("is not an id"), "{out}");
    }
}
