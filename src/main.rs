//! The `veritrail` command.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use veritrail::client::Client;
use veritrail::config::{FileConfig, ServeConfig};

/// The request path allocates per event (JSON values, canonical bytes, sled
/// nodes); mimalloc serves that with a quarter less CPU than the system
/// allocator (`veritrail bench`, batched ingest).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Veritrail: a verifiable audit log.
#[derive(Parser)]
#[command(name = "veritrail", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the log service (creates the log on first start).
    Serve(ServeArgs),
    /// Generate an ECDSA P-256 and an Ed25519 log key.
    Keygen {
        /// The log's origin (key name), e.g. log.example.com/audit.
        #[arg(long)]
        origin: String,
        /// Directory to write the key files to (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
    /// Manage API keys on a running server.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Erase events on a running server: a data subject's (destroying its
    /// key) or given leaf indexes'. Leaves and proofs stay valid.
    Erase {
        #[command(flatten)]
        auth: AdminAuth,
        /// The data subject to erase.
        #[arg(long, conflicts_with = "index", required_unless_present = "index")]
        subject: Option<String>,
        /// A leaf index to erase (repeatable).
        #[arg(long)]
        index: Vec<u64>,
        /// Why (recorded in the log and answered to later reads).
        #[arg(long)]
        reason: String,
    },
    /// Legal holds: block retention and erasure of a subject's or an app's events.
    Holds {
        #[command(subcommand)]
        command: HoldsCommand,
    },
    /// Retention policies: keep an app's and/or action's events N days.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Export an evidence bundle (auditor key) to stdout or a file.
    Export {
        /// Server URL.
        #[arg(long)]
        url: String,
        /// Auditor (or admin) API key.
        #[arg(long, env = "VERITRAIL_API_KEY", hide_env_values = true)]
        api_key: String,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        filters: Filters,
    },
    /// Verify an evidence bundle (NDJSON from /v1/export, or the HTML
    /// evidence report that embeds one) or a tlog-proof file offline, with
    /// the log's verifier keys.
    VerifyBundle {
        /// The bundle or .tlog-proof file.
        file: PathBuf,
        /// A verifier key of the log (give each key that must have signed).
        #[arg(long = "vkey", required = true)]
        vkeys: Vec<String>,
    },
    /// Measure ingest throughput and latency, and the storage ceiling.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Verify a running log from the outside: checkpoint signatures, consistency with
    /// the checkpoint seen before, and optionally one leaf's inclusion.
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Follow a log through its tiles and alert on any rewrite, fork or missing cosignature.
    Monitor(MonitorArgs),
    /// Run a C2SP tlog-witness that cosigns the configured logs' checkpoints.
    Witness {
        /// Data directory (its key and state; created on first start).
        #[arg(long)]
        data: PathBuf,
        /// Listen address, host:port.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// Configuration file (TOML): the cosignature key name and the logs.
        #[arg(long)]
        config: PathBuf,
        #[command(flatten)]
        tls: TlsArgs,
    },
    /// Take a consistent backup of a running log (admin key) into a new directory.
    /// The log's private keys are not in it: keep a copy of them apart.
    Backup {
        #[command(flatten)]
        auth: AdminAuth,
        /// The directory to create (missing or empty).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into a new data directory, checked with fsck.
    Restore {
        /// The backup directory (`veritrail backup --to`).
        #[arg(long)]
        from: PathBuf,
        /// The new data directory (missing or empty).
        #[arg(long)]
        data: PathBuf,
        /// Directory with log-ecdsa.pem and log-ed25519.pem [default: --from].
        #[arg(long)]
        keys: Option<PathBuf>,
    },
    /// Check a stopped log's data directory: every tile, bundle, event, index
    /// and the checkpoint. Exit status 0 clean, 1 corrupt, 2 could not check.
    Fsck {
        /// The data directory (the server must be stopped).
        data: PathBuf,
        /// The log's master key file, to open and check sealed (encrypted)
        /// events and their search-index entries; or set VERITRAIL_MASTER_KEY
        /// [default: <data>.master.key if it exists; else sealed events are
        /// counted, not opened].
        #[arg(long, env = "VERITRAIL_MASTER_KEY_FILE")]
        master_key_file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
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
        /// Events per request (1 sends single events).
        #[arg(long, default_value_t = 500)]
        batch_size: u64,
        /// Submit with ?wait=checkpoint and measure submit to signed checkpoint.
        #[arg(long)]
        wait_checkpoint: bool,
        /// Send events without idempotency keys.
        #[arg(long)]
        without_ids: bool,
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
        /// Subjects of the generated events.
        #[arg(long, default_value_t = 10_000)]
        subjects: u64,
        #[command(flatten)]
        population: PopulationArgs,
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
struct PopulationArgs {
    /// Distinct actors of generated events.
    #[arg(long, default_value_t = 500)]
    actors: u64,
    /// How subjects are spread: uniform or zipf.
    #[arg(long, default_value = "zipf")]
    distribution: veritrail::bench::Distribution,
}

impl PopulationArgs {
    fn with_subjects(&self, subjects: u64) -> veritrail::bench::Population {
        veritrail::bench::Population {
            subjects,
            actors: self.actors,
            distribution: self.distribution,
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory [default: ./veritrail-data].
    #[arg(long, env = "VERITRAIL_DATA")]
    data: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "VERITRAIL_LISTEN")]
    listen: Option<String>,
    /// Origin of a new log [default: <hostname>/veritrail].
    #[arg(long, env = "VERITRAIL_ORIGIN")]
    origin: Option<String>,
    /// Configuration file (TOML).
    #[arg(long, env = "VERITRAIL_CONFIG")]
    config: Option<PathBuf>,
    /// Close a batch at this many entries [default: 4096].
    #[arg(long)]
    batch_max_entries: Option<usize>,
    /// Wait this long for more submissions before sequencing [default: 0].
    #[arg(long)]
    batch_max_delay_ms: Option<u64>,
    /// Sign a checkpoint at least this often while the tree grows [default: 1000].
    #[arg(long)]
    checkpoint_interval_ms: Option<u64>,
    /// Queued submissions before answering 503 [default: 8192].
    #[arg(long)]
    queue_capacity: Option<usize>,
    /// Events queued or being committed before answering 503 [default: 262144].
    #[arg(long)]
    queue_max_events: Option<usize>,
    /// Bytes of events queued or being committed before answering 503
    /// [default: 268435456].
    #[arg(long)]
    queue_max_bytes: Option<usize>,
    /// File holding the master key that encrypts events at rest (hex or
    /// base64; or set VERITRAIL_MASTER_KEY to the key itself)
    /// [default: <data>.master.key beside the data directory, created on first start].
    #[arg(long, env = "VERITRAIL_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Seconds between retention runs [default: 3600].
    #[arg(long)]
    retention_interval_s: Option<u64>,
    #[command(flatten)]
    tls: TlsArgs,
    /// A checkpoint this log published: a file, or the URL of a witness, a
    /// mirror or a server of this log (its /checkpoint). The server refuses
    /// to start if its tree is older than, or forks from, any of them, e.g.
    /// after restoring an old backup. Repeatable.
    #[arg(long = "known-checkpoint", value_name = "FILE|URL")]
    known_checkpoints: Vec<String>,
    /// A witness to ask for cosignatures: its URL and cosignature vkey
    /// (repeatable; replaces the config file's [[witness]] list).
    #[arg(long, num_args = 2, value_names = ["URL", "VKEY"], action = clap::ArgAction::Append)]
    witness: Vec<String>,
    /// Cosignatures that make a checkpoint witnessed [default: every witness].
    #[arg(long)]
    witness_quorum: Option<usize>,
    /// Timeout of one request to a witness [default: 5000].
    #[arg(long)]
    witness_timeout_ms: Option<u64>,
    /// CA certificates (PEM) to trust, besides the system's web roots, when
    /// this log calls witnesses or reads --known-checkpoint URLs over HTTPS.
    #[arg(long, env = "VERITRAIL_PEER_CA_CERT")]
    peer_ca_cert: Option<PathBuf>,
}

#[derive(Args)]
struct MonitorArgs {
    /// The log's URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// A log verifier key; every one given must have signed each checkpoint (repeatable).
    #[arg(long = "vkey", required = true)]
    vkeys: Vec<String>,
    /// A witness cosignature key whose cosignature each checkpoint must carry (repeatable).
    #[arg(long = "witness-vkey")]
    witness_vkeys: Vec<String>,
    /// How many of the witnesses must have cosigned [default: all].
    #[arg(long)]
    witness_quorum: Option<usize>,
    /// POST alerts as JSON to this URL.
    #[arg(long)]
    webhook: Option<String>,
    /// Keep the last verified checkpoint (and --full progress) in this file.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Recompute every leaf hash and tile from the entry bundles.
    #[arg(long)]
    full: bool,
    /// Check once and exit (0: all good, 1: alert, 2: could not check).
    #[arg(long)]
    once: bool,
    /// Time between polls, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    interval_ms: u64,
    /// A checkpoint another party saw (signed note file): alert if it forks from the log (repeatable).
    #[arg(long = "compare-checkpoint")]
    compare: Vec<PathBuf>,
}

/// HTTPS for a server: both flags, or neither (plain HTTP, meant for loopback).
#[derive(Args)]
struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, env = "VERITRAIL_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "VERITRAIL_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Args)]
struct AdminAuth {
    /// Server URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// Admin API key [default: read from --admin-key-file].
    #[arg(long, env = "VERITRAIL_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// File holding the admin key [default: ./veritrail-data/admin.key].
    #[arg(long)]
    admin_key_file: Option<PathBuf>,
    /// Also trust these CA certificates (PEM) for an https:// URL, e.g. a
    /// self-signed server certificate.
    #[arg(long, env = "VERITRAIL_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

#[derive(Args)]
struct Filters {
    /// Data subject.
    #[arg(long)]
    subject: Option<String>,
    /// Actor id.
    #[arg(long)]
    actor: Option<String>,
    /// Action.
    #[arg(long)]
    action: Option<String>,
    /// Resource id.
    #[arg(long)]
    resource: Option<String>,
    /// Writer app id.
    #[arg(long)]
    app: Option<String>,
    /// Received at or after (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Received before (RFC 3339).
    #[arg(long)]
    until: Option<String>,
}

impl Filters {
    fn query(&self) -> String {
        let pairs = [
            ("subject", &self.subject),
            ("actor", &self.actor),
            ("action", &self.action),
            ("resource", &self.resource),
            ("app", &self.app),
            ("since", &self.since),
            ("until", &self.until),
        ];
        let mut q = String::new();
        for (k, v) in pairs {
            if let Some(v) = v {
                q.push(if q.is_empty() { '?' } else { '&' });
                q.push_str(k);
                q.push('=');
                q.push_str(&percent_encode(v));
            }
        }
        q
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Subcommand)]
enum HoldsCommand {
    /// Place a hold on a subject or an app.
    Create {
        #[command(flatten)]
        auth: AdminAuth,
        /// The data subject to hold.
        #[arg(long, conflicts_with = "app", required_unless_present = "app")]
        subject: Option<String>,
        /// The app to hold.
        #[arg(long)]
        app: Option<String>,
        /// Why (case number, ...).
        #[arg(long)]
        reason: String,
    },
    /// List holds.
    List {
        #[command(flatten)]
        auth: AdminAuth,
    },
    /// Release a hold by id.
    Release {
        #[command(flatten)]
        auth: AdminAuth,
        /// The hold id.
        id: String,
    },
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Add a policy.
    Set {
        #[command(flatten)]
        auth: AdminAuth,
        /// Only this app's events.
        #[arg(long)]
        app: Option<String>,
        /// Only events with this action.
        #[arg(long)]
        action: Option<String>,
        /// Days to keep events after the log received them.
        #[arg(long)]
        keep_days: u32,
    },
    /// List policies.
    List {
        #[command(flatten)]
        auth: AdminAuth,
    },
    /// Remove a policy by id.
    Remove {
        #[command(flatten)]
        auth: AdminAuth,
        /// The policy id.
        id: String,
    },
    /// Run retention now.
    Run {
        #[command(flatten)]
        auth: AdminAuth,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print its token (shown only once).
    Create {
        #[command(flatten)]
        auth: AdminAuth,
        /// writer, auditor or admin.
        #[arg(long)]
        role: String,
        /// A name for the key.
        #[arg(long)]
        name: String,
        /// For writers: the app id its events are recorded under [default: the name].
        #[arg(long)]
        app: Option<String>,
    },
    /// List keys (without secrets).
    List {
        #[command(flatten)]
        auth: AdminAuth,
    },
    /// Revoke a key by id.
    Revoke {
        #[command(flatten)]
        auth: AdminAuth,
        /// The key id.
        id: String,
    },
}

fn admin_client(auth: &AdminAuth) -> anyhow::Result<Client> {
    let token = match &auth.admin_key {
        Some(k) => k.clone(),
        None => {
            let path = auth.admin_key_file.clone().unwrap_or_else(|| {
                PathBuf::from(veritrail::config::DEFAULT_DATA_DIR).join("admin.key")
            });
            std::fs::read_to_string(&path)
                .with_context(|| format!("couldn't read the admin key from {} (set VERITRAIL_ADMIN_KEY or --admin-key-file)", path.display()))?
                .trim()
                .to_string()
        }
    };
    match &auth.ca_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("couldn't read the CA certificates {}", path.display()))?;
            Ok(Client::with_ca(&auth.url, Some(token), &pem)?)
        }
        None => Ok(Client::new(&auth.url, Some(token))?),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VERITRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(a) => {
            init_tracing();
            let file = match &a.config {
                Some(p) => FileConfig::load(p).map_err(anyhow::Error::msg)?,
                None => FileConfig::default(),
            };
            let flags = FileConfig {
                data: a.data,
                listen: a.listen,
                origin: a.origin,
                batch_max_entries: a.batch_max_entries,
                batch_max_delay_ms: a.batch_max_delay_ms,
                checkpoint_interval_ms: a.checkpoint_interval_ms,
                queue_capacity: a.queue_capacity,
                queue_max_events: a.queue_max_events,
                queue_max_bytes: a.queue_max_bytes,
                master_key_file: a.master_key_file,
                retention_interval_s: a.retention_interval_s,
                witnesses: (!a.witness.is_empty()).then(|| {
                    a.witness
                        .chunks(2)
                        .map(|p| veritrail::config::WitnessEntry {
                            url: p[0].clone(),
                            vkey: p.get(1).cloned().unwrap_or_default(),
                        })
                        .collect()
                }),
                witness_quorum: a.witness_quorum,
                witness_timeout_ms: a.witness_timeout_ms,
                peer_ca_cert: a.peer_ca_cert,
                tls_cert: a.tls.tls_cert,
                tls_key: a.tls.tls_key,
                known_checkpoints: (!a.known_checkpoints.is_empty()).then_some(a.known_checkpoints),
                ..FileConfig::default()
            };
            let config = ServeConfig::resolve(flags, file).map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            rt.block_on(veritrail::server::run(config))?;
        }
        Command::Keygen { origin, out } => {
            let keys = veritrail::note::keys::LogKeys::generate()?;
            let vkeys = keys.verifier_keys(&origin)?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("couldn't create {}", out.display()))?;
            let paths = keys.write_to_dir(&out)?;
            for p in paths {
                eprintln!("wrote {}", p.display());
            }
            println!("ecdsa   {}", vkeys.ecdsa);
            println!("ed25519 {}", vkeys.ed25519);
        }
        Command::Monitor(a) => {
            use std::io::IsTerminal as _;
            let opts = veritrail::monitor::MonitorOptions {
                url: a.url,
                log_vkeys: a.vkeys,
                witness_vkeys: a.witness_vkeys,
                witness_quorum: a.witness_quorum,
                webhook: a.webhook,
                state: a.state,
                full: a.full,
                once: a.once,
                interval: std::time::Duration::from_millis(a.interval_ms.max(100)),
                compare: a.compare,
                progress: std::io::stderr().is_terminal(),
            };
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            let result = rt.block_on(async {
                let mut m = veritrail::monitor::Monitor::new(opts)?;
                m.run().await
            });
            match result {
                Ok(()) => {}
                Err(veritrail::monitor::MonitorError::Alert(a)) => {
                    eprintln!("veritrail monitor: ALERT {}: {}", a.kind, a.message);
                    std::process::exit(1);
                }
                Err(e) => {
                    eprintln!("veritrail monitor: {e}");
                    std::process::exit(2);
                }
            }
        }
        Command::Witness {
            data,
            listen,
            config,
            tls,
        } => {
            init_tracing();
            let listen = listen
                .parse()
                .with_context(|| format!("listen address {listen:?} is not host:port"))?;
            let config = veritrail::witness::config::WitnessConfig::load(&config)
                .map_err(anyhow::Error::msg)?;
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            rt.block_on(veritrail::witness::server::run(
                veritrail::witness::server::WitnessServeConfig {
                    data,
                    listen,
                    config,
                    tls: veritrail::listen::TlsFiles::from_flags(tls.tls_cert, tls.tls_key)
                        .map_err(anyhow::Error::msg)?,
                },
            ))
            .map_err(anyhow::Error::msg)?;
        }
        Command::Fsck {
            data,
            master_key_file,
        } => std::process::exit(fsck_command(&data, master_key_file.as_deref())),
        Command::Backup { auth, to } => {
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            let client = admin_client(&auth)?;
            let done = rt.block_on(veritrail::backup::download(&client, &to))?;
            println!(
                "veritrail backup: {} (origin {}): {} entries, {} bytes, sha256 {}",
                to.display(),
                done.header.origin,
                done.header.tree_size,
                done.bytes,
                done.sha256
            );
            println!(
                "the log's private keys are not in a backup: keep a copy of log-ecdsa.pem and log-ed25519.pem for restore --keys"
            );
        }
        Command::Restore { from, data, keys } => {
            let r = veritrail::backup::restore(&from, &data, keys.as_deref())?;
            println!(
                "veritrail restore: {} (origin {}): {} entries, checkpoint of size {}, fsck clean",
                data.display(),
                r.header.origin,
                r.header.tree_size,
                r.report.checkpoint_size.unwrap_or(0)
            );
            println!(
                "a new admin API key was written to {} (the backup's API keys are restored too)",
                r.admin_key.display()
            );
            println!(
                "start it with --known-checkpoint pointing at a witness, mirror or saved checkpoint of this log, so it refuses to fork if the backup is older than what was published"
            );
        }
        Command::VerifyBundle { file, vkeys } => verify_bundle(&file, &vkeys)?,
        Command::Erase {
            auth,
            subject,
            index,
            reason,
        } => {
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            let mut body = json!({ "reason": reason });
            match subject {
                Some(s) => body["subject"] = json!(s),
                None => body["indexes"] = json!(index),
            }
            let out = rt.block_on(async {
                admin_client(&auth)?
                    .post_json("/v1/erasure", &body)
                    .await
                    .map_err(anyhow::Error::from)
            })?;
            println!(
                "erased {} event(s), destroyed {} data key(s); recorded in the log at index {}",
                out["erased"].as_array().map_or(0, Vec::len),
                out["keys_destroyed"],
                out["audit_index"]
            );
        }
        Command::Holds { command } => {
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            rt.block_on(holds_command(command))?;
        }
        Command::Retention { command } => {
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            rt.block_on(retention_command(command))?;
        }
        Command::Export {
            url,
            api_key,
            out,
            filters,
        } => {
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            let client = Client::new(&url, Some(api_key))?;
            let bytes = rt.block_on(client.get_bytes(&format!("/v1/export{}", filters.query())))?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &bytes)
                        .with_context(|| format!("couldn't write {}", path.display()))?;
                    eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
                }
                None => {
                    use std::io::Write as _;
                    std::io::stdout().write_all(&bytes)?;
                }
            }
        }
        Command::Keys { command } => {
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            rt.block_on(keys_command(command))?;
        }
        Command::Bench { command } => bench_command(command)?,
        Command::Verify(args) => std::process::exit(verify_command(args)),
    }
    Ok(())
}

/// Runs fsck and returns the exit status: 0 clean, 1 corrupt, 2 not checked.
fn fsck_command(data: &std::path::Path, master_key_file: Option<&std::path::Path>) -> i32 {
    use veritrail::fsck;
    use veritrail::vault;
    let env_key = std::env::var(vault::MASTER_KEY_ENV).ok();
    let given = env_key.is_some() || master_key_file.is_some();
    let master = if given || vault::default_master_key_path(data).exists() {
        match vault::read_master_key(data, env_key.as_deref(), master_key_file) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("veritrail fsck: could not check {}: {e}", data.display());
                return 2;
            }
        }
    } else {
        None
    };
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>24} [{bar:40}] {pos}/{len} bundles ({eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let result = fsck::check_data_dir(data, master.as_ref(), &bar);
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("veritrail fsck: could not check {}: {e}", data.display());
            return 2;
        }
    };
    let cp = report
        .checkpoint_size
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unreadable".into());
    println!(
        "veritrail fsck: {} (origin {:?}): tree size {}, checkpoint size {cp}",
        data.display(),
        report.origin,
        report.tree_size
    );
    println!(
        "checked {} bundles, {} tiles, {} events, {} leaf-hash index entries, {} idempotency entries, {} API keys",
        report.bundles,
        report.tiles,
        report.events,
        report.leaf_index_entries,
        report.dedupe_entries,
        report.api_keys
    );
    if report.sealed_checked > 0 || report.sealed_unchecked > 0 {
        println!(
            "sealed events: {} opened and checked ({} search-index entries), {} not opened",
            report.sealed_checked, report.search_index_entries, report.sealed_unchecked
        );
    }
    if report.search_index_pending > 0 {
        println!(
            "note: the newest {} events are not in the stored search index yet; the server indexes them from the events when it starts",
            report.search_index_pending
        );
    }
    if report.sealed_unchecked > 0 {
        println!(
            "note: without the master key (--master-key-file or VERITRAIL_MASTER_KEY) sealed events are counted, not checked"
        );
    }
    if report.is_clean() {
        println!("clean");
        return 0;
    }
    println!("CORRUPT: first bad object: {}", report.findings[0]);
    for f in &report.findings[1..] {
        println!("  also: {f}");
    }
    if report.stopped_early {
        println!(
            "  (stopped after {} problems)",
            veritrail::fsck::MAX_FINDINGS
        );
    }
    1
}

async fn keys_command(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            auth,
            role,
            name,
            app,
        } => {
            let client = admin_client(&auth)?;
            let mut body = json!({ "name": name, "role": role });
            if let Some(app) = app {
                body["app"] = json!(app);
            }
            let created = client.post_json("/v1/admin/keys", &body).await?;
            let Some(key) = created["key"].as_str() else {
                bail!("the server's answer has no key")
            };
            eprintln!(
                "created {} key {:?} (id {}); the token below is shown only once:",
                created["role"].as_str().unwrap_or("?"),
                created["name"].as_str().unwrap_or("?"),
                created["id"].as_str().unwrap_or("?")
            );
            println!("{key}");
        }
        KeysCommand::List { auth } => {
            let listed = admin_client(&auth)?.get_json("/v1/admin/keys").await?;
            println!("{}", serde_json::to_string_pretty(&listed["keys"])?);
        }
        KeysCommand::Revoke { auth, id } => {
            let revoked = admin_client(&auth)?
                .delete_json(&format!("/v1/admin/keys/{id}"))
                .await?;
            println!(
                "revoked {} at {}",
                id,
                revoked["revoked_at"].as_str().unwrap_or("?")
            );
        }
    }
    Ok(())
}

const VERIFY_HELP: &str = "\
Checks, in order: GET /checkpoint is a checkpoint of the keys' origin signed by every
--vkey (and cosigned by every --witness-vkey); with --state, that it extends the
checkpoint saved there (same origin, not smaller, same root at the same size, else a
consistency proof), saving it there only if every check passed; with --index, the leaf's
inclusion proof and that its entry bundle holds that very leaf.

Exit status: 0 everything verified; 1 verification failed (tampering, fork, rollback:
the state file is left unchanged); 2 usage, network or state-file error.";

#[derive(Args)]
struct VerifyArgs {
    /// Server URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// A log verifier key (from GET /v1/log); repeat for both of the log's keys.
    #[arg(long = "vkey", required = true)]
    vkeys: Vec<String>,
    /// A witness key (cosignature type 0x04, or Ed25519 0x01) whose cosignature is required.
    #[arg(long = "witness-vkey")]
    witness_vkeys: Vec<String>,
    /// Also prove this leaf into the checkpoint and print it.
    #[arg(long)]
    index: Option<u64>,
    /// JSON file keeping the last checkpoint seen (created on first use).
    #[arg(long)]
    state: Option<PathBuf>,
}

/// Runs `veritrail verify` and returns its exit status.
fn verify_command(args: VerifyArgs) -> i32 {
    use veritrail::verify::{LogFollower, VerifyOptions, verify_log};
    let follower = match LogFollower::new(&args.url, &args.vkeys, &args.witness_vkeys) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let options = VerifyOptions {
        index: args.index,
        state: args.state,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: couldn't start the async runtime: {e}");
            return 2;
        }
    };
    let result = rt.block_on(verify_log(&follower, &options, &mut |step| {
        println!("{step}")
    }));
    match result {
        Ok(_) => {
            println!("verified");
            0
        }
        Err(e) if e.is_verification_failure() => {
            eprintln!("VERIFICATION FAILED: {e}");
            1
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

fn bench_command(command: BenchCommand) -> anyhow::Result<()> {
    use veritrail::bench;
    match command {
        BenchCommand::Ingest {
            url,
            key,
            clients,
            events,
            batch_size,
            wait_checkpoint,
            without_ids,
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
                batch_size,
                wait_checkpoint,
                with_ids: !without_ids,
                timeout: std::time::Duration::from_secs(timeout_s),
            };
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            let report = rt.block_on(bench::ingest(&opts))?;
            if json {
                println!("{}", report.to_json(&opts));
            } else {
                println!("{}", report.describe(&opts));
            }
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
                timeout: std::time::Duration::from_secs(timeout_s),
            };
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            let report = rt.block_on(bench::search::search(&opts))?;
            if json {
                println!("{}", report.to_json(&opts));
            } else {
                println!("{}", report.describe(&opts));
            }
        }
        BenchCommand::Pipeline {
            dir,
            events,
            batch_size,
            clients,
            rounds,
            subjects,
            population,
            json,
        } => {
            let opts = bench::pipeline::PipelineOptions {
                dir,
                events,
                batch_size,
                clients,
                rounds,
                population: population.with_subjects(subjects.max(1)),
            };
            let report = bench::pipeline::pipeline(&opts)?;
            if json {
                println!("{}", report.to_json(&opts));
            } else {
                println!("{}", report.describe(&opts));
            }
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
            if json {
                println!("{}", report.to_json(&opts));
            } else {
                println!("{}", report.describe(&opts));
            }
        }
    }
    Ok(())
}
async fn holds_command(command: HoldsCommand) -> anyhow::Result<()> {
    match command {
        HoldsCommand::Create {
            auth,
            subject,
            app,
            reason,
        } => {
            let mut body = json!({ "reason": reason });
            match (subject, app) {
                (Some(s), _) => body["subject"] = json!(s),
                (None, Some(a)) => body["app"] = json!(a),
                (None, None) => bail!("give --subject or --app"),
            }
            let hold = admin_client(&auth)?
                .post_json("/v1/admin/holds", &body)
                .await?;
            println!("{}", serde_json::to_string_pretty(&hold)?);
        }
        HoldsCommand::List { auth } => {
            let list = admin_client(&auth)?.get_json("/v1/admin/holds").await?;
            println!("{}", serde_json::to_string_pretty(&list["holds"])?);
        }
        HoldsCommand::Release { auth, id } => {
            admin_client(&auth)?
                .delete_json(&format!("/v1/admin/holds/{}", percent_encode(&id)))
                .await?;
            println!("released hold {id}");
        }
    }
    Ok(())
}

async fn retention_command(command: RetentionCommand) -> anyhow::Result<()> {
    match command {
        RetentionCommand::Set {
            auth,
            app,
            action,
            keep_days,
        } => {
            let body = json!({ "app": app, "action": action, "keep_days": keep_days });
            let p = admin_client(&auth)?
                .post_json("/v1/admin/retention", &body)
                .await?;
            println!("{}", serde_json::to_string_pretty(&p)?);
        }
        RetentionCommand::List { auth } => {
            let list = admin_client(&auth)?.get_json("/v1/admin/retention").await?;
            println!("{}", serde_json::to_string_pretty(&list["policies"])?);
        }
        RetentionCommand::Remove { auth, id } => {
            admin_client(&auth)?
                .delete_json(&format!("/v1/admin/retention/{}", percent_encode(&id)))
                .await?;
            println!("removed policy {id}");
        }
        RetentionCommand::Run { auth } => {
            let out = admin_client(&auth)?
                .post_json("/v1/admin/retention/run", &json!({}))
                .await?;
            println!(
                "erased {} expired event(s); {} kept by legal holds; recorded in the log at index {}",
                out["erased"], out["held"], out["audit_index"]
            );
        }
    }
    Ok(())
}

fn verify_bundle(file: &std::path::Path, vkeys: &[String]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("couldn't read {}", file.display()))?;
    // An HTML evidence report verifies as the bundle it embeds.
    let text = veritrail::report::bundle_from_report(&text)
        .with_context(|| format!("{}", file.display()))?
        .unwrap_or(text);
    let verifiers = vkeys
        .iter()
        .map(|k| veritrail::note::parse_verifier_key(k).with_context(|| format!("--vkey {k}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<&dyn veritrail::note::NoteVerifier> =
        verifiers.iter().map(|v| v.as_ref()).collect();
    let result = if text.starts_with(veritrail::bundle::TLOG_PROOF_HEADER) {
        veritrail::bundle::verify_tlog_proof(&text, &refs)
    } else {
        veritrail::bundle::verify_bundle(&text, &refs)
    };
    match result {
        Ok(v) => {
            println!(
                "OK: {} event(s) of {} verified against a checkpoint of size {} signed by {} key(s)",
                v.indexes.len(),
                v.origin,
                v.tree_size,
                refs.len()
            );
            Ok(())
        }
        Err(e) if e.line == 0 => bail!("{}: verification FAILED: {}", file.display(), e.message),
        Err(e) => bail!("{}: verification FAILED at {e}", file.display()),
    }
}
