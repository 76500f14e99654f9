//! `veritrail bench`: ingest, search and reads against a running log (reads
//! also against any HTTP server, with the same client), on the process's
//! runtime; and the in-process pipeline and storage-ceiling
//! measurements (which need none: `bench pipeline` starts its own). The
//! measurements themselves are in [`measure`]; this module only wires the
//! flags. Benchmark code belongs to the binary, not to the library.

use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};

mod measure;

use measure as bench;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Submit generated events to a running log and measure events/s and latency.
    Ingest {
        /// Server URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        url: String,
        /// A writer API key.
        #[arg(long, env = "VERITRAIL_WRITER_KEY", hide_env_values = true)]
        key: String,
        /// Concurrent clients, one request in flight each.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Events to submit in total.
        #[arg(long, default_value_t = 100_000)]
        events: u64,
        /// Number the generated events from here, so that several runs grow
        /// one seeded log (the next run starts where the last one ended).
        #[arg(long, default_value_t = 0)]
        first_event: u64,
        /// Events per request (1 sends single events).
        #[arg(long, default_value_t = 500)]
        batch_size: u64,
        /// Submit with ?wait=checkpoint and measure submit to signed checkpoint.
        #[arg(long)]
        wait_checkpoint: bool,
        /// Send events without idempotency keys.
        #[arg(long)]
        without_ids: bool,
        /// Send the same events as OTLP/JSON log records to POST /v1/logs.
        #[arg(long, conflicts_with_all = ["wait_checkpoint", "subjects"])]
        otlp: bool,
        /// Per-request timeout in seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Seed a search benchmark: events of this many subjects (person-0, ...),
        /// varied actors (staff-0, ...), actions and resources, all a function of
        /// the event number (see `bench search`).
        #[arg(long)]
        subjects: Option<u64>,
        #[command(flatten)]
        population: PopulationArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The parse-only ceiling of single-event ingest: serves `POST /v1/events`
    /// with the log's parse step alone (no keys, no storage) until stopped.
    ParseServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
    },
    /// Search latency of a log seeded with `bench ingest --subjects`, every answer checked.
    Search {
        /// Server URL.
        #[arg(long)]
        url: String,
        /// An auditor API key.
        #[arg(long, env = "VERITRAIL_AUDITOR_KEY", hide_env_values = true)]
        key: String,
        /// The subject to search for.
        #[arg(long)]
        subject: String,
        /// Also measure a search by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Also measure a search by this action.
        #[arg(long)]
        action: Option<String>,
        /// Timed requests per query.
        #[arg(long, default_value_t = 500)]
        requests: usize,
        /// Concurrent clients.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Page size.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Untimed first-page requests before the timed ones.
        #[arg(long, default_value_t = 50)]
        warmup: usize,
        /// Events seeded by one `bench ingest --subjects` run (enables the completeness checks).
        #[arg(long, requires = "seeded_subjects")]
        seeded_events: Option<u64>,
        /// The --subjects of that seeding.
        #[arg(long, requires = "seeded_events")]
        seeded_subjects: Option<u64>,
        /// The app of the seeding writer key [default: bench].
        #[arg(long, default_value = "bench")]
        seeded_app: String,
        #[command(flatten)]
        population: PopulationArgs,
        /// Per-request timeout in seconds.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read throughput for a mix of proofs and tiles from a running log, or of
    /// plain URLs from any server, with the same client; sampled answers checked.
    Read {
        /// The log's URL (for proofs and tiles).
        #[arg(long, required_unless_present_any = ["static_urls", "url_list"])]
        url: Option<String>,
        /// What to read, comma-separated, picked uniformly per request:
        /// inclusion, consistency, tile0, tile1 (full hash tiles at that level).
        #[arg(long, value_delimiter = ',', default_value = "inclusion")]
        mix: Vec<measure::read::Target>,
        /// Read this URL instead of the log (repeat for several).
        #[arg(long = "static", conflicts_with = "url")]
        static_urls: Vec<String>,
        /// Read the URLs listed in this file (one a line) instead of the log.
        #[arg(long, conflicts_with = "url")]
        url_list: Option<PathBuf>,
        /// Concurrent keep-alive connections, one request in flight each.
        #[arg(long, default_value_t = 16)]
        connections: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 10.0)]
        duration_s: f64,
        /// Seconds before the measurement, not counted.
        #[arg(long, default_value_t = 1.0)]
        warmup_s: f64,
        /// Check every n-th answer of each connection against the checkpoint.
        #[arg(long, default_value_t = 16)]
        verify_every: u64,
        /// Per-request timeout in seconds.
        #[arg(long, default_value_t = 10)]
        timeout_s: u64,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ingest with vs without encryption at rest and indexes, side by side in this
    /// process: the real sequencer over real sled (fsync per batch), vault in front or not.
    Pipeline {
        /// A new directory for the databases (each run's is deleted after it).
        #[arg(long)]
        dir: PathBuf,
        /// Events per run.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events per submission.
        #[arg(long, default_value_t = 500)]
        batch_size: u64,
        /// Concurrent submitters.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Runs per mode (alternating); the best of each is compared.
        #[arg(long, default_value_t = 2)]
        rounds: usize,
        #[command(flatten)]
        generated: GeneratedArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write generated events as a JSON-lines file (input of `veritrail ship`).
    Lines {
        /// The file to create (it must not exist).
        #[arg(long)]
        out: PathBuf,
        /// Lines to write.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
    },
    /// The alert rules' own CPU per event, in this process: generated events
    /// fed to the rules of a configuration file in batches, as a write route does.
    Alerts {
        /// A configuration file with an `[alerts]` table.
        #[arg(long)]
        rules: PathBuf,
        /// Events per round.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events per batch.
        #[arg(long, default_value_t = 500)]
        batch_size: u64,
        /// Rounds (a fresh engine each); the best is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[command(flatten)]
        generated: GeneratedArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The storage ceiling: raw sled batches of the bytes the log writes per event.
    Sled {
        /// A new directory for the database.
        #[arg(long)]
        dir: PathBuf,
        /// Events to write in total.
        #[arg(long, default_value_t = 200_000)]
        events: u64,
        /// Events per batch (apply_batch + flush + fsync each).
        #[arg(long, default_value_t = 4000)]
        batch: u64,
        /// Bytes of the stored event record [default: that of the generated events].
        #[arg(long)]
        value_size: Option<usize>,
        /// Model events without idempotency keys.
        #[arg(long)]
        without_ids: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The shape of generated events beyond their subjects.
#[derive(Args)]
pub struct PopulationArgs {
    /// Distinct actors of generated events.
    #[arg(long, default_value_t = 500)]
    actors: u64,
    /// How subjects are spread: uniform or zipf.
    #[arg(long, default_value = "zipf")]
    distribution: measure::Distribution,
}

/// The generated events of the in-process benchmarks: how many subjects,
/// and the rest of their shape.
#[derive(Args)]
pub struct GeneratedArgs {
    /// Subjects of the generated events.
    #[arg(long, default_value_t = 10_000)]
    subjects: u64,
    #[command(flatten)]
    population: PopulationArgs,
}

impl GeneratedArgs {
    fn population(&self) -> measure::Population {
        self.population.with_subjects(self.subjects.max(1))
    }
}

impl PopulationArgs {
    fn with_subjects(&self, subjects: u64) -> measure::Population {
        measure::Population {
            subjects,
            actors: self.actors,
            distribution: self.distribution,
        }
    }
}

impl BenchCommand {
    /// Whether the command runs without the process's runtime.
    pub fn is_offline(&self) -> bool {
        matches!(
            self,
            BenchCommand::Pipeline { .. }
                | BenchCommand::Sled { .. }
                | BenchCommand::Lines { .. }
                | BenchCommand::Alerts { .. }
        )
    }
}

/// `bench ingest`, `bench search` and `bench read`, against a running server.
pub async fn online(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest {
            url,
            key,
            clients,
            events,
            first_event,
            batch_size,
            wait_checkpoint,
            without_ids,
            otlp,
            timeout_s,
            subjects,
            population,
            json,
        } => {
            if subjects == Some(0) || population.actors == 0 {
                bail!("--subjects and --actors must be at least 1");
            }
            let opts = bench::IngestOptions {
                population: subjects.map(|k| population.with_subjects(k)),
                url,
                key,
                clients,
                events,
                first_event,
                batch_size,
                wait_checkpoint,
                with_ids: !without_ids,
                otlp,
                timeout: Duration::from_secs(timeout_s),
            };
            let report = bench::ingest(&opts).await?;
            print_report(json, || report.to_json(&opts), || report.describe(&opts))?;
        }
        BenchCommand::Search {
            url,
            key,
            subject,
            actor,
            action,
            requests,
            clients,
            limit,
            warmup,
            seeded_events,
            seeded_subjects,
            seeded_app,
            population,
            timeout_s,
            json,
        } => {
            let seeded =
                seeded_events
                    .zip(seeded_subjects)
                    .map(|(events, k)| bench::search::Seeded {
                        population: population.with_subjects(k),
                        events,
                        app: seeded_app,
                    });
            let opts = bench::search::SearchOptions {
                url,
                key,
                subject,
                actor,
                action,
                requests,
                clients,
                limit,
                warmup,
                seeded,
                timeout: Duration::from_secs(timeout_s),
            };
            let report = bench::search::search(&opts).await?;
            print_report(json, || report.to_json(&opts), || report.describe(&opts))?;
        }
        BenchCommand::Read {
            url,
            mix,
            static_urls,
            url_list,
            connections,
            duration_s,
            warmup_s,
            verify_every,
            timeout_s,
            json,
        } => {
            let mut urls = static_urls;
            if let Some(file) = url_list {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                urls.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from),
                );
            }
            let seconds = |s: f64, what: &str| {
                Duration::try_from_secs_f64(s)
                    .map_err(|_| anyhow!("{what}: not a number of seconds"))
            };
            let opts = bench::read::ReadOptions {
                log: url,
                targets: if urls.is_empty() {
                    mix
                } else {
                    vec![bench::read::Target::Url]
                },
                urls,
                connections,
                duration: seconds(duration_s, "--duration-s")?,
                warmup: seconds(warmup_s, "--warmup-s")?,
                verify_every,
                timeout: Duration::from_secs(timeout_s),
            };
            let report = bench::read::read(&opts).await?;
            print_report(json, || report.to_json(&opts), || report.describe(&opts))?;
            if let Some(why) = &report.first_wrong {
                bail!(
                    "the server gave wrong answers ({} of {} checked); first: {why}",
                    report.total.wrong,
                    report.total.verified
                );
            }
        }
        BenchCommand::ParseServer { listen } => bench::parse_server::run(listen).await?,
        BenchCommand::Pipeline { .. }
        | BenchCommand::Sled { .. }
        | BenchCommand::Lines { .. }
        | BenchCommand::Alerts { .. } => {
            bail!("bench pipeline, sled and lines run offline")
        }
    }
    Ok(())
}

/// `bench pipeline`, `bench sled`, `bench lines` and `bench alerts`, in this process.
pub fn offline(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Pipeline {
            dir,
            events,
            batch_size,
            clients,
            rounds,
            generated,
            json,
        } => {
            let opts = bench::pipeline::PipelineOptions {
                dir,
                events,
                batch_size,
                clients,
                rounds,
                population: generated.population(),
            };
            let report = bench::pipeline::pipeline(&opts)?;
            print_report(json, || report.to_json(&opts), || report.describe(&opts))?;
        }
        BenchCommand::Sled {
            dir,
            events,
            batch,
            value_size,
            without_ids,
            json,
        } => {
            if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
                bail!("{} is not empty; give a new directory", dir.display());
            }
            let mut sizes = bench::EventSizes::of_generated_events("bench", !without_ids)?;
            if let Some(v) = value_size {
                sizes.stored_event = v;
            }
            let opts = bench::SledOptions {
                dir,
                events,
                batch,
                sizes,
            };
            let report = bench::sled_ceiling(&opts)?;
            print_report(json, || report.to_json(&opts), || report.describe(&opts))?;
        }
        BenchCommand::Alerts {
            rules,
            events,
            batch_size,
            rounds,
            generated,
            json,
        } => {
            let opts = bench::alerts::AlertsOptions {
                rules,
                events,
                batch_size,
                rounds,
                population: generated.population(),
            };
            let report = bench::alerts::alerts(&opts)?;
            print_report(json, || report.to_json(&opts), || report.describe(&opts))?;
        }
        BenchCommand::Lines { out, events } => {
            use std::io::Write as _;
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&out)
                .map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
            let mut w = std::io::BufWriter::new(file);
            let mut line = String::new();
            for n in 0..events {
                line.clear();
                bench::write_event(&mut line, "lines", n, false);
                line.push('\n');
                w.write_all(line.as_bytes())?;
            }
            w.flush()?;
        }
        BenchCommand::Ingest { .. }
        | BenchCommand::Search { .. }
        | BenchCommand::Read { .. }
        | BenchCommand::ParseServer { .. } => {
            bail!("bench ingest, search and read need a running server")
        }
    }
    Ok(())
}

/// Prints a report as one JSON object (`--json`) or as text. A reader
/// that stops early (`| head`) ends the command quietly: what it did not
/// read was not wanted, and there is nothing left to do.
fn print_report<J: Display, T: Display>(
    json: bool,
    as_json: impl FnOnce() -> J,
    as_text: impl FnOnce() -> T,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let report = if json {
        as_json().to_string()
    } else {
        as_text().to_string()
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{report}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("writing the report to stdout"),
    }
}
