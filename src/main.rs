use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use veritrail::note::keys::LogKeys;

/// Veritrail: a verifiable audit log.
#[derive(Parser)]
#[command(name = "veritrail", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate the log's ECDSA P-256 and Ed25519 signing keys and print their verifier keys.
    Keygen {
        /// The log's origin (checkpoint first line and key name), e.g. example.com/log.
        #[arg(long)]
        origin: String,
        /// Directory for log-ecdsa.pem and log-ed25519.pem (created if missing; existing
        /// key files are never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Keygen { origin, out } => keygen(&origin, &out),
    }
}

fn keygen(origin: &str, out: &std::path::Path) -> anyhow::Result<()> {
    let keys = LogKeys::generate().context("generating keys")?;
    // Validate the origin as a key name before writing anything.
    let vkeys = keys
        .verifier_keys(origin)
        .with_context(|| format!("origin {origin:?} cannot be a key name"))?;
    let written = keys
        .write_to_dir(out)
        .with_context(|| format!("writing keys to {}", out.display()))?;
    for path in &written {
        eprintln!("wrote {}", path.display());
    }
    println!("ecdsa {}", vkeys.ecdsa);
    println!("ed25519 {}", vkeys.ed25519);
    Ok(())
}
