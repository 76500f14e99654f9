//! `veritrail verify` and `veritrail monitor`: following a log from the
//! outside. Both are the one `veritrail::follower`, with the same flags for
//! the log and its keys ([`FollowArgs`]); the checks are
//! `veritrail::verify`'s and `veritrail::monitor`'s; this module maps their
//! outcome to output and exit status (0 verified, 1 verification failed or
//! alert, 2 could not check).

use std::path::PathBuf;

use clap::Args;

/// The long help of `veritrail verify`: what it checks and its exit statuses.
pub const VERIFY_HELP: &str = "\
Checks, in order: GET /checkpoint is a checkpoint of the keys' origin signed by every
--vkey (and cosigned by every --witness-vkey); with --state, that it extends the
checkpoint saved there (same origin, not smaller, same root at the same size, else a
consistency proof), saving it there only if every check passed; with --index, the leaf's
inclusion proof and that its entry bundle holds that very leaf.

Exit status: 0 everything verified; 1 verification failed (tampering, fork, rollback:
the state file is left unchanged); 2 usage, network or state-file error.";

/// The log to follow and the keys it must be signed with: the flags
/// `verify` and `monitor` share, with one meaning in both.
#[derive(Args)]
pub struct FollowArgs {
    /// The log's URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// A log verifier key (from GET /v1/log); every one given must have signed
    /// each checkpoint (repeatable: give both of the log's keys).
    #[arg(long = "vkey", required = true)]
    vkeys: Vec<String>,
    /// A witness key (cosignature type 0x04, or Ed25519 0x01) whose
    /// cosignature each checkpoint must carry (repeatable).
    #[arg(long = "witness-vkey")]
    witness_vkeys: Vec<String>,
    /// JSON file keeping the last verified checkpoint (and monitor --full
    /// progress); created on first use.
    #[arg(long)]
    state: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    log: FollowArgs,
    /// Also prove this leaf into the checkpoint and print it.
    #[arg(long)]
    index: Option<u64>,
}

/// `veritrail verify`; returns its exit status.
pub async fn verify(args: VerifyArgs) -> i32 {
    use veritrail::verify::{LogFollower, VerifyOptions, verify_log};
    let log = args.log;
    let mut follower = match LogFollower::new(&log.url, &log.vkeys, &log.witness_vkeys) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let options = VerifyOptions {
        index: args.index,
        state: log.state,
    };
    let result = verify_log(&mut follower, &options, &mut |step| println!("{step}")).await;
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

/// `veritrail verify` when the runtime could not start: exit status 2.
pub fn runtime_failed(e: &anyhow::Error) -> i32 {
    eprintln!("error: {e:#}");
    2
}

#[derive(Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    log: FollowArgs,
    /// How many of the witnesses must have cosigned [default: all].
    #[arg(long)]
    witness_quorum: Option<usize>,
    /// POST alerts as JSON to this URL.
    #[arg(long)]
    webhook: Option<String>,
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

/// `veritrail monitor`; returns its exit status (0 only with `--once`, or
/// never).
pub async fn monitor(a: MonitorArgs) -> i32 {
    use std::io::IsTerminal as _;
    let opts = veritrail::monitor::MonitorOptions {
        url: a.log.url,
        log_vkeys: a.log.vkeys,
        witness_vkeys: a.log.witness_vkeys,
        witness_quorum: a.witness_quorum,
        webhook: a.webhook,
        state: a.log.state,
        full: a.full,
        once: a.once,
        interval: std::time::Duration::from_millis(a.interval_ms.max(100)),
        compare: a.compare,
        progress: std::io::stderr().is_terminal(),
    };
    let result = async {
        let mut m = veritrail::monitor::Monitor::new(opts)?;
        m.run().await
    }
    .await;
    match result {
        Ok(()) => 0,
        Err(veritrail::monitor::MonitorError::Alert(a)) => {
            eprintln!("veritrail monitor: ALERT {}: {}", a.kind, a.message);
            1
        }
        Err(e) => {
            eprintln!("veritrail monitor: {e}");
            2
        }
    }
}
