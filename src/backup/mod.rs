//! Backups of a running log, and restores into a new data directory.
//!
//! A backup is a snapshot stream ([`format`]) that the server writes for
//! `POST /v1/admin/backup` and `veritrail backup` saves as
//! `<dir>/snapshot.vtb` beside a human-readable `<dir>/manifest.json`.
//!
//! Consistency without pausing the log: the snapshot is taken at the
//! durable tree size `N` the sequencer last published, which is a batch
//! boundary, under the checkpoint published before it (size `S <= N`).
//! Everything the log stores below `N` is immutable (full tiles and
//! bundles, events, index entries), and a partial tile or bundle only ever
//! grows by appending, so cutting each object to its width at `N` yields
//! exactly the tree of size `N`, however many batches commit during the
//! copy. API key records are copied as they are when read.
//!
//! What a backup holds, and what not: the tree, events, salts, indexes,
//! API key records (hashes only), the origin and the checkpoint. Not the
//! log's private keys — they never leave the server's disk through the
//! API, because an admin API token must not be worth the log's signing
//! keys; keep a copy of `log-ecdsa.pem` and `log-ed25519.pem` once (they
//! never change) and give it to `restore --keys`. Not `admin.key` either:
//! restore makes a new admin key, which, like every admin key, has its
//! creation recorded in the log before it works: the restored log's first
//! start records it (`admin.key.create`) before it takes a request.
//!
//! Key material: a backup holds none. The keys that open its sealed events
//! are in the live log's key store (`keys/`, see `vault`), and restore
//! copies that store's *current* state, so an event erased after the
//! backup was taken stays erased: its key is gone. Restore then opens
//! every event of the backup with the master key, records the ones whose
//! keys are gone as erased, and fails if any other does not open.
//!
//! Restore replays the stream into a staging directory beside the target,
//! checks the result with fsck, and only then renames it into place. A
//! restored log continues with the same origin and keys; its next
//! checkpoints are consistent with every checkpoint published up to the
//! backup. Checkpoints the old server published *after* the backup commit
//! to entries the backup lacks: a restored log that grew past them would
//! fork its own history. `serve --known-checkpoint` (a file, a witness's or
//! mirror's `/checkpoint`) makes the server refuse to start in that case.

pub mod format;

use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::ProgressBar;
use serde_json::json;

pub use format::{FormatError, Frame, SnapshotHeader, SnapshotReader, SnapshotWriter};

use crate::auth::{ApiKeys, Role};
use crate::client::Client;
use crate::crypto::MasterKey;
use crate::durable::{self, PendingFile, Secrecy};
use crate::fsck;
use crate::lifecycle::ADMIN_KEY_FILE;
use crate::merkle::Hash;
use crate::note::keys::{ECDSA_KEY_FILE, ED25519_KEY_FILE, LogKeys, LogVerifierKeys};
use crate::sequencer::Published;
use crate::store::sled::SledStore;
use crate::store::{BatchWrite, DedupeKey, ScanCursor, Store, StoreError, StoredCheckpoint};
use crate::tiles::{self, TILE_WIDTH};

/// The snapshot file in a backup directory.
pub const SNAPSHOT_FILE: &str = "snapshot.vtb";
/// The manifest in a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Pieces of the stream handed to the sink.
const PIECE: usize = 256 << 10;
/// Restore commits a batch at about this many bytes.
const RESTORE_BATCH_BYTES: usize = 8 << 20;

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The snapshot stream is malformed, damaged or cut.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file operation failed.
    #[error("{0}")]
    Io(String),
    /// The request is refused (non-empty target, wrong keys, ...).
    #[error("{0}")]
    Refused(String),
    /// The server could not be reached or answered an error.
    #[error("{0}")]
    Client(String),
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io(format!("couldn't {what} {}: {e}", path.display()))
}

/// Where a snapshot is taken: a durable tree size and the checkpoint
/// published at or before it.
#[derive(Clone, Debug)]
pub struct SnapshotPoint {
    /// Entries durably committed (a batch boundary).
    pub tree_size: u64,
    /// The latest published checkpoint; its size is at most `tree_size`.
    pub checkpoint: Arc<Published>,
}

/// Collects frames into pieces of about [`PIECE`] bytes for the sink.
struct Pieces<'a> {
    writer: SnapshotWriter,
    buf: Vec<u8>,
    sink: &'a mut dyn FnMut(Vec<u8>) -> Result<(), BackupError>,
}

impl Pieces<'_> {
    fn push(&mut self, f: &Frame) -> Result<(), BackupError> {
        let bytes = self.writer.frame(f)?;
        self.buf.extend_from_slice(&bytes);
        if self.buf.len() >= PIECE {
            (self.sink)(std::mem::take(&mut self.buf))?;
        }
        Ok(())
    }
}

/// Writes the snapshot of `store` at `point` to `sink`, piece by piece.
/// MAY run while the sequencer commits further batches (see the module
/// comment); fails on the first unreadable object rather than skip it.
pub fn write_snapshot(
    store: &dyn Store,
    origin: &str,
    vkeys: &LogVerifierKeys,
    point: &SnapshotPoint,
    sink: &mut dyn FnMut(Vec<u8>) -> Result<(), BackupError>,
) -> Result<(), BackupError> {
    let size = point.tree_size;
    if point.checkpoint.checkpoint.size > size {
        return Err(BackupError::Refused(
            "the published checkpoint is ahead of the durable tree (internal error)".into(),
        ));
    }
    let mut writer = SnapshotWriter::new();
    let start = writer.start();
    let mut out = Pieces {
        writer,
        buf: start,
        sink,
    };
    out.push(&Frame::Header(SnapshotHeader {
        origin: origin.to_string(),
        tree_size: size,
        checkpoint: point.checkpoint.note.clone(),
        checkpoint_published_at_ms: point.checkpoint.published_at_ms,
        ecdsa_vkey: vkeys.ecdsa.clone(),
        ed25519_vkey: vkeys.ed25519.clone(),
        taken_at: crate::sequencer::Clock::system().now_rfc3339(),
    }))?;
    for space in format::RECORD_SPACES {
        let mut cursor = Some(ScanCursor::start());
        while let Some(c) = cursor.take() {
            let page = store.scan_records(space, &c, 1024)?;
            cursor = page.next;
            for item in page.items {
                let (key, value) = item?;
                out.push(&Frame::Record { space, key, value })?;
            }
        }
    }
    let missing = |what: String| StoreError::Corrupt(format!("{what} is missing; run fsck"));
    for t in tiles::tiles_for_size(size) {
        let width = usize::from(t.width);
        let mut hashes = store
            .tile(t.level, t.index)?
            .ok_or_else(|| missing(format!("hash tile {}/{}", t.level, t.index)))?;
        if hashes.len() < width * 32 {
            return Err(missing(format!("part of hash tile {}/{}", t.level, t.index)).into());
        }
        // A partial tile may have grown since the snapshot point: its
        // version at `size` is the prefix.
        hashes.truncate(width * 32);
        out.push(&Frame::Tile {
            level: t.level,
            index: t.index,
            hashes,
        })?;
    }
    let bundles = size.div_ceil(TILE_WIDTH);
    for b in 0..bundles {
        let width = if (b + 1) * TILE_WIDTH <= size {
            TILE_WIDTH
        } else {
            size % TILE_WIDTH
        } as usize;
        let stored = store
            .bundle(b)?
            .ok_or_else(|| missing(format!("entry bundle {b}")))?;
        let entries = tiles::decode_bundle(&stored)
            .map_err(|e| StoreError::Corrupt(format!("entry bundle {b}: {e}; run fsck")))?;
        if entries.len() < width {
            return Err(missing(format!("part of entry bundle {b}")).into());
        }
        let data = if entries.len() == width {
            stored
        } else {
            tiles::encode_bundle(&entries[..width])
                .map_err(|e| StoreError::Corrupt(format!("entry bundle {b}: {e}")))?
        };
        out.push(&Frame::Bundle { index: b, data })?;
    }
    let mut cursor = Some(ScanCursor::start());
    'events: while let Some(c) = cursor.take() {
        let page = store.scan_events(&c, 1024)?;
        cursor = page.next;
        for item in page.items {
            let (index, event) = item?;
            if index >= size {
                break 'events;
            }
            out.push(&Frame::Event { index, event })?;
        }
    }
    let mut cursor = Some(ScanCursor::start());
    while let Some(c) = cursor.take() {
        let page = store.scan_dedupe(&c, 1024)?;
        cursor = page.next;
        for item in page.items {
            let (key, index) = item?;
            if index < size {
                out.push(&Frame::DedupeKey { index, key })?;
            }
        }
    }
    // No leaf-hash entries: a restore derives them from the level-0 tiles.
    let end = out.writer.finish()?;
    let mut last = std::mem::take(&mut out.buf);
    last.extend_from_slice(&end);
    (out.sink)(last)
}

fn is_missing_or_empty(dir: &Path) -> Result<bool, BackupError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io("read", dir, e)),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), BackupError> {
    fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| io("restrict", dir, e))
}

/// What `download` saved.
#[derive(Clone, Debug)]
pub struct Downloaded {
    /// The snapshot's header.
    pub header: SnapshotHeader,
    /// Bytes of the snapshot file.
    pub bytes: u64,
    /// Hex SHA-256 of the content (as in its end frame).
    pub sha256: String,
}

/// Takes a backup of the server `client` talks to (with an admin key) into
/// the missing or empty directory `to`: the snapshot is checked frame by
/// frame and against its checksum while it arrives, written to a temporary
/// file, and renamed into place only when complete.
pub async fn download(client: &Client, to: &Path) -> Result<Downloaded, BackupError> {
    if !is_missing_or_empty(to)? {
        return Err(BackupError::Refused(format!(
            "{} is not empty; back up into a new directory",
            to.display()
        )));
    }
    create_private_dir(to)?;
    let snapshot = to.join(SNAPSHOT_FILE);
    let mut file =
        PendingFile::create(&snapshot, Secrecy::Secret).map_err(|e| io("create", &snapshot, e))?;
    let mut resp = client
        .backup()
        .await
        .map_err(|e| BackupError::Client(e.to_string()))?;
    let mut reader = SnapshotReader::new();
    let mut header = None;
    let mut bytes = 0u64;
    loop {
        let chunk = resp.chunk().await.map_err(|e| {
            BackupError::Client(format!(
                "the transfer failed: {e} (the server's log may say why)"
            ))
        })?;
        let Some(chunk) = chunk else { break };
        bytes += chunk.len() as u64;
        for f in reader.feed(&chunk)? {
            if let Frame::Header(h) = f {
                header = Some(h);
            }
        }
        file.write_all(&chunk)
            .map_err(|e| io("write", &snapshot, e))?;
    }
    let digest = reader.finish()?;
    let header = header.ok_or(FormatError::Truncated)?;
    file.commit().map_err(|e| io("write", &snapshot, e))?;
    let sha256 = hex::encode(digest);
    let checkpoint_size = crate::note::Note::parse(header.checkpoint.as_bytes())
        .ok()
        .and_then(|n| crate::note::Checkpoint::parse(n.text()).ok())
        .map(|c| c.size);
    let manifest = json!({
        "format": "veritrail-snapshot/1",
        "snapshot": SNAPSHOT_FILE,
        "snapshot_bytes": bytes,
        "snapshot_sha256": sha256,
        "origin": header.origin,
        "tree_size": header.tree_size,
        "checkpoint_size": checkpoint_size,
        "checkpoint": header.checkpoint,
        "verifier_keys": { "ecdsa": header.ecdsa_vkey, "ed25519": header.ed25519_vkey },
        "taken_at": header.taken_at,
        "private_keys_included": false,
        "restore": "veritrail restore --from <this dir> --keys <dir with log-ecdsa.pem and log-ed25519.pem> --data <new data dir>",
    });
    let manifest_path = to.join(MANIFEST_FILE);
    let text =
        serde_json::to_string_pretty(&manifest).map_err(|e| BackupError::Io(e.to_string()))?;
    durable::replace(&manifest_path, (text + "\n").as_bytes(), Secrecy::Public)
        .map_err(|e| io("write", &manifest_path, e))?;
    Ok(Downloaded {
        header,
        bytes,
        sha256,
    })
}

/// What `restore` made.
#[derive(Clone, Debug)]
pub struct Restored {
    /// The snapshot's header.
    pub header: SnapshotHeader,
    /// Events of the backup opened with the master key and the live key store.
    pub readable: u64,
    /// Events of the backup erased since it was taken (their keys are gone):
    /// restored as erased.
    pub erased_since: u64,
    /// The fsck report of the restored directory (clean).
    pub report: fsck::Report,
    /// Where the new admin key was written.
    pub admin_key: PathBuf,
}

/// Restores the backup in `from` into the missing or empty directory
/// `data`, with the log keys found in `keys_dir` (or in `from`) and the
/// current key store of the live data directory `keys_dir`, proved with
/// `master` (the log's master key).
pub fn restore(
    from: &Path,
    data: &Path,
    keys_dir: Option<&Path>,
    master: &MasterKey,
) -> Result<Restored, BackupError> {
    if !is_missing_or_empty(data)? {
        return Err(BackupError::Refused(format!(
            "{} is not empty; restore only into a missing or empty directory",
            data.display()
        )));
    }
    let snapshot = from.join(SNAPSHOT_FILE);
    if !snapshot.is_file() {
        return Err(BackupError::Refused(format!(
            "{} holds no {SNAPSHOT_FILE}; point --from at a directory `veritrail backup` wrote",
            from.display()
        )));
    }
    let keys_dir = match keys_dir {
        Some(k) => k,
        None if from.join(ECDSA_KEY_FILE).exists() && from.join(ED25519_KEY_FILE).exists() => from,
        None => {
            return Err(BackupError::Refused(format!(
                "a backup holds no private keys (they never leave the server); pass --keys DIR, a directory with {ECDSA_KEY_FILE} and {ED25519_KEY_FILE} (the old data directory or your copy of the keys)"
            )));
        }
    };
    let keys = LogKeys::load_from_dir(keys_dir)
        .map_err(|e| BackupError::Refused(format!("couldn't load the log keys: {e}")))?;
    let parent = data
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let staging = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io("remove", &staging, e))?;
    }
    create_private_dir(&staging)?;
    // The key store lives in the live data directory, not in the snapshot:
    // its current state is copied, so a key destroyed by an erasure after
    // the backup stays destroyed.
    let key_store = keys_dir.join(crate::vault::KEYS_DIR);
    if !key_store.join("root").is_file() {
        let _ = fs::remove_dir_all(&staging);
        return Err(BackupError::Refused(format!(
            "{} holds no key store ({}/root); pass --keys the live data directory of the log (its key store opens the backup's events)",
            keys_dir.display(),
            key_store.display()
        )));
    }
    let result =
        crate::vault::copy_key_store(&key_store, &staging.join(crate::vault::KEYS_DIR), master)
            .map_err(|e| BackupError::Refused(format!("couldn't copy the key store: {e}")))
            .and_then(|_| restore_into(&snapshot, &staging, &keys, master));
    match result {
        Ok((header, report, (readable, erased_since))) => {
            // An empty target directory is replaced by the rename.
            if data.exists() {
                fs::remove_dir(data).map_err(|e| io("replace", data, e))?;
            }
            durable::rename(&staging, data)
                .map_err(|e| io("move the restored log into", data, e))?;
            Ok(Restored {
                header,
                readable,
                erased_since,
                report,
                admin_key: data.join(ADMIN_KEY_FILE),
            })
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Replays the snapshot into `staging`, adds keys and a new admin key,
/// proves every event opens or was erased since, and checks the result
/// with fsck (with the master key).
fn restore_into(
    snapshot: &Path,
    staging: &Path,
    keys: &LogKeys,
    master: &MasterKey,
) -> Result<(SnapshotHeader, fsck::Report, (u64, u64)), BackupError> {
    let (header, opened) = {
        let store = Arc::new(SledStore::open(&staging.join(crate::lifecycle::DB_DIR))?);
        let header = replay(snapshot, store.as_ref(), keys)?;
        crate::vault::check_master_key(store.as_ref(), master)
            .map_err(|e| BackupError::Refused(e.to_string()))?;
        let opened = prove_events(store.clone(), staging, master, header.tree_size)?;
        let dyn_store: Arc<dyn Store> = store.clone();
        // No server runs to record it: it waits aside, and the first start
        // records its creation in the log before it takes a request (and
        // only then makes it usable).
        let admin_keys = ApiKeys::new(dyn_store);
        let token = admin_keys
            .new_key("admin-restored", Role::Admin, None)
            .and_then(|(record, token)| admin_keys.store_unrecorded(&record).map(|()| token))
            .map_err(|e| BackupError::Io(format!("couldn't create an admin key: {e}")))?;
        let path = staging.join(ADMIN_KEY_FILE);
        durable::create_new(&path, format!("{token}\n").as_bytes(), Secrecy::Secret)
            .map_err(|e| io("write", &path, e))?;
        (header, opened)
    };
    keys.write_to_dir(staging)
        .map_err(|e| BackupError::Io(format!("couldn't write the log keys: {e}")))?;
    let report = fsck::check_data_dir(staging, Some(master), &ProgressBar::hidden())
        .map_err(|e| BackupError::Io(format!("couldn't check the restored log: {e}")))?;
    if let Some(first) = report.findings.first() {
        return Err(BackupError::Refused(format!(
            "the restored log fails its check ({} problems), first: {first}",
            report.findings.len()
        )));
    }
    if report.tree_size != header.tree_size {
        return Err(BackupError::Refused(format!(
            "the restored tree has {} entries, the snapshot says {}",
            report.tree_size, header.tree_size
        )));
    }
    Ok((header, report, opened))
}

/// Restore commits tombstones of events erased since the backup in
/// batches of this many.
const ERASED_BATCH: usize = 4096;

/// Opens every event below `size` of the restored store with the master
/// key and the copied key store: each must open, or be erased (by a
/// tombstone in the backup, or since: its key is gone, and it is recorded
/// as erased now). Returns (readable, erased since).
fn prove_events(
    store: Arc<SledStore>,
    staging: &Path,
    master: &MasterKey,
    size: u64,
) -> Result<(u64, u64), BackupError> {
    use crate::store::{RecordBatch, RecordSpace};
    let dyn_store: Arc<dyn Store> = store;
    let home = crate::vault::KeyringHome::File(staging.join(crate::vault::KEYRING_FILE));
    let vault = crate::vault::Vault::open_for_check(dyn_store.clone(), master, home)
        .map_err(|e| BackupError::Refused(format!("the restored log does not open: {e}")))?;
    let tombstone = serde_json::to_vec(&crate::vault::Tombstone {
        erased_at: crate::sequencer::Clock::system().now_rfc3339(),
        reason: "erased after this backup was taken (its key is gone)".into(),
        cause: "erasure".into(),
        by: "restore".into(),
    })
    .map_err(|e| BackupError::Io(e.to_string()))?;
    let (mut readable, mut erased_since) = (0u64, 0u64);
    let mut batch = RecordBatch::default();
    for index in 0..size {
        let key = index.to_be_bytes().to_vec();
        let opened = vault.event(index).map_err(|e| {
            BackupError::Refused(format!(
                "event {index} of the backup does not open with the master key and the live key store: {e}"
            ))
        })?;
        match opened {
            Some(_) => readable += 1,
            None if vault.tombstone(index)?.is_some() => {}
            None => {
                erased_since += 1;
                batch.delete.push((RecordSpace::Sealed, key.clone()));
                batch
                    .put
                    .push((RecordSpace::Erased, key, tombstone.clone()));
            }
        }
        if batch.put.len() >= ERASED_BATCH {
            dyn_store.commit_records(&std::mem::take(&mut batch))?;
        }
    }
    dyn_store.commit_records(&batch)?;
    Ok((readable, erased_since))
}

fn is_legacy_key_record(space: crate::store::RecordSpace, key: &[u8]) -> bool {
    use crate::store::RecordSpace;
    match space {
        RecordSpace::DataKey => !key.starts_with(b"slot/"),
        RecordSpace::Meta => key == b"key_generation" || key == b"keyring",
        _ => false,
    }
}

/// Writes every frame of the snapshot file into `store`.
fn replay(
    snapshot: &Path,
    store: &dyn Store,
    keys: &LogKeys,
) -> Result<SnapshotHeader, BackupError> {
    let mut file = fs::File::open(snapshot).map_err(|e| io("open", snapshot, e))?;
    let mut reader = SnapshotReader::new();
    let mut header: Option<SnapshotHeader> = None;
    let mut batch = BatchWrite::default();
    let mut pending = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| io("read", snapshot, e))?;
        if n == 0 {
            break;
        }
        for f in reader.feed(&buf[..n])? {
            match f {
                Frame::Header(h) => {
                    let ours = keys
                        .verifier_keys(&h.origin)
                        .map_err(|e| BackupError::Refused(format!("origin {:?}: {e}", h.origin)))?;
                    if ours != h.verifier_keys() {
                        return Err(BackupError::Refused(
                            "the given log keys are not this log's keys (their verifier keys differ from the backup's)".into(),
                        ));
                    }
                    batch.tree_size = h.tree_size;
                    header = Some(h);
                }
                // Keys of the earlier format (wrapped data keys and the
                // keyring's generation) are not restored: the live key
                // store holds what still opens.
                Frame::Record { space, key, .. } if is_legacy_key_record(space, &key) => {}
                Frame::Record { space, key, value } => {
                    pending += key.len() + value.len() + 16;
                    batch.records.push((space, key, value));
                }
                Frame::Tile {
                    level,
                    index,
                    hashes,
                } => {
                    pending += hashes.len() * 2;
                    if level == 0 {
                        let first = index * TILE_WIDTH;
                        for (n, h) in hashes.chunks_exact(32).enumerate() {
                            if let Ok(hash) = Hash::from_slice(h) {
                                batch.leaf_index.push((hash, first + n as u64));
                            }
                        }
                    }
                    batch.tiles.push((level, index, hashes));
                }
                Frame::Bundle { index, data } => {
                    pending += data.len();
                    batch.bundles.push((index, data));
                }
                Frame::Event { index, event } => {
                    pending += event.event.len() + 64;
                    batch.events.push((index, event));
                }
                Frame::Dedupe { index, app, id } => {
                    pending += 24;
                    batch.dedupe.push((DedupeKey::of(&app, &id), index));
                }
                Frame::DedupeKey { index, key } => {
                    pending += 24;
                    batch.dedupe.push((key, index));
                }
                // Older snapshots list the leaf-hash index; it is derived
                // from the level-0 tiles instead.
                Frame::LeafIndex { .. } => {}
            }
            if pending >= RESTORE_BATCH_BYTES {
                store.commit(&batch)?;
                batch = BatchWrite {
                    tree_size: batch.tree_size,
                    ..BatchWrite::default()
                };
                pending = 0;
            }
        }
    }
    reader.finish()?;
    let header = header.ok_or(FormatError::Truncated)?;
    store.commit(&batch)?;
    store.put_checkpoint(&StoredCheckpoint {
        published_at_ms: header.checkpoint_published_at_ms,
        note: header.checkpoint.clone().into_bytes(),
    })?;
    Ok(header)
}

#[cfg(test)]
mod restore_batches;
