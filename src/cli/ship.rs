//! `veritrail ship`: the agent's flags, its metrics endpoint and its
//! progress line. The agent itself is `veritrail::ship`.
//!
//! Exit status: 0 when `--exit-at-eof` delivered everything, 1 when the
//! agent stopped on an error (nothing past the last commit is lost: start
//! it again). A terminal on stdout gets a live progress line; otherwise
//! one summary line is printed at the end.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use veritrail::client::Client;
use veritrail::note::{CheckpointPolicy, parse_verifier_key};
use veritrail::ship::{self, Config, Stats};

#[derive(Args)]
pub struct ShipArgs {
    /// Server URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    url: String,
    /// A writer API key (its app is the events' app).
    #[arg(long, env = "VERITRAIL_WRITER_KEY", hide_env_values = true)]
    key: String,
    /// A log verifier key (from GET /v1/log, pinned); repeat for each key
    /// that must have signed a checkpoint.
    #[arg(long = "vkey", required = true)]
    vkeys: Vec<String>,
    /// A JSON-lines file to tail; the file name may hold * and ? to take
    /// rotated files too (e.g. /var/log/app/audit.log*). Repeatable.
    #[arg(long, required_unless_present = "journald")]
    include: Vec<PathBuf>,
    /// Also read the systemd journal: each entry's MESSAGE is one event
    /// line (journalctl -o json, after the cursor kept in the state file).
    #[arg(long)]
    journald: bool,
    /// A journalctl match or option picking the entries, e.g.
    /// _SYSTEMD_UNIT=app.service or --file=/var/log/journal/x.journal.
    /// Repeatable.
    #[arg(
        long = "journald-arg",
        requires = "journald",
        allow_hyphen_values = true
    )]
    journald_args: Vec<String>,
    /// The agent's directory: state.json and dead-letter.jsonl.
    #[arg(long, default_value = "veritrail-ship")]
    dir: PathBuf,
    /// Requests in flight at once (each waits for a signed checkpoint, so
    /// this times the batch size bounds the lines per checkpoint interval).
    #[arg(long, default_value_t = ship::DEFAULT_IN_FLIGHT, value_parser = clap::value_parser!(u16).range(1..=256))]
    in_flight: u16,
    /// Most lines per request (1 to 1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch_lines: u16,
    /// About the most bytes per request.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1024..=(4 << 20)))]
    batch_bytes: u32,
    /// Longest line sent; longer ones go to the dead-letter file.
    #[arg(long, default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(64..=(1 << 20)))]
    max_line_bytes: u32,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Stop once every file is delivered to its end, instead of following.
    #[arg(long)]
    exit_at_eof: bool,
    /// Also trust these CA certificates (PEM) for an https:// URL.
    #[arg(long, env = "VERITRAIL_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

/// `veritrail ship`.
pub async fn ship(args: ShipArgs) -> anyhow::Result<()> {
    let mut keys = Vec::with_capacity(args.vkeys.len());
    for v in &args.vkeys {
        keys.push(parse_verifier_key(v).with_context(|| format!("log key {v}"))?);
    }
    let policy = CheckpointPolicy::new(keys);
    let client = match &args.ca_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("couldn't read the CA certificates {}", path.display()))?;
            Client::with_ca(&args.url, Some(args.key.clone()), &pem)?
        }
        None => Client::new(&args.url, Some(args.key.clone()))?,
    };
    if let Some(addr) = &args.metrics_listen {
        serve_metrics(addr).await?;
    }
    let mut cfg = Config::new(args.include.clone(), args.dir.clone());
    cfg.in_flight = usize::from(args.in_flight);
    cfg.batch_lines = usize::from(args.batch_lines);
    cfg.batch_bytes = args.batch_bytes as usize;
    cfg.max_line_bytes = args.max_line_bytes as usize;
    cfg.exit_at_eof = args.exit_at_eof;
    if args.journald {
        cfg.journal = Some(ship::journal::Config {
            args: args.journald_args.clone(),
            ..Default::default()
        });
    }
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });
    let progress = |s: &Stats| {
        if let Some(bar) = &bar {
            bar.set_message(summary(s));
        }
    };
    let result = tokio::select! {
        r = ship::run(cfg, client, policy, progress) => r,
        _ = tokio::signal::ctrl_c() => {
            // Every commit is durable as it happens: stopping here loses nothing.
            if let Some(bar) = &bar { bar.finish_and_clear(); }
            println!("stopped");
            return Ok(());
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let stats = result.context("the agent stopped; start it again to resume")?;
    println!("shipped: {}", summary(&stats));
    Ok(())
}

fn summary(s: &Stats) -> String {
    format!(
        "appended={} duplicates={} dead_letters={} batches={} checkpoint={}",
        s.appended, s.duplicates, s.dead_letters, s.batches, s.checkpoint_size
    )
}

/// Serves the process's Prometheus metrics at `addr`/metrics.
async fn serve_metrics(addr: &str) -> anyhow::Result<()> {
    let handle =
        veritrail::server::install_metrics().context("couldn't install the metrics recorder")?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("couldn't listen on {addr} for metrics"))?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let h = handle.clone();
            async move { h.render() }
        }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!("the metrics endpoint stopped: {e}");
        }
    });
    Ok(())
}
