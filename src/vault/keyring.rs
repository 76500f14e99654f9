//! The keyring of the earlier key format: the generation key that
//! wrapped every data key stored in `RecordSpace::DataKey`, itself wrapped
//! by the master key, in a small file replaced whole (`keyring`, and
//! `keyring.new` during a rotation). The store's `key_generation` record
//! names the current generation.
//!
//! Only read now: opening a log of that format moves its data keys into
//! the key store (`keys.rs`), then forgets the generation and deletes the
//! keyring, so stale wrapped copies (in the storage engine's log, in old
//! backups) open with no key that exists. An interrupted rotation of that
//! format is settled as before: the file whose generation the store names
//! is the keyring; the other one is never deleted before that is known.

use std::fs;
use std::path::{Path, PathBuf};

use crate::crypto::DataKey;
use crate::durable::{self, Secrecy};
use crate::store::{RecordBatch, RecordSpace, Store};

use super::VaultError;

/// Meta record naming the current generation.
const GENERATION_RECORD: &[u8] = b"key_generation";
/// Meta record holding the wrapped generation key, for [`KeyringHome::Store`].
const KEYRING_RECORD: &[u8] = b"keyring";
/// File name of the keyring in the data directory.
pub const KEYRING_FILE: &str = "keyring";
const FILE_MAGIC: &str = "veritrail-keyring/v1";

/// Where the wrapped generation key lives.
#[derive(Clone, Debug)]
pub enum KeyringHome {
    /// A file replaced whole on rotation (the data directory's `keyring`).
    File(PathBuf),
    /// A record in the store itself: only for backends that keep no stale
    /// copies (the in-memory store of tests).
    Store,
}

/// A generation key and its id.
#[derive(Clone)]
pub(super) struct Generation {
    pub id: [u8; 8],
    pub key: DataKey,
}

/// The open keyring.
pub(super) struct Keyring {
    pub current: Generation,
}

fn err(m: impl Into<String>) -> VaultError {
    VaultError::MasterKey(m.into())
}

fn gen_aad(id: &[u8; 8]) -> Vec<u8> {
    [b"keyring/".as_slice(), id].concat()
}

fn encode(id: &[u8; 8], wrapped: &[u8]) -> Vec<u8> {
    [id.as_slice(), wrapped].concat()
}

fn decode(v: &[u8]) -> Option<([u8; 8], &[u8])> {
    let id: [u8; 8] = v.get(..8)?.try_into().ok()?;
    Some((id, &v[8..]))
}

/// A generation id and its wrapped key, as a keyring file holds them.
type StoredGeneration = ([u8; 8], Vec<u8>);

fn read_file(path: &Path) -> Result<Option<StoredGeneration>, VaultError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(format!("couldn't read {}: {e}", path.display()))),
    };
    let mut parts = text.split_whitespace();
    let bad = || err(format!("{} is not a keyring file", path.display()));
    if parts.next() != Some(FILE_MAGIC) {
        return Err(bad());
    }
    let id: [u8; 8] = parts
        .next()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let wrapped = parts
        .next()
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(bad)?;
    Ok(Some((id, wrapped)))
}

fn write_file(path: &Path, id: &[u8; 8], wrapped: &[u8]) -> Result<(), VaultError> {
    let line = format!(
        "{FILE_MAGIC} {} {}\n",
        hex::encode(id),
        hex::encode(wrapped)
    );
    durable::replace(path, line.as_bytes(), Secrecy::Secret)
        .map_err(|e| err(format!("couldn't write {}: {e}", path.display())))
}

fn new_path(path: &Path) -> PathBuf {
    path.with_extension("new")
}

/// Whether the keyring file at `path` has a pending replacement (a key
/// rotation that has not been finished or undone yet; opening the keyring
/// settles it).
pub fn rotation_pending(path: &Path) -> bool {
    new_path(path).exists()
}

impl Keyring {
    /// Opens the keyring the store's generation record names, finishing or
    /// undoing an interrupted rotation; creates one for a store without.
    pub fn open(
        home: KeyringHome,
        master_wrap: DataKey,
        store: &dyn Store,
    ) -> Result<Keyring, VaultError> {
        let named: Option<[u8; 8]> = store
            .record(RecordSpace::Meta, GENERATION_RECORD)?
            .map(|v| v.try_into())
            .transpose()
            .map_err(|_| err("the stored key generation is malformed"))?;
        let unwrap = |id: &[u8; 8], wrapped: &[u8]| {
            master_wrap
                .unwrap_key(&gen_aad(id), wrapped)
                .map_err(|_| err("the keyring does not open with this master key"))
        };
        let Some(named) = named else {
            let current = Generation {
                id: random_id()?,
                key: DataKey::generate().map_err(|e| VaultError::Local(e.to_string()))?,
            };
            let wrapped = master_wrap
                .wrap(&gen_aad(&current.id), &current.key)
                .map_err(|e| VaultError::Local(e.to_string()))?;
            match &home {
                KeyringHome::File(path) => {
                    write_file(&new_path(path), &current.id, &wrapped)?;
                    durable::rename(&new_path(path), path)
                        .map_err(|e| err(format!("couldn't create {}: {e}", path.display())))?;
                }
                KeyringHome::Store => store.put_record(
                    RecordSpace::Meta,
                    KEYRING_RECORD,
                    &encode(&current.id, &wrapped),
                )?,
            }
            store.put_record(RecordSpace::Meta, GENERATION_RECORD, &current.id)?;
            return Ok(Keyring { current });
        };
        let current = match &home {
            KeyringHome::File(path) => {
                let main = read_file(path)?;
                // A torn pending file is from a rotation that never reached
                // its batch (the file is synced before the batch): ignore it.
                let pending = read_file(&new_path(path)).unwrap_or(None);
                if pending.is_none() {
                    let _ = fs::remove_file(new_path(path));
                }
                match (main, pending) {
                    (_, Some((id, w))) if id == named => {
                        // Crash after the rotation's batch, before the rename.
                        let key = unwrap(&id, &w)?;
                        durable::rename(&new_path(path), path)
                            .map_err(|e| err(format!("couldn't finish a key rotation: {e}")))?;
                        Generation { id, key }
                    }
                    (Some((id, w)), pending) if id == named => {
                        if pending.is_some() {
                            // Crash before the rotation's batch: undo it.
                            let _ = fs::remove_file(new_path(path));
                        }
                        Generation {
                            key: unwrap(&id, &w)?,
                            id,
                        }
                    }
                    _ => {
                        return Err(err(format!(
                            "refusing to start: the keyring file {} is missing or is not this log's; without it no event can be read",
                            path.display()
                        )));
                    }
                }
            }
            KeyringHome::Store => {
                let v = store
                    .record(RecordSpace::Meta, KEYRING_RECORD)?
                    .ok_or_else(|| err("the keyring record is missing"))?;
                let (id, w) = decode(&v).ok_or_else(|| err("the keyring record is malformed"))?;
                if id != named {
                    return Err(err("the keyring record is not the current generation"));
                }
                Generation {
                    key: unwrap(&id, w)?,
                    id,
                }
            }
        };
        Ok(Keyring { current })
    }

    fn data_aad(gen_id: &[u8; 8], key_id: &[u8]) -> Vec<u8> {
        [gen_id.as_slice(), key_id].concat()
    }

    /// Opens a stored data key (only the current generation opens).
    pub fn unwrap(&self, key_id: &[u8], stored: &[u8]) -> Result<DataKey, VaultError> {
        let (id, w) = decode(stored).ok_or_else(|| err("a stored data key is malformed"))?;
        if id != self.current.id {
            return Err(err("a stored data key is of an old key generation"));
        }
        self.current
            .key
            .unwrap_key(&Self::data_aad(&id, key_id), w)
            .map_err(|_| err("a stored data key does not open"))
    }
}

/// Whether the store names a keyring generation (keys of the earlier
/// format that were not moved into the key store yet).
pub fn generation_named(store: &dyn Store) -> Result<bool, VaultError> {
    Ok(store
        .record(RecordSpace::Meta, GENERATION_RECORD)?
        .is_some())
}

/// Adds to `batch` the deletion of the generation record (and of the
/// keyring record of [`KeyringHome::Store`]).
pub fn forget_generation(batch: &mut RecordBatch) {
    batch
        .delete
        .push((RecordSpace::Meta, GENERATION_RECORD.to_vec()));
    batch
        .delete
        .push((RecordSpace::Meta, KEYRING_RECORD.to_vec()));
}

/// Deletes the keyring files once no generation is named any more.
pub fn remove_files(home: &KeyringHome) {
    if let KeyringHome::File(path) = home {
        for p in [path.clone(), new_path(path)] {
            match fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    tracing::warn!(file = %p.display(), error = %e, "couldn't remove the old keyring");
                }
                _ => {}
            }
        }
        if let Some(dir) = path.parent()
            && let Err(e) = durable::sync_dir(dir)
        {
            tracing::warn!(error = %e, "couldn't sync the data directory");
        }
    }
}

fn random_id() -> Result<[u8; 8], VaultError> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| VaultError::Local(format!("no randomness: {e}")))?;
    Ok(id)
}
