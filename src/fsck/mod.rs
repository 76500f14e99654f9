//! `veritrail fsck`: an offline check of everything a data directory stores.
//!
//! It recomputes the whole tree from the entry bundles (leaf hashes, then
//! every level-0 tile, then each level above, full and partial), checks the
//! stored checkpoint (both log signatures, and its root against the tree at
//! its size), both indexes (every leaf-hash entry and idempotency entry
//! points at the right leaf, and every leaf and every event id is indexed),
//! and every stored event against its leaf (the commitment of salt and body,
//! and the app). Sealed (encrypted) events are opened with the master key
//! when it is given, checked the same way, and looked up in the search
//! index; without it they are counted as unchecked. Full level-0 tile roots
//! are cross-checked with `rs_merkle`.
//!
//! In the sled backend full tiles, bundles and body chunks are files: a
//! missing, torn or altered one is named where it is read, and a lost
//! file of bodies by a check of every full bundle.
//!
//! It never writes: the checks read through the [`Store`] trait only. sled
//! 0.34 has no read-only mode, so the database is opened normally (sled may
//! replay its own write-ahead log, as on any open), and a database held by a
//! running server is refused rather than read.
//!
//! Invariant: a report without findings means the directory holds a tree
//! whose every stored object agrees with every other and with the signed
//! checkpoint; the first finding names the first bad object in tree order.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use indicatif::ProgressBar;

use crate::auth::ApiKeyRecord;
use crate::crypto::MasterKey;
use crate::event::{LeafRecord, commitment};
use crate::history::{LogVerifiers, Signatures};
use crate::lifecycle::{DB_DIR, ORIGIN_RECORD};
use crate::merkle::{self, CompactRange, Hash, Rfc6962Hasher};
use crate::note::Checkpoint;
use crate::note::keys::{ECDSA_KEY_FILE, ED25519_KEY_FILE, LogKeys};
use crate::sequencer::Published;
use crate::store::sled::SledStore;
use crate::store::{DedupeKey, LeafKey, RecordSpace, ScanCursor, Store, StoreError, StoredEvent};
use crate::tiles::{self, TILE_WIDTH};
use crate::vault::{self, KeyringHome, Vault};

/// The check stops collecting after this many findings (the first is what
/// matters; a wildly wrong tree size would otherwise report forever).
pub const MAX_FINDINGS: usize = 100;

/// Items per page when scanning events and indexes.
const SCAN_PAGE: usize = 1024;

/// One bad object and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The object, e.g. `tile 0/x001/234`, `event 17`, `checkpoint`.
    pub object: String,
    /// What is wrong, e.g. `hash 17 is X, entries give Y`.
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.problem)
    }
}

/// What was checked and what was found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The stored origin.
    pub origin: String,
    /// The stored tree size.
    pub tree_size: u64,
    /// The size of the stored checkpoint, when it could be read.
    pub checkpoint_size: Option<u64>,
    /// Leaves recomputed from the bundles.
    pub leaves: u64,
    /// Hash tiles compared.
    pub tiles: u64,
    /// Entry bundles read.
    pub bundles: u64,
    /// Stored events checked against their leaves (plain and unsealed).
    pub events: u64,
    /// Of those, sealed events opened with the master key.
    pub sealed_checked: u64,
    /// Sealed events left unchecked: no master key was given.
    pub sealed_unchecked: u64,
    /// Search-index entries looked up for the unsealed events.
    pub search_index_entries: u64,
    /// Unsealed events above the search index's watermark: not yet in the
    /// stored index, which the server derives from them when it starts.
    pub search_index_pending: u64,
    /// Leaf-hash index entries scanned.
    pub leaf_index_entries: u64,
    /// Idempotency entries scanned.
    pub dedupe_entries: u64,
    /// API key records parsed.
    pub api_keys: u64,
    /// Events erased: under a tombstone of their own, or (sealed, with the
    /// master key) under their erased subject's.
    pub erased: u64,
    /// Every problem found, in the order found (at most [`MAX_FINDINGS`]).
    pub findings: Vec<Finding>,
    /// True when the check stopped at [`MAX_FINDINGS`].
    pub stopped_early: bool,
}

impl Report {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    fn find(&mut self, object: impl Into<String>, problem: impl Into<String>) {
        if self.findings.len() >= MAX_FINDINGS {
            self.stopped_early = true;
            return;
        }
        self.findings.push(Finding {
            object: object.into(),
            problem: problem.into(),
        });
    }

    /// True once no more findings are taken; the check then stops.
    fn full(&mut self) -> bool {
        if self.findings.len() >= MAX_FINDINGS {
            self.stopped_early = true;
        }
        self.stopped_early
    }
}

/// Why the check could not run at all (as opposed to finding corruption).
#[derive(Debug, thiserror::Error)]
pub enum FsckError {
    /// Not a data directory.
    #[error("{0}")]
    NotALog(String),
    /// The log keys could not be loaded.
    #[error("couldn't load the log keys: {0}")]
    Keys(String),
    /// The database could not be opened (e.g. a server holds it).
    #[error("couldn't open the database: {0}")]
    Open(String),
    /// A read failed for a reason other than corrupt data.
    #[error("a read failed: {0}")]
    Read(String),
    /// The master key given is not this log's, or cannot be used.
    #[error("{0}")]
    MasterKey(String),
}

/// Stops on backend failures; a corrupt value is the caller's finding.
fn read<T>(r: Result<T, StoreError>) -> Result<Result<T, String>, FsckError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(StoreError::Corrupt(m)) => Ok(Err(m)),
        Err(e @ StoreError::Backend(_)) => Err(FsckError::Read(e.to_string())),
    }
}

fn tile_name(level: u8, index: u64, width: u64) -> String {
    let partial = if width < TILE_WIDTH {
        format!(".p/{width}")
    } else {
        String::new()
    };
    format!("tile {level}/{}{partial}", tiles::encode_tile_index(index))
}

fn bundle_name(index: u64, width: u64) -> String {
    let partial = if width < TILE_WIDTH {
        format!(".p/{width}")
    } else {
        String::new()
    };
    format!("entry bundle {}{partial}", tiles::encode_tile_index(index))
}

/// Checks the data directory `dir` (offline: no server may hold it). With
/// the log's master key, sealed (encrypted) events are opened and checked
/// like plain ones, and their search-index entries looked up; without it
/// they are counted as unchecked.
pub fn check_data_dir(
    dir: &Path,
    master: Option<&MasterKey>,
    progress: &ProgressBar,
) -> Result<Report, FsckError> {
    for part in [ECDSA_KEY_FILE, ED25519_KEY_FILE, DB_DIR] {
        if !dir.join(part).exists() {
            return Err(FsckError::NotALog(format!(
                "{} is not a Veritrail data directory ({part} is missing)",
                dir.display()
            )));
        }
    }
    let keys = LogKeys::load_from_dir(dir).map_err(|e| FsckError::Keys(e.to_string()))?;
    let store = SledStore::open_without_compaction(&dir.join(DB_DIR)).map_err(|e| {
        FsckError::Open(format!(
            "{e}; stop the server first (fsck reads a log offline; `veritrail backup` copies a running one)"
        ))
    })?;
    // The runs of the idempotency and leaf-hash indexes, block by block;
    // the entries themselves are checked against the leaves below.
    progress.set_message("index runs");
    let runs = store.check_index_runs();
    progress.set_message("search index segments");
    let segments = store.check_index_segments();
    progress.set_message("sealed body files");
    let body_files = store.check_body_files();
    progress.set_message("packed tombstones");
    let packed = store.check_packed_records();
    progress.set_message("tile packs");
    let tile_packs = store.check_tile_packs();
    let mut report = check_opened(dir, store, master, &keys, progress)?;
    // First: an index that lost entries, or a lost file of bodies,
    // explains the findings below.
    let found = std::mem::take(&mut report.findings);
    for problem in runs {
        report.find("index runs", problem);
    }
    for problem in body_files {
        report.find("blob files", problem);
    }
    for problem in packed {
        report.find("packed records", problem);
    }
    for problem in segments {
        report.find("search index segments", problem);
    }
    for problem in tile_packs {
        report.find("tile packs", problem);
    }
    report.findings.extend(found);
    Ok(report)
}

fn check_opened(
    dir: &Path,
    store: SledStore,
    master: Option<&MasterKey>,
    keys: &LogKeys,
    progress: &ProgressBar,
) -> Result<Report, FsckError> {
    let Some(master) = master else {
        return check_store(&store, keys, progress);
    };
    let store: Arc<dyn Store> = Arc::new(store);
    vault::check_master_key(store.as_ref(), master)
        .map_err(|e| FsckError::MasterKey(e.to_string()))?;
    let keyring = dir.join(vault::KEYRING_FILE);
    if vault::keyring_rotation_pending(&keyring) {
        return Err(FsckError::MasterKey(format!(
            "a key rotation was interrupted ({} has a pending replacement): start the server once to finish it, then check",
            keyring.display()
        )));
    }
    match Vault::open_for_check(store.clone(), master, KeyringHome::File(keyring)) {
        Ok(v) => check_store_unsealing(store.as_ref(), Some(&v), keys, progress),
        Err(e) => {
            let mut report = check_store(store.as_ref(), keys, progress)?;
            report.findings.insert(
                0,
                Finding {
                    object: "keyring".into(),
                    problem: format!("does not open with the master key: {e}"),
                },
            );
            Ok(report)
        }
    }
}

/// Checks every object in `store` against the others and against the
/// checkpoint signed with `keys`; sealed events are counted, not opened.
pub fn check_store(
    store: &dyn Store,
    keys: &LogKeys,
    progress: &ProgressBar,
) -> Result<Report, FsckError> {
    check_store_unsealing(store, None, keys, progress)
}

/// Like [`check_store`], opening sealed events through `vault` (a vault
/// over `store`) when given.
pub fn check_store_unsealing(
    store: &dyn Store,
    vault: Option<&Vault>,
    keys: &LogKeys,
    progress: &ProgressBar,
) -> Result<Report, FsckError> {
    let mut report = Report::default();
    let origin = check_origin(store, &mut report)?;
    let checkpoint = check_checkpoint(store, keys, origin.as_deref(), &mut report)?;
    let size = match read(store.tree_size())? {
        Ok(n) => n,
        Err(m) => {
            report.find("tree size", m);
            return Ok(report);
        }
    };
    report.tree_size = size;
    match read(store.index_watermark())? {
        Ok(Some(w)) if w > size => report.find(
            "search index",
            format!("covers {w} leaves, but the tree has {size}"),
        ),
        Ok(_) => {}
        Err(m) => report.find("search index watermark", m),
    }
    if let Some(cp) = &checkpoint
        && cp.size > size
    {
        report.find(
            "tree size",
            format!(
                "is {size}, but the signed checkpoint covers {} entries",
                cp.size
            ),
        );
    }
    let mut walk = TreeWalk::new(store, vault, size, checkpoint.as_ref().map(|c| c.size));
    walk.run(&mut report, progress)?;
    if let Some(cp) = &checkpoint {
        match walk.root_at_checkpoint {
            Some(root) if root != cp.root => report.find(
                "checkpoint",
                format!(
                    "signed root at size {} is {}, the entries give {root}",
                    cp.size, cp.root
                ),
            ),
            _ => {}
        }
    }
    if !report.full() {
        check_leaf_index(store, size, &mut report, progress)?;
    }
    if !report.full() {
        check_dedupe(store, vault, size, &mut report, progress)?;
    }
    if !report.full() {
        check_api_keys(store, &mut report)?;
    }
    Ok(report)
}

fn check_origin(store: &dyn Store, report: &mut Report) -> Result<Option<String>, FsckError> {
    match read(store.record(RecordSpace::Meta, ORIGIN_RECORD))? {
        Ok(Some(v)) => match String::from_utf8(v) {
            Ok(o) => {
                report.origin = o.clone();
                Ok(Some(o))
            }
            Err(_) => {
                report.find("origin record", "is not UTF-8");
                Ok(None)
            }
        },
        Ok(None) => {
            report.find("origin record", "is missing");
            Ok(None)
        }
        Err(m) => {
            report.find("origin record", m);
            Ok(None)
        }
    }
}

/// Verifies the stored checkpoint with both log keys; returns its body
/// when it is the log's own.
fn check_checkpoint(
    store: &dyn Store,
    keys: &LogKeys,
    origin: Option<&str>,
    report: &mut Report,
) -> Result<Option<Checkpoint>, FsckError> {
    let stored = match read(store.checkpoint())? {
        Ok(Some(s)) => s,
        Ok(None) => {
            report.find("checkpoint", "is missing (every log stores a signed one)");
            return Ok(None);
        }
        Err(m) => {
            report.find("checkpoint", m);
            return Ok(None);
        }
    };
    let published = match Published::from_stored(&stored) {
        Ok(p) => p,
        Err(m) => {
            report.find("checkpoint", m);
            return Ok(None);
        }
    };
    // Verify under the checkpoint's own origin, so that a damaged origin
    // record is blamed on the record, not on the checkpoint.
    let claimed = published.checkpoint.origin.clone();
    let verifiers = match LogVerifiers::from_keys(keys, &claimed) {
        Ok(v) => v,
        Err(e) => {
            report.find("checkpoint", format!("origin {claimed:?} is unusable: {e}"));
            return Ok(None);
        }
    };
    match verifiers.verify(published.note.as_bytes(), Signatures::Both) {
        Ok(cp) => {
            report.checkpoint_size = Some(cp.size);
            if let Some(o) = origin
                && o != cp.origin
            {
                report.find(
                    "origin record",
                    format!("is {o:?}, but the signed checkpoint is for {:?}", cp.origin),
                );
            }
            Ok(Some(cp))
        }
        Err(e) => {
            report.find("checkpoint", e.to_string());
            Ok(None)
        }
    }
}

/// Pages through the stored events in index order, alongside the leaves.
struct EventStream<'a> {
    store: &'a dyn Store,
    page: std::vec::IntoIter<Result<(u64, StoredEvent), StoreError>>,
    next: Option<ScanCursor>,
    peeked: Option<(u64, StoredEvent)>,
}

impl<'a> EventStream<'a> {
    fn new(store: &'a dyn Store) -> EventStream<'a> {
        EventStream {
            store,
            page: Vec::new().into_iter(),
            next: Some(ScanCursor::start()),
            peeked: None,
        }
    }

    /// The next well-formed event; malformed ones become findings.
    fn peek(&mut self, report: &mut Report) -> Result<Option<&(u64, StoredEvent)>, FsckError> {
        while self.peeked.is_none() {
            match self.page.next() {
                Some(Ok(e)) => self.peeked = Some(e),
                Some(Err(e)) => report.find("stored event", e.to_string()),
                None => match self.next.take() {
                    None => return Ok(None),
                    Some(cursor) => {
                        let page = self
                            .store
                            .scan_events(&cursor, SCAN_PAGE)
                            .map_err(|e| FsckError::Read(e.to_string()))?;
                        self.next = page.next;
                        self.page = page.items.into_iter();
                    }
                },
            }
        }
        Ok(self.peeked.as_ref())
    }

    /// The stored event of leaf `index`, if any; events stored before it
    /// (there should be none: leaves are walked in order) are findings.
    fn take(&mut self, index: u64, report: &mut Report) -> Result<Option<StoredEvent>, FsckError> {
        loop {
            match self.peek(report)? {
                Some((i, _)) if *i < index => {
                    let i = *i;
                    self.peeked = None;
                    report.find(format!("event {i}"), "is stored out of order");
                }
                Some((i, _)) if *i == index => {
                    return Ok(self.peeked.take().map(|(_, e)| e));
                }
                _ => return Ok(None),
            }
        }
    }
}

/// The recomputation of the tree from its entry bundles.
struct TreeWalk<'a> {
    store: &'a dyn Store,
    /// Opens sealed events, when the master key was given.
    vault: Option<&'a Vault>,
    size: u64,
    checkpoint_size: Option<u64>,
    /// Pending hashes per tile level (level 0 is handled bundle by bundle).
    levels: Vec<Vec<Hash>>,
    /// Full tiles completed per level.
    completed: Vec<u64>,
    range: CompactRange,
    root_at_checkpoint: Option<Hash>,
}

impl<'a> TreeWalk<'a> {
    fn new(
        store: &'a dyn Store,
        vault: Option<&'a Vault>,
        size: u64,
        checkpoint_size: Option<u64>,
    ) -> TreeWalk<'a> {
        TreeWalk {
            store,
            vault,
            size,
            checkpoint_size,
            levels: Vec::new(),
            completed: Vec::new(),
            range: CompactRange::new(),
            root_at_checkpoint: (checkpoint_size == Some(0)).then(merkle::empty_root),
        }
    }

    fn run(&mut self, report: &mut Report, progress: &ProgressBar) -> Result<(), FsckError> {
        let full = self.size / TILE_WIDTH;
        let partial = self.size % TILE_WIDTH;
        let count = full + u64::from(partial > 0);
        progress.set_length(count);
        progress.set_message("entry bundles and tiles");
        let mut events = EventStream::new(self.store);
        for b in 0..count {
            if report.full() {
                return Ok(());
            }
            let width = if b < full { TILE_WIDTH } else { partial };
            let leaves = self.walk_bundle(b, width, &mut events, report)?;
            if width == TILE_WIDTH {
                let root = merkle::root_from_leaf_hashes(&leaves);
                cross_check_root(b, &leaves, &root, report);
                self.push(1, root, report)?;
            }
            progress.inc(1);
        }
        // The partial tiles above level 0.
        for level in 1..self.levels.len() {
            let pending = std::mem::take(&mut self.levels[level]);
            if !pending.is_empty() {
                let index = self.completed[level];
                self.check_tile(level as u8, index, &pending, report)?;
            }
        }
        // Events stored beyond the tree.
        while let Some((i, _)) = events.peek(report)? {
            let i = *i;
            events.peeked = None;
            report.find(
                format!("event {i}"),
                format!("is stored beyond the tree size {}", self.size),
            );
            if report.full() {
                break;
            }
        }
        Ok(())
    }

    /// Reads bundle `b` and its level-0 tile, checks each leaf, its event
    /// and its index entries, and returns the leaf hashes to build the
    /// levels above from: the entries', except where an entry was found
    /// altered (then the tile's), so that one bad object is one finding.
    fn walk_bundle(
        &mut self,
        b: u64,
        width: u64,
        events: &mut EventStream<'_>,
        report: &mut Report,
    ) -> Result<Vec<Hash>, FsckError> {
        report.bundles += 1;
        report.tiles += 1;
        let name = bundle_name(b, width);
        let tname = tile_name(0, b, width);
        let tile = match read(self.store.tile(0, b))? {
            Ok(Some(t)) if t.len() as u64 == width * 32 => Some(bytes_to_hashes(&t)),
            Ok(Some(t)) => {
                report.find(
                    &tname,
                    format!(
                        "is {} bytes, the tree size needs {width} hashes ({} bytes)",
                        t.len(),
                        width * 32
                    ),
                );
                None
            }
            Ok(None) => {
                report.find(&tname, "is missing");
                None
            }
            Err(m) => {
                report.find(&tname, m);
                None
            }
        };
        let entries = match read(self.store.bundle(b))? {
            Ok(Some(bytes)) => match tiles::decode_bundle(&bytes) {
                Ok(e) if e.len() as u64 == width => Some(e),
                Ok(e) => {
                    report.find(
                        &name,
                        format!("holds {} entries, the tree size needs {width}", e.len()),
                    );
                    None
                }
                Err(e) => {
                    report.find(&name, format!("is malformed: {e}"));
                    None
                }
            },
            Ok(None) => {
                report.find(&name, "is missing");
                None
            }
            Err(m) => {
                report.find(&name, m);
                None
            }
        };
        let Some(entries) = entries else {
            // Go on with the stored tile's hashes, so the levels above are
            // still checked; this bundle's events and indexes are not.
            let hashes = tile.unwrap_or_else(|| vec![Hash([0; 32]); width as usize]);
            for (j, h) in hashes.iter().enumerate() {
                let index = b * TILE_WIDTH + j as u64;
                self.append_leaf(index, *h);
                // Step over this bundle's events, unchecked.
                events.take(index, report)?;
            }
            return Ok(hashes);
        };
        let mut leaves = Vec::with_capacity(entries.len());
        let mut tile_reported = false;
        for (j, entry) in entries.iter().enumerate() {
            let index = b * TILE_WIDTH + j as u64;
            let computed = merkle::leaf_hash(entry);
            let mut trusted = computed;
            if let Some(stored) = tile.as_ref().map(|t| t[j])
                && stored != computed
            {
                // Which of the two changed? The leaf-hash index was written
                // with the original leaf hash: it arbitrates.
                if read(self.store.leaf_index(&stored))?.ok().flatten() == Some(index) {
                    report.find(
                        &name,
                        format!(
                            "leaf {index} hashes to {computed}, but {tname} and the leaf-hash index say {stored}: the entry was altered"
                        ),
                    );
                    trusted = stored;
                } else if !tile_reported {
                    report.find(
                        &tname,
                        format!("hash {j} is {stored}, entries give {computed}"),
                    );
                    tile_reported = true;
                }
            }
            leaves.push(trusted);
            self.append_leaf(index, trusted);
            let event = events.take(index, report)?;
            if trusted != computed {
                // The altered entry's event and index checks would only
                // repeat the finding above.
                continue;
            }
            match read(self.store.leaf_index(&computed))? {
                Ok(Some(i)) if i == index => {}
                Ok(Some(i)) => report.find(
                    format!("leaf-hash index entry {computed}"),
                    format!("points at leaf {i}, but this hash is leaf {index}"),
                ),
                Ok(None) => report.find(
                    format!("leaf-hash index entry {computed}"),
                    format!("is missing for leaf {index}"),
                ),
                Err(m) => report.find(format!("leaf-hash index entry {computed}"), m),
            }
            let record = match LeafRecord::parse(entry) {
                Ok(r) => r,
                Err(e) => {
                    report.find(
                        format!("leaf {index} (in {name})"),
                        format!("is not a leaf record: {e}"),
                    );
                    continue;
                }
            };
            // An event is stored in plain form, or sealed (encrypted at rest:
            // its commitment can be checked only with the master key), or
            // erased (a tombstone records when and why).
            let key = index.to_be_bytes();
            match event {
                Some(ev) => self.check_event(index, &ev, &record, report)?,
                None if self.stored(RecordSpace::Sealed, &key)? => {
                    self.check_sealed(index, &record, report)?
                }
                None if self.stored(RecordSpace::Erased, &key)? => report.erased += 1,
                None => report.find(format!("event {index}"), "is missing"),
            }
        }
        Ok(leaves)
    }

    /// Opens the sealed event of leaf `index` (with the master key) and
    /// checks it like a plain one, and that search finds it under each of
    /// its terms.
    fn check_sealed(
        &self,
        index: u64,
        leaf: &LeafRecord,
        report: &mut Report,
    ) -> Result<(), FsckError> {
        let object = format!("sealed event {index}");
        let Some(vault) = self.vault else {
            // Without the key only the stored checksum can be checked.
            match self.store.record(RecordSpace::Sealed, &index.to_be_bytes()) {
                Err(StoreError::Corrupt(m)) => report.find(object, m),
                Err(e) => return Err(FsckError::Read(e.to_string())),
                Ok(_) => report.sealed_unchecked += 1,
            }
            return Ok(());
        };
        let ev = match vault.event(index) {
            Ok(Some(ev)) => ev,
            Ok(None) => {
                // An erased subject's event that the search index did not
                // list keeps its sealed body, under its subject's tombstone.
                match read(vault.tombstone(index))? {
                    Ok(Some(_)) => report.erased += 1,
                    Ok(None) => report.find(object, "vanished while being read"),
                    Err(m) => report.find(object, format!("has an unreadable tombstone: {m}")),
                }
                return Ok(());
            }
            Err(StoreError::Backend(e)) => return Err(FsckError::Read(e)),
            Err(e) => {
                report.find(
                    object,
                    format!("does not open (its ciphertext, key id or data key was altered): {e}"),
                );
                return Ok(());
            }
        };
        report.sealed_checked += 1;
        let findings = report.findings.len();
        self.check_event(index, &ev, leaf, report)?;
        if report.findings.len() > findings {
            return Ok(());
        }
        let Ok(parsed) = serde_json::from_slice::<crate::event::AuditEvent>(&ev.event) else {
            report.find(object, "opens, but is not an audit event");
            return Ok(());
        };
        // The watermark read when the vault was opened (a damaged one is
        // reported with the tree size, and reads as 0 here).
        let indexed_below = vault
            .index_watermark()
            .map_err(|e| FsckError::Read(e.to_string()))?;
        if index >= indexed_below {
            report.search_index_pending += 1;
            return Ok(());
        }
        for term in vault.terms_of(&ev.app, &parsed) {
            report.search_index_entries += 1;
            let found = match read(vault.scan(&term, index + 1, 1))? {
                Ok(found) => found,
                Err(m) => {
                    report.find(format!("search index block for leaf {index}"), m);
                    break;
                }
            };
            if found.first() != Some(&index) {
                report.find(
                    format!("search index entry for leaf {index}"),
                    "is missing: a search would not find this event",
                );
                break;
            }
        }
        Ok(())
    }

    /// Whether a record exists (a sealed body or an erasure tombstone); a
    /// corrupt one exists too, and is reported where it is read.
    fn stored(&self, space: RecordSpace, key: &[u8]) -> Result<bool, FsckError> {
        match self.store.record(space, key) {
            Ok(r) => Ok(r.is_some()),
            Err(StoreError::Corrupt(_)) => Ok(true),
            Err(e) => Err(FsckError::Read(e.to_string())),
        }
    }

    fn append_leaf(&mut self, index: u64, hash: Hash) {
        self.range.append(hash);
        if Some(index + 1) == self.checkpoint_size {
            self.root_at_checkpoint = Some(self.range.root());
        }
    }

    /// The stored event agrees with its leaf, and its id is indexed.
    fn check_event(
        &self,
        index: u64,
        ev: &StoredEvent,
        leaf: &LeafRecord,
        report: &mut Report,
    ) -> Result<(), FsckError> {
        report.events += 1;
        let object = format!("event {index}");
        if ev.app != leaf.app {
            report.find(
                &object,
                format!("app is {:?}, its leaf says {:?}", ev.app, leaf.app),
            );
        }
        let c = commitment(&ev.salt, &ev.event);
        if c != leaf.commitment {
            report.find(
                &object,
                format!(
                    "commitment(salt, event) is {}, leaf {index} commits to {} (the body or the salt was altered)",
                    c.to_hex(),
                    leaf.commitment.to_hex()
                ),
            );
            return Ok(());
        }
        if let Some(id) = event_id(&ev.event) {
            match read(self.store.dedupe(&DedupeKey::of(&ev.app, &id)))? {
                Ok(Some(i)) if i == index => {}
                Ok(Some(i)) => report.find(
                    format!("idempotency entry ({}, {id})", ev.app),
                    format!("points at leaf {i}, but the event with that id is leaf {index}"),
                ),
                Ok(None) => report.find(
                    format!("idempotency entry ({}, {id})", ev.app),
                    format!("is missing for leaf {index}"),
                ),
                Err(m) => report.find(format!("idempotency entry ({}, {id})", ev.app), m),
            }
        }
        Ok(())
    }

    /// Compares the stored tile `(level, index)`, level 1 or above, with the
    /// hashes recomputed from the level below.
    fn check_tile(
        &self,
        level: u8,
        index: u64,
        hashes: &[Hash],
        report: &mut Report,
    ) -> Result<(), FsckError> {
        report.tiles += 1;
        let name = tile_name(level, index, hashes.len() as u64);
        let stored = match read(self.store.tile(level, index))? {
            Ok(Some(t)) => t,
            Ok(None) => {
                report.find(&name, "is missing");
                return Ok(());
            }
            Err(m) => {
                report.find(&name, m);
                return Ok(());
            }
        };
        if stored.len() != hashes.len() * 32 {
            report.find(
                &name,
                format!(
                    "is {} bytes, the tree size needs {} hashes ({} bytes)",
                    stored.len(),
                    hashes.len(),
                    hashes.len() * 32
                ),
            );
            return Ok(());
        }
        let found = bytes_to_hashes(&stored);
        if let Some(j) = (0..hashes.len()).find(|&j| found[j] != hashes[j]) {
            report.find(
                &name,
                format!(
                    "hash {j} is {}, the tiles below give {}",
                    found[j], hashes[j]
                ),
            );
        }
        Ok(())
    }

    /// Adds a full tile's root to the level above; checks tiles that fill.
    fn push(&mut self, level: usize, hash: Hash, report: &mut Report) -> Result<(), FsckError> {
        while self.levels.len() <= level {
            self.levels.push(Vec::new());
            self.completed.push(0);
        }
        self.levels[level].push(hash);
        if self.levels[level].len() as u64 == TILE_WIDTH {
            let full = std::mem::take(&mut self.levels[level]);
            let index = self.completed[level];
            self.completed[level] += 1;
            self.check_tile(level as u8, index, &full, report)?;
            self.push(level + 1, merkle::root_from_leaf_hashes(&full), report)?;
        }
        Ok(())
    }
}

/// `rs_merkle`, an independent implementation, must agree on the root of
/// every full level-0 tile.
fn cross_check_root(b: u64, leaves: &[Hash], ours: &Hash, report: &mut Report) {
    let raw: Vec<[u8; 32]> = leaves.iter().map(|h| h.0).collect();
    let theirs = rs_merkle::MerkleTree::<Rfc6962Hasher>::from_leaves(&raw).root();
    if theirs != Some(ours.0) {
        report.find(
            tile_name(0, b, TILE_WIDTH),
            format!(
                "root is {ours} here but {} by rs_merkle (internal error)",
                theirs.map(|r| Hash(r).to_string()).unwrap_or_default()
            ),
        );
    }
}

fn bytes_to_hashes(bytes: &[u8]) -> Vec<Hash> {
    bytes
        .chunks_exact(32)
        .filter_map(|c| Hash::from_slice(c).ok())
        .collect()
}

/// The writer's idempotency key of a canonical event, if it has one.
fn event_id(canonical: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(canonical).ok()?;
    v.get("id")?.as_str().map(str::to_string)
}

/// Every leaf-hash index entry points inside the tree, and there are as
/// many as leaves: each leaf's own entry was found correct during the walk,
/// so equal counts leave no room for a wrong one. Only when the counts
/// differ are the entries compared with the level-0 tiles, to name the
/// stray ones.
fn check_leaf_index(
    store: &dyn Store,
    size: u64,
    report: &mut Report,
    progress: &ProgressBar,
) -> Result<(), FsckError> {
    progress.set_message("leaf-hash index");
    let mut count = 0u64;
    scan_leaf_index(store, |item| {
        count += 1;
        match item {
            Ok((key, index)) if index >= size => report.find(
                format!("leaf-hash index entry {}", hex::encode(key)),
                format!("points at leaf {index}, beyond the tree size {size}"),
            ),
            Ok(_) => {}
            Err(e) => report.find("leaf-hash index", e.to_string()),
        }
        Ok(!report.full())
    })?;
    report.leaf_index_entries = count;
    if count == size || report.full() {
        return Ok(());
    }
    report.find(
        "leaf-hash index",
        format!("has {count} entries for {size} leaves"),
    );
    let mut tile_cache: Option<(u64, Vec<u8>)> = None;
    scan_leaf_index(store, |item| {
        let Ok((key, index)) = item else {
            return Ok(true);
        };
        if index >= size {
            return Ok(true);
        }
        let tile_index = index / TILE_WIDTH;
        if tile_cache.as_ref().map(|(i, _)| *i) != Some(tile_index) {
            let t = read(store.tile(0, tile_index))?
                .ok()
                .flatten()
                .unwrap_or_default();
            tile_cache = Some((tile_index, t));
        }
        let offset = ((index % TILE_WIDTH) * 32) as usize;
        let leaf = tile_cache
            .as_ref()
            .and_then(|(_, t)| t.get(offset..offset + 16));
        if leaf != Some(key.as_slice()) {
            report.find(
                format!("leaf-hash index entry {}", hex::encode(key)),
                format!("points at leaf {index}, whose hash is different"),
            );
        }
        Ok(!report.full())
    })
}

/// Calls `visit` on every leaf-hash index entry until it returns false.
fn scan_leaf_index(
    store: &dyn Store,
    mut visit: impl FnMut(Result<(LeafKey, u64), StoreError>) -> Result<bool, FsckError>,
) -> Result<(), FsckError> {
    let mut cursor = Some(ScanCursor::start());
    while let Some(c) = cursor.take() {
        let page = store
            .scan_leaf_index(&c, SCAN_PAGE)
            .map_err(|e| FsckError::Read(e.to_string()))?;
        cursor = page.next;
        for item in page.items {
            if !visit(item)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Every idempotency entry points at a leaf of its app whose event has
/// that id.
fn check_dedupe(
    store: &dyn Store,
    vault: Option<&Vault>,
    size: u64,
    report: &mut Report,
    progress: &ProgressBar,
) -> Result<(), FsckError> {
    progress.set_message("idempotency index");
    let mut cursor = Some(ScanCursor::start());
    while let Some(c) = cursor.take() {
        let page = store
            .scan_dedupe(&c, SCAN_PAGE)
            .map_err(|e| FsckError::Read(e.to_string()))?;
        cursor = page.next;
        for item in page.items {
            report.dedupe_entries += 1;
            let (key, index) = match item {
                Ok(x) => x,
                Err(e) => {
                    report.find("idempotency index", e.to_string());
                    continue;
                }
            };
            let object = format!("idempotency entry {}", hex::encode(key.0));
            if index >= size {
                report.find(
                    &object,
                    format!("points at leaf {index}, beyond the tree size {size}"),
                );
                continue;
            }
            let event = match vault {
                Some(v) => v.event(index),
                None => store.event(index),
            };
            // Without a readable body (erased) there is nothing more to
            // compare: the key is a digest of the app and the id.
            if let Ok(Some(ev)) = read(event)? {
                let ours = event_id(&ev.event).map(|id| DedupeKey::of(&ev.app, &id));
                if ours != Some(key) {
                    report.find(
                        &object,
                        format!("points at leaf {index}, whose app and event id have another key"),
                    );
                }
            }
            if report.full() {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn check_api_keys(store: &dyn Store, report: &mut Report) -> Result<(), FsckError> {
    let records = match read(store.records(RecordSpace::ApiKey))? {
        Ok(r) => r,
        Err(m) => {
            report.find("API key records", m);
            return Ok(());
        }
    };
    for (key, value) in records {
        report.api_keys += 1;
        let id = String::from_utf8_lossy(&key).into_owned();
        match serde_json::from_slice::<ApiKeyRecord>(&value) {
            Ok(r) if r.id == id => {}
            Ok(r) => report.find(
                format!("API key record {id}"),
                format!("holds the record of key {}", r.id),
            ),
            Err(e) => report.find(format!("API key record {id}"), format!("is malformed: {e}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
