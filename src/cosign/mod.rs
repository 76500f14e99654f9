//! The log side of witnessing: collects cosignatures on the log's
//! checkpoints and publishes the latest "witnessed" one.
//!
//! A tokio task follows [`LogView::subscribe`]. For every new checkpoint it
//! sends `add-checkpoint` to each configured witness in parallel, with the
//! consistency proof from the size that witness last cosigned (learnt from
//! its 409 when unknown: the first request says `old 0`). Once the policy's
//! number of valid cosignatures is in, the checkpoint with the cosignature
//! lines appended is stored durably (a meta record) and published in the
//! [`WitnessedView`]; later answers still update what each witness knows.
//!
//! Invariants:
//! - the sequencer is never blocked or slowed: a witness that is down only
//!   delays "witnessed"; it is retried with backoff, and the next request
//!   covers everything appended meanwhile;
//! - a witness that contradicts the log (409 with a size beyond ours, 409
//!   without a size, 422) raises an alarm — error log, metric, `/healthz`
//!   degraded — and is not asked again until the log restarts: never a
//!   silent retry loop;
//! - only cosignatures that verify under a configured witness key are kept;
//! - the witnessed checkpoint never goes backwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::merkle::{self, Hash};
use crate::note::policy;
use crate::note::{
    Accepted, CheckpointPolicy, CosignatureVerifier, Known, Note, NoteSignature, NoteVerifier,
    PolicyError,
};
use crate::sequencer::{LogView, Published, TileSource};
use crate::store::{RecordSpace, Store};
use crate::witness::request::{AddCheckpoint, MAX_PROOF_LINES};
use crate::witness::server::TLOG_SIZE_CONTENT_TYPE;

/// Meta record holding the latest witnessed checkpoint.
pub const WITNESSED_RECORD: &[u8] = b"witnessed-checkpoint";

/// One witness the log asks for cosignatures.
#[derive(Clone, Debug)]
pub struct WitnessEndpoint {
    /// Base URL; requests go to `<url>/add-checkpoint`.
    pub url: String,
    /// Its cosignature key (type 0x04).
    pub verifier: CosignatureVerifier,
}

impl WitnessEndpoint {
    /// Parses a witness's URL and verifier key.
    pub fn new(url: &str, vkey: &str) -> Result<WitnessEndpoint, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("witness URL {url:?}: {e}"))?;
        if parsed.scheme() != "http" && parsed.scheme() != "https" {
            return Err(format!("witness URL {url:?} is not http(s)"));
        }
        let verifier = CosignatureVerifier::from_verifier_key(vkey).map_err(|e| {
            format!("witness key {vkey:?}: {e} (a witness key is a cosignature/v1 key, type 0x04)")
        })?;
        Ok(WitnessEndpoint {
            url: url.trim_end_matches('/').to_string(),
            verifier,
        })
    }
}

/// Which witnesses, and how many cosignatures make a checkpoint witnessed.
#[derive(Clone, Debug)]
pub struct WitnessPolicy {
    /// The witnesses.
    pub witnesses: Vec<WitnessEndpoint>,
    /// Cosignatures needed, 1..=witnesses.len().
    pub quorum: usize,
    /// Timeout of one request to a witness.
    pub timeout: Duration,
    /// CA certificates (PEM) trusted for witnesses' HTTPS, besides the
    /// system's web roots.
    pub ca_pem: Option<Vec<u8>>,
}

/// A checkpoint with enough cosignatures.
#[derive(Clone, Debug)]
pub struct Witnessed {
    /// The checkpoint; `note` carries the log's signatures and the cosignatures.
    pub published: Arc<Published>,
    /// The cosignatures in the note, by configured witnesses.
    pub cosignatures: Vec<CosignatureInfo>,
}

/// One cosignature of a witnessed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CosignatureInfo {
    /// Witness key name.
    pub name: String,
    /// Key ID, 8 hex digits.
    pub key_id: String,
    /// The cosignature's timestamp (Unix seconds).
    pub timestamp: u64,
}

/// What the API shows about one witness.
#[derive(Clone, Debug, Serialize)]
pub struct WitnessStatus {
    /// Base URL.
    pub url: String,
    /// Key name.
    pub name: String,
    /// The size this witness last cosigned, as far as the log knows.
    pub known_size: Option<u64>,
    /// The last failure, if the last request failed.
    pub last_error: Option<String>,
    /// Set when the witness contradicted the log.
    pub alarm: Option<String>,
}

/// The latest witnessed checkpoint, alarms and witness states, shared with
/// the HTTP handlers.
pub struct WitnessedView {
    quorum: usize,
    wait_timeout: Duration,
    latest: RwLock<Option<Arc<Witnessed>>>,
    updates: watch::Sender<Option<Arc<Witnessed>>>,
    statuses: Mutex<Vec<WitnessStatus>>,
}

impl WitnessedView {
    fn new(
        quorum: usize,
        wait_timeout: Duration,
        initial: Option<Witnessed>,
        statuses: Vec<WitnessStatus>,
    ) -> Self {
        let initial = initial.map(Arc::new);
        let (updates, _) = watch::channel(initial.clone());
        WitnessedView {
            quorum,
            wait_timeout,
            latest: RwLock::new(initial),
            updates,
            statuses: Mutex::new(statuses),
        }
    }

    /// The policy's quorum.
    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// How long `POST /v1/events?wait=witnessed` waits: two witness
    /// request timeouts (a first request and a retry after a 409).
    pub fn wait_timeout(&self) -> Duration {
        self.wait_timeout
    }

    /// The latest witnessed checkpoint.
    pub fn latest(&self) -> Option<Arc<Witnessed>> {
        match self.latest.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Per-witness status.
    pub fn statuses(&self) -> Vec<WitnessStatus> {
        match self.statuses.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Alarms raised so far, one line per alarmed witness.
    pub fn alarms(&self) -> Vec<String> {
        self.statuses()
            .into_iter()
            .filter_map(|s| {
                s.alarm
                    .map(|a| format!("witness {} ({}): {a}", s.name, s.url))
            })
            .collect()
    }

    /// Waits up to `timeout` for a witnessed checkpoint covering `size` entries.
    pub async fn wait_for(&self, size: u64, timeout: Duration) -> Option<Arc<Witnessed>> {
        let mut rx = self.updates.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(w) = rx.borrow_and_update().clone()
                && w.published.checkpoint.size >= size
            {
                return Some(w);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return None,
            }
        }
    }

    fn publish(&self, w: Witnessed) {
        let w = Arc::new(w);
        match self.latest.write() {
            Ok(mut g) => *g = Some(w.clone()),
            Err(p) => *p.into_inner() = Some(w.clone()),
        }
        metrics::gauge!("veritrail_witnessed_size").set(w.published.checkpoint.size as f64);
        self.updates.send_replace(Some(w));
    }

    fn update_status(&self, i: usize, f: impl FnOnce(&mut WitnessStatus)) {
        let mut g = match self.statuses.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(s) = g.get_mut(i) {
            f(s);
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredWitnessed {
    published_at_ms: i64,
    note: String,
}

impl WitnessPolicy {
    /// The checkpoint policy this witness policy stands for: cosignatures by
    /// `quorum` of the witnesses. The log's own signatures are not checked
    /// here: the collector only ever handles checkpoints the log signed.
    pub fn acceptance(&self) -> Result<CheckpointPolicy<'static>, PolicyError> {
        let witnesses = self.witnesses.iter().map(|w| w.verifier.clone()).collect();
        CheckpointPolicy::new(Vec::new()).with_witnesses(witnesses, self.quorum)
    }
}

/// The cosignatures of a checkpoint the policy accepted, for display.
fn cosignature_infos(policy: &CheckpointPolicy<'_>, accepted: &Accepted) -> Vec<CosignatureInfo> {
    accepted
        .cosignatures
        .iter()
        .map(|&(i, timestamp)| {
            let w = &policy.witnesses()[i];
            CosignatureInfo {
                name: w.name().to_string(),
                key_id: format!("{:08x}", w.key_id()),
                timestamp,
            }
        })
        .collect()
}

/// Loads the stored witnessed checkpoint, if it is still valid for this
/// log: the policy accepts it (a policy may have changed since it was
/// stored), and the log's checkpoint is of the same log, not smaller, and
/// has the same root at the same size.
fn load_witnessed(
    store: &dyn Store,
    policy: &CheckpointPolicy<'_>,
    log: &Published,
) -> Option<Witnessed> {
    let bytes = store.record(RecordSpace::Meta, WITNESSED_RECORD).ok()??;
    let stored: StoredWitnessed = serde_json::from_slice(&bytes).ok()?;
    let accepted = policy.check(stored.note.as_bytes(), None).ok()?;
    policy::check_against_known(&log.checkpoint, &Known::from(&accepted.checkpoint)).ok()?;
    Some(Witnessed {
        cosignatures: cosignature_infos(policy, &accepted),
        published: Arc::new(Published {
            checkpoint: accepted.checkpoint,
            note: stored.note,
            published_at_ms: stored.published_at_ms,
        }),
    })
}

/// Starts collecting cosignatures for the log behind `view`.
pub fn start(
    policy: WitnessPolicy,
    store: Arc<dyn Store>,
    view: Arc<LogView>,
) -> Result<Arc<WitnessedView>, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(policy.timeout)
        .pool_max_idle_per_host(4);
    if let Some(pem) = &policy.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| format!("the peer CA certificates: {e}"))?;
        builder = builder.tls_certs_merge(certs);
    }
    let http = builder
        .build()
        .map_err(|e| format!("couldn't build the witness HTTP client: {e}"))?;
    let acceptance = policy
        .acceptance()
        .map_err(|e| format!("the witness policy: {e}"))?;
    let initial = load_witnessed(store.as_ref(), &acceptance, &view.checkpoint());
    let statuses = policy
        .witnesses
        .iter()
        .map(|w| WitnessStatus {
            url: w.url.clone(),
            name: w.verifier.name().to_string(),
            known_size: None,
            last_error: None,
            alarm: None,
        })
        .collect();
    let witnessed = Arc::new(WitnessedView::new(
        policy.quorum,
        policy.timeout.saturating_mul(2),
        initial,
        statuses,
    ));
    let collector = Collector {
        policy: Arc::new(policy),
        acceptance: Arc::new(acceptance),
        store,
        http,
        out: witnessed.clone(),
        clock: view.clock().clone(),
    };
    tokio::spawn(collector.run(view.subscribe()));
    Ok(witnessed)
}

/// How one witness answered.
#[derive(Debug)]
enum Answer {
    /// A valid cosignature of the checkpoint.
    Cosigned(NoteSignature),
    /// The witness contradicts the log: stop asking it.
    Alarm(String),
    /// Misconfiguration (403, 404, 400) or a witness bug: retry later.
    Refused(String),
    /// Down, slow, overloaded: retry later.
    Unavailable(String),
}

/// The result of one request task.
struct Reply {
    witness: usize,
    size: u64,
    known: Option<u64>,
    answer: Answer,
}

struct Collector {
    policy: Arc<WitnessPolicy>,
    acceptance: Arc<CheckpointPolicy<'static>>,
    store: Arc<dyn Store>,
    http: reqwest::Client,
    out: Arc<WitnessedView>,
    clock: crate::sequencer::Clock,
}

#[derive(Clone, Default)]
struct PerWitness {
    known: Option<u64>,
    in_flight: bool,
    alarmed: bool,
    failures: u32,
    retry_at: Option<Instant>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Collector {
    async fn run(self, mut log: watch::Receiver<Arc<Published>>) {
        let n = self.policy.witnesses.len();
        let mut per = vec![PerWitness::default(); n];
        let (tx, mut rx) = mpsc::channel::<Reply>(n.max(1) * 2);
        let mut target = log.borrow_and_update().clone();
        let mut cosigs: HashMap<usize, NoteSignature> = HashMap::new();
        let mut log_open = true;
        loop {
            let done = self
                .out
                .latest()
                .is_some_and(|w| w.published.checkpoint.size >= target.checkpoint.size);
            if !done {
                self.launch(&target, &mut per, &cosigs, &tx);
            }
            let next_retry = per
                .iter()
                .filter(|p| !p.alarmed && !p.in_flight)
                .filter_map(|p| p.retry_at)
                .min();
            let sleep = match next_retry {
                Some(t) if !done => tokio::time::sleep_until(t.into()),
                _ => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                changed = log.changed(), if log_open => {
                    if changed.is_err() {
                        log_open = false;
                        continue;
                    }
                    let next = log.borrow_and_update().clone();
                    if next.checkpoint.size != target.checkpoint.size
                        || next.checkpoint.root != target.checkpoint.root
                    {
                        target = next;
                        cosigs.clear();
                    }
                }
                Some(reply) = rx.recv() => {
                    self.record(reply, &target, &mut per, &mut cosigs).await;
                }
                _ = sleep => {}
            }
            if !log_open && per.iter().all(|p| !p.in_flight) {
                return;
            }
        }
    }

    /// Sends the target to every witness that is idle, not alarmed, not
    /// backing off, and has not cosigned it yet.
    fn launch(
        &self,
        target: &Arc<Published>,
        per: &mut [PerWitness],
        cosigs: &HashMap<usize, NoteSignature>,
        tx: &mpsc::Sender<Reply>,
    ) {
        let now = Instant::now();
        for (i, p) in per.iter_mut().enumerate() {
            if p.alarmed || p.in_flight || cosigs.contains_key(&i) {
                continue;
            }
            if p.retry_at.is_some_and(|t| t > now) {
                continue;
            }
            p.in_flight = true;
            let task = Submission {
                http: self.http.clone(),
                endpoint: self.policy.witnesses[i].clone(),
                store: self.store.clone(),
                target: target.clone(),
            };
            let known = p.known;
            let tx = tx.clone();
            tokio::spawn(async move {
                let (known, answer) = task.run(known).await;
                let _ = tx
                    .send(Reply {
                        witness: i,
                        size: task.target.checkpoint.size,
                        known,
                        answer,
                    })
                    .await;
            });
        }
    }

    async fn record(
        &self,
        reply: Reply,
        target: &Arc<Published>,
        per: &mut [PerWitness],
        cosigs: &mut HashMap<usize, NoteSignature>,
    ) {
        let i = reply.witness;
        let Some(p) = per.get_mut(i) else { return };
        p.in_flight = false;
        p.known = reply.known;
        let endpoint = &self.policy.witnesses[i];
        let name = endpoint.verifier.name().to_string();
        let known = p.known;
        match reply.answer {
            Answer::Cosigned(sig) => {
                p.failures = 0;
                p.retry_at = None;
                self.out.update_status(i, |s| {
                    s.known_size = known;
                    s.last_error = None;
                });
                if reply.size == target.checkpoint.size {
                    cosigs.insert(i, sig);
                    if cosigs.len() >= self.policy.quorum && !self.publish(target, cosigs).await {
                        // Not stored: ask again in a while (a witness
                        // re-cosigns the same checkpoint with old == size).
                        cosigs.clear();
                        let later = Instant::now() + Duration::from_secs(1);
                        for p in per.iter_mut() {
                            p.retry_at = Some(later);
                        }
                    }
                }
            }
            Answer::Alarm(why) => {
                p.alarmed = true;
                tracing::error!(witness = %name, url = %endpoint.url, reason = %why,
                    "ALARM: a witness contradicts this log's checkpoint (split view, rollback or a bug); it will not be asked again until restart");
                metrics::counter!("veritrail_witness_alarms_total", "witness" => name.clone())
                    .increment(1);
                self.out.update_status(i, |s| {
                    s.known_size = known;
                    s.alarm = Some(why.clone());
                    s.last_error = Some(why);
                });
            }
            Answer::Refused(why) | Answer::Unavailable(why) => {
                p.failures = p.failures.saturating_add(1);
                let backoff = Duration::from_millis(250)
                    .saturating_mul(1 << p.failures.min(8))
                    .min(MAX_BACKOFF);
                p.retry_at = Some(Instant::now() + backoff);
                if p.failures == 1 || p.failures.is_power_of_two() {
                    tracing::warn!(witness = %name, url = %endpoint.url, error = %why, failures = p.failures,
                        "witness did not cosign; retrying with backoff");
                }
                metrics::counter!("veritrail_witness_failures_total", "witness" => name.clone())
                    .increment(1);
                self.out.update_status(i, |s| {
                    s.known_size = known;
                    s.last_error = Some(why);
                });
            }
        }
    }

    /// Stores and publishes `target` with the collected cosignatures, unless
    /// an equal or larger checkpoint is already witnessed. False when it
    /// could not be stored.
    async fn publish(
        &self,
        target: &Arc<Published>,
        cosigs: &HashMap<usize, NoteSignature>,
    ) -> bool {
        if self
            .out
            .latest()
            .is_some_and(|w| w.published.checkpoint.size >= target.checkpoint.size)
        {
            return true;
        }
        let mut note = match Note::parse(target.note.as_bytes()) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "the log's own checkpoint does not parse");
                return false;
            }
        };
        let mut order: Vec<_> = cosigs.iter().collect();
        order.sort_by_key(|(i, _)| **i);
        for (_, sig) in order {
            if let Err(e) = note.try_add_signature(sig.clone()) {
                tracing::error!(error = %e, "couldn't add a cosignature");
                return false;
            }
        }
        let accepted = match self.acceptance.check_note(note, None) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "the collected cosignatures do not meet the witness policy");
                return false;
            }
        };
        let text = match String::from_utf8(accepted.note.to_bytes()) {
            Ok(t) => t,
            Err(_) => return false,
        };
        let published_at_ms = self.clock.now_ms();
        let record = serde_json::to_vec(&StoredWitnessed {
            published_at_ms,
            note: text.clone(),
        })
        .unwrap_or_default();
        let store = self.store.clone();
        let stored = tokio::task::spawn_blocking(move || {
            store.put_record(RecordSpace::Meta, WITNESSED_RECORD, &record)
        })
        .await;
        match stored {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "couldn't store the witnessed checkpoint; not publishing it");
                return false;
            }
            Err(e) => {
                tracing::error!(error = %e, "witnessed checkpoint store task failed");
                return false;
            }
        }
        let cosignatures = cosignature_infos(&self.acceptance, &accepted);
        metrics::histogram!("veritrail_witnessing_seconds")
            .record((published_at_ms - target.published_at_ms).max(0) as f64 / 1000.0);
        self.out.publish(Witnessed {
            published: Arc::new(Published {
                checkpoint: target.checkpoint.clone(),
                note: text,
                published_at_ms,
            }),
            cosignatures,
        });
        true
    }
}

/// One checkpoint sent to one witness: at most two requests (the second
/// after learning the witness's size from a 409).
struct Submission {
    http: reqwest::Client,
    endpoint: WitnessEndpoint,
    store: Arc<dyn Store>,
    target: Arc<Published>,
}

impl Submission {
    /// Returns what the witness is known to have cosigned afterwards, and
    /// its answer.
    async fn run(&self, known: Option<u64>) -> (Option<u64>, Answer) {
        let size = self.target.checkpoint.size;
        let mut old = known.unwrap_or(0);
        // What the witness is known to hold; a failed request (which may or
        // may not have landed) teaches nothing.
        let mut learned = known;
        for attempt in 0..2 {
            if old > size {
                return (
                    Some(old),
                    Answer::Alarm(format!(
                        "the witness cosigned a tree of {old} entries, larger than this log's {size}"
                    )),
                );
            }
            let proof = match self.proof(old, size).await {
                Ok(p) => p,
                Err(e) => return (Some(old), Answer::Refused(e)),
            };
            let body = AddCheckpoint::format(old, &proof, self.target.note.as_bytes());
            let url = format!("{}/add-checkpoint", self.endpoint.url);
            let resp = match self.http.post(&url).body(body).send().await {
                Ok(r) => r,
                Err(e) => return (learned, Answer::Unavailable(e.to_string())),
            };
            let status = resp.status().as_u16();
            let is_size = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.trim().starts_with(TLOG_SIZE_CONTENT_TYPE));
            let text = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => return (learned, Answer::Unavailable(e.to_string())),
            };
            let reason = || {
                String::from_utf8_lossy(&text[..text.len().min(300)])
                    .trim()
                    .to_string()
            };
            match status {
                200 => return (Some(size), self.cosignature(&text)),
                409 if is_size => {
                    let Some(theirs) = parse_size_body(&text) else {
                        return (
                            learned,
                            Answer::Refused("409 with a malformed size body".into()),
                        );
                    };
                    if theirs > size {
                        return (
                            Some(theirs),
                            Answer::Alarm(format!(
                                "the witness cosigned a tree of {theirs} entries, larger than this log's {size}"
                            )),
                        );
                    }
                    if theirs == old || attempt == 1 {
                        return (
                            Some(theirs),
                            Answer::Refused(format!(
                                "the witness keeps answering 409 (size {theirs})"
                            )),
                        );
                    }
                    old = theirs;
                    learned = Some(theirs);
                }
                409 | 422 => {
                    return (
                        Some(old),
                        Answer::Alarm(format!(
                            "refused checkpoint {size} (old {old}) with {status}: {}",
                            reason()
                        )),
                    );
                }
                400 | 403 | 404 | 413 => {
                    return (learned, Answer::Refused(format!("{status}: {}", reason())));
                }
                _ => {
                    return (
                        learned,
                        Answer::Unavailable(format!("{status}: {}", reason())),
                    );
                }
            }
        }
        (Some(old), Answer::Refused("no answer".into()))
    }

    /// PROOF(old, size) from the stored tiles; empty from 0 or to itself.
    async fn proof(&self, old: u64, size: u64) -> Result<Vec<Hash>, String> {
        if old == 0 || old == size {
            return Ok(Vec::new());
        }
        let store = self.store.clone();
        let proof = tokio::task::spawn_blocking(move || {
            merkle::consistency_proof(old, size, &TileSource::new(store.as_ref()))
                .map_err(|e| format!("couldn't build the consistency proof {old} -> {size}: {e}"))
        })
        .await
        .map_err(|e| e.to_string())??;
        if proof.len() > MAX_PROOF_LINES {
            return Err(format!("a proof of {} lines is too long", proof.len()));
        }
        Ok(proof)
    }

    /// The witness's cosignature among the 200 body's lines, verified.
    fn cosignature(&self, body: &[u8]) -> Answer {
        let lines = match NoteSignature::parse_lines(body) {
            Ok(l) => l,
            Err(e) => return Answer::Refused(format!("200 with malformed signature lines: {e}")),
        };
        let text = self.target.checkpoint.to_text();
        let v = &self.endpoint.verifier;
        for line in lines {
            if line.name == v.name() && line.key_id == v.key_id() {
                return match v.verify_cosignature(text.as_bytes(), &line.signature) {
                    Ok(_) => Answer::Cosigned(line),
                    Err(e) => Answer::Refused(format!("its cosignature does not verify: {e}")),
                };
            }
        }
        Answer::Refused("200 without a cosignature by the configured witness key".into())
    }
}

/// The body of a 409: `<size>\n` (canonical decimal).
fn parse_size_body(body: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(body).ok()?;
    let s = s.strip_suffix('\n').unwrap_or(s);
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests;
