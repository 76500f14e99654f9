//! `veritrail export` (an evidence bundle from a running server, auditor
//! key) and `veritrail verify-bundle` (checking one offline with the log's
//! verifier keys; the checks themselves are `veritrail::evidence`'s).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use veritrail::api::SearchParams;
use veritrail::client::Client;

// No doc comment: the subcommand's help is that of its variant in `main.rs`.
#[derive(Args)]
pub struct ExportArgs {
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
    /// Occurred at or after (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Occurred before (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Received by the log at or after (RFC 3339).
    #[arg(long)]
    received_since: Option<String>,
    /// Received by the log before (RFC 3339).
    #[arg(long)]
    received_until: Option<String>,
    /// Outcome: success, failure or denied.
    #[arg(long, value_parser = parse_outcome)]
    outcome: Option<veritrail::event::Outcome>,
    /// Purpose.
    #[arg(long)]
    purpose: Option<String>,
    /// Also export the log's own audit records (searches, reads, exports).
    #[arg(long)]
    include_audit: bool,
}

impl Filters {
    /// The query of `GET /v1/export` (no limit: the server's maximum).
    fn query(self) -> SearchParams {
        SearchParams {
            subject: self.subject,
            actor: self.actor,
            action: self.action,
            resource: self.resource,
            app: self.app,
            since: self.since,
            until: self.until,
            received_since: self.received_since,
            received_until: self.received_until,
            outcome: self.outcome,
            purpose: self.purpose,
            include_audit: self.include_audit.then_some(true),
            ..SearchParams::default()
        }
    }
}

/// An outcome as the event schema spells it.
fn parse_outcome(s: &str) -> Result<veritrail::event::Outcome, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("{s:?} is not an outcome (success, failure or denied)"))
}

/// `veritrail export`: the bundle to `--out` or stdout.
pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.url, Some(args.api_key))?;
    let bytes = client.export(&args.filters.query()).await?;
    match args.out {
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
    Ok(())
}

/// `veritrail verify-bundle`: an NDJSON evidence bundle or a tlog-proof
/// file, against every given verifier key.
pub fn verify_bundle(file: &Path, vkeys: &[String]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("couldn't read {}", file.display()))?;
    // An HTML evidence report verifies as the bundle it embeds.
    let text = veritrail::evidence::report::bundle_from_report(&text)
        .with_context(|| format!("{}", file.display()))?
        .unwrap_or(text);
    let verifiers = vkeys
        .iter()
        .map(|k| veritrail::note::parse_verifier_key(k).with_context(|| format!("--vkey {k}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let refs: Vec<&dyn veritrail::note::NoteVerifier> =
        verifiers.iter().map(|v| v.as_ref()).collect();
    let result = if text.starts_with(veritrail::evidence::TLOG_PROOF_HEADER) {
        veritrail::evidence::verify_tlog_proof(&text, &refs)
    } else {
        veritrail::evidence::verify_bundle(&text, &refs)
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
