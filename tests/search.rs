//! The auditor's questions through the real binary: when did it happen
//! (not when the log heard of it), was it allowed, for what purpose, and
//! without the log's own records of earlier searches in the way. Search
//! and export answer the same filters; hostile values are refused with a
//! JSON error before anything is read or recorded.

mod common;

use common::{Server, auditor_get as get, create_key, create_key_for_app, http};
use serde_json::{Value, json};

/// Event `i` of the clinic: it occurred in March 2026 (received today),
/// denied when `i % 4 == 0`, for billing when `i % 3 == 0`.
fn march_event(i: usize) -> Value {
    json!({
        "actor": { "id": format!("dr{}", i % 2), "type": "user" },
        "action": "record.read",
        "resource": { "type": "patient_record", "id": format!("r{i}") },
        "subject": "patient-7",
        "purpose": if i.is_multiple_of(3) { "billing" } else { "treatment" },
        "outcome": if i.is_multiple_of(4) { "denied" } else { "success" },
        "occurred_at": format!("2026-03-{:02}T09:30:00Z", i + 1),
    })
}

fn resources(v: &Value) -> Vec<String> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn expect(f: impl Fn(usize) -> bool) -> Vec<String> {
    (0..20)
        .rev()
        .filter(|i| f(*i))
        .map(|i| format!("r{i}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_search_by_when_it_happened_how_it_ended_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("log"), &["--checkpoint-interval-ms", "50"]);
    let url = server.url.clone();
    let admin = server.admin_key();
    let clinic = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
    let auditor = create_key(&url, &admin, "dpo-jane", "auditor").await;
    let resp = http()
        .post(format!("{url}/v1/events?wait=checkpoint"))
        .bearer_auth(&clinic)
        .json(&json!({ "events": (0..20).map(march_event).collect::<Vec<_>>() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Occurred in March, received today: a March search finds them all, a
    // December one none; the receive time is its own filter.
    let march = "since=2026-03-01T00:00:00Z&until=2026-04-01T00:00:00Z";
    let (status, _, found) = get(&format!("{url}/v1/events?{march}"), &auditor).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(resources(&found), expect(|_| true));
    assert_eq!(found["total"], json!({ "count": 20, "exact": true }));
    let (_, _, december) = get(
        &format!("{url}/v1/events?since=2026-12-01T00:00:00Z&until=2027-01-01T00:00:00Z"),
        &auditor,
    )
    .await;
    assert_eq!(resources(&december), Vec::<String>::new());
    assert_eq!(december["total"], json!({ "count": 0, "exact": true }));
    let (_, _, received_in_march) = get(
        &format!("{url}/v1/events?received_since=2026-03-01T00:00:00Z&received_until=2026-04-01T00:00:00Z"),
        &auditor,
    )
    .await;
    assert_eq!(resources(&received_in_march), Vec::<String>::new());
    let (_, _, received_lately) = get(
        &format!("{url}/v1/events?subject=patient-7&received_since=2026-04-01T00:00:00Z"),
        &auditor,
    )
    .await;
    assert_eq!(resources(&received_lately), expect(|_| true));
    // Half-open: 1 to 10 March.
    let (_, _, ten_days) = get(
        &format!("{url}/v1/events?since=2026-03-01T00:00:00Z&until=2026-03-10T09:30:00Z"),
        &auditor,
    )
    .await;
    assert_eq!(resources(&ten_days), expect(|i| i < 9));

    // Outcome and purpose, alone and together, with paging and counts.
    let (_, _, denied) = get(&format!("{url}/v1/events?outcome=denied"), &auditor).await;
    assert_eq!(resources(&denied), expect(|i| i % 4 == 0));
    let (_, _, billing) = get(
        &format!("{url}/v1/events?purpose=billing&outcome=success&limit=2"),
        &auditor,
    )
    .await;
    let want = expect(|i| i % 3 == 0 && i % 4 != 0);
    assert_eq!(resources(&billing), want[..2].to_vec());
    assert_eq!(
        billing["total"],
        json!({ "count": want.len(), "exact": true })
    );
    let cursor = billing["next_cursor"].as_str().expect("more pages");
    let (_, _, second) = get(
        &format!("{url}/v1/events?purpose=billing&outcome=success&limit=2&cursor={cursor}"),
        &auditor,
    )
    .await;
    assert_eq!(resources(&second), want[2..4].to_vec());
    assert_eq!(second["total"], billing["total"]);

    // The searches above are in the log, about patient-7 where they named
    // it, but hidden from results unless asked for, and marked.
    let (_, _, subject) = get(&format!("{url}/v1/events?subject=patient-7"), &auditor).await;
    assert_eq!(resources(&subject), expect(|_| true));
    assert!(
        subject["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["audit_record"] == false && e["app"] == "clinic")
    );
    let (_, _, with_audit) = get(
        &format!("{url}/v1/events?subject=patient-7&include_audit=true"),
        &auditor,
    )
    .await;
    let audit: Vec<&Value> = with_audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["audit_record"] == true)
        .collect();
    assert!(!audit.is_empty(), "{with_audit}");
    assert!(audit.iter().all(|e| e["app"] == "veritrail"
        && e["event"]["action"] == "audit.search"
        && e["event"]["purpose"] == "audit"));
    assert_eq!(
        with_audit["total"]["count"].as_u64().unwrap(),
        20 + audit.len() as u64
    );

    // Export answers the same filters, and its header says which times
    // bound it.
    let resp = http()
        .get(format!("{url}/v1/export?{march}&outcome=denied"))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["query"]["occurred_since"], "2026-03-01T00:00:00Z");
    assert_eq!(lines[0]["query"]["outcome"], "denied");
    assert_eq!(lines[0]["query"]["include_audit"], false);
    let exported: Vec<&str> = lines[1..lines.len() - 1]
        .iter()
        .map(|l| l["event"]["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(exported, expect(|i| i % 4 == 0));
    assert_eq!(lines.last().unwrap()["events"], exported.len());

    // Hostile or malformed values: a JSON 400, nothing read, nothing
    // recorded.
    for bad in [
        "since=March",
        "until=2026-03-32T00:00:00Z",
        "received_since=0",
        "received_since=2026-03-02T00:00:00Z&received_until=2026-03-01T00:00:00Z",
        "outcome=allowed",
        "outcome=",
        "outcome=DENIED",
        "purpose=",
        "include_audit=yes",
        "include_audit=",
        "cursor=djI6MTox",
        "since=2026-03-01T00:00:00Z%00",
        "purpose=%27%20OR%201%3D1--",
    ] {
        for route in ["v1/events", "v1/export"] {
            let resp = http()
                .get(format!("{url}/{route}?{bad}"))
                .bearer_auth(&auditor)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let recorded = resp.headers().contains_key("veritrail-audit-index");
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if bad.starts_with("purpose=%27") {
                // A strange purpose is just a purpose nobody used.
                assert_eq!(status, 200, "{route}?{bad}");
                continue;
            }
            assert_eq!(status, 400, "{route}?{bad}: {body}");
            assert!(
                body["error"]["message"].is_string(),
                "{route}?{bad}: {body}"
            );
            assert!(!recorded, "{route}?{bad} was recorded");
        }
    }
    let long = "x".repeat(257);
    let (status, audit, _) = get(&format!("{url}/v1/events?purpose={long}"), &auditor).await;
    assert_eq!((status, audit), (400, None));
    // The log's own records hold the accepted queries only.
    let (_, _, records) = get(
        &format!("{url}/v1/events?app=veritrail&limit=1000"),
        &auditor,
    )
    .await;
    let records = records["events"].to_string();
    for rejected in ["March", "allowed", "DENIED", "2026-03-32", "djI6MTox"] {
        assert!(!records.contains(rejected), "{rejected} was recorded");
    }
    assert!(records.contains("' OR 1=1--"));
    server.stop();
}
