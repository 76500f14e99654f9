//! The `veritrail` command's work, one module per group of commands;
//! `main.rs` only parses the command line and dispatches here.
//!
//! - [`serve`] for `serve` and `witness` (the long-running services);
//! - [`keys`] for `keygen` and `keys` (log keys and API keys);
//! - [`governance`] for `erase`, `holds` and `retention`;
//! - [`export`] for `export` and `verify-bundle` (evidence bundles);
//! - [`backup`] for `backup`, `restore` and `fsck`;
//! - [`migrate`] for `migrate` (a stopped sled log onto PostgreSQL and a bucket);
//! - [`follow`] for `verify` and `monitor` (following a log from outside);
//! - [`ship`] for `ship` (the shipping agent);
//! - [`alerts`] for `alerts test` (replaying events against alert rules);
//! - [`bench`] for `bench`.
//!
//! Commands that talk to a server do so through [`veritrail::client::Client`],
//! whose calls are typed with the server's own request and answer types.
//! Each command keeps its flags, its output and its exit status: scripts
//! and the tests in `tests/*_cli.rs` rely on them. Nothing here builds a
//! tokio runtime: `main` builds the one runtime for the commands that need it.

pub mod alerts;
pub mod backup;
pub mod bench;
pub mod export;
pub mod follow;
pub mod governance;
pub mod keys;
pub mod migrate;
pub mod serve;
pub mod ship;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use veritrail::client::Client;

/// The process's tokio runtime, for the commands that need one.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("couldn't start the async runtime")
}

/// Log lines (tracing) to stderr, filtered by `VERITRAIL_LOG`.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VERITRAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// HTTPS for a server: both flags, or neither (plain HTTP, meant for loopback).
#[derive(Args)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, env = "VERITRAIL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "VERITRAIL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// The server and the admin key of an admin command.
#[derive(Args)]
pub struct AdminAuth {
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

impl AdminAuth {
    /// A client for the server, with the admin key.
    pub fn client(&self) -> anyhow::Result<Client> {
        let token = match &self.admin_key {
            Some(k) => k.clone(),
            None => {
                let path = self.admin_key_file.clone().unwrap_or_else(|| {
                    PathBuf::from(veritrail::config::DEFAULT_DATA_DIR).join("admin.key")
                });
                std::fs::read_to_string(&path)
                    .with_context(|| format!("couldn't read the admin key from {} (set VERITRAIL_ADMIN_KEY or --admin-key-file)", path.display()))?
                    .trim()
                    .to_string()
            }
        };
        match &self.ca_cert {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| {
                    format!("couldn't read the CA certificates {}", path.display())
                })?;
                Ok(Client::with_ca(&self.url, Some(token), &pem)?)
            }
            None => Ok(Client::new(&self.url, Some(token))?),
        }
    }
}

/// Prints `value` as pretty JSON, through a `serde_json::Value` so that the
/// keys come out sorted whatever the type's field order (the output the
/// commands have always had).
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let sorted = serde_json::to_value(value)?;
    println!("{}", serde_json::to_string_pretty(&sorted)?);
    Ok(())
}
