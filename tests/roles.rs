//! The route × role matrix, through the real binary: which key may call
//! which route, and proof that no event content, subject or salt is
//! reachable without an auditor or admin key — public routes expose only
//! commitments.

mod common;

use common::{Server, create_key, create_key_for_app, create_revoked_key, http};
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Nobody,
    Garbage,
    Revoked,
    Writer,
    Auditor,
    Admin,
}

const EVERYONE: [Who; 6] = [
    Who::Nobody,
    Who::Garbage,
    Who::Revoked,
    Who::Writer,
    Who::Auditor,
    Who::Admin,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Public,
    Writer,
    Auditor,
    Admin,
}

/// The status a caller gets: 401 without a valid key, 403 with the wrong role.
fn expected(class: Class, who: Who, ok: u16) -> u16 {
    let allowed = match class {
        Class::Public => true,
        Class::Writer => who == Who::Writer,
        Class::Auditor => matches!(who, Who::Auditor | Who::Admin),
        Class::Admin => who == Who::Admin,
    };
    match (allowed, who) {
        (true, _) => ok,
        (false, Who::Nobody | Who::Garbage | Who::Revoked) => 401,
        (false, _) => 403,
    }
}

struct Route {
    method: Method,
    path: String,
    body: Option<Value>,
    class: Class,
    ok: u16,
}

fn route(method: Method, path: &str, body: Option<Value>, class: Class, ok: u16) -> Route {
    Route {
        method,
        path: path.to_string(),
        body,
        class,
        ok,
    }
}

fn secret_event() -> Value {
    json!({
        "actor": { "id": "ACTOR-SECRET-7", "type": "user" },
        "action": "record.read",
        "resource": { "type": "patient_record", "id": "RESOURCE-SECRET-7" },
        "subject": "SUBJECT-SECRET-7",
        "purpose": "treatment",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00Z",
        "context": { "note": "CONTEXT-SECRET-7" },
    })
}

/// A log with a writer, an auditor and a revoked key, and two events whose
/// every field holds a secret; `secrets` are those values and the salt.
struct Fixture {
    _server: Server,
    _dir: tempfile::TempDir,
    url: String,
    admin: String,
    writer: String,
    auditor: String,
    revoked: String,
    revoked_id: String,
    /// The writer's receipt for the two events.
    receipt: String,
    /// The first one's leaf index.
    first: u64,
    secrets: [String; 6],
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("log"), &["--checkpoint-interval-ms", "50"]);
        let url = server.url.clone();
        let admin = server.admin_key();
        let writer = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
        let auditor = create_key(&url, &admin, "jane", "auditor").await;
        let revoked = create_revoked_key(&url, &admin, "gone", "auditor").await;
        let revoked_id = revoked.split('_').nth(1).unwrap().to_string();
        let resp = http()
            .post(format!("{url}/v1/events?wait=checkpoint"))
            .bearer_auth(&writer)
            .json(&json!({ "events": [secret_event(), secret_event()] }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let receipt = resp.text().await.unwrap();
        let first = serde_json::from_str::<Value>(&receipt).unwrap()["events"][0]["index"]
            .as_u64()
            .unwrap();
        // The salt is only known to auditors.
        let one: Value = http()
            .get(format!("{url}/v1/events/{first}"))
            .bearer_auth(&auditor)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let salt_hex = one["salt"].as_str().unwrap().to_string();
        let salt_b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(hex::decode(&salt_hex).unwrap())
        };
        let secrets = [
            "SUBJECT-SECRET-7".to_string(),
            "ACTOR-SECRET-7".to_string(),
            "RESOURCE-SECRET-7".to_string(),
            "CONTEXT-SECRET-7".to_string(),
            salt_hex.clone(),
            salt_b64.trim_end_matches('=').to_string(),
        ];
        Fixture {
            _server: server,
            _dir: dir,
            url,
            admin,
            writer,
            auditor,
            revoked,
            revoked_id,
            receipt,
            first,
            secrets,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writers_receipt_shows_no_event_content_and_no_salt() {
    let f = Fixture::start().await;
    let Fixture {
        receipt, secrets, ..
    } = &f;
    for s in secrets {
        assert!(!receipt.contains(s), "the writer's receipt shows {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_admits_exactly_its_roles_and_only_auditors_see_content() {
    let f = Fixture::start().await;
    let Fixture {
        url,
        admin,
        writer,
        auditor,
        revoked,
        revoked_id,
        secrets,
        ..
    } = &f;
    let routes = vec![
        route(Method::GET, "/checkpoint", None, Class::Public, 200),
        route(Method::GET, "/v1/checkpoint", None, Class::Public, 200),
        route(Method::GET, "/v1/log", None, Class::Public, 200),
        route(Method::GET, "/tile/0/000.p/2", None, Class::Public, 200),
        route(
            Method::GET,
            "/tile/entries/000.p/2",
            None,
            Class::Public,
            200,
        ),
        route(
            Method::GET,
            "/v1/proof/inclusion?index=0",
            None,
            Class::Public,
            200,
        ),
        route(
            Method::GET,
            "/v1/proof/consistency?first=1",
            None,
            Class::Public,
            200,
        ),
        route(Method::GET, "/healthz", None, Class::Public, 200),
        route(Method::GET, "/metrics", None, Class::Public, 200),
        route(Method::GET, "/", None, Class::Public, 200),
        route(
            Method::POST,
            "/v1/events",
            Some(secret_event()),
            Class::Writer,
            200,
        ),
        route(Method::GET, "/v1/events", None, Class::Auditor, 200),
        route(
            Method::GET,
            "/v1/events?subject=SUBJECT-SECRET-7",
            None,
            Class::Auditor,
            200,
        ),
        route(Method::GET, "/v1/events/0", None, Class::Auditor, 200),
        route(
            Method::GET,
            "/v1/events/0/tlog-proof",
            None,
            Class::Auditor,
            200,
        ),
        route(Method::GET, "/v1/export", None, Class::Auditor, 200),
        route(Method::GET, "/v1/admin/keys", None, Class::Admin, 200),
        route(
            Method::POST,
            "/v1/admin/keys",
            Some(json!({ "name": "x", "role": "auditor" })),
            Class::Admin,
            201,
        ),
        route(
            Method::DELETE,
            &format!("/v1/admin/keys/{revoked_id}"),
            None,
            Class::Admin,
            200,
        ),
    ];
    // A hold and a policy to delete in the matrix.
    let (hold_id, policy_id) = {
        let h: Value = http()
            .post(format!("{url}/v1/admin/holds"))
            .bearer_auth(admin)
            .json(&json!({ "app": "held-app", "reason": "to release" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let p: Value = http()
            .post(format!("{url}/v1/admin/retention"))
            .bearer_auth(admin)
            .json(&json!({ "app": "gone-app", "keep_days": 1 }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (
            h["id"].as_str().unwrap().to_string(),
            p["id"].as_str().unwrap().to_string(),
        )
    };
    let routes = routes
        .into_iter()
        .chain(admin_governance_routes(&hold_id, &policy_id, f.first));

    let mut checked = 0;
    for r in routes {
        for who in EVERYONE {
            let token = match who {
                Who::Nobody => None,
                Who::Garbage => Some("vt_0123456789abcdef_nope".to_string()),
                Who::Revoked => Some(revoked.clone()),
                Who::Writer => Some(writer.clone()),
                Who::Auditor => Some(auditor.clone()),
                Who::Admin => Some(admin.clone()),
            };
            let mut req = http().request(r.method.clone(), format!("{url}{}", r.path));
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            if let Some(b) = &r.body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let want = expected(r.class, who, r.ok);
            assert_eq!(status, want, "{} {} as {who:?}: {text}", r.method, r.path);
            // Admins see the subject a legal hold names, as they typed it.
            let may_see_content = (r.class == Class::Auditor
                && matches!(who, Who::Auditor | Who::Admin))
                || (r.path.starts_with("/v1/admin/holds") && matches!(who, Who::Admin));
            if !may_see_content {
                for s in secrets {
                    assert!(
                        !text.contains(s.as_str()),
                        "{} {} as {who:?} shows {s}: {text}",
                        r.method,
                        r.path
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 27 * 6, "{checked}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_bundles_carry_only_app_time_and_commitment() {
    let f = Fixture::start().await;
    let Fixture { url, .. } = &f;
    // And the entry bundles (the leaves) carry only app, time and commitment.
    let bundle = common::get_bytes(&format!("{url}/tile/entries/000.p/2")).await;
    let entries = veritrail::tiles::decode_bundle(&bundle).unwrap();
    for e in entries {
        let leaf: Value = serde_json::from_slice(&e).unwrap();
        let mut keys: Vec<&str> = leaf
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(keys, ["app", "commitment", "received", "v"]);
    }
}

/// Admin routes for retention, holds and erasure (each with a body that
/// succeeds for an admin).
fn admin_governance_routes(hold_id: &str, policy_id: &str, event: u64) -> Vec<Route> {
    vec![
        route(
            Method::POST,
            "/v1/erasure",
            Some(json!({ "indexes": [event + 1], "reason": "matrix" })),
            Class::Admin,
            200,
        ),
        route(Method::GET, "/v1/admin/retention", None, Class::Admin, 200),
        route(
            Method::POST,
            "/v1/admin/retention",
            Some(json!({ "app": "clinic", "keep_days": 3650 })),
            Class::Admin,
            201,
        ),
        route(
            Method::DELETE,
            &format!("/v1/admin/retention/{policy_id}"),
            None,
            Class::Admin,
            200,
        ),
        route(
            Method::POST,
            "/v1/admin/retention/run",
            None,
            Class::Admin,
            200,
        ),
        route(Method::GET, "/v1/admin/holds", None, Class::Admin, 200),
        route(
            Method::POST,
            "/v1/admin/holds",
            Some(json!({ "subject": "SUBJECT-SECRET-7", "reason": "matrix" })),
            Class::Admin,
            201,
        ),
        route(
            Method::DELETE,
            &format!("/v1/admin/holds/{hold_id}"),
            None,
            Class::Admin,
            200,
        ),
    ]
}
