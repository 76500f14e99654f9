//! The `veritrail` command: parses the command line and dispatches to
//! [`cli`], which holds each command's work. Offline commands run on this
//! thread; the others share the one tokio runtime built here.

mod cli;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use cli::AdminAuth;
use cli::bench::BenchCommand;
use cli::export::ExportArgs;
use cli::follow::{MonitorArgs, VERIFY_HELP, VerifyArgs};
use cli::governance::{EraseArgs, HoldsCommand, RetentionCommand};
use cli::keys::KeysCommand;
use cli::migrate::MigrateArgs;
use cli::serve::{ServeArgs, WitnessArgs};
use cli::ship::ShipArgs;

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
    Serve(Box<ServeArgs>),
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
    Erase(EraseArgs),
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
    Export(ExportArgs),
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
    /// Alert rules: replay events against them offline.
    Alerts {
        #[command(subcommand)]
        command: cli::alerts::AlertsCommand,
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
    /// Tail JSON-lines files and deliver each line to a log exactly once,
    /// checking every receipt (docs/ship.md).
    Ship(ShipArgs),
    /// Run a C2SP tlog-witness that cosigns the configured logs' checkpoints.
    Witness(WitnessArgs),
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
        /// The live data directory: its log-ecdsa.pem and log-ed25519.pem,
        /// and its key store (`keys/`), whose current state opens the
        /// backup's events [default: --from].
        #[arg(long)]
        keys: Option<PathBuf>,
        /// The log's master key file [default: VERITRAIL_MASTER_KEY, else
        /// the file beside the --keys directory].
        #[arg(long)]
        master_key_file: Option<PathBuf>,
    },
    /// Move a stopped log from its data directory onto PostgreSQL and an
    /// S3-compatible bucket (same origin, keys, tree and checkpoint);
    /// resumable, checked at the end.
    Migrate(MigrateArgs),
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

fn main() -> anyhow::Result<()> {
    let command = match Cli::parse().command {
        // Offline: no runtime (`bench pipeline` starts its own).
        Command::Keygen { origin, out } => return cli::keys::keygen(&origin, &out),
        Command::Restore {
            from,
            data,
            keys,
            master_key_file,
        } => {
            return cli::backup::restore(&from, &data, keys.as_deref(), master_key_file.as_deref());
        }
        Command::Fsck {
            data,
            master_key_file,
        } => std::process::exit(cli::backup::fsck(&data, master_key_file.as_deref())),
        Command::VerifyBundle { file, vkeys } => {
            return cli::export::verify_bundle(&file, &vkeys);
        }
        Command::Migrate(a) => return cli::migrate::migrate(a),
        Command::Alerts { command } => return cli::alerts::alerts(command),
        Command::Bench { command } if command.is_offline() => {
            return cli::bench::offline(command);
        }
        online => online,
    };
    let rt = match (cli::runtime(), &command) {
        (Ok(rt), _) => rt,
        (Err(e), Command::Verify(_)) => std::process::exit(cli::follow::runtime_failed(&e)),
        (Err(e), _) => return Err(e),
    };
    rt.block_on(async move {
        match command {
            Command::Serve(a) => cli::serve::serve(*a).await,
            Command::Witness(a) => cli::serve::witness(a).await,
            Command::Ship(a) => cli::ship::ship(a).await,
            Command::Keys { command } => cli::keys::keys(command).await,
            Command::Erase(a) => cli::governance::erase(a).await,
            Command::Holds { command } => cli::governance::holds(command).await,
            Command::Retention { command } => cli::governance::retention(command).await,
            Command::Export(a) => cli::export::export(a).await,
            Command::Backup { auth, to } => cli::backup::backup(auth, &to).await,
            Command::Bench { command } => cli::bench::online(command).await,
            Command::Verify(a) => std::process::exit(cli::follow::verify(a).await),
            Command::Monitor(a) => match cli::follow::monitor(a).await {
                0 => Ok(()),
                status => std::process::exit(status),
            },
            Command::Keygen { .. }
            | Command::Restore { .. }
            | Command::Fsck { .. }
            | Command::Migrate(_)
            | Command::VerifyBundle { .. }
            | Command::Alerts { .. } => unreachable!("offline commands return above"),
        }
    })
}
