//! Submitting events (`POST /v1/events`) from Rust: one event or a batch,
//! retried safely, answered once durable or once a signed checkpoint covers
//! them, and every receipt checked against the log's own keys.
//!
//! Retries are safe because every event carries an idempotency id (`id`)
//! before its first attempt (one is generated when the caller gave none)
//! and every attempt sends the very same body: an event the log already
//! appended is answered with its original index and `duplicate: true`,
//! never appended twice. A transport error, 429, 502, 503 and 504 are
//! retried, after the server's `Retry-After` when it sends one, else after
//! an exponential backoff with jitter; every other answer is final.
//!
//! Invariant: a [`Submitted`] with a checkpoint is only returned when the
//! checkpoint passed the [`CheckpointPolicy`] (signatures by the pinned log
//! keys, and witnesses if configured), extends the last checkpoint this
//! [`ReceiptVerifier`] accepted (a consistency proof from the log, checked
//! here), and every event's inclusion proof leads to its root.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Map, Value};

use super::{Client, ClientError};
use crate::api::{BatchProof, ConsistencyProof, SubmitResponse, SubmittedEvent};
use crate::merkle::{self, Hash};
use crate::note::policy::check_against_known;
use crate::note::{Checkpoint, CheckpointPolicy, Known};

/// When the log answers a submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Once the events are durable (no proof yet).
    Durable,
    /// Once a signed checkpoint covers them, with an inclusion proof each.
    Checkpoint,
}

/// How often, and how patiently, a submission is retried.
#[derive(Clone, Debug)]
pub struct Retry {
    /// Attempts in all, the first included; `None` retries until it works
    /// (an agent that must deliver everything).
    pub max_attempts: Option<u32>,
    /// The first backoff; it doubles after each failed attempt.
    pub first_backoff: Duration,
    /// The longest wait between attempts, `Retry-After` included.
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            max_attempts: Some(8),
            first_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// One event's place in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The idempotency id it was sent with.
    pub id: String,
    /// Its leaf index.
    pub index: u64,
    /// Its leaf hash.
    pub leaf_hash: Hash,
    /// Its commitment (hex).
    pub commitment: String,
    /// The log already held an event with this id; this is that event's receipt.
    pub duplicate: bool,
}

/// The answer to a submission.
#[derive(Clone, Debug)]
pub struct Submitted {
    /// One receipt per event, in order.
    pub receipts: Vec<Receipt>,
    /// With [`Wait::Checkpoint`]: the verified checkpoint every receipt is proved in.
    pub checkpoint: Option<VerifiedCheckpoint>,
    /// How many attempts it took.
    pub attempts: u32,
}

/// A checkpoint that passed the policy, with its signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// The signed note, as served.
    pub note: String,
    /// Origin, size and root.
    pub known: Known,
}

/// Why a submission did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The log refused the batch for good (400, 401, 403, 413, 415, ...):
    /// nothing of it was appended. `message` is the server's reason.
    #[error("the log refused the events ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's reason (it names the event and the field).
        message: String,
    },
    /// Every attempt failed with a transient error; the last one is given.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: ClientError,
    },
    /// The answer does not verify: a checkpoint or a proof the log's keys
    /// do not back, or an answer about other events. Do not trust it.
    #[error("the receipt does not verify: {0}")]
    Verification(String),
    /// The events cannot be sent as given.
    #[error("{0}")]
    Invalid(String),
}

/// Checks receipts: the checkpoint policy and the last checkpoint it accepted.
pub struct ReceiptVerifier {
    policy: CheckpointPolicy<'static>,
    latest: Mutex<Option<VerifiedCheckpoint>>,
}

impl ReceiptVerifier {
    /// A verifier trusting `policy`, starting from `latest` (a checkpoint
    /// verified before, e.g. kept in a state file), if any.
    pub fn new(
        policy: CheckpointPolicy<'static>,
        latest: Option<VerifiedCheckpoint>,
    ) -> ReceiptVerifier {
        ReceiptVerifier {
            policy,
            latest: Mutex::new(latest),
        }
    }

    /// The largest checkpoint accepted so far.
    pub fn latest(&self) -> Option<VerifiedCheckpoint> {
        self.latest.lock().map(|l| l.clone()).unwrap_or(None)
    }

    /// Checks `note` against the policy and the latest checkpoint; when it
    /// is larger, the log must prove (`GET /v1/proof/consistency`) that it
    /// extends the latest one, and it becomes the latest.
    async fn accept(&self, client: &Client, note: &str) -> Result<Known, SubmitError> {
        // Answers in flight together mostly share one checkpoint: the very
        // note accepted last needs no second check.
        if let Some(latest) = self.latest()
            && latest.note == note
        {
            return Ok(latest.known);
        }
        let accepted = self
            .policy
            .check(note.as_bytes(), None)
            .map_err(|r| SubmitError::Verification(format!("the checkpoint: {r}")))?;
        let cp: Checkpoint = accepted.checkpoint;
        let new = Known::from(&cp);
        let Some(old) = self.latest() else {
            self.advance(note, &new);
            return Ok(new);
        };
        if cp.size <= old.known.size {
            // An older checkpoint (answers overtake each other) or the same:
            // the same log, and never two roots at one size.
            if cp.origin != old.known.origin
                || (cp.size == old.known.size && cp.root != old.known.root)
            {
                return Err(SubmitError::Verification(format!(
                    "checkpoint {} of {:?} conflicts with the checkpoint {} accepted before",
                    cp.size, cp.origin, old.known.size
                )));
            }
            return Ok(new);
        }
        check_against_known(&cp, &old.known)
            .map_err(|r| SubmitError::Verification(format!("the checkpoint: {r}")))?;
        if old.known.size > 0 {
            let path = format!(
                "/v1/proof/consistency?first={}&second={}",
                old.known.size, cp.size
            );
            let proof: ConsistencyProof = client
                .get(&path)
                .await
                .map_err(|e| SubmitError::Verification(format!("the consistency proof: {e}")))?;
            let hashes = decode_hashes(&proof.consistency)?;
            merkle::verify_consistency(old.known.size, cp.size, &old.known.root, &cp.root, &hashes)
                .map_err(|e| {
                    SubmitError::Verification(format!(
                        "checkpoint {} does not extend checkpoint {}: {e}",
                        cp.size, old.known.size
                    ))
                })?;
        }
        self.advance(note, &new);
        Ok(new)
    }

    fn advance(&self, note: &str, new: &Known) {
        if let Ok(mut latest) = self.latest.lock()
            && latest.as_ref().is_none_or(|l| l.known.size < new.size)
        {
            *latest = Some(VerifiedCheckpoint {
                note: note.to_string(),
                known: new.clone(),
            });
        }
    }
}

impl Client {
    /// Submits one event ([`Client::submit_batch`] of one).
    pub async fn submit(
        &self,
        event: Value,
        wait: Wait,
        retry: &Retry,
        verifier: &ReceiptVerifier,
    ) -> Result<Submitted, SubmitError> {
        self.submit_batch(vec![event], wait, retry, verifier).await
    }

    /// Submits `events` (JSON objects, 1 to the server's batch limit) as one
    /// all-or-nothing batch. An event without an `id` gets a random one,
    /// kept for every retry and returned in its receipt. With
    /// [`Wait::Checkpoint`] every receipt is verified by `verifier`.
    pub async fn submit_batch(
        &self,
        mut events: Vec<Value>,
        wait: Wait,
        retry: &Retry,
        verifier: &ReceiptVerifier,
    ) -> Result<Submitted, SubmitError> {
        let mut encoded = Vec::with_capacity(events.len());
        for (i, e) in events.iter_mut().enumerate() {
            let obj = e
                .as_object_mut()
                .ok_or_else(|| SubmitError::Invalid(format!("events[{i}] is not a JSON object")))?;
            let id = idempotency_id(obj)?;
            let json = serde_json::to_vec(obj)
                .map_err(|e| SubmitError::Invalid(format!("events[{i}] is not JSON: {e}")))?;
            encoded.push((id, json));
        }
        self.submit_encoded(&encoded, wait, retry, verifier).await
    }

    /// Like [`Client::submit_batch`], for events held as JSON text (the
    /// shipping agent's lines): each is `(id, one JSON object whose "id" is
    /// id)`. The server validates them; nothing is parsed here.
    pub async fn submit_encoded(
        &self,
        events: &[(String, Vec<u8>)],
        wait: Wait,
        retry: &Retry,
        verifier: &ReceiptVerifier,
    ) -> Result<Submitted, SubmitError> {
        if events.is_empty() {
            return Err(SubmitError::Invalid(
                "a batch holds at least one event".into(),
            ));
        }
        let size = events.iter().map(|e| e.1.len() + 1).sum::<usize>();
        let mut body = Vec::with_capacity(size + 16);
        body.extend_from_slice(b"{\"events\":[");
        for (i, (_, e)) in events.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e);
        }
        body.extend_from_slice(b"]}");
        let ids: Vec<String> = events.iter().map(|e| e.0.clone()).collect();
        let (answer, attempts) = self.post_events(body, wait, retry).await?;
        let (receipts, checkpoint) = self.check_receipts(&ids, answer, wait, verifier).await?;
        Ok(Submitted {
            receipts,
            checkpoint,
            attempts,
        })
    }

    /// Sends the same `body` until an answer is final.
    async fn post_events(
        &self,
        body: Vec<u8>,
        wait: Wait,
        retry: &Retry,
    ) -> Result<(SubmitResponse, u32), SubmitError> {
        let url = match wait {
            Wait::Durable => self.url("/v1/events"),
            // One proof for the batch: a few hashes, not a path per event.
            Wait::Checkpoint => self.url("/v1/events?wait=checkpoint&proof=batch"),
        };
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .post(&url)
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let (failure, retry_after) = match req.send().await {
                Err(source) => (
                    ClientError::Transport {
                        url: url.clone(),
                        source,
                    },
                    None,
                ),
                Ok(resp) if resp.status() == StatusCode::OK => {
                    match resp.json::<SubmitResponse>().await {
                        Ok(answer) => return Ok((answer, attempt)),
                        // The answer was lost on the way: the events may be
                        // in; the retry finds them by id.
                        Err(source) => (
                            ClientError::Transport {
                                url: url.clone(),
                                source,
                            },
                            None,
                        ),
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = resp
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let message = super::error_message(&resp.text().await.unwrap_or_default());
                    if !is_transient(status) {
                        return Err(SubmitError::Refused {
                            status: status.as_u16(),
                            message,
                        });
                    }
                    metrics::counter!("veritrail_client_retries_total", "status" => status.as_str().to_string())
                        .increment(1);
                    (
                        ClientError::Status {
                            url: url.clone(),
                            status: status.as_u16(),
                            message,
                        },
                        retry_after,
                    )
                }
            };
            if retry.max_attempts.is_some_and(|max| attempt >= max) {
                return Err(SubmitError::GaveUp {
                    attempts: attempt,
                    last: failure,
                });
            }
            tracing::debug!("submission attempt {attempt} failed, retrying: {failure}");
            tokio::time::sleep(backoff(retry, attempt, retry_after)).await;
        }
    }

    /// Matches the answer to the ids sent and, with a checkpoint, proves
    /// every receipt into it.
    async fn check_receipts(
        &self,
        ids: &[String],
        answer: SubmitResponse,
        wait: Wait,
        verifier: &ReceiptVerifier,
    ) -> Result<(Vec<Receipt>, Option<VerifiedCheckpoint>), SubmitError> {
        if answer.events.len() != ids.len() {
            return Err(SubmitError::Verification(format!(
                "{} events sent, {} receipts answered",
                ids.len(),
                answer.events.len()
            )));
        }
        let known = match (&answer.checkpoint, wait) {
            (Some(note), _) => Some(verifier.accept(self, note).await?),
            (None, Wait::Checkpoint) => {
                return Err(SubmitError::Verification(
                    "wait=checkpoint answered without a checkpoint".into(),
                ));
            }
            (None, Wait::Durable) => None,
        };
        let mut receipts = Vec::with_capacity(ids.len());
        for (id, e) in ids.iter().zip(&answer.events) {
            let leaf_hash = Hash::from_base64(&e.leaf_hash).map_err(|err| {
                SubmitError::Verification(format!("receipt {}: leaf hash: {err}", e.index))
            })?;
            if let Some(known) = &known
                && answer.batch_proof.is_none()
            {
                prove(e, &leaf_hash, known)?;
            }
            receipts.push(Receipt {
                id: id.clone(),
                index: e.index,
                leaf_hash,
                commitment: e.commitment.clone(),
                duplicate: e.duplicate,
            });
        }
        if let (Some(known), Some(proof)) = (&known, &answer.batch_proof) {
            prove_batch(&receipts, proof, known)?;
        }
        let checkpoint = known.map(|known| VerifiedCheckpoint {
            note: answer.checkpoint.unwrap_or_default(),
            known,
        });
        Ok((receipts, checkpoint))
    }
}

/// Checks that receipt `e` (leaf `leaf`) is in the tree of `cp`.
fn prove(e: &SubmittedEvent, leaf: &Hash, cp: &Known) -> Result<(), SubmitError> {
    let fail = |why: String| SubmitError::Verification(format!("receipt {}: {why}", e.index));
    let proof = e
        .inclusion_proof
        .as_ref()
        .ok_or_else(|| fail("no inclusion proof".into()))?;
    if proof.leaf_index != e.index || proof.tree_size != cp.size || proof.leaf_hash != e.leaf_hash {
        return Err(fail(format!(
            "the proof is for leaf {} in a tree of {}, not this leaf in the checkpoint's {}",
            proof.leaf_index, proof.tree_size, cp.size
        )));
    }
    let path = decode_hashes(&proof.audit_path)?;
    merkle::verify_inclusion(e.index, cp.size, leaf, &path, &cp.root)
        .map_err(|err| fail(format!("the inclusion proof does not verify: {err}")))
}

/// Checks that every receipt's leaf is in the tree of `cp` with the
/// answer's one batch proof: the receipts' distinct leaves, in index order,
/// folded once up to the checkpoint's root. Two receipts at one index must
/// name the same leaf hash.
pub fn prove_batch(
    receipts: &[Receipt],
    proof: &BatchProof,
    cp: &Known,
) -> Result<(), SubmitError> {
    if proof.tree_size != cp.size {
        return Err(SubmitError::Verification(format!(
            "the batch proof is for a tree of {}, not the checkpoint's {}",
            proof.tree_size, cp.size
        )));
    }
    let mut leaves: Vec<(u64, Hash)> = receipts.iter().map(|r| (r.index, r.leaf_hash)).collect();
    leaves.sort_unstable_by_key(|l| l.0);
    let mut distinct: Vec<(u64, Hash)> = Vec::with_capacity(leaves.len());
    for l in leaves {
        match distinct.last() {
            Some(last) if last.0 == l.0 => {
                if last.1 != l.1 {
                    return Err(SubmitError::Verification(format!(
                        "two receipts name leaf {} with different hashes",
                        l.0
                    )));
                }
            }
            _ => distinct.push(l),
        }
    }
    let hashes = decode_hashes(&proof.hashes)?;
    merkle::verify_batch_inclusion(cp.size, &distinct, &hashes, &cp.root)
        .map_err(|e| SubmitError::Verification(format!("the batch proof does not verify: {e}")))
}

fn decode_hashes(b64: &[String]) -> Result<Vec<Hash>, SubmitError> {
    b64.iter()
        .map(|h| {
            Hash::from_base64(h)
                .map_err(|e| SubmitError::Verification(format!("a proof hash: {e}")))
        })
        .collect()
}

/// The event's `id`, after giving it a random one if it had none.
fn idempotency_id(event: &mut Map<String, Value>) -> Result<String, SubmitError> {
    match event.get("id") {
        Some(Value::String(id)) => Ok(id.clone()),
        Some(_) => Err(SubmitError::Invalid(
            "an event's id must be a string".into(),
        )),
        None => {
            let mut raw = [0u8; 16];
            getrandom::fill(&mut raw)
                .map_err(|e| SubmitError::Invalid(format!("no randomness for an id: {e}")))?;
            let id = format!("rs-{}", hex::encode(raw));
            event.insert("id".into(), Value::String(id.clone()));
            Ok(id)
        }
    }
}

fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// The wait before attempt `attempt + 1`: the server's `Retry-After` if it
/// gave one, else `first_backoff · 2^(attempt-1)` with up to 50 % jitter;
/// never more than `max_backoff`.
fn backoff(retry: &Retry, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let wait = retry_after.unwrap_or_else(|| {
        let base = retry
            .first_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let mut j = [0u8; 1];
        let jitter = match getrandom::fill(&mut j) {
            Ok(()) => base.mul_f64(f64::from(j[0]) / 512.0),
            Err(_) => Duration::ZERO,
        };
        base + jitter
    });
    wait.min(retry.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let r = Retry {
            max_attempts: None,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        };
        let first = backoff(&r, 1, None);
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(150));
        let third = backoff(&r, 3, None);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(600));
        assert_eq!(backoff(&r, 30, None), Duration::from_secs(2));
        assert_eq!(
            backoff(&r, 1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            backoff(&r, 1, Some(Duration::from_secs(60))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn an_event_keeps_its_id_or_gets_one_that_stays() {
        let mut given = serde_json::json!({"id": "mine"});
        let obj = given.as_object_mut().unwrap();
        assert_eq!(idempotency_id(obj).unwrap(), "mine");
        let mut bare = serde_json::json!({});
        let obj = bare.as_object_mut().unwrap();
        let id = idempotency_id(obj).unwrap();
        assert!(id.starts_with("rs-") && id.len() == 35);
        assert_eq!(idempotency_id(obj).unwrap(), id);
        let mut bad = serde_json::json!({"id": 7});
        assert!(idempotency_id(bad.as_object_mut().unwrap()).is_err());
    }
}
