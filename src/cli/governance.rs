//! `veritrail erase`, `holds` and `retention`: erasure, legal holds and
//! retention policies on a running server, through the typed admin client.
//! The server records each change in the log before it takes effect.

use anyhow::bail;
use clap::{Args, Subcommand};
use veritrail::api::{ErasureRequest, HoldRequest, PolicyRequest};

use super::{AdminAuth, print_json};

// No doc comment: the subcommand's help is that of its variant in `main.rs`.
#[derive(Args)]
pub struct EraseArgs {
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
}

#[derive(Subcommand)]
pub enum HoldsCommand {
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
pub enum RetentionCommand {
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

/// `veritrail erase`: a subject's events, or the given leaf indexes.
pub async fn erase(args: EraseArgs) -> anyhow::Result<()> {
    let EraseArgs {
        auth,
        subject,
        index,
        reason,
    } = args;
    let req = match subject {
        Some(s) => ErasureRequest {
            subject: Some(s),
            indexes: None,
            reason,
        },
        None => ErasureRequest {
            subject: None,
            indexes: Some(index),
            reason,
        },
    };
    let out = auth.client()?.erase(&req).await?;
    if out.cleanup == veritrail::api::CleanupState::Pending {
        println!(
            "erased the subject: destroyed {} data key(s), so its events read as erased now; \
             their bodies are deleted in the background (/healthz counts the erasures \
             still being cleaned up); recorded in the log at index {}",
            out.keys_destroyed, out.audit_index
        );
    } else {
        println!(
            "erased {} event(s), destroyed {} data key(s); recorded in the log at index {}",
            out.erased.len(),
            out.keys_destroyed,
            out.audit_index
        );
    }
    Ok(())
}

/// `veritrail holds …`.
pub async fn holds(command: HoldsCommand) -> anyhow::Result<()> {
    match command {
        HoldsCommand::Create {
            auth,
            subject,
            app,
            reason,
        } => {
            let req = match (subject, app) {
                (Some(s), _) => HoldRequest {
                    subject: Some(s),
                    app: None,
                    reason,
                },
                (None, Some(a)) => HoldRequest {
                    subject: None,
                    app: Some(a),
                    reason,
                },
                (None, None) => bail!("give --subject or --app"),
            };
            let hold = auth.client()?.create_hold(&req).await?;
            print_json(&hold)?;
        }
        HoldsCommand::List { auth } => {
            let holds = auth.client()?.list_holds().await?;
            print_json(&holds)?;
        }
        HoldsCommand::Release { auth, id } => {
            auth.client()?.release_hold(&id).await?;
            println!("released hold {id}");
        }
    }
    Ok(())
}

/// `veritrail retention …`.
pub async fn retention(command: RetentionCommand) -> anyhow::Result<()> {
    match command {
        RetentionCommand::Set {
            auth,
            app,
            action,
            keep_days,
        } => {
            let req = PolicyRequest {
                app,
                action,
                keep_days,
            };
            let policy = auth.client()?.create_policy(&req).await?;
            print_json(&policy)?;
        }
        RetentionCommand::List { auth } => {
            let policies = auth.client()?.list_policies().await?;
            print_json(&policies)?;
        }
        RetentionCommand::Remove { auth, id } => {
            auth.client()?.remove_policy(&id).await?;
            println!("removed policy {id}");
        }
        RetentionCommand::Run { auth } => {
            let out = auth.client()?.run_retention().await?;
            println!(
                "erased {} expired event(s); {} kept by legal holds; recorded in the log at index {}",
                out.erased, out.held, out.audit_index
            );
        }
    }
    Ok(())
}
