//! `veritrail bench alerts`: the alert rules' own cost, in this process.
//!
//! Generated events (the population of `bench ingest --subjects`) are
//! parsed once, up front; then each round builds a fresh engine from the
//! rules file and feeds it the events in batches the way a write route
//! does (`api/alerts.rs`): what the rules need of the whole batch first,
//! then the counting, batch by batch with increasing leaf indexes. Only
//! those two steps are timed, so the figure is the rules' CPU per event,
//! without HTTP or storage. On a shared machine wall-clock time includes
//! the neighbours' share of the cores, so the process's CPU time per event
//! is reported too, and the round with the least is the one reported.
//!
//! Invariant: every round sees the same events in the same order, on a
//! fresh engine, and so raises the same alerts and ends in the same state
//! (a rule at its cap drops groups by last activity, then key).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use veritrail::alerts::{AlertsConfig, Engine};
use veritrail::event::{self, AuditEvent, EventLimits};

use super::{BenchError, Population};

/// What `bench alerts` runs.
pub struct AlertsOptions {
    /// A configuration file with an `[alerts]` table.
    pub rules: PathBuf,
    /// Events per round.
    pub events: u64,
    /// Events per batch.
    pub batch_size: u64,
    /// Rounds; the best is reported.
    pub rounds: usize,
    /// The generated events' shape.
    pub population: Population,
}

/// The best round of `bench alerts`.
pub struct AlertsReport {
    /// Rules in the file.
    pub rules: usize,
    /// Events each rule set saw per round.
    pub events: u64,
    /// Time spent finding what the rules need of each batch (best round).
    pub observe: Duration,
    /// Time spent counting the events in the rules (best round).
    pub evaluate: Duration,
    /// CPU time of the round (user + system, observing and counting), when
    /// the platform tells: on a shared machine the wall-clock times above
    /// include the neighbours' share of the cores, CPU time much less.
    pub cpu: Option<Duration>,
    /// Alerts the reported round raised.
    pub alerts: u64,
    /// The checkpoint of the windows at the end of the best round, every
    /// rule whole (the most one checkpoint writes): its size as encoded,
    /// before sealing, and the time that took (the rules' locks are held
    /// meanwhile, each while its own state is encoded).
    pub state_bytes: usize,
    pub state_serialize: Duration,
}

impl AlertsReport {
    /// What ranks rounds: CPU time if known, else wall-clock time.
    fn cost(&self) -> Duration {
        self.cpu.unwrap_or(self.observe + self.evaluate)
    }

    fn ns_per_event(&self, d: Duration) -> f64 {
        d.as_nanos() as f64 / self.events.max(1) as f64
    }

    /// One JSON object.
    pub fn to_json(&self, opts: &AlertsOptions) -> String {
        serde_json::json!({
            "rules": self.rules,
            "events": self.events,
            "batch_size": opts.batch_size,
            "rounds": opts.rounds,
            "observe_ns_per_event": self.ns_per_event(self.observe),
            "evaluate_ns_per_event": self.ns_per_event(self.evaluate),
            "total_ns_per_event": self.ns_per_event(self.observe + self.evaluate),
            "cpu_ns_per_event": self.cpu.map(|c| self.ns_per_event(c)),
            "alerts": self.alerts,
            "state_bytes": self.state_bytes,
            "state_serialize_ms": super::ms(self.state_serialize),
        })
        .to_string()
    }

    /// A few lines of text.
    pub fn describe(&self, opts: &AlertsOptions) -> String {
        format!(
            "{} alert rules, {} events in batches of {}, best of {} rounds:\n  observe  {:8.0} ns/event\n  evaluate {:8.0} ns/event\n  total    {:8.0} ns/event\n  CPU      {:8.0} ns/event ({:.0} events/s on one core)\n  alerts   {}\n  checkpoint of the windows: {} bytes, serialized in {:.1} ms",
            self.rules,
            self.events,
            opts.batch_size,
            opts.rounds,
            self.ns_per_event(self.observe),
            self.ns_per_event(self.evaluate),
            self.ns_per_event(self.observe + self.evaluate),
            self.ns_per_event(self.cost()),
            self.events as f64 / self.cost().as_secs_f64().max(1e-9),
            self.alerts,
            self.state_bytes,
            super::ms(self.state_serialize),
        )
    }
}

/// Runs the rounds.
pub fn alerts(opts: &AlertsOptions) -> Result<AlertsReport, BenchError> {
    if opts.events == 0 || opts.batch_size == 0 || opts.rounds == 0 {
        return Err(BenchError::Options(
            "--events, --batch-size and --rounds must be at least 1".into(),
        ));
    }
    let config = AlertsConfig::load(&opts.rules)
        .map_err(BenchError::Options)?
        .ok_or_else(|| {
            BenchError::Options(format!("{} has no [alerts] table", opts.rules.display()))
        })?;
    let events = generate(&opts.population, opts.events)?;
    let mut best: Option<AlertsReport> = None;
    for _ in 0..opts.rounds {
        let engine = Engine::new(config.rules.clone(), config.max_entries_per_rule);
        let cpu = super::process_cpu_time();
        let round = run(&engine, &events, opts.batch_size as usize);
        let cpu = super::process_cpu_time()
            .zip(cpu)
            .map(|(after, before)| after.saturating_sub(before));
        let t = Instant::now();
        let state_bytes = veritrail::alerts::state::encoded_size(&engine);
        let report = AlertsReport {
            rules: config.rules.len(),
            events: opts.events,
            observe: round.0,
            evaluate: round.1,
            cpu,
            alerts: round.2,
            state_bytes,
            state_serialize: t.elapsed(),
        };
        if best.as_ref().is_none_or(|b| report.cost() < b.cost()) {
            best = Some(report);
        }
    }
    best.ok_or_else(|| BenchError::Options("no round ran".into()))
}

/// The events, parsed as the server parses them.
fn generate(population: &Population, events: u64) -> Result<Vec<AuditEvent>, BenchError> {
    let limits = EventLimits::default();
    let mut json = String::new();
    (0..events)
        .map(|n| {
            json.clear();
            population.write_event(&mut json, "alerts", n, true);
            let raw: serde_json::Value =
                serde_json::from_str(&json).map_err(|e| BenchError::Answer(e.to_string()))?;
            event::parse_event(&raw, &limits).map_err(|e| BenchError::Answer(e.to_string()))
        })
        .collect()
}

/// One round: (observing, evaluating, alerts).
fn run(engine: &Engine, events: &[AuditEvent], batch_size: usize) -> (Duration, Duration, u64) {
    let (mut observe, mut evaluate, mut alerts) = (Duration::ZERO, Duration::ZERO, 0u64);
    let mut first = 0u64;
    for batch in events.chunks(batch_size) {
        let t = Instant::now();
        let watched: Vec<_> = batch
            .iter()
            .enumerate()
            .filter_map(|(i, ev)| engine.observe("bench", ev).map(|o| (i, o)))
            .collect();
        let t2 = Instant::now();
        let counted: Vec<_> = watched
            .iter()
            .map(|(i, ob)| (ob, first + *i as u64))
            .collect();
        alerts += engine.evaluate_batch(&counted).len() as u64;
        evaluate += t2.elapsed();
        observe += t2 - t;
        first += batch.len() as u64;
    }
    (observe, evaluate, alerts)
}
