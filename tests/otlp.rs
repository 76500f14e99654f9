//! `POST /v1/logs` through the real binary, in the OTLP/JSON encoding (the
//! protobuf encoding is driven by the OpenTelemetry SDK in
//! scripts/otlp-sdk.sh): records become events found by subject, a record
//! that does not map is named in the partial-success answer while the others
//! are appended, a repeated request appends nothing, and bad input (a gzip
//! bomb, too many records, undecodable bodies, wrong keys) changes nothing.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{Server, create_key, create_key_for_app, http};
use serde_json::{Value, json};

/// One OTLP/JSON log record with the audit attributes.
fn record(subject: &str, action: Option<&str>, extra: &[(&str, Value)]) -> Value {
    let mut attributes = vec![
        json!({"key": "audit.actor.id", "value": {"stringValue": "alice"}}),
        json!({"key": "audit.actor.type", "value": {"stringValue": "user"}}),
        json!({"key": "client.address", "value": {"stringValue": "2001:db8::0:1"}}),
        json!({"key": "audit.resource.type", "value": {"stringValue": "invoice"}}),
        json!({"key": "audit.resource.id", "value": {"stringValue": "inv-7"}}),
        json!({"key": "audit.subject", "value": {"stringValue": subject}}),
        json!({"key": "audit.purpose", "value": {"stringValue": "billing"}}),
        json!({"key": "audit.outcome", "value": {"stringValue": "success"}}),
        json!({"key": "http.route", "value": {"stringValue": "/invoices/{id}"}}),
    ];
    if let Some(a) = action {
        attributes.push(json!({"key": "audit.action", "value": {"stringValue": a}}));
    }
    for (k, v) in extra {
        attributes.push(json!({"key": k, "value": v}));
    }
    json!({
        "timeUnixNano": "1764064492123456789",
        "observedTimeUnixNano": 1764064492200000000u64,
        "severityNumber": 9,
        "body": {"stringValue": "invoice read"},
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "attributes": attributes,
    })
}

fn request(service: &str, records: Vec<Value>) -> Value {
    json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{"scope": {"name": "billing"}, "logRecords": records}],
    }]})
}

async fn post(url: &str, key: &str, content_type: &str, body: Vec<u8>, gzip: bool) -> (u16, Value) {
    let mut req = http()
        .post(format!("{url}/v1/logs"))
        .bearer_auth(key)
        .header("content-type", content_type);
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    let resp = req.body(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = resp.bytes().await.unwrap();
    let value = if ct.as_deref() == Some("application/json") {
        serde_json::from_slice(&bytes).unwrap()
    } else {
        json!({ "content_type": ct, "len": bytes.len() })
    };
    (status, value)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

async fn search(url: &str, auditor: &str, subject: &str) -> Vec<Value> {
    let resp = http()
        .get(format!("{url}/v1/events?subject={subject}"))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    v["events"].as_array().unwrap().clone()
}

/// The published tree size, once the checkpoint has caught up with the
/// durable log.
async fn settled_size(url: &str) -> u64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v = common::get_json(&format!("{url}/v1/checkpoint")).await;
    v["tree_size"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_become_events_and_a_rejected_record_spoils_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key_for_app(&url, &admin, "billing", "writer", "billing").await;
    let auditor = create_key(&url, &admin, "reader", "auditor").await;

    let body = request(
        "billing",
        vec![
            record("subj-a", Some("invoice.read"), &[]),
            record("subj-b", None, &[]),
            record(
                "subj-c",
                Some("invoice.paid"),
                &[("audit.event.id", json!({"stringValue": "pay-1"}))],
            ),
            record(
                "subj-d",
                Some("invoice.read"),
                &[("audit.colour", json!({"stringValue": "red"}))],
            ),
        ],
    );
    let bytes = serde_json::to_vec(&body).unwrap();
    let before = settled_size(&url).await;
    let (status, answer) = post(&url, &writer, "application/json", bytes.clone(), false).await;
    assert_eq!(status, 200, "{answer}");
    let partial = &answer["partialSuccess"];
    assert_eq!(partial["rejectedLogRecords"], "2", "{answer}");
    let message = partial["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("resourceLogs[0].scopeLogs[0].logRecords[1]")
            && message.contains("audit.action"),
        "{message}"
    );
    assert!(
        message.contains("logRecords[3]") && message.contains("audit.colour"),
        "{message}"
    );
    assert!(
        !message.contains("logRecords[0]") && !message.contains("logRecords[2]"),
        "{message}"
    );
    assert_eq!(settled_size(&url).await, before + 2);

    // The exporter's retry: the same request again appends nothing, gzip or not.
    let (status, again) = post(&url, &writer, "application/json", gzip(&bytes), true).await;
    assert_eq!(status, 200);
    assert_eq!(again, answer);
    assert_eq!(settled_size(&url).await, before + 2);

    let found = search(&url, &auditor, "subj-a").await;
    assert_eq!(found.len(), 1);
    let ev = &found[0];
    assert_eq!(ev["app"], "billing");
    let e = &ev["event"];
    assert_eq!(e["action"], "invoice.read");
    assert_eq!(
        e["actor"],
        json!({"id": "alice", "type": "user", "ip": "2001:db8::1"})
    );
    assert_eq!(e["resource"], json!({"type": "invoice", "id": "inv-7"}));
    assert_eq!(e["occurred_at"], "2025-11-25T09:54:52.123Z");
    assert!(e["id"].as_str().unwrap().starts_with("otlp-"), "{e}");
    assert_eq!(
        e["context"]["otel"],
        json!({
            "attributes": {"http.route": "/invoices/{id}"},
            "body": "invoice read",
            "scope": "billing",
            "severity_number": 9,
            "span_id": "eee19b7ec3c1b174",
            "trace_id": "5b8efff798038103d269b633813fc60c",
        })
    );
    let paid = search(&url, &auditor, "subj-c").await;
    assert_eq!(paid.len(), 1);
    assert_eq!(paid[0]["event"]["id"], "pay-1");
    assert!(search(&url, &auditor, "subj-b").await.is_empty());
    assert!(search(&url, &auditor, "subj-d").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_otlp_status_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let writer = create_key_for_app(&url, &admin, "shop", "writer", "shop").await;
    let auditor = create_key(&url, &admin, "reader", "auditor").await;
    let one = serde_json::to_vec(&request("shop", vec![record("s", Some("a.b"), &[])])).unwrap();
    let before = settled_size(&url).await;

    // A gzip bomb: 64 MiB of zeros in a small body.
    let bomb = gzip(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 1 << 20);
    let (status, v) = post(&url, &writer, "application/x-protobuf", bomb, true).await;
    assert_eq!(status, 413, "{v}");
    assert_eq!(v["content_type"], "application/x-protobuf");
    let (status, v) = post(
        &url,
        &writer,
        "application/json",
        gzip(&[b' '; 5 << 20]),
        true,
    )
    .await;
    assert_eq!(status, 413);
    assert!(
        v["message"].as_str().unwrap().contains("decompressed"),
        "{v}"
    );

    // Corrupt gzip, undecodable protobuf and JSON, the wrong shape.
    let (status, v) = post(
        &url,
        &writer,
        "application/json",
        b"\x1f\x8b\x08garbage".to_vec(),
        true,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("gzip"), "{v}");
    let (status, v) = post(
        &url,
        &writer,
        "application/x-protobuf",
        vec![0xff; 64],
        false,
    )
    .await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["content_type"], "application/x-protobuf");
    let (status, v) = post(
        &url,
        &writer,
        "application/json",
        b"{not json".to_vec(),
        false,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(v["code"], 3, "{v}");
    let wrong = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"attributes": 5}]}]}]});
    let (status, v) = post(
        &url,
        &writer,
        "application/json",
        serde_json::to_vec(&wrong).unwrap(),
        false,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("resourceLogs[0].scopeLogs[0].logRecords[0].attributes"),
        "{v}"
    );

    // Too many records for one request: the whole request is refused.
    let many: Vec<Value> = (0..1001)
        .map(|i| record(&format!("m{i}"), Some("a.b"), &[]))
        .collect();
    let (status, v) = post(
        &url,
        &writer,
        "application/json",
        serde_json::to_vec(&request("shop", many)).unwrap(),
        false,
    )
    .await;
    assert_eq!(status, 413);
    assert!(v["message"].as_str().unwrap().contains("1000"), "{v}");

    // Wrong media type, encoding and keys.
    let (status, _) = post(&url, &writer, "text/plain", one.clone(), false).await;
    assert_eq!(status, 415);
    let resp = http()
        .post(format!("{url}/v1/logs"))
        .bearer_auth(&writer)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body(one.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let (status, v) = post(
        &url,
        "vt_0000000000000000_00",
        "application/json",
        one.clone(),
        false,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(v["code"], 16, "{v}");
    let (status, v) = post(&url, &auditor, "application/json", one.clone(), false).await;
    assert_eq!(status, 403);
    assert_eq!(v["code"], 7, "{v}");

    // A resource naming another app: every record of it is rejected.
    let other =
        serde_json::to_vec(&request("payroll", vec![record("s", Some("a.b"), &[])])).unwrap();
    let (status, v) = post(&url, &writer, "application/json", other, false).await;
    assert_eq!(status, 200);
    assert_eq!(v["partialSuccess"]["rejectedLogRecords"], "1");
    assert!(
        v["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("service.name"),
        "{v}"
    );

    assert_eq!(
        settled_size(&url).await,
        before,
        "bad input appended something"
    );
    // And the good request still goes in.
    let (status, v) = post(&url, &writer, "application/json", one, false).await;
    assert_eq!((status, v), (200, json!({})));
    assert_eq!(settled_size(&url).await, before + 1);
}
