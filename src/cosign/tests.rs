//! The log's cosignature collection against real witnesses in this process.

use super::*;

#[test]
fn size_bodies_are_canonical_decimal() {
    assert_eq!(parse_size_body(b"12\n"), Some(12));
    assert_eq!(parse_size_body(b"0\n"), Some(0));
    assert_eq!(parse_size_body(b"12"), Some(12));
    assert_eq!(parse_size_body(b"012\n"), None);
    assert_eq!(parse_size_body(b"\n"), None);
    assert_eq!(parse_size_body(b"-1\n"), None);
}

#[test]
fn endpoints_need_a_cosignature_key_and_an_http_url() {
    let signer = crate::note::CosignatureSigner::new(
        "w.example/1",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        || 1u64,
    )
    .unwrap();
    let vkey = crate::note::NoteSigner::verifier_key(&signer);
    assert!(WitnessEndpoint::new("http://127.0.0.1:1/", &vkey).is_ok());
    assert!(WitnessEndpoint::new("ftp://x", &vkey).is_err());
    assert!(WitnessEndpoint::new("not a url", &vkey).is_err());
    let ed = crate::note::Ed25519Signer::new(
        "w.example/1",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
    )
    .unwrap();
    let ed_vkey = crate::note::NoteSigner::verifier_key(&ed);
    assert!(WitnessEndpoint::new("http://127.0.0.1:1", &ed_vkey).is_err());
}

/// A fake witness answering a script of (status, content type, body).
async fn fake_witness(
    script: Vec<(u16, &'static str, String)>,
) -> (String, Arc<Mutex<Vec<String>>>) {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    let script = Arc::new(Mutex::new(script.into_iter()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let app = axum::Router::new().route(
        "/add-checkpoint",
        axum::routing::post(move |body: String| {
            let script = script.clone();
            let seen = seen2.clone();
            async move {
                seen.lock().unwrap().push(body);
                let (status, ct, text) = script.lock().unwrap().next().unwrap();
                let mut resp = (StatusCode::from_u16(status).unwrap(), text).into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
                resp
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

fn witness_signer() -> crate::note::CosignatureSigner {
    crate::note::CosignatureSigner::new(
        "w.example/1",
        ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
        || 1_700_000_000u64,
    )
    .unwrap()
}

fn target(size: u64) -> Arc<Published> {
    let keys = crate::note::keys::LogKeys::from_secret_bytes(&[7; 32], &[8; 32]).unwrap();
    let signer = crate::sequencer::CheckpointSigner::new(
        "example.com/log",
        vec![Box::new(keys.signers("example.com/log").unwrap().ed25519)],
    );
    Arc::new(signer.sign(size, merkle::leaf_hash(b"root"), 0).unwrap())
}

async fn submit(
    script: Vec<(u16, &'static str, String)>,
    known: Option<u64>,
    size: u64,
) -> (Option<u64>, Answer, Vec<String>) {
    let (url, seen) = fake_witness(script).await;
    let vkey = crate::note::NoteSigner::verifier_key(&witness_signer());
    let task = Submission {
        http: reqwest::Client::new(),
        endpoint: WitnessEndpoint::new(&url, &vkey).unwrap(),
        store: Arc::new(crate::store::memory::MemoryStore::new()),
        target: target(size),
    };
    let (known, answer) = task.run(known).await;
    let seen = seen.lock().unwrap().clone();
    (known, answer, seen)
}

fn cosignature_line(size: u64) -> String {
    let t = target(size);
    let sig = witness_signer()
        .sign_at(t.checkpoint.to_text().as_bytes(), 1_700_000_000)
        .unwrap();
    NoteSignature {
        name: "w.example/1".into(),
        key_id: crate::note::NoteSigner::key_id(&witness_signer()),
        signature: sig,
    }
    .to_line()
}

#[tokio::test]
async fn a_valid_cosignature_is_kept_and_others_are_refused() {
    let (known, answer, seen) =
        submit(vec![(200, "text/plain", cosignature_line(5))], None, 5).await;
    assert!(matches!(answer, Answer::Cosigned(_)), "{answer:?}");
    assert_eq!(known, Some(5));
    assert!(
        seen[0].starts_with("old 0\n\nexample.com/log\n5\n"),
        "{seen:?}"
    );
    // A cosignature over another checkpoint, garbage, or nothing.
    for body in [cosignature_line(6), "garbage\n".into(), String::new()] {
        let (_, answer, _) = submit(vec![(200, "text/plain", body)], None, 5).await;
        assert!(matches!(answer, Answer::Refused(_)), "{answer:?}");
    }
}

#[tokio::test]
async fn a_stale_size_is_learnt_from_409_and_retried_once() {
    let (known, answer, seen) = submit(
        vec![
            (409, TLOG_SIZE_CONTENT_TYPE, "5\n".into()),
            (200, "text/plain", cosignature_line(5)),
        ],
        None,
        5,
    )
    .await;
    assert!(matches!(answer, Answer::Cosigned(_)), "{answer:?}");
    assert_eq!(known, Some(5));
    assert_eq!(seen.len(), 2);
    assert!(seen[1].starts_with("old 5\n\n"), "{seen:?}");
    // A second 409 is not retried again.
    let (known, answer, seen) = submit(
        vec![
            (409, TLOG_SIZE_CONTENT_TYPE, "5\n".into()),
            (409, TLOG_SIZE_CONTENT_TYPE, "4\n".into()),
        ],
        None,
        5,
    )
    .await;
    assert!(matches!(answer, Answer::Refused(_)), "{answer:?}");
    assert_eq!(known, Some(4));
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn contradictions_raise_an_alarm() {
    for (script, known) in [
        // The witness saw a larger tree than ours.
        (vec![(409, TLOG_SIZE_CONTENT_TYPE, "9\n".to_string())], None),
        // v1.0.0 root mismatch: 409 without a size.
        (vec![(409, "text/plain", "conflict\n".to_string())], Some(5)),
        // HEAD root mismatch or bad proof.
        (
            vec![(422, "text/plain", "bad proof\n".to_string())],
            Some(5),
        ),
    ] {
        let (_, answer, _) = submit(script, known, 5).await;
        assert!(matches!(answer, Answer::Alarm(_)), "{answer:?}");
    }
    // What we know is beyond the checkpoint: no request at all.
    let (_, answer, seen) = submit(vec![], Some(7), 5).await;
    assert!(matches!(answer, Answer::Alarm(_)), "{answer:?}");
    assert!(seen.is_empty());
}

#[tokio::test]
async fn errors_are_retried_later_and_teach_nothing() {
    for (status, want_refused) in [
        (403, true),
        (404, true),
        (400, true),
        (429, false),
        (503, false),
    ] {
        let (known, answer, _) =
            submit(vec![(status, "text/plain", "no\n".into())], Some(5), 5).await;
        assert_eq!(known, Some(5), "{status}");
        match answer {
            Answer::Refused(_) => assert!(want_refused, "{status}"),
            Answer::Unavailable(_) => assert!(!want_refused, "{status}"),
            other => panic!("{status}: {other:?}"),
        }
    }
    // A witness that is not there at all.
    let vkey = crate::note::NoteSigner::verifier_key(&witness_signer());
    let task = Submission {
        http: reqwest::Client::new(),
        endpoint: WitnessEndpoint::new("http://127.0.0.1:9", &vkey).unwrap(),
        store: Arc::new(crate::store::memory::MemoryStore::new()),
        target: target(5),
    };
    let (known, answer) = task.run(None).await;
    assert!(matches!(answer, Answer::Unavailable(_)), "{answer:?}");
    assert_eq!(known, None);
}

#[tokio::test]
async fn the_collector_publishes_only_what_it_stored_and_a_restart_serves_it() {
    let line = cosignature_line(5);
    let script = (0..6).map(|_| (200, "text/plain", line.clone())).collect();
    let (url, seen) = fake_witness(script).await;
    let vkey = crate::note::NoteSigner::verifier_key(&witness_signer());
    let policy = WitnessPolicy {
        witnesses: vec![WitnessEndpoint::new(&url, &vkey).unwrap()],
        quorum: 1,
        timeout: Duration::from_secs(1),
        ca_pem: None,
    };
    let store = Arc::new(crate::store::memory::MemoryStore::new());
    store.fail_writes(true);
    let view = Arc::new(LogView::new(
        (*target(5)).clone(),
        5,
        crate::sequencer::Clock::system(),
    ));
    let witnessed = start(policy.clone(), store.clone(), view.clone()).unwrap();
    assert!(
        witnessed
            .wait_for(5, Duration::from_millis(500))
            .await
            .is_none()
    );
    assert!(!seen.lock().unwrap().is_empty(), "the witness was asked");
    store.fail_writes(false);
    let w = witnessed
        .wait_for(5, Duration::from_secs(5))
        .await
        .expect("witnessed once the store works again");
    assert_eq!(w.cosignatures.len(), 1);
    assert_eq!(w.published.checkpoint, target(5).checkpoint);
    // The retry re-sent the same checkpoint from the size it had learnt.
    assert!(seen.lock().unwrap()[1].starts_with("old 5\n\n"));
    // What was stored is what a restarted log serves.
    let again = load_witnessed(
        store.as_ref(),
        &policy.acceptance().unwrap(),
        &view.checkpoint(),
    )
    .unwrap();
    assert_eq!(again.published.note, w.published.note);
    // A policy whose quorum the stored cosignatures miss does not serve it.
    let stricter = WitnessPolicy {
        quorum: 2,
        witnesses: vec![policy.witnesses[0].clone(), policy.witnesses[0].clone()],
        ..policy
    };
    let other = crate::note::CosignatureSigner::new(
        "w2.example/1",
        ed25519_dalek::SigningKey::from_bytes(&[10; 32]),
        || 1u64,
    )
    .unwrap();
    let mut stricter = stricter;
    stricter.witnesses[1] =
        WitnessEndpoint::new(&url, &crate::note::NoteSigner::verifier_key(&other)).unwrap();
    assert!(
        load_witnessed(
            store.as_ref(),
            &stricter.acceptance().unwrap(),
            &view.checkpoint()
        )
        .is_none()
    );
}
