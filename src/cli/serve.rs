//! `veritrail serve` and `veritrail witness`: the long-running services.
//! This module turns flags, environment and configuration file into their
//! configurations (flags win over the file); the services are
//! `veritrail::server`'s and `veritrail::witness::server`'s.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use veritrail::config::{FileConfig, ServeConfig};

use super::{TlsArgs, init_tracing};

#[derive(Args)]
pub struct ServeArgs {
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
    /// base64; or set VERITRAIL_MASTER_KEY to the key itself, which a file
    /// given here overrides)
    /// [default: <data>.master.key beside the data directory, created on first start].
    #[arg(long, env = "VERITRAIL_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Seconds between retention runs [default: 3600].
    #[arg(long)]
    retention_interval_s: Option<u64>,
    /// MiB of memory the embedded database may cache; sled's memory also
    /// follows what it writes, until the store reopens it [default: 64].
    #[arg(long, env = "VERITRAIL_STORE_CACHE_MB")]
    store_cache_mb: Option<u64>,
    /// Memory for the read cache of hash tiles and entry bundles, bytes;
    /// 0 caches nothing [default: 67108864].
    #[arg(long)]
    read_cache_bytes: Option<usize>,
    /// Memory for the read cache's proof tier (the upper subtree hashes of
    /// full level-0 tiles, about 1 KiB per 256 events), bytes; 0 keeps
    /// none [default: 67108864].
    #[arg(long)]
    proof_cache_bytes: Option<usize>,
    /// Events the search index keeps in memory before writing them out
    /// (256 to 131072); a start that finds the index further behind the
    /// tree than this builds it in the background while serving, searches
    /// answering 503 until it is done [default: 32768].
    #[arg(long)]
    search_index_flush_events: Option<usize>,
    /// Milliseconds each background job (the erasure cleanup, the search
    /// index's build) sleeps after each step, 0 to 10000, so that commits
    /// are not kept waiting behind it [default: 20].
    #[arg(long)]
    background_step_pause_ms: Option<u64>,
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
    /// Keep the log in PostgreSQL and a bucket instead of the data
    /// directory: postgres://user@host:port/db (the password from
    /// PGPASSWORD or the config file, never here).
    #[arg(long, env = "VERITRAIL_STORE", value_name = "URL")]
    store: Option<String>,
    /// The bucket of --store: s3://bucket/prefix (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or the config file).
    #[arg(long, env = "VERITRAIL_OBJECTS", value_name = "URL")]
    objects: Option<String>,
    /// The S3 endpoint of --objects, e.g. http://127.0.0.1:9000 [default: AWS].
    #[arg(long, env = "VERITRAIL_OBJECTS_ENDPOINT", value_name = "URL")]
    objects_endpoint: Option<String>,
    /// The region of --objects [default: us-east-1].
    #[arg(long, env = "VERITRAIL_OBJECTS_REGION")]
    objects_region: Option<String>,
    /// With --store: the base URL other frontends forward writes to while
    /// this one sequences, e.g. http://10.0.0.5:8080 [default: the listen
    /// address].
    #[arg(long, env = "VERITRAIL_ADVERTISE", value_name = "URL")]
    advertise: Option<String>,
    /// With --store: the sequencer lease's time to live, milliseconds
    /// [default: 3000].
    #[arg(long, env = "VERITRAIL_LEASE_TTL_MS", value_name = "MS")]
    lease_ttl_ms: Option<u64>,
    /// With --store: how often the leader renews its lease, milliseconds,
    /// under half of --lease-ttl-ms [default: 1000].
    #[arg(long, env = "VERITRAIL_LEASE_RENEW_MS", value_name = "MS")]
    lease_renew_ms: Option<u64>,
}

// No doc comment: the subcommand's help is that of its variant in `main.rs`.
#[derive(Args)]
pub struct WitnessArgs {
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
}

/// `veritrail serve`: runs the log until it is stopped.
pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let config = config(a)?;
    veritrail::server::run(config).await?;
    Ok(())
}

/// The configuration file (`--config`) under the flags and environment.
fn config(a: ServeArgs) -> anyhow::Result<ServeConfig> {
    let file = match &a.config {
        Some(p) => FileConfig::load(p).map_err(anyhow::Error::msg)?,
        None => FileConfig::default(),
    };
    if let Some(url) = &a.store
        && url_has_password(url)
    {
        anyhow::bail!(
            "--store must not carry a password (command lines are visible to every user): set PGPASSWORD or put the URL in the config file"
        );
    }
    let flags = FileConfig {
        store: a.store,
        objects: a.objects,
        objects_endpoint: a.objects_endpoint,
        objects_region: a.objects_region,
        advertise: a.advertise,
        lease_ttl_ms: a.lease_ttl_ms,
        lease_renew_ms: a.lease_renew_ms,
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
        store_cache_mb: a.store_cache_mb,
        read_cache_bytes: a.read_cache_bytes,
        proof_cache_bytes: a.proof_cache_bytes,
        search_index_flush_events: a.search_index_flush_events,
        background_step_pause_ms: a.background_step_pause_ms,
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
    ServeConfig::resolve(flags, file).map_err(anyhow::Error::msg)
}

/// True when a `scheme://user:password@host` URL carries a password.
pub(super) fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
        || url.contains("password=")
}

/// `veritrail witness`: runs the witness until it is stopped.
pub async fn witness(args: WitnessArgs) -> anyhow::Result<()> {
    let WitnessArgs {
        data,
        listen,
        config,
        tls,
    } = args;
    init_tracing();
    let listen = listen
        .parse()
        .with_context(|| format!("listen address {listen:?} is not host:port"))?;
    let config =
        veritrail::witness::config::WitnessConfig::load(&config).map_err(anyhow::Error::msg)?;
    let tls = veritrail::listen::TlsFiles::from_flags(tls.tls_cert, tls.tls_key)
        .map_err(anyhow::Error::msg)?;
    veritrail::witness::server::run(veritrail::witness::server::WitnessServeConfig {
        data,
        listen,
        config,
        tls,
    })
    .await
    .map_err(anyhow::Error::msg)?;
    Ok(())
}
