//! `veritrail keygen` (the log's signing keys, offline) and `veritrail keys`
//! (API keys on a running server, through the typed admin client).

use std::path::Path;

use anyhow::Context as _;
use clap::Subcommand;
use veritrail::api::CreateKey;

use super::AdminAuth;

#[derive(Subcommand)]
pub enum KeysCommand {
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

/// `veritrail keygen`: writes both log keys to `out` (never over existing
/// ones) and prints their verifier keys.
pub fn keygen(origin: &str, out: &Path) -> anyhow::Result<()> {
    let keys = veritrail::note::keys::LogKeys::generate()?;
    let vkeys = keys.verifier_keys(origin)?;
    std::fs::create_dir_all(out).with_context(|| format!("couldn't create {}", out.display()))?;
    let paths = keys.write_to_dir(out)?;
    for p in paths {
        eprintln!("wrote {}", p.display());
    }
    println!("ecdsa   {}", vkeys.ecdsa);
    println!("ed25519 {}", vkeys.ed25519);
    Ok(())
}

/// `veritrail keys …`.
pub async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            auth,
            role,
            name,
            app,
        } => {
            let created = auth
                .client()?
                .create_key(&CreateKey { name, role, app })
                .await?;
            // The role as the API spells it.
            let role = serde_json::to_value(created.record.role)?;
            eprintln!(
                "created {} key {:?} (id {}); the token below is shown only once:",
                role.as_str().unwrap_or("?"),
                created.record.name,
                created.record.id
            );
            println!("{}", created.key);
        }
        KeysCommand::List { auth } => {
            let keys = auth.client()?.list_keys().await?;
            super::print_json(&keys)?;
        }
        KeysCommand::Revoke { auth, id } => {
            let revoked = auth.client()?.revoke_key(&id).await?;
            println!(
                "revoked {} at {}",
                id,
                revoked.revoked_at.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(())
}
