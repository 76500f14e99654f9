//! Auditor reads through the real binary: one event with its proof, search
//! with filters and stable pagination, and the rule that every read is
//! itself appended to the log before the data is returned.

mod common;

use common::{
    Server, auditor_get as get, committed_size, create_key, create_key_for_app, get_json, hashes,
    http, log_verifiers, submit, verify_checkpoint,
};
use serde_json::{Value, json};
use veritrail::event::{LeafRecord, commitment};
use veritrail::merkle::{self, Hash};

fn ev(subject: &str, actor: &str, action: &str, resource: &str) -> Value {
    json!({
        "actor": { "id": actor, "type": "user" },
        "action": action,
        "resource": { "type": "patient_record", "id": resource },
        "subject": subject,
        "purpose": "treatment",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:00:00Z",
        "context": { "ward": "B" },
    })
}

fn indexes(v: &Value) -> Vec<u64> {
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}

/// A log with 30 clinic events (subject p{i%3}, actor dr{i%2}) and then 5 lab
/// events for p1, and a writer key for each app and an auditor key. The
/// log's own records of those keys come first: event `i` of the 35 is leaf
/// `first + i`.
struct Fixture {
    _server: Server,
    _dir: tempfile::TempDir,
    url: String,
    clinic: String,
    auditor: String,
    first: u64,
}

impl Fixture {
    /// The leaf indexes of a page, as numbers of the fixture's 35 events.
    fn numbers(&self, v: &Value) -> Vec<u64> {
        indexes(v).into_iter().map(|i| i - self.first).collect()
    }
}

impl Fixture {
    async fn start() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(&dir.path().join("log"), &["--checkpoint-interval-ms", "50"]);
        let url = server.url.clone();
        let admin = server.admin_key();
        let clinic = create_key_for_app(&url, &admin, "clinic", "writer", "clinic").await;
        let lab = create_key_for_app(&url, &admin, "lab", "writer", "lab").await;
        let auditor = create_key(&url, &admin, "dpo-jane", "auditor").await;
        let first = committed_size(&url).await;
        // 30 clinic events: subject p{i%3}, actor dr{i%2}; then 5 lab events for p1.
        let clinic_events: Vec<Value> = (0..30)
            .map(|i| {
                ev(
                    &format!("p{}", i % 3),
                    &format!("dr{}", i % 2),
                    "record.read",
                    &format!("r{i}"),
                )
            })
            .collect();
        submit(&url, &clinic, clinic_events).await;
        let lab_events: Vec<Value> = (0..5)
            .map(|i| ev("p1", "tech", "result.write", &format!("lab{i}")))
            .collect();
        submit(&url, &lab, lab_events).await;

        Fixture {
            _server: server,
            _dir: dir,
            url,
            clinic,
            auditor,
            first,
        }
    }
}

/// One event with its salt, leaf and proof; the read is itself a new leaf under
/// the auditor's name, in the history of the subject it touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_comes_with_its_proof_and_its_read_is_logged() {
    let f = Fixture::start().await;
    let (url, auditor) = (&f.url, &f.auditor);
    let log = get_json(&format!("{url}/v1/log")).await;
    let verifiers = log_verifiers(&log);
    // One event: body, salt, leaf and a proof into a signed checkpoint.
    let four = f.first + 4;
    let (status, audit_index, one) = get(&format!("{url}/v1/events/{four}"), auditor).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["event"]["subject"], "p1");
    assert_eq!(one["event"]["resource"]["id"], "r4");
    let salt: [u8; 32] = hex::decode(one["salt"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let canonical = serde_json_canonicalizer::to_vec(&one["event"]).unwrap();
    let leaf = one["leaf"].as_str().unwrap();
    let record = LeafRecord::parse(leaf.as_bytes()).unwrap();
    assert_eq!(commitment(&salt, &canonical), record.commitment);
    let leaf_hash = merkle::leaf_hash(leaf.as_bytes());
    assert_eq!(
        Hash::from_base64(one["leaf_hash"].as_str().unwrap()).unwrap(),
        leaf_hash
    );
    let cp = verify_checkpoint(one["checkpoint"].as_str().unwrap(), &verifiers);
    let proof = &one["inclusion_proof"];
    assert_eq!(proof["tree_size"].as_u64().unwrap(), cp.size);
    merkle::verify_inclusion(
        four,
        cp.size,
        &leaf_hash,
        &hashes(&proof["audit_path"]),
        &cp.root,
    )
    .unwrap();
    let audit_index = audit_index.expect("the read names its audit event");
    assert!(
        audit_index >= f.first + 35,
        "the audit event is a new leaf: {audit_index}"
    );

    // Every read above is in the log, as the log's own events, under the
    // auditor's name, with the query.
    let (_, _, reads) = get(
        &format!("{url}/v1/events?app=veritrail&action=audit.read&limit=1000"),
        auditor,
    )
    .await;
    let read = reads["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["index"].as_u64() == Some(audit_index))
        .expect("the audit event of the read is found");
    assert_eq!(read["event"]["actor"]["id"], "dpo-jane");
    assert_eq!(
        read["event"]["subject"], "p1",
        "the read names the subject it touched"
    );
    assert_eq!(read["event"]["context"]["details"]["index"], four);
    assert_eq!(read["app"], "veritrail");
    // A data subject's history shows who looked at it.
    let (_, _, p1_reads) = get(
        &format!("{url}/v1/events?subject=p1&app=veritrail"),
        auditor,
    )
    .await;
    assert!(!indexes(&p1_reads).is_empty());

    // A tlog-proof file for one event.
    let resp = http()
        .get(format!("{url}/v1/events/{four}/tlog-proof"))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
    let refs: Vec<&dyn veritrail::note::NoteVerifier> =
        verifiers.iter().map(|v| v.as_ref()).collect();
    let verified = veritrail::evidence::verify_tlog_proof(&text, &refs).unwrap();
    assert_eq!(verified.indexes, vec![four]);
}

/// Search: filters newest first, stable cursor pages while events arrive, time
/// ranges; every search is logged with its query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filters_pages_and_time_ranges_find_every_match_and_are_logged() {
    let f = Fixture::start().await;
    let (url, clinic, auditor) = (&f.url, &f.clinic, &f.auditor);
    // Search: filters, newest first.
    let (status, _, by_subject) =
        get(&format!("{url}/v1/events?subject=p1&limit=1000"), auditor).await;
    assert_eq!(status, 200, "{by_subject}");
    let mut expected: Vec<u64> = (0..30u64).filter(|i| i % 3 == 1).collect();
    expected.extend(30..35);
    expected.reverse();
    let got: Vec<u64> = f
        .numbers(&by_subject)
        .into_iter()
        .filter(|i| *i < 35)
        .collect();
    assert_eq!(got, expected);
    for e in by_subject["events"].as_array().unwrap() {
        assert_eq!(e["event"]["subject"], "p1");
        assert!(e["leaf_hash"].is_string() && e["salt"].is_string());
    }
    let (_, _, combined) = get(
        &format!("{url}/v1/events?subject=p1&actor=dr0&app=clinic"),
        auditor,
    )
    .await;
    let want: Vec<u64> = (0..30u64)
        .rev()
        .filter(|i| i % 3 == 1 && i % 2 == 0)
        .collect();
    assert_eq!(f.numbers(&combined), want);
    let (_, _, by_action) = get(&format!("{url}/v1/events?action=result.write"), auditor).await;
    assert_eq!(f.numbers(&by_action), vec![34, 33, 32, 31, 30]);
    let (_, _, by_resource) = get(&format!("{url}/v1/events?resource=r7"), auditor).await;
    assert_eq!(f.numbers(&by_resource), vec![7]);
    let (_, _, nobody) = get(&format!("{url}/v1/events?subject=nobody"), auditor).await;
    assert_eq!(f.numbers(&nobody), Vec::<u64>::new());
    assert!(nobody["next_cursor"].is_null());

    // Stable cursor pagination: pages of 4 cover the clinic's events once,
    // even while new events arrive between pages.
    let mut seen = Vec::new();
    let mut next = format!("{url}/v1/events?app=clinic&limit=4");
    loop {
        let (status, _, page) = get(&next, auditor).await;
        assert_eq!(status, 200, "{page}");
        assert!(page["events"].as_array().unwrap().len() <= 4);
        seen.extend(f.numbers(&page));
        submit(url, clinic, vec![ev("p9", "dr9", "record.read", "late")]).await;
        match page["next_cursor"].as_str() {
            Some(c) => next = format!("{url}/v1/events?app=clinic&limit=4&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..30u64).rev().collect::<Vec<_>>());

    // Time range on the log's receive time.
    let first = &by_action["events"].as_array().unwrap()[4];
    let received = first["received"].as_str().unwrap();
    let (_, _, since) = get(
        &format!("{url}/v1/events?action=result.write&received_since={received}"),
        auditor,
    )
    .await;
    assert_eq!(f.numbers(&since), vec![34, 33, 32, 31, 30]);
    let (_, _, until) = get(
        &format!("{url}/v1/events?action=result.write&received_until={received}"),
        auditor,
    )
    .await;
    assert_eq!(f.numbers(&until), Vec::<u64>::new());

    let (_, _, searches) = get(
        &format!("{url}/v1/events?app=veritrail&action=audit.search&limit=1000"),
        auditor,
    )
    .await;
    let searches = searches["events"].as_array().unwrap();
    assert!(searches.len() >= 10, "{}", searches.len());
    assert!(
        searches
            .iter()
            .any(|e| e["event"]["context"]["details"]["query"]["actor"] == "dr0")
    );
}

/// Bad queries read nothing and log nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_refused_and_not_logged() {
    let f = Fixture::start().await;
    let (url, auditor) = (&f.url, &f.auditor);
    for bad in [
        "limit=0",
        "limit=1001",
        "cursor=zzz",
        "since=yesterday",
        "since=2026-11-25T10:00:00Z&until=2026-11-24T10:00:00Z",
        "colour=red",
        "subject=",
    ] {
        let (status, audit, body) = get(&format!("{url}/v1/events?{bad}"), auditor).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            audit.is_none(),
            "a rejected query reads nothing and is not logged"
        );
    }
    let (status, _, _) = get(&format!("{url}/v1/events/999999"), auditor).await;
    assert_eq!(status, 404);
}
