//! Load generators behind `veritrail bench`.
//!
//! Two measurements, meant to be read side by side:
//! - [`ingest`] drives a running log over HTTP (keep-alive connections, one
//!   request in flight per client) and reports events/s and the latency of a
//!   request from submit to answer; with `wait_checkpoint` the answer carries
//!   the signed checkpoint, so that latency is submit → signed checkpoint.
//! - [`sled_ceiling`] is the storage ceiling: raw sled, configured as the log
//!   configures it, applying the same keys and bytes per event that the log
//!   writes (event body and salt, leaf-hash and idempotency indexes, partial
//!   entry bundles and hash tiles rewritten per batch), each batch made
//!   durable the way the log does it (flush, then fsync of the data file).
//!
//! Invariant: a number is only reported for work that completed. A failed
//! request or write fails the run; pushback (503) is retried and counted, and
//! the retried request's latency includes the wait.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use veritrail::event::{self, EventLimits, LeafRecord};
use veritrail::merkle::Hash;
use veritrail::note::{Checkpoint, Note};
use veritrail::store::StoredEvent;
use veritrail::tiles::TILE_WIDTH;

pub mod alerts;
pub mod otlp;
pub mod parse_server;
pub mod pipeline;
pub mod population;
pub mod read;
pub mod search;

pub use population::{Distribution, Population};

/// Why a benchmark run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options cannot describe a run.
    #[error("invalid benchmark options: {0}")]
    Options(String),
    /// The server could not be reached or the transfer failed.
    #[error("request failed: {0}")]
    Transport(String),
    /// The server refused a request.
    #[error("the server answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The body of the answer.
        message: String,
    },
    /// The server's answer is not what the log promises.
    #[error("unexpected answer from the server: {0}")]
    Answer(String),
    /// The storage benchmark failed.
    #[error("storage benchmark failed: {0}")]
    Storage(String),
}

/// Latency percentiles (nearest rank) of a set of samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest sample.
    pub max: Duration,
    /// Arithmetic mean.
    pub mean: Duration,
}

impl LatencySummary {
    /// Summarises `samples` (any order). Empty input gives all zeros.
    pub fn from_samples(mut samples: Vec<Duration>) -> LatencySummary {
        if samples.is_empty() {
            return LatencySummary::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        // Nearest rank: the smallest sample with at least p·n samples at or below it.
        let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let total: Duration = samples.iter().sum();
        LatencySummary {
            count: n,
            p50: rank(0.50),
            p95: rank(0.95),
            p99: rank(0.99),
            max: samples[n - 1],
            mean: total / u32::try_from(n).unwrap_or(u32::MAX),
        }
    }
}

/// CPU time (user + system) this process has used so far, from
/// `/proc/self/stat` (Linux; `None` elsewhere). Wall-clock rates on a shared
/// machine depend on the neighbours; CPU time per event does much less.
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line, in clock ticks of 1/100 s (USER_HZ).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

// ---------------------------------------------------------------------------
// Generated events.

/// Writes generated event number `n` of run `run` as JSON. Events look like
/// what a records system logs (≈ 330 bytes); with `with_id` each carries a
/// unique idempotency key, so the log's dedupe index is exercised as well.
pub fn write_event(out: &mut String, run: &str, n: u64, with_id: bool) {
    let _ = write!(
        out,
        concat!(
            r#"{{"actor":{{"id":"user-{user}","type":"user","ip":"192.0.2.{ip}"}},"#,
            r#""action":"record.read","resource":{{"type":"patient_record","id":"rec-{n}"}},"#,
            r#""subject":"patient-{subject}","purpose":"treatment","outcome":"success","#,
            r#""occurred_at":"2026-11-25T10:00:00.123Z","#,
            r#""context":{{"request_id":"req-{run}-{n}","n":{n}}}"#,
        ),
        user = n % 997,
        ip = n % 250 + 1,
        subject = n % 4093,
        run = run,
        n = n,
    );
    if with_id {
        let _ = write!(out, r#","id":"{run}-{n}""#);
    }
    out.push('}');
}

/// The request body for events `first..first + count`: one event object when
/// `count` is 1, else `{"events": [...]}`.
#[cfg(test)]
pub fn request_body(run: &str, first: u64, count: u64, with_id: bool) -> String {
    request_body_of(None, run, first, count, with_id)
}

/// Like `request_body`, with the events of `population` when given.
pub fn request_body_of(
    population: Option<&Population>,
    run: &str,
    first: u64,
    count: u64,
    with_id: bool,
) -> String {
    let mut out = String::with_capacity(360 * count as usize + 16);
    let one = |out: &mut String, n: u64| match population {
        Some(p) => p.write_event(out, run, n, with_id),
        None => write_event(out, run, n, with_id),
    };
    if count == 1 {
        one(&mut out, first);
        return out;
    }
    out.push_str(r#"{"events":["#);
    for n in first..first + count {
        if n != first {
            out.push(',');
        }
        one(&mut out, n);
    }
    out.push_str("]}");
    out
}

/// What the log stores per generated event, in bytes, measured on generated
/// events run through the real schema and leaf code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSizes {
    /// The stored event record: salt, app and canonical event bytes.
    pub stored_event: usize,
    /// The leaf record (the bundle adds a 2-byte length prefix to it).
    pub leaf: usize,
    /// The idempotency key's length, 0 when events carry no id.
    pub id: usize,
}

impl EventSizes {
    /// The average sizes over the first thousand generated events of a run
    /// named like the ones [`ingest`] uses, written by `app`.
    pub fn of_generated_events(app: &str, with_ids: bool) -> Result<EventSizes, BenchError> {
        let run = "00000000";
        let samples = 1000u64;
        let limits = EventLimits::default();
        let (mut stored, mut leaf, mut id) = (0usize, 0usize, 0usize);
        for n in 0..samples {
            let mut json = String::new();
            write_event(&mut json, run, n * 211, with_ids);
            let value: serde_json::Value = serde_json::from_str(&json)
                .map_err(|e| BenchError::Options(format!("generated event is not JSON: {e}")))?;
            let ev = event::parse_event(&value, &limits)
                .map_err(|e| BenchError::Options(format!("generated event is invalid: {e}")))?;
            let canonical = ev.canonical_bytes();
            let salt = [0u8; 32];
            stored += StoredEvent {
                app: app.to_string(),
                salt,
                event: canonical.clone(),
            }
            .encode()
            .len();
            let record =
                LeafRecord::new(app, 1_795_000_000_000, event::commitment(&salt, &canonical))
                    .map_err(|e| BenchError::Options(format!("app id: {e}")))?;
            leaf += record.to_bytes().len();
            id += ev.id.as_deref().map_or(0, str::len);
        }
        let avg = |total: usize| total.div_ceil(samples as usize);
        Ok(EventSizes {
            stored_event: avg(stored),
            leaf: avg(leaf),
            id: avg(id),
        })
    }
}

/// xorshift64*: cheap pseudo-random numbers for load generators (which
/// leaves, which tiles, which bytes), not for anything secret.
pub(crate) struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (any value; 0 is replaced, xorshift needs a set bit).
    pub(crate) fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// A generator seeded from the operating system's randomness.
    pub(crate) fn from_entropy() -> Result<XorShift, BenchError> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|e| BenchError::Options(format!("no randomness: {e}")))?;
        Ok(XorShift::new(u64::from_le_bytes(b)))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`; the modulo bias is far below what a benchmark sees).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The HTTP client of every load generator: keep-alive connections (up to
/// `connections` idle ones kept per host), no Nagle delay, a per-request
/// timeout. One configuration, so that rates measured against different
/// servers compare.
pub(crate) fn load_client(
    connections: usize,
    timeout: Duration,
) -> Result<reqwest::Client, BenchError> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .timeout(timeout)
        .build()
        .map_err(|e| BenchError::Transport(e.to_string()))
}

pub(crate) fn random_run_id() -> Result<String, BenchError> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| BenchError::Options(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

// ---------------------------------------------------------------------------
// HTTP ingest.

/// One `bench ingest` run.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Base URL of the log, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// A writer API key.
    pub key: String,
    /// Concurrent clients, each with one request in flight on its own connection.
    pub clients: usize,
    /// Events to submit in total.
    pub events: u64,
    /// The number of the first generated event: a log grown by several runs
    /// holds events `0..n` of one population once each when every run starts
    /// where the previous one ended.
    pub first_event: u64,
    /// Events per request; 1 sends a bare event object.
    pub batch_size: u64,
    /// Submit with `?wait=checkpoint`: each answer carries a signed checkpoint.
    pub wait_checkpoint: bool,
    /// Give every event a unique idempotency key.
    pub with_ids: bool,
    /// Send the events as OTLP/JSON log records to `POST /v1/logs`.
    pub otlp: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Generate the events of this population (for search benchmarks)
    /// instead of the default ones.
    pub population: Option<Population>,
}

/// The outcome of an ingest run.
#[derive(Clone, Debug)]
pub struct IngestReport {
    /// Events acknowledged.
    pub events: u64,
    /// Requests answered successfully.
    pub requests: u64,
    /// Distinct leaf indices among the answers (equals `events` when nothing was deduplicated).
    pub distinct_indices: u64,
    /// Events the log reported as duplicates.
    pub duplicates: u64,
    /// 503 answers that were retried.
    pub busy_retries: u64,
    /// Largest checkpoint size received (checkpoint mode only).
    pub max_checkpoint_size: Option<u64>,
    /// Wall time from the first submit to the last answer.
    pub elapsed: Duration,
    /// Per request: submit → answer (→ signed checkpoint in checkpoint mode).
    pub latency: LatencySummary,
    /// CPU time the load generator itself used, when the platform tells.
    pub client_cpu: Option<Duration>,
}

impl IngestReport {
    /// Acknowledged events per second.
    pub fn events_per_second(&self) -> f64 {
        per_second(self.events, self.elapsed)
    }

    /// The report as one flat JSON object (for scripts).
    pub fn to_json(&self, opts: &IngestOptions) -> serde_json::Value {
        serde_json::json!({
            "mode": if opts.otlp { "otlp" } else if opts.wait_checkpoint { "checkpoint" } else { "durable" },
            "subjects": opts.population.map(|p| p.subjects),
            "actors": opts.population.map(|p| p.actors),
            "distribution": opts.population.map(|p| p.distribution.name()),
            "clients": opts.clients,
            "batch_size": opts.batch_size,
            "events": self.events,
            "requests": self.requests,
            "distinct_indices": self.distinct_indices,
            "duplicates": self.duplicates,
            "busy_retries": self.busy_retries,
            "max_checkpoint_size": self.max_checkpoint_size,
            "seconds": self.elapsed.as_secs_f64(),
            "events_per_s": self.events_per_second(),
            "p50_ms": ms(self.latency.p50),
            "p99_ms": ms(self.latency.p99),
            "max_ms": ms(self.latency.max),
            "mean_ms": ms(self.latency.mean),
            "client_cpu_us_per_event": self.client_cpu.map(|c| c.as_secs_f64() * 1e6 / self.events.max(1) as f64),
        })
    }

    /// A human-readable summary.
    pub fn describe(&self, opts: &IngestOptions) -> String {
        let what = if opts.otlp {
            "OTLP/JSON export → durable answer"
        } else if opts.wait_checkpoint {
            "submit → signed checkpoint"
        } else {
            "submit → durable answer"
        };
        format!(
            "ingest: {} events in {:.2} s = {:.0} events/s ({} requests of {} event(s), {} clients, {} busy retries, {} duplicates)\n\
             latency ({what}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, mean {:.2} ms{}",
            self.events,
            self.elapsed.as_secs_f64(),
            self.events_per_second(),
            self.requests,
            opts.batch_size,
            opts.clients,
            self.busy_retries,
            self.duplicates,
            ms(self.latency.p50),
            ms(self.latency.p99),
            ms(self.latency.max),
            ms(self.latency.mean),
            cpu_note("load generator", self.client_cpu, self.events),
        )
    }
}

fn cpu_note(who: &str, cpu: Option<Duration>, events: u64) -> String {
    cpu.map(|c| {
        format!(
            "\n{who} CPU: {:.2} s = {:.1} µs/event",
            c.as_secs_f64(),
            c.as_secs_f64() * 1e6 / events.max(1) as f64
        )
    })
    .unwrap_or_default()
}

#[derive(Deserialize)]
struct SubmitAnswer {
    events: Vec<AnsweredEvent>,
    checkpoint: Option<String>,
}

#[derive(Deserialize)]
struct AnsweredEvent {
    index: u64,
    duplicate: bool,
    inclusion_proof: Option<serde::de::IgnoredAny>,
}

/// What one client saw.
#[derive(Default)]
struct ClientTally {
    latencies: Vec<Duration>,
    indices: Vec<u64>,
    requests: u64,
    duplicates: u64,
    busy_retries: u64,
    max_checkpoint_size: Option<u64>,
    /// Records an OTLP answer acknowledged (it names no indices).
    otlp_acked: u64,
}

struct Shared {
    http: reqwest::Client,
    endpoint: String,
    auth: String,
    run: String,
    opts: IngestOptions,
    next_request: AtomicU64,
    requests: u64,
    failed: AtomicBool,
}

/// Longest a client waits for a busy log before the run fails.
const MAX_BUSY_RETRIES: u32 = 10_000;

/// Submits `opts.events` generated events to the log at `opts.url` and
/// measures throughput and per-request latency.
pub async fn ingest(opts: &IngestOptions) -> Result<IngestReport, BenchError> {
    if opts.clients == 0 || opts.events == 0 || opts.batch_size == 0 {
        return Err(BenchError::Options(
            "clients, events and batch size must be at least 1".into(),
        ));
    }
    let http = load_client(opts.clients, opts.timeout)?;
    if opts.otlp && (opts.wait_checkpoint || opts.population.is_some()) {
        return Err(BenchError::Options(
            "--otlp sends the default events, answered once durable".into(),
        ));
    }
    let path = if opts.otlp {
        "/v1/logs"
    } else if opts.wait_checkpoint {
        "/v1/events?wait=checkpoint"
    } else {
        "/v1/events"
    };
    let shared = Arc::new(Shared {
        http,
        endpoint: format!("{}{path}", opts.url.trim_end_matches('/')),
        auth: format!("Bearer {}", opts.key),
        run: random_run_id()?,
        opts: opts.clone(),
        next_request: AtomicU64::new(0),
        requests: opts.events.div_ceil(opts.batch_size),
        failed: AtomicBool::new(false),
    });
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let result = run_client(&shared).await;
            if result.is_err() {
                shared.failed.store(true, Ordering::Relaxed);
            }
            result
        }));
    }
    let mut tallies = Vec::with_capacity(tasks.len());
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(tally)) => tallies.push(tally),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(BenchError::Transport(format!("client task: {e}")));
            }
        }
    }
    let elapsed = started.elapsed();
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut latencies = Vec::new();
    let mut indices = Vec::new();
    let mut otlp_acked = 0;
    let mut report = IngestReport {
        events: 0,
        requests: 0,
        distinct_indices: 0,
        duplicates: 0,
        busy_retries: 0,
        max_checkpoint_size: None,
        elapsed,
        latency: LatencySummary::default(),
        client_cpu: process_cpu_time()
            .zip(cpu_before)
            .map(|(after, before)| after.saturating_sub(before)),
    };
    for t in tallies {
        report.requests += t.requests;
        report.duplicates += t.duplicates;
        report.busy_retries += t.busy_retries;
        report.max_checkpoint_size = report.max_checkpoint_size.max(t.max_checkpoint_size);
        latencies.extend(t.latencies);
        indices.extend(t.indices);
        otlp_acked += t.otlp_acked;
    }
    report.events = indices.len() as u64 + otlp_acked;
    indices.sort_unstable();
    indices.dedup();
    report.distinct_indices = indices.len() as u64;
    report.latency = LatencySummary::from_samples(latencies);
    Ok(report)
}

async fn run_client(sh: &Shared) -> Result<ClientTally, BenchError> {
    let mut tally = ClientTally::default();
    let b = sh.opts.batch_size;
    loop {
        if sh.failed.load(Ordering::Relaxed) {
            return Ok(tally);
        }
        let r = sh.next_request.fetch_add(1, Ordering::Relaxed);
        if r >= sh.requests {
            return Ok(tally);
        }
        let first = sh.opts.first_event + r * b;
        let count = b.min(sh.opts.events - r * b);
        let body = if sh.opts.otlp {
            otlp::request_body(&sh.run, first, count, sh.opts.with_ids)
        } else {
            request_body_of(
                sh.opts.population.as_ref(),
                &sh.run,
                first,
                count,
                sh.opts.with_ids,
            )
        };
        let started = Instant::now();
        let answer = submit(sh, body, &mut tally.busy_retries).await?;
        tally.latencies.push(started.elapsed());
        tally.requests += 1;
        if sh.opts.otlp {
            match otlp::rejected(&answer).map_err(BenchError::Answer)? {
                0 => tally.otlp_acked += count,
                r => {
                    return Err(BenchError::Answer(format!(
                        "{r} of {count} OTLP records rejected"
                    )));
                }
            }
        } else {
            check_answer(sh, &answer, count, &mut tally)?;
        }
    }
}

/// Sends one request, retrying on pushback, and returns the answer body.
async fn submit(
    sh: &Shared,
    body: String,
    busy: &mut u64,
) -> Result<axum::body::Bytes, BenchError> {
    let mut attempts = 0u32;
    loop {
        let resp = sh
            .http
            .post(&sh.endpoint)
            .header(reqwest::header::AUTHORIZATION, &sh.auth)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await
            .map_err(|e| BenchError::Transport(e.to_string()))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| BenchError::Transport(e.to_string()))?;
        if status.is_success() {
            return Ok(bytes);
        }
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempts < MAX_BUSY_RETRIES {
            attempts += 1;
            *busy += 1;
            // Retry-After is in whole seconds; a benchmark backs off far less.
            let wait = retry_after.map_or(5, |s| (s * 1000).min(50));
            tokio::time::sleep(Duration::from_millis(wait)).await;
            continue;
        }
        return Err(BenchError::Status {
            status: status.as_u16(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
}

/// The answer must acknowledge each event; in checkpoint mode it must carry
/// a checkpoint covering them and an inclusion proof per event.
fn check_answer(
    sh: &Shared,
    body: &[u8],
    sent: u64,
    tally: &mut ClientTally,
) -> Result<(), BenchError> {
    let answer: SubmitAnswer = serde_json::from_slice(body)
        .map_err(|e| BenchError::Answer(format!("not a submit answer: {e}")))?;
    if answer.events.len() as u64 != sent {
        return Err(BenchError::Answer(format!(
            "{} events acknowledged for {sent} sent",
            answer.events.len()
        )));
    }
    let mut last = 0;
    for e in &answer.events {
        tally.indices.push(e.index);
        tally.duplicates += u64::from(e.duplicate);
        last = last.max(e.index);
    }
    if sh.opts.wait_checkpoint {
        let note = answer.checkpoint.ok_or_else(|| {
            BenchError::Answer("no checkpoint in a wait=checkpoint answer".into())
        })?;
        let note = Note::parse(note.as_bytes())
            .map_err(|e| BenchError::Answer(format!("checkpoint is not a signed note: {e}")))?;
        let cp = Checkpoint::parse(note.text())
            .map_err(|e| BenchError::Answer(format!("malformed checkpoint: {e}")))?;
        if cp.size <= last {
            return Err(BenchError::Answer(format!(
                "checkpoint of size {} does not cover leaf {last}",
                cp.size
            )));
        }
        if answer.events.iter().any(|e| e.inclusion_proof.is_none()) {
            return Err(BenchError::Answer("an event has no inclusion proof".into()));
        }
        tally.max_checkpoint_size = tally.max_checkpoint_size.max(Some(cp.size));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The sled ceiling.

/// One `bench sled` run.
#[derive(Clone, Debug)]
pub struct SledOptions {
    /// A new, empty directory for the database.
    pub dir: PathBuf,
    /// Events to write in total.
    pub events: u64,
    /// Events per batch (one `apply_batch` + flush + fsync each).
    pub batch: u64,
    /// Bytes per event.
    pub sizes: EventSizes,
}

/// The outcome of a storage ceiling run.
#[derive(Clone, Debug)]
pub struct SledReport {
    /// Events written.
    pub events: u64,
    /// Batches committed.
    pub batches: u64,
    /// Keys written (inserts, counting rewrites of partial objects).
    pub keys: u64,
    /// Key and value bytes handed to sled.
    pub bytes: u64,
    /// Wall time of all commits.
    pub elapsed: Duration,
    /// Per batch: apply + flush + fsync.
    pub commit_latency: LatencySummary,
    /// Per batch: the fsync of the data file alone.
    pub fsync_latency: LatencySummary,
    /// CPU time the run used, when the platform tells.
    pub cpu: Option<Duration>,
}

impl SledReport {
    /// Durable events per second.
    pub fn events_per_second(&self) -> f64 {
        per_second(self.events, self.elapsed)
    }

    /// The report as one flat JSON object (for scripts).
    pub fn to_json(&self, opts: &SledOptions) -> serde_json::Value {
        serde_json::json!({
            "mode": "sled",
            "batch": opts.batch,
            "stored_event_bytes": opts.sizes.stored_event,
            "leaf_bytes": opts.sizes.leaf,
            "id_bytes": opts.sizes.id,
            "events": self.events,
            "batches": self.batches,
            "keys": self.keys,
            "bytes": self.bytes,
            "bytes_per_event": self.bytes as f64 / self.events.max(1) as f64,
            "seconds": self.elapsed.as_secs_f64(),
            "events_per_s": self.events_per_second(),
            "commit_p50_ms": ms(self.commit_latency.p50),
            "commit_p99_ms": ms(self.commit_latency.p99),
            "fsync_p50_ms": ms(self.fsync_latency.p50),
            "fsync_p99_ms": ms(self.fsync_latency.p99),
            "cpu_us_per_event": self.cpu.map(|c| c.as_secs_f64() * 1e6 / self.events.max(1) as f64),
        })
    }

    /// A human-readable summary.
    pub fn describe(&self, opts: &SledOptions) -> String {
        format!(
            "sled ceiling: {} events in {:.2} s = {:.0} events/s ({} batches of {}, {} keys, {:.0} bytes/event: event {} B, leaf {} B, id {} B)\n\
             per batch (apply + flush + fsync): p50 {:.2} ms, p99 {:.2} ms; fsync alone: p50 {:.2} ms, p99 {:.2} ms{}",
            self.events,
            self.elapsed.as_secs_f64(),
            self.events_per_second(),
            self.batches,
            opts.batch,
            self.keys,
            self.bytes as f64 / self.events.max(1) as f64,
            opts.sizes.stored_event,
            opts.sizes.leaf,
            opts.sizes.id,
            ms(self.commit_latency.p50),
            ms(self.commit_latency.p99),
            ms(self.fsync_latency.p50),
            ms(self.fsync_latency.p99),
            cpu_note("sled", self.cpu, self.events),
        )
    }
}

/// Fills `buf` with cheap, incompressible-looking bytes.
fn fill_pseudo_random(buf: &mut [u8], seed: u64) {
    let mut rng = XorShift::new(seed);
    for chunk in buf.chunks_mut(8) {
        let v = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Adds to `batch` the objects at one tile level that change when the count
/// of items at that level grows from `before` to `after`: every tile the
/// growth touches is rewritten whole (full ones once, the partial one per
/// batch), `item` bytes per item. Returns (keys, bytes).
fn touched_objects(
    batch: &mut sled::Batch,
    prefix: &[u8],
    before: u64,
    after: u64,
    item: usize,
    filler: &[u8],
) -> (u64, u64) {
    if after == before {
        return (0, 0);
    }
    let (mut keys, mut bytes) = (0, 0);
    for tile in (before / TILE_WIDTH)..=((after - 1) / TILE_WIDTH) {
        let width = (after.min((tile + 1) * TILE_WIDTH) - tile * TILE_WIDTH) as usize;
        let mut key = prefix.to_vec();
        key.extend_from_slice(&tile.to_be_bytes());
        let len = (width * item).min(filler.len());
        bytes += (key.len() + len) as u64;
        keys += 1;
        batch.insert(key, &filler[..len]);
    }
    (keys, bytes)
}

/// Writes `opts.events` events' worth of the log's keys and bytes to a raw
/// sled database in batches, each made durable like a log commit.
pub fn sled_ceiling(opts: &SledOptions) -> Result<SledReport, BenchError> {
    if opts.events == 0 || opts.batch == 0 {
        return Err(BenchError::Options(
            "events and batch must be at least 1".into(),
        ));
    }
    let storage = |e: &dyn std::fmt::Display| BenchError::Storage(e.to_string());
    let db = veritrail::store::sled::sled_config(&opts.dir)
        .open()
        .map_err(|e| storage(&e))?;
    let tree = db.open_tree("log").map_err(|e| storage(&e))?;
    let data_file = std::fs::File::open(veritrail::store::sled::data_file(&opts.dir))
        .map_err(|e| storage(&e))?;
    let sizes = opts.sizes;
    let mut filler =
        vec![0u8; (TILE_WIDTH as usize) * (sizes.leaf + 2).max(32) + sizes.stored_event];
    fill_pseudo_random(&mut filler, 0x9e37_79b9_7f4a_7c15);
    let run = "00000000";

    let (mut keys, mut bytes) = (0u64, 0u64);
    let mut commits = Vec::new();
    let mut fsyncs = Vec::new();
    let started = Instant::now();
    let cpu_before = process_cpu_time();
    let mut size = 0u64;
    while size < opts.events {
        let end = (size + opts.batch).min(opts.events);
        let mut batch = sled::Batch::default();
        for index in size..end {
            // The event body and salt, by index.
            let mut key = vec![b'V'];
            key.extend_from_slice(&index.to_be_bytes());
            let off = (index as usize * 31) % (filler.len() - sizes.stored_event);
            batch.insert(key, &filler[off..off + sizes.stored_event]);
            // The leaf-hash index: a random-looking 32-byte key.
            let leaf_hash = Hash::from_bytes(Sha256::digest(index.to_be_bytes()).into());
            let mut key = vec![b'H'];
            key.extend_from_slice(leaf_hash.as_bytes());
            batch.insert(key, &index.to_be_bytes()[..]);
            keys += 2;
            bytes += (9 + sizes.stored_event + 33 + 8) as u64;
            // The idempotency key the log writes for generated event `index`.
            if sizes.id > 0 {
                let key = format!("Dbench\0{run}-{index}").into_bytes();
                bytes += (key.len() + 8) as u64;
                batch.insert(key, &index.to_be_bytes()[..]);
                keys += 1;
            }
        }
        // Entry bundles: each leaf record with its 2-byte length prefix.
        let (k, b) = touched_objects(&mut batch, b"E", size, end, sizes.leaf + 2, &filler);
        keys += k;
        bytes += b;
        // Hash tiles, level by level, 32 bytes per hash.
        let mut level = 0u8;
        loop {
            let shift = 8 * u32::from(level);
            let (before, after) = (size >> shift, end >> shift);
            if after == 0 {
                break;
            }
            let (k, b) = touched_objects(&mut batch, &[b'T', level], before, after, 32, &filler);
            keys += k;
            bytes += b;
            level += 1;
        }
        batch.insert(&b"Mtree_size"[..], &end.to_be_bytes()[..]);
        keys += 1;
        bytes += 18;

        let t = Instant::now();
        tree.apply_batch(batch).map_err(|e| storage(&e))?;
        db.flush().map_err(|e| storage(&e))?;
        let f = Instant::now();
        data_file.sync_data().map_err(|e| storage(&e))?;
        fsyncs.push(f.elapsed());
        commits.push(t.elapsed());
        size = end;
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    Ok(SledReport {
        events: size,
        batches: commits.len() as u64,
        keys,
        bytes,
        elapsed,
        commit_latency: LatencySummary::from_samples(commits),
        fsync_latency: LatencySummary::from_samples(fsyncs),
        cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = LatencySummary::from_samples(samples);
        assert_eq!(s.count, 100);
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(s.mean, Duration::from_micros(50_500));
        let one = LatencySummary::from_samples(vec![Duration::from_millis(7)]);
        assert_eq!(
            (one.p50, one.p99, one.max),
            (
                Duration::from_millis(7),
                Duration::from_millis(7),
                Duration::from_millis(7)
            )
        );
        assert_eq!(
            LatencySummary::from_samples(Vec::new()),
            LatencySummary::default()
        );
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let Some(before) = process_cpu_time() else {
            return; // not Linux
        };
        let mut x = 0u64;
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(process_cpu_time().unwrap() > before);
    }

    #[test]
    fn generated_events_pass_the_schema_and_batches_are_well_formed() {
        let limits = EventLimits::default();
        let single: serde_json::Value =
            serde_json::from_str(&request_body("abcd0123", 7, 1, true)).unwrap();
        let events = event::parse_event_batch(&single, &limits).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id.as_deref(), Some("abcd0123-7"));

        let batch: serde_json::Value =
            serde_json::from_str(&request_body("abcd0123", 10, 5, false)).unwrap();
        let events = event::parse_event_batch(&batch, &limits).unwrap();
        assert_eq!(events.len(), 5);
        assert!(events.iter().all(|e| e.id.is_none()));
        assert_eq!(events[4].resource.id, "rec-14");
    }

    #[test]
    fn event_sizes_reflect_what_the_log_stores() {
        let with = EventSizes::of_generated_events("bench", true).unwrap();
        let without = EventSizes::of_generated_events("bench", false).unwrap();
        assert_eq!(without.id, 0);
        assert!(with.id > 0);
        // The id is stored inside the canonical event as well.
        assert!(with.stored_event > without.stored_event + with.id);
        // Leaf: {"app":"bench","commitment":"<64 hex>","received":"<24>","v":1}.
        assert_eq!(with.leaf, 46 + 5 + 64 + 24);
        assert!(with.stored_event > 32 + 2 + 5 + 200);
    }

    #[test]
    fn the_sled_ceiling_writes_every_object_the_log_would() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = EventSizes::of_generated_events("bench", true).unwrap();
        let opts = SledOptions {
            dir: dir.path().join("db"),
            events: 600,
            batch: 100,
            sizes,
        };
        let report = sled_ceiling(&opts).unwrap();
        assert_eq!(report.events, 600);
        assert_eq!(report.batches, 6);
        // Per event: body, leaf hash, dedupe key. Per batch: tree size, plus
        // the bundles and level-0 tiles touched (one each, two when the
        // batch crosses a 256 boundary: batches 3 and 6 end at 300 and 600,
        // batch 3 spans 200..300 which crosses 256, batch 6 spans 500..600
        // which crosses 512), and level-1 tiles once the tree reaches 256.
        let objects_per_batch = [1, 1, 2, 1, 1, 2];
        let level1 = 2; // the level-1 tile grows when the tree passes 256 and 512
        let expected = 600 * 3 + 6 + 2 * objects_per_batch.iter().sum::<u64>() + level1;
        assert_eq!(report.keys, expected);
        assert!(report.bytes > 600 * (sizes.stored_event as u64 + sizes.leaf as u64));
        assert_eq!(report.commit_latency.count, 6);
        // What was written is really in the database.
        // (The ceiling's own handle may hold sled's lock a moment longer.)
        let db = (0..40)
            .find_map(|_| {
                let r = veritrail::store::sled::sled_config(&opts.dir).open().ok();
                if r.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                r
            })
            .expect("the database opens once the ceiling's handle is gone");
        let tree = db.open_tree("log").unwrap();
        assert_eq!(
            tree.get(b"Mtree_size").unwrap().unwrap().as_ref(),
            &600u64.to_be_bytes()
        );
        let full_bundle = tree
            .get([b"E".as_slice(), &0u64.to_be_bytes()].concat())
            .unwrap()
            .unwrap();
        assert_eq!(full_bundle.len(), 256 * (sizes.leaf + 2));
        assert_eq!(tree.scan_prefix(b"V").count(), 600);
    }
}
