//! Creating and loading a log's data directory.
//!
//! Creating and loading are different acts. A log is created only in a
//! missing or empty directory, and all at once: keys, database, admin key
//! and the signed size-0 checkpoint are made in a sibling staging directory
//! that is renamed into place, so a crash during creation leaves nothing
//! half-made. Loading never creates anything: it fails loudly when a part is
//! missing, when the origin differs, or when the stored tree does not
//! reproduce the root of the last signed checkpoint — a wrong data path must
//! never quietly start a fresh, empty audit log with new keys.
//!
//! Layout of a data directory:
//! ```text
//! <data>/log-ecdsa.pem    ECDSA P-256 log key, PKCS#8 PEM, mode 0600
//! <data>/log-ed25519.pem  Ed25519 log key, PKCS#8 PEM, mode 0600
//! <data>/admin.key        the first admin API key, mode 0600
//! <data>/db/              the sled database
//! ```
//!
//! With the remote backend (PostgreSQL and a bucket, `store::postgres`)
//! the directory holds the keys and the admin key only; the database holds
//! the rest, and its origin record says that a log exists there
//! ([`open_or_create_on`]).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::auth::{ApiKeys, Role};
use crate::merkle;
use crate::note::keys::{LogKeys, LogVerifierKeys};
use crate::note::{Checkpoint, Note, NoteVerifier};
use crate::sequencer::{CheckpointSigner, Clock, Published, RightEdge, TileSource};
use crate::store::sled::SledStore;
use crate::store::{RecordSpace, Store, StoredCheckpoint};

/// File name of the first admin key.
pub const ADMIN_KEY_FILE: &str = "admin.key";
/// Directory of the sled database.
pub const DB_DIR: &str = "db";
/// Key of the origin in the store's metadata records.
pub const ORIGIN_RECORD: &[u8] = b"origin";

/// Why a data directory could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The directory is not a (complete) Veritrail data directory.
    #[error("{path}: {why}")]
    NotALog {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The stored data contradicts the signed checkpoint: it was altered or lost.
    #[error("refusing to start: {0}")]
    Tampered(String),
    /// A configuration contradicts the stored log.
    #[error("{0}")]
    Config(String),
    /// An I/O or storage failure.
    #[error("{0}")]
    Io(String),
}

/// A loaded log, ready to serve.
pub struct OpenedLog {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The log's origin.
    pub origin: String,
    /// Checkpoint signer with both log keys.
    pub signer: Arc<CheckpointSigner>,
    /// The two verifier keys.
    pub verifier_keys: LogVerifierKeys,
    /// The right edge of the stored tree.
    pub edge: RightEdge,
    /// The last signed checkpoint.
    pub published: Published,
    /// Set when this call created the log: where the admin key was written.
    pub created_admin_key: Option<PathBuf>,
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> LifecycleError {
    LifecycleError::Io(format!("couldn't {what} {}: {e}", path.display()))
}

/// The default origin: a stable name derived from the host.
pub fn default_origin() -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
        })
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}/veritrail")
}

fn is_missing_or_empty(dir: &Path) -> Result<bool, LifecycleError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(io("read", dir, e)),
    }
}

/// Opens the log in `dir`, creating it first if `dir` is missing or empty
/// (its first checkpoint then carries the time of `clock`).
pub fn open_or_create(
    dir: &Path,
    origin: Option<&str>,
    clock: &Clock,
) -> Result<OpenedLog, LifecycleError> {
    if is_missing_or_empty(dir)? {
        let origin = origin.map(str::to_string).unwrap_or_else(default_origin);
        create(dir, &origin, clock)?;
        let mut log = load(dir, Some(&origin))?;
        log.created_admin_key = Some(dir.join(ADMIN_KEY_FILE));
        return Ok(log);
    }
    load(dir, origin)
}

fn signer_for(keys: &LogKeys, origin: &str) -> Result<CheckpointSigner, LifecycleError> {
    CheckpointSigner::from_keys(keys, origin).map_err(LifecycleError::Config)
}

/// Creates a new log in `dir` (missing or empty) with `origin`; its first,
/// empty checkpoint is signed at the time of `clock`.
pub fn create(dir: &Path, origin: &str, clock: &Clock) -> Result<(), LifecycleError> {
    if !is_missing_or_empty(dir)? {
        return Err(LifecycleError::NotALog {
            path: dir.to_path_buf(),
            why: "is not empty; refusing to create a log here".into(),
        });
    }
    if !crate::note::is_valid_key_name(origin) {
        return Err(LifecycleError::Config(format!(
            "origin {origin:?} is not a valid key name (non-empty, no spaces, no '+'); e.g. log.example.com/audit"
        )));
    }
    let staging = make_staging(dir)?;
    let store: Arc<dyn Store> = Arc::new(
        SledStore::open(&staging.join(DB_DIR)).map_err(|e| LifecycleError::Io(e.to_string()))?,
    );
    create_in(&staging, origin, clock, &store)?;
    drop(store);
    // Everything is durable in the staging directory; the rename publishes
    // the whole log at once (an empty target directory is replaced).
    crate::durable::rename(&staging, dir).map_err(|e| io("move the new log into", dir, e))
}

/// A new, private staging directory beside `dir`, renamed onto `dir` once
/// the new log in it is complete.
fn make_staging(dir: &Path) -> Result<PathBuf, LifecycleError> {
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| io("create", parent, e))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let staging = parent.join(format!(".{name}.creating-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io("remove", &staging, e))?;
    }
    fs::create_dir(&staging).map_err(|e| io("create", &staging, e))?;
    fs::set_permissions(&staging, fs::Permissions::from_mode(0o700))
        .map_err(|e| io("restrict", &staging, e))?;
    Ok(staging)
}

/// Opens the log whose data is in `store` (the remote backend) and whose
/// keys are in `dir`, creating it first if the store holds no log and `dir`
/// is missing or empty. Other frontends of the same log get a copy of the
/// first one's key files.
pub fn open_or_create_on(
    dir: &Path,
    origin: Option<&str>,
    clock: &Clock,
    store: Arc<dyn Store>,
) -> Result<OpenedLog, LifecycleError> {
    let exists = store
        .record(RecordSpace::Meta, ORIGIN_RECORD)
        .map_err(|e| LifecycleError::Io(e.to_string()))?
        .is_some();
    if exists {
        if !dir.join(crate::note::keys::ECDSA_KEY_FILE).exists() {
            return Err(LifecycleError::NotALog {
                path: dir.to_path_buf(),
                why: "lacks the log keys of the log in the database; copy the key files (and the master key) from the frontend that created it".into(),
            });
        }
        return load_from(dir, origin, store);
    }
    if !is_missing_or_empty(dir)? {
        return Err(LifecycleError::NotALog {
            path: dir.to_path_buf(),
            why: "is not empty but the database holds no log; point --data at a missing or empty directory to create one".into(),
        });
    }
    let origin = origin.map(str::to_string).unwrap_or_else(default_origin);
    if !crate::note::is_valid_key_name(&origin) {
        return Err(LifecycleError::Config(format!(
            "origin {origin:?} is not a valid key name (non-empty, no spaces, no '+'); e.g. log.example.com/audit"
        )));
    }
    let staging = make_staging(dir)?;
    create_in(&staging, &origin, clock, &store)?;
    crate::durable::rename(&staging, dir).map_err(|e| io("move the new log keys into", dir, e))?;
    let mut log = load_from(dir, Some(&origin), store)?;
    log.created_admin_key = Some(dir.join(ADMIN_KEY_FILE));
    Ok(log)
}

/// Makes new log keys and the admin key in `staging`, and the log's first
/// records in `store`: the admin key, the signed empty checkpoint, and last
/// the origin, whose presence says that a log exists.
fn create_in(
    staging: &Path,
    origin: &str,
    clock: &Clock,
    store: &Arc<dyn Store>,
) -> Result<(), LifecycleError> {
    let keys = LogKeys::generate()
        .map_err(|e| LifecycleError::Io(format!("couldn't generate log keys: {e}")))?;
    keys.write_to_dir(staging)
        .map_err(|e| LifecycleError::Io(format!("couldn't write log keys: {e}")))?;
    let signer = signer_for(&keys, origin)?;
    let (_, token) = ApiKeys::new(store.clone())
        .with_clock(clock.clone())
        .create("admin", Role::Admin, None)
        .map_err(|e| LifecycleError::Io(format!("couldn't create the admin key: {e}")))?;
    write_secret_file(&staging.join(ADMIN_KEY_FILE), &format!("{token}\n"))?;
    let empty = signer
        .sign(0, merkle::empty_root(), clock.now_ms())
        .map_err(LifecycleError::Io)?;
    store
        .put_checkpoint(&StoredCheckpoint {
            published_at_ms: empty.published_at_ms,
            note: empty.note.into_bytes(),
        })
        .map_err(|e| LifecycleError::Io(e.to_string()))?;
    store
        .put_record(RecordSpace::Meta, ORIGIN_RECORD, origin.as_bytes())
        .map_err(|e| LifecycleError::Io(e.to_string()))
}

fn write_secret_file(path: &Path, content: &str) -> Result<(), LifecycleError> {
    crate::durable::create_new(path, content.as_bytes(), crate::durable::Secrecy::Secret)
        .map_err(|e| io("create", path, e))
}

/// Loads an existing log. Never creates anything.
pub fn load(dir: &Path, origin: Option<&str>) -> Result<OpenedLog, LifecycleError> {
    let not_a_log = |why: String| LifecycleError::NotALog {
        path: dir.to_path_buf(),
        why,
    };
    for part in [
        crate::note::keys::ECDSA_KEY_FILE,
        crate::note::keys::ED25519_KEY_FILE,
        DB_DIR,
    ] {
        if !dir.join(part).exists() {
            return Err(not_a_log(format!(
                "is not a Veritrail data directory ({part} is missing); point --data at an existing log, or at a missing or empty directory to create one"
            )));
        }
    }
    let started = std::time::Instant::now();
    let store = Arc::new(
        SledStore::open(&dir.join(DB_DIR)).map_err(|e| LifecycleError::Io(e.to_string()))?,
    );
    let opened_ms = started.elapsed().as_millis() as u64;
    let log = load_from(dir, origin, store)?;
    tracing::info!(
        open_ms = opened_ms,
        total_ms = started.elapsed().as_millis() as u64,
        tree_size = log.published.checkpoint.size,
        "loaded the log (the database open, then the checkpoint and the right edge)"
    );
    Ok(log)
}

/// Loads an existing log whose keys are in `dir` and whose data is in
/// `store`, reading everything afresh (a new leader of the remote backend
/// starts from this).
pub fn load_from(
    dir: &Path,
    origin: Option<&str>,
    store: Arc<dyn Store>,
) -> Result<OpenedLog, LifecycleError> {
    let not_a_log = |why: String| LifecycleError::NotALog {
        path: dir.to_path_buf(),
        why,
    };
    let keys = LogKeys::load_from_dir(dir)
        .map_err(|e| LifecycleError::Io(format!("couldn't load the log keys: {e}")))?;
    let stored_origin = store
        .record(RecordSpace::Meta, ORIGIN_RECORD)
        .map_err(|e| LifecycleError::Io(e.to_string()))?
        .ok_or_else(|| not_a_log("the database has no origin record".into()))?;
    let stored_origin = String::from_utf8(stored_origin)
        .map_err(|_| not_a_log("the stored origin is not UTF-8".into()))?;
    if let Some(wanted) = origin
        && wanted != stored_origin
    {
        return Err(LifecycleError::Config(format!(
            "this log's origin is {stored_origin:?}, not {wanted:?}; an origin never changes (drop --origin or use another data directory)"
        )));
    }
    let signer = Arc::new(signer_for(&keys, &stored_origin)?);
    let verifier_keys = keys
        .verifier_keys(&stored_origin)
        .map_err(|e| LifecycleError::Config(format!("origin {stored_origin:?}: {e}")))?;
    let published = load_checkpoint(store.as_ref(), &stored_origin, &keys)?;
    let edge = check_tree(store.as_ref(), &published.checkpoint)?;
    Ok(OpenedLog {
        store,
        origin: stored_origin,
        signer,
        verifier_keys,
        edge,
        published,
        created_admin_key: None,
    })
}

/// Reads the last checkpoint and checks both log signatures on it.
fn load_checkpoint(
    store: &dyn Store,
    origin: &str,
    keys: &LogKeys,
) -> Result<Published, LifecycleError> {
    let stored = store
        .checkpoint()
        .map_err(|e| LifecycleError::Io(e.to_string()))?
        .ok_or_else(|| LifecycleError::Tampered("the database has no signed checkpoint".into()))?;
    let published = Published::from_stored(&stored).map_err(LifecycleError::Tampered)?;
    let signers = keys
        .signers(origin)
        .map_err(|e| LifecycleError::Config(e.to_string()))?;
    let ecdsa = signers.ecdsa.verifier();
    let ed25519 = signers.ed25519.verifier();
    let verifiers: [&dyn NoteVerifier; 2] = [&ecdsa, &ed25519];
    let note = Note::parse(published.note.as_bytes())
        .map_err(|e| LifecycleError::Tampered(e.to_string()))?;
    let verified = note.verify(&verifiers).map_err(|e| {
        LifecycleError::Tampered(format!(
            "the stored checkpoint's signature does not verify: {e}"
        ))
    })?;
    if verified.len() != 2 {
        return Err(LifecycleError::Tampered(
            "the stored checkpoint lacks one of the log's two signatures".into(),
        ));
    }
    if published.checkpoint.origin != origin {
        return Err(LifecycleError::Tampered(format!(
            "the stored checkpoint is for origin {:?}",
            published.checkpoint.origin
        )));
    }
    Ok(published)
}

/// Loads the right edge and checks that the stored tree reproduces the
/// signed root: O(log n) reads, whatever the size.
fn check_tree(store: &dyn Store, cp: &Checkpoint) -> Result<RightEdge, LifecycleError> {
    let size = store
        .tree_size()
        .map_err(|e| LifecycleError::Io(e.to_string()))?;
    if size < cp.size {
        return Err(LifecycleError::Tampered(format!(
            "the stored tree has {size} entries but the last signed checkpoint covers {}: data was lost or rolled back",
            cp.size
        )));
    }
    let edge = RightEdge::load(store, size)
        .map_err(|e| LifecycleError::Tampered(format!("the stored tree is incomplete: {e}")))?;
    let root = if size == cp.size {
        edge.root()
    } else {
        // A batch was committed after the last checkpoint was signed: check
        // the checkpoint's root from the stored tiles instead.
        merkle::tree_root(cp.size, &TileSource::new(store)).map_err(|e| {
            LifecycleError::Tampered(format!("couldn't recompute the signed root: {e}"))
        })?
    };
    if root != cp.root {
        return Err(LifecycleError::Tampered(format!(
            "the stored tree's root at size {} is {root}, but the signed checkpoint says {}: the data was altered",
            cp.size, cp.root
        )));
    }
    Ok(edge)
}
