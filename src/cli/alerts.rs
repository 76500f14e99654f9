//! `veritrail alerts test`: replays a file of events against alert rules,
//! offline, and prints what would fire, so rules can be tuned before they
//! are deployed. The rules and their evaluation are the server's own
//! (`veritrail::alerts`); only the events' source differs.
//!
//! The events file holds one JSON value per line: an audit event, or
//! `{"app": "...", "event": {...}}`. An alert's `events` are the line
//! numbers of its triggering events. Memory is bounded by the rules' caps,
//! whatever the file's length.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use veritrail::alerts::{AlertsConfig, Engine};
use veritrail::event::{self, EventLimits};

/// Longest line of an events file.
const MAX_LINE: usize = 1 << 20;

#[derive(Subcommand)]
pub enum AlertsCommand {
    /// Replay a file of events (JSON lines) against the rules of a
    /// configuration file and print the alerts that would fire.
    Test(TestArgs),
}

#[derive(Args)]
pub struct TestArgs {
    /// A TOML file with an [alerts] table (the server's configuration file will do).
    #[arg(long)]
    rules: PathBuf,
    /// Events, one JSON object per line.
    #[arg(long)]
    events: PathBuf,
    /// The app of events given without one.
    #[arg(long, default_value = "replay")]
    app: String,
}

/// Runs an `alerts` subcommand.
pub fn alerts(command: AlertsCommand) -> anyhow::Result<()> {
    match command {
        AlertsCommand::Test(a) => test(&a.rules, &a.events, &a.app),
    }
}

fn test(rules: &Path, events: &Path, default_app: &str) -> anyhow::Result<()> {
    let Some(config) = AlertsConfig::load(rules).map_err(anyhow::Error::msg)? else {
        bail!("{} has no [alerts] table", rules.display());
    };
    let engine = Engine::new(config.rules, config.max_entries_per_rule);
    let file = std::fs::File::open(events)
        .with_context(|| format!("couldn't open {}", events.display()))?;
    let mut reader = BufReader::new(file);
    let limits = EventLimits::default();
    let mut out = std::io::stdout().lock();
    let (mut seen, mut fired) = (0u64, std::collections::BTreeMap::<String, u64>::new());
    let mut buf = Vec::new();
    for line_no in 1u64.. {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("couldn't read {}", events.display()))?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_LINE {
            bail!(
                "{}: line {line_no}: longer than {MAX_LINE} bytes",
                events.display()
            );
        }
        let text = String::from_utf8_lossy(&buf);
        if text.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: line {line_no}: not JSON", events.display()))?;
        let (app, raw) = match value.get("event") {
            Some(e) => (
                value
                    .get("app")
                    .and_then(Value::as_str)
                    .unwrap_or(default_app)
                    .to_string(),
                e.clone(),
            ),
            None => (default_app.to_string(), value),
        };
        let ev = event::parse_event(&raw, &limits)
            .map_err(|e| anyhow::anyhow!("{}: line {line_no}: {e}", events.display()))?;
        seen += 1;
        let Some(ob) = engine.observe(&app, &ev) else {
            continue;
        };
        for alert in engine.evaluate(&ob, line_no) {
            *fired.entry(alert.rule.clone()).or_default() += 1;
            writeln!(out, "{}", json!({ "line": line_no, "alert": alert }))?;
        }
    }
    let total: u64 = fired.values().sum();
    let per_rule: Vec<String> = fired.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    eprintln!(
        "veritrail: {seen} events, {total} alerts{}",
        if per_rule.is_empty() {
            String::new()
        } else {
            format!(" ({})", per_rule.join(", "))
        }
    );
    Ok(())
}
