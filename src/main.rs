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
