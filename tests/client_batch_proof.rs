//! Batch proofs of `POST /v1/events?wait=checkpoint&proof=batch` against a
//! real server: the crate's client verifies them (also for a batch that
//! repeats events already in the log, whose leaves are not contiguous), and
//! every tampered answer (a proof hash, a leaf hash, an index, the tree
//! size, a missing hash) is rejected. The per-event form stays the default,
//! and an unknown form is a clear 400 that appends nothing.

mod common;

use common::{Server, create_key, get_json, post_events};
use veritrail::api::SubmitResponse;
use veritrail::client::{Client, Receipt, ReceiptVerifier, Retry, Wait, prove_batch};
use veritrail::merkle::Hash;
use veritrail::note::{CheckpointPolicy, Known, parse_verifier_key};

fn policy(log: &serde_json::Value) -> CheckpointPolicy<'static> {
    CheckpointPolicy::new(vec![
        parse_verifier_key(log["verifier_keys"]["ecdsa"].as_str().unwrap()).unwrap(),
        parse_verifier_key(log["verifier_keys"]["ed25519"].as_str().unwrap()).unwrap(),
    ])
}

fn receipts(answer: &SubmitResponse) -> Vec<Receipt> {
    answer
        .events
        .iter()
        .map(|e| Receipt {
            id: String::new(),
            index: e.index,
            leaf_hash: Hash::from_base64(&e.leaf_hash).unwrap(),
            commitment: e.commitment.clone(),
            duplicate: e.duplicate,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_proofs_verify_and_tampered_ones_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &["--checkpoint-interval-ms", "20"],
    );
    let url = server.url.clone();
    let writer = create_key(&url, &server.admin_key(), "batch", "writer").await;
    let log = get_json(&format!("{url}/v1/log")).await;

    // The client asks for batch proofs and verifies them: a fresh batch,
    // then one mixing new events with repeats of earlier ones.
    let client = Client::new(&url, Some(writer.clone())).unwrap();
    let verifier = ReceiptVerifier::new(policy(&log), None);
    let first: Vec<_> = (0..300).map(|n| common::event(n, None)).collect();
    let sent = client
        .submit_batch(
            first.clone(),
            Wait::Checkpoint,
            &Retry::default(),
            &verifier,
        )
        .await
        .unwrap();
    assert_eq!(sent.receipts.len(), 300);
    let cp = sent.checkpoint.unwrap();
    assert!(cp.known.size >= 300);
    let mut mixed: Vec<_> = (300..310).map(|n| common::event(n, None)).collect();
    for r in sent.receipts.iter().step_by(37) {
        let mut again = first[(r.index - sent.receipts[0].index) as usize].clone();
        again["id"] = r.id.clone().into();
        mixed.push(again);
    }
    let again = client
        .submit_batch(mixed, Wait::Checkpoint, &Retry::default(), &verifier)
        .await
        .unwrap();
    assert_eq!(again.receipts.iter().filter(|r| r.duplicate).count(), 9);

    // A raw answer: it verifies as given, and each change is refused.
    let events: Vec<_> = (400..450).map(|n| common::event(n, None)).collect();
    let (status, body) = post_events(&url, &writer, "?wait=checkpoint&proof=batch", events).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["events"][0].get("inclusion_proof").is_none(), "{body}");
    let answer: SubmitResponse = serde_json::from_value(body).unwrap();
    let accepted = policy(&log)
        .check(answer.checkpoint.as_ref().unwrap().as_bytes(), None)
        .unwrap();
    let known = Known::from(&accepted.checkpoint);
    let proof = answer.batch_proof.clone().unwrap();
    let good = receipts(&answer);
    prove_batch(&good, &proof, &known).unwrap();

    let refused = |r: &[Receipt], p: &veritrail::api::BatchProof, what: &str| {
        let err = prove_batch(r, p, &known).expect_err(what);
        assert!(err.to_string().contains("does not verify"), "{what}: {err}");
    };
    let forged = Hash::from_base64(&good[0].leaf_hash.to_base64()).unwrap();
    for i in 0..proof.hashes.len() {
        let mut p = proof.clone();
        p.hashes[i] = veritrail::merkle::leaf_hash(b"forged").to_base64();
        refused(&good, &p, "a changed proof hash");
    }
    let mut r = good.clone();
    r[17].leaf_hash = veritrail::merkle::leaf_hash(b"forged");
    refused(&r, &proof, "a changed leaf hash");
    let mut r = good.clone();
    r[49].index += 1;
    refused(&r, &proof, "a moved leaf");
    let mut r = good.clone();
    r[3].leaf_hash = forged;
    refused(&r, &proof, "two leaves swapped for one");
    if !proof.hashes.is_empty() {
        let mut p = proof.clone();
        p.hashes.pop();
        refused(&good, &p, "a missing hash");
    }
    let mut p = proof.clone();
    p.tree_size -= 1;
    assert!(prove_batch(&good, &p, &known).is_err(), "another tree size");

    // The default is still one inclusion proof per event.
    let (status, body) = post_events(
        &url,
        &writer,
        "?wait=checkpoint",
        vec![common::event(500, None)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["events"][0]["inclusion_proof"]["audit_path"].is_array(),
        "{body}"
    );
    assert!(body.get("batch_proof").is_none(), "{body}");

    // An unknown form is refused before anything is appended.
    let size = get_json(&format!("{url}/v1/checkpoint")).await["tree_size"].clone();
    let (status, body) = post_events(
        &url,
        &writer,
        "?wait=checkpoint&proof=some",
        vec![common::event(501, None)],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("proof"),
        "{body}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        get_json(&format!("{url}/v1/checkpoint")).await["tree_size"],
        size
    );
}
