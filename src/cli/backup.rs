//! `veritrail backup` (a consistent snapshot of a running log, admin key),
//! `veritrail restore` (into a new data directory, checked with fsck) and
//! `veritrail fsck` (a stopped log's data directory). The work is
//! `veritrail::backup`'s and `veritrail::fsck`'s; this module reports it.

use std::path::Path;

use super::AdminAuth;

/// `veritrail backup --to`.
pub async fn backup(auth: AdminAuth, to: &Path) -> anyhow::Result<()> {
    let client = auth.client()?;
    let done = veritrail::backup::download(&client, to).await?;
    println!(
        "veritrail backup: {} (origin {}): {} entries, {} bytes, sha256 {}",
        to.display(),
        done.header.origin,
        done.header.tree_size,
        done.bytes,
        done.sha256
    );
    println!(
        "the log's private keys are not in a backup: keep a copy of log-ecdsa.pem and log-ed25519.pem for restore --keys"
    );
    Ok(())
}

/// `veritrail restore --from --data [--keys] [--master-key-file]`.
pub fn restore(
    from: &Path,
    data: &Path,
    keys: Option<&Path>,
    master_key_file: Option<&Path>,
) -> anyhow::Result<()> {
    use veritrail::vault;
    // The master key of the live log whose key store opens the backup: from
    // the environment, the file given, or beside the keys directory.
    let live = keys.unwrap_or(from);
    let env_key = std::env::var(vault::MASTER_KEY_ENV).ok();
    let master = vault::read_master_key(live, env_key.as_deref(), master_key_file)?;
    let r = veritrail::backup::restore(from, data, keys, &master)?;
    println!(
        "veritrail restore: {} (origin {}): {} entries, checkpoint of size {}, fsck clean with the master key",
        data.display(),
        r.header.origin,
        r.header.tree_size,
        r.report.checkpoint_size.unwrap_or(0)
    );
    println!(
        "events: {} open with the live key store, {} erased since the backup was taken (restored as erased)",
        r.readable, r.erased_since
    );
    println!(
        "a new admin API key was written to {} (the backup's API keys are restored too); it works once the restored log's first start has recorded its creation",
        r.admin_key.display()
    );
    println!(
        "start it with --known-checkpoint pointing at a witness, mirror or saved checkpoint of this log, so it refuses to fork if the backup is older than what was published"
    );
    Ok(())
}

/// `veritrail fsck`; returns the exit status: 0 clean, 1 corrupt, 2 not checked.
pub fn fsck(data: &Path, master_key_file: Option<&Path>) -> i32 {
    use veritrail::fsck;
    use veritrail::vault;
    let env_key = std::env::var(vault::MASTER_KEY_ENV).ok();
    let given = env_key.is_some() || master_key_file.is_some();
    let master = if given || vault::default_master_key_path(data).exists() {
        match vault::read_master_key(data, env_key.as_deref(), master_key_file) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("veritrail fsck: could not check {}: {e}", data.display());
                return 2;
            }
        }
    } else {
        None
    };
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg:>24} [{bar:40}] {pos}/{len} bundles ({eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let result = fsck::check_data_dir(data, master.as_ref(), &bar);
    bar.finish_and_clear();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("veritrail fsck: could not check {}: {e}", data.display());
            return 2;
        }
    };
    let cp = report
        .checkpoint_size
        .map(|s| s.to_string())
        .unwrap_or_else(|| "unreadable".into());
    println!(
        "veritrail fsck: {} (origin {:?}): tree size {}, checkpoint size {cp}",
        data.display(),
        report.origin,
        report.tree_size
    );
    println!(
        "checked {} bundles, {} tiles, {} events, {} leaf-hash index entries, {} idempotency entries, {} API keys",
        report.bundles,
        report.tiles,
        report.events,
        report.leaf_index_entries,
        report.dedupe_entries,
        report.api_keys
    );
    if report.erased > 0 {
        println!("erased events: {}", report.erased);
    }
    if report.sealed_checked > 0 || report.sealed_unchecked > 0 {
        println!(
            "sealed events: {} opened and checked ({} search-index entries), {} not opened",
            report.sealed_checked, report.search_index_entries, report.sealed_unchecked
        );
    }
    if report.search_index_pending > 0 {
        println!(
            "note: the newest {} events are not in the stored search index yet; the server indexes them from the events when it starts",
            report.search_index_pending
        );
    }
    if report.sealed_unchecked > 0 {
        println!(
            "note: without the master key (--master-key-file or VERITRAIL_MASTER_KEY) sealed events are counted, not checked"
        );
    }
    if report.is_clean() {
        println!("clean");
        return 0;
    }
    println!("CORRUPT: first bad object: {}", report.findings[0]);
    for f in &report.findings[1..] {
        println!("  also: {f}");
    }
    if report.stopped_early {
        println!("  (stopped after {} problems)", fsck::MAX_FINDINGS);
    }
    1
}
