//! The `veritrail` command.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use veritrail::client::Client;
use veritrail::config::{FileConfig, ServeConfig};

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
    /// Verify an evidence bundle (NDJSON from /v1/export) or a tlog-proof
    /// file offline, with the log's verifier keys.
    VerifyBundle {
        /// The bundle or .tlog-proof file.
        file: PathBuf,
        /// A verifier key of the log (give each key that must have signed).
        #[arg(long = "vkey", required = true)]
        vkeys: Vec<String>,
    },
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
    /// File holding the master key that encrypts events at rest (hex or
    /// base64; or set VERITRAIL_MASTER_KEY to the key itself)
    /// [default: <data>.master.key beside the data directory, created on first start].
    #[arg(long, env = "VERITRAIL_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Seconds between retention runs [default: 3600].
    #[arg(long)]
    retention_interval_s: Option<u64>,
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
    Ok(Client::new(&auth.url, Some(token))?)
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
                master_key_file: a.master_key_file,
                retention_interval_s: a.retention_interval_s,
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
        Command::VerifyBundle { file, vkeys } => verify_bundle(&file, &vkeys)?,
        Command::Keys { command } => {
            let rt = tokio::runtime::Runtime::new().context("couldn't start the async runtime")?;
            rt.block_on(keys_command(command))?;
        }
    }
    Ok(())
}

fn verify_bundle(file: &std::path::Path, vkeys: &[String]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("couldn't read {}", file.display()))?;
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
