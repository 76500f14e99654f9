//! `veritrail bench pipeline`: the cost of encryption at rest and secondary
//! indexes on ingest, measured side by side in one process.
//!
//! Both runs drive the real [`Sequencer`] over a real sled store (flush and
//! fsync per batch), with the same generated batches, each prepared the way
//! `POST /v1/events` prepares a request (JSON parsed and validated,
//! canonicalised, salted, committed) by concurrent submitters. The only
//! difference: the *sealed* run gives the sequencer's seal stage the
//! [`Vault`], exactly as `serve` does (events sealed under per-subject data
//! keys, HMAC search terms computed by the submitters as the request
//! handlers do and indexed, data keys wrapped into the keyring); the
//! *plain* run gives it [`Sealing::Plaintext`], so events are stored as the
//! bare store stores them and nothing is indexed.
//!
//! Why in process and not through the server: the server has no way to
//! store events in plaintext, and this benchmark adds none; a mode that
//! switches encryption off must not exist where it could be used by
//! accident. HTTP costs the same in both runs, so leaving it out makes the
//! ratio here stricter than what clients of the server would see.
//!
//! Invariant: a rate is reported only for a run in which every event was
//! acknowledged with its own index and the store holds exactly that many
//! leaves; the sealed run's first event reads back through the vault.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::population::Population;
use super::{BenchError, LatencySummary, ms, per_second, process_cpu_time, random_run_id};
use veritrail::crypto::MasterKey;
use veritrail::event::{self, EventLimits};
use veritrail::merkle;
use veritrail::sequencer::{
    CheckpointSigner, Clock, LogView, PreparedEvent, RightEdge, Sealing, Sequencer,
    SequencerConfig, SequencerHandle, SubmitError, accept_with_terms,
};
use veritrail::store::Store;
use veritrail::store::sled::SledStore;
use veritrail::vault::{KEYRING_FILE, KeyringHome, Vault};

/// One `bench pipeline` run.
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// A new directory; each run gets a fresh database under it, deleted after.
    pub dir: PathBuf,
    /// Events per run.
    pub events: u64,
    /// Events per submission (a request's batch).
    pub batch_size: u64,
    /// Concurrent submitters.
    pub clients: usize,
    /// Runs per mode, alternating plain and sealed; the best of each counts.
    pub rounds: usize,
    /// The generated events.
    pub population: Population,
}

/// One timed run.
#[derive(Clone, Debug)]
pub struct PipelineRun {
    /// Vault in front of sled (true) or sled alone.
    pub sealed: bool,
    /// Events acknowledged.
    pub events: u64,
    /// First submit to last acknowledgement.
    pub elapsed: Duration,
    /// CPU time of the whole process during the run.
    pub cpu: Option<Duration>,
    /// Per submission: submit → durable.
    pub latency: LatencySummary,
    /// Bytes of the database after the run.
    pub disk_bytes: u64,
    /// Resident memory of the process at the end of the run, with the
    /// store still open (Linux; `None` elsewhere).
    pub rss_bytes: Option<u64>,
}

impl PipelineRun {
    /// Acknowledged events per second.
    pub fn events_per_second(&self) -> f64 {
        per_second(self.events, self.elapsed)
    }

    fn cpu_us_per_event(&self) -> Option<f64> {
        self.cpu
            .map(|c| c.as_secs_f64() * 1e6 / self.events.max(1) as f64)
    }
}

/// Both modes' runs.
#[derive(Clone, Debug)]
pub struct PipelineReport {
    /// Every run, in the order they ran.
    pub runs: Vec<PipelineRun>,
}

impl PipelineReport {
    fn best(&self, sealed: bool) -> Option<&PipelineRun> {
        self.runs
            .iter()
            .filter(|r| r.sealed == sealed)
            .max_by(|a, b| a.events_per_second().total_cmp(&b.events_per_second()))
    }

    /// Sealed rate over plain rate (best run of each).
    pub fn ratio(&self) -> f64 {
        match (self.best(true), self.best(false)) {
            (Some(s), Some(p)) if p.events_per_second() > 0.0 => {
                s.events_per_second() / p.events_per_second()
            }
            _ => 0.0,
        }
    }

    /// The report as one flat JSON object (for scripts).
    pub fn to_json(&self, opts: &PipelineOptions) -> serde_json::Value {
        let field = |sealed: bool, f: &dyn Fn(&PipelineRun) -> serde_json::Value| {
            self.best(sealed).map_or(serde_json::Value::Null, f)
        };
        serde_json::json!({
            "events": opts.events,
            "batch_size": opts.batch_size,
            "clients": opts.clients,
            "rounds": opts.rounds,
            "subjects": opts.population.subjects,
            "plain_events_per_s": field(false, &|r| r.events_per_second().into()),
            "sealed_events_per_s": field(true, &|r| r.events_per_second().into()),
            "sealed_over_plain": self.ratio(),
            "plain_cpu_us_per_event": field(false, &|r| r.cpu_us_per_event().into()),
            "sealed_cpu_us_per_event": field(true, &|r| r.cpu_us_per_event().into()),
            "plain_p50_ms": field(false, &|r| ms(r.latency.p50).into()),
            "sealed_p50_ms": field(true, &|r| ms(r.latency.p50).into()),
            "plain_p99_ms": field(false, &|r| ms(r.latency.p99).into()),
            "sealed_p99_ms": field(true, &|r| ms(r.latency.p99).into()),
            "plain_disk_bytes_per_event": field(false, &|r| (r.disk_bytes as f64 / r.events.max(1) as f64).into()),
            "sealed_disk_bytes_per_event": field(true, &|r| (r.disk_bytes as f64 / r.events.max(1) as f64).into()),
            "plain_rss_mb": field(false, &|r| r.rss_bytes.map(|b| b as f64 / 1048576.0).into()),
            "sealed_rss_mb": field(true, &|r| r.rss_bytes.map(|b| b as f64 / 1048576.0).into()),
            "all_plain_events_per_s": self.runs.iter().filter(|r| !r.sealed).map(|r| r.events_per_second()).collect::<Vec<_>>(),
            "all_sealed_events_per_s": self.runs.iter().filter(|r| r.sealed).map(|r| r.events_per_second()).collect::<Vec<_>>(),
        })
    }

    /// A human-readable summary.
    pub fn describe(&self, opts: &PipelineOptions) -> String {
        let mut s = format!(
            "pipeline: {} events per run, {} submitters x {} events, best of {} run(s) per mode\n",
            opts.events, opts.clients, opts.batch_size, opts.rounds
        );
        for r in &self.runs {
            s += &format!(
                "  {:<6} {:>9.0} events/s  p50 {:.2} ms  p99 {:.2} ms  RSS {} MB{}\n",
                if r.sealed { "sealed" } else { "plain" },
                r.events_per_second(),
                ms(r.latency.p50),
                ms(r.latency.p99),
                r.rss_bytes.map_or("?".into(), |b| (b >> 20).to_string()),
                r.cpu_us_per_event()
                    .map(|c| format!("  CPU {c:.1} µs/event"))
                    .unwrap_or_default(),
            );
        }
        s += &format!("sealed + indexed / plain = {:.1} %", self.ratio() * 100.0);
        s
    }
}

fn storage(e: impl std::fmt::Display) -> BenchError {
    BenchError::Storage(e.to_string())
}

/// The app of every generated event.
const APP: &str = "bench";

/// Prepares one submission the way `POST /v1/events` does: with a vault
/// (the sealed run), also the events' search terms.
fn prepare(
    vault: Option<&Vault>,
    population: &Population,
    run: &str,
    first: u64,
    count: u64,
    limits: &EventLimits,
) -> Result<Vec<PreparedEvent>, BenchError> {
    let body = super::request_body_of(Some(population), run, first, count, true);
    let value: serde_json::Value = serde_json::from_slice(body.as_bytes())
        .map_err(|e| BenchError::Options(format!("generated batch is not JSON: {e}")))?;
    let events = event::parse_event_batch(&value, limits)
        .map_err(|e| BenchError::Options(format!("generated batch is invalid: {e}")))?;
    accept_with_terms(events, |ev| vault.map(|v| v.terms_of(APP, ev)))
        .map_err(|e| BenchError::Options(e.to_string()))
}

async fn submit_all(
    handle: SequencerHandle,
    vault: Option<Arc<Vault>>,
    opts: PipelineOptions,
    run: Arc<String>,
    next: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
) -> Result<(Vec<Duration>, Vec<u64>), BenchError> {
    let limits = EventLimits::default();
    let requests = opts.events.div_ceil(opts.batch_size);
    let (mut lat, mut indices) = (Vec::new(), Vec::new());
    loop {
        let r = next.fetch_add(1, Ordering::Relaxed);
        if r >= requests || failed.load(Ordering::Relaxed) {
            return Ok((lat, indices));
        }
        let first = r * opts.batch_size;
        let count = opts.batch_size.min(opts.events - first);
        let started = Instant::now();
        let receipt = loop {
            // A refused submission is prepared anew, as a retried request would be.
            let prepared = prepare(
                vault.as_deref(),
                &opts.population,
                &run,
                first,
                count,
                &limits,
            )?;
            match handle.submit(APP.to_string(), prepared, false).await {
                Ok(r) => break r,
                Err(SubmitError::Busy) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => return Err(storage(e)),
            }
        };
        lat.push(started.elapsed());
        if receipt.entries.len() as u64 != count {
            return Err(BenchError::Answer(format!(
                "{} receipts for {count} events",
                receipt.entries.len()
            )));
        }
        indices.extend(receipt.entries.iter().map(|e| e.index));
    }
}

fn one_run(opts: &PipelineOptions, sealed: bool, n: usize) -> Result<PipelineRun, BenchError> {
    let dir = opts
        .dir
        .join(format!("{}-{n}", if sealed { "sealed" } else { "plain" }));
    std::fs::create_dir_all(&dir).map_err(storage)?;
    let sled = Arc::new(SledStore::open(&dir.join("db")).map_err(storage)?);
    let vault = if sealed {
        let master = MasterKey::generate().map_err(storage)?;
        Some(Arc::new(
            Vault::open(
                sled.clone(),
                &master,
                KeyringHome::File(dir.join(KEYRING_FILE)),
            )
            .map_err(storage)?,
        ))
    } else {
        None
    };
    let store: Arc<dyn Store> = sled.clone();
    let sealing = match &vault {
        Some(v) => Sealing::Vault(v.clone()),
        None => Sealing::Plaintext,
    };
    let keys = veritrail::note::keys::LogKeys::generate().map_err(storage)?;
    let origin = "bench.invalid/pipeline";
    let signer = Arc::new(CheckpointSigner::from_keys(&keys, origin).map_err(storage)?);
    let clock = Clock::system();
    let empty = signer
        .sign(0, merkle::empty_root(), clock.now_ms())
        .map_err(storage)?;
    let view = Arc::new(LogView::new(empty, 0, clock));
    let seq = Sequencer::start(
        store.clone(),
        sealing,
        signer,
        SequencerConfig::default(),
        view,
        RightEdge::empty(),
        None,
    )
    .map_err(storage)?;
    let rt = tokio::runtime::Runtime::new().map_err(storage)?;
    let run = Arc::new(random_run_id()?);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let outcome = rt.block_on(async {
        let tasks: Vec<_> = (0..opts.clients)
            .map(|_| {
                let (h, v, o, r, n, f) = (
                    seq.handle(),
                    vault.clone(),
                    opts.clone(),
                    run.clone(),
                    next.clone(),
                    failed.clone(),
                );
                tokio::spawn(async move {
                    let out = submit_all(h, v, o, r, n, f.clone()).await;
                    if out.is_err() {
                        f.store(true, Ordering::Relaxed);
                    }
                    out
                })
            })
            .collect();
        let mut lat = Vec::new();
        let mut indices = Vec::new();
        for t in tasks {
            let (l, i) = t
                .await
                .map_err(|e| BenchError::Storage(format!("submitter: {e}")))??;
            lat.extend(l);
            indices.extend(i);
        }
        Ok::<_, BenchError>((lat, indices))
    });
    let elapsed = started.elapsed();
    let cpu = process_cpu_time()
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    seq.shutdown();
    let (lat, mut indices) = outcome?;
    indices.sort_unstable();
    indices.dedup();
    if indices.len() as u64 != opts.events || store.tree_size().map_err(storage)? != opts.events {
        return Err(BenchError::Answer(format!(
            "{} distinct indices acknowledged, tree size {:?}, for {} events",
            indices.len(),
            store.tree_size(),
            opts.events
        )));
    }
    if let Some(vault) = &vault {
        let first = vault
            .event(0)
            .map_err(storage)?
            .ok_or_else(|| BenchError::Answer("event 0 does not read back".into()))?;
        if !first.event.starts_with(b"{") {
            return Err(BenchError::Answer(
                "event 0 does not open to its canonical JSON".into(),
            ));
        }
    }
    let disk_bytes = sled.size_on_disk();
    let rss_bytes = resident_bytes();
    drop(store);
    drop(sled);
    std::fs::remove_dir_all(&dir).map_err(storage)?;
    Ok(PipelineRun {
        sealed,
        events: opts.events,
        elapsed,
        cpu,
        latency: LatencySummary::from_samples(lat),
        disk_bytes,
        rss_bytes,
    })
}

/// This process's resident memory, from `/proc/self/status` (Linux).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Runs plain and sealed ingest `opts.rounds` times each, alternating
/// (plain first), so that drift in the machine's load hits both alike.
pub fn pipeline(opts: &PipelineOptions) -> Result<PipelineReport, BenchError> {
    if opts.events == 0 || opts.batch_size == 0 || opts.clients == 0 || opts.rounds == 0 {
        return Err(BenchError::Options(
            "events, batch size, clients and rounds must be at least 1".into(),
        ));
    }
    if opts.dir.exists()
        && std::fs::read_dir(&opts.dir)
            .map_err(storage)?
            .next()
            .is_some()
    {
        return Err(BenchError::Options(format!(
            "{} is not empty; give a new directory",
            opts.dir.display()
        )));
    }
    let mut runs = Vec::new();
    for n in 0..opts.rounds {
        runs.push(one_run(opts, false, n)?);
        runs.push(one_run(opts, true, n)?);
    }
    Ok(PipelineReport { runs })
}
