//! The keyring: the generation key that wraps every data key, itself
//! wrapped by the master key, kept in a small file that is replaced whole.
//!
//! Why a generation key: the storage engine (sled) may keep stale copies
//! of deleted values in its log until it reclaims the segment, so deleting
//! a wrapped data key does not remove every copy from the disk. Therefore
//! destroying a data key also *rotates* the generation: every surviving data
//! key is re-wrapped under a new generation key in the same atomic batch,
//! and the keyring file holding the old generation key is replaced. Stale
//! copies of the destroyed key are then wrapped under a generation key
//! that exists nowhere in the data directory, and open with no key.
//!
//! Crash safety of a rotation: (1) the new generation goes to
//! `keyring.new` (fsynced); (2) the batch re-wrapping the keys also records
//! the new generation id in the store; (3) `keyring.new` is renamed over
//! `keyring`. Opening picks the file whose generation the store names, so
//! a crash between any two steps leaves a consistent keyring.

use std::collections::{BTreeSet, HashMap};
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
    home: KeyringHome,
    master_wrap: DataKey,
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
            return Ok(Keyring {
                home,
                master_wrap,
                current,
            });
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
        Ok(Keyring {
            home,
            master_wrap,
            current,
        })
    }

    fn data_aad(gen_id: &[u8; 8], key_id: &[u8]) -> Vec<u8> {
        [gen_id.as_slice(), key_id].concat()
    }

    /// A data key as stored: `generation id || wrapped key`.
    pub fn wrap(&self, key_id: &[u8], key: &DataKey) -> Result<Vec<u8>, VaultError> {
        let w = self
            .current
            .key
            .wrap(&Self::data_aad(&self.current.id, key_id), key)
            .map_err(|e| VaultError::Local(e.to_string()))?;
        Ok(encode(&self.current.id, &w))
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

    /// Adds to `batch` every surviving data key (those not in `destroyed`;
    /// for those in `replaced`, their replacement) wrapped under a new generation, and the new generation's record;
    /// writes the pending keyring file. Call [`Keyring::finish`] once the
    /// batch is committed, [`Keyring::abort`] if it failed.
    pub fn prepare_rotation(
        &self,
        store: &dyn Store,
        batch: &mut RecordBatch,
        destroyed: &BTreeSet<Vec<u8>>,
        replaced: &HashMap<Vec<u8>, DataKey>,
    ) -> Result<Generation, VaultError> {
        let next = Generation {
            id: random_id()?,
            key: DataKey::generate().map_err(|e| VaultError::Local(e.to_string()))?,
        };
        for (key_id, stored) in store.records(RecordSpace::DataKey)? {
            if destroyed.contains(&key_id) {
                continue;
            }
            let dk = match replaced.get(&key_id) {
                Some(new) => new.clone(),
                None => self.unwrap(&key_id, &stored)?,
            };
            let w = next
                .key
                .wrap(&Self::data_aad(&next.id, &key_id), &dk)
                .map_err(|e| VaultError::Local(e.to_string()))?;
            batch
                .put
                .push((RecordSpace::DataKey, key_id, encode(&next.id, &w)));
        }
        let wrapped = self
            .master_wrap
            .wrap(&gen_aad(&next.id), &next.key)
            .map_err(|e| VaultError::Local(e.to_string()))?;
        match &self.home {
            KeyringHome::File(path) => write_file(&new_path(path), &next.id, &wrapped)?,
            KeyringHome::Store => batch.put.push((
                RecordSpace::Meta,
                KEYRING_RECORD.to_vec(),
                encode(&next.id, &wrapped),
            )),
        }
        batch.put.push((
            RecordSpace::Meta,
            GENERATION_RECORD.to_vec(),
            next.id.to_vec(),
        ));
        Ok(next)
    }

    /// Makes the committed rotation final: the old generation key is gone.
    pub fn finish(&mut self, next: Generation) -> Result<(), VaultError> {
        // The store already names the new generation: use it from now on,
        // even if the rename fails (opening finishes it on the next start).
        self.current = next;
        if let KeyringHome::File(path) = &self.home {
            durable::rename(&new_path(path), path)
                .map_err(|e| err(format!("couldn't finish a key rotation: {e}")))?;
        }
        Ok(())
    }

    /// Undoes a rotation whose batch failed.
    pub fn abort(&self) {
        if let KeyringHome::File(path) = &self.home {
            let _ = fs::remove_file(new_path(path));
        }
    }
}

fn random_id() -> Result<[u8; 8], VaultError> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| VaultError::Local(format!("no randomness: {e}")))?;
    Ok(id)
}
