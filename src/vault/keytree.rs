//! The key store: every key that opens an event, kept apart from the
//! events (the data directory's `keys/`, not the database), in a tree of
//! small encrypted blocks built for secure deletion.
//!
//! Keys are numbered. Key `2b` is the seed of entry bundle `b` (its 256
//! events' keys are derived from it); key `2s + 1` is subject slot `s`.
//! A leaf block holds 256 numbered keys, each as a list of [`Node`]s: a
//! seed, or, once some of its events were erased, the seeds of the parts
//! of the bundle still alive (a puncturable derivation tree, GGM: event
//! `i`'s key is the seed hashed down the 8 bits of `i`; erasing `i`
//! replaces the seed by the 8 siblings on that path). Three levels of
//! internal blocks of 256 children name each child block's version and
//! hold its key; the root block's key is sealed by the master key in the
//! `root` file.
//!
//! Blocks are immutable files named `<level>-<position>-<version>`; a
//! change writes new versions of the blocks on its path, fsyncs them and
//! their directory, then replaces `root` (`root.new`, fsync, rename, fsync
//! of the directory), and only then removes the old versions. Another
//! process may read the store at any time ([`copy_current`]): it follows
//! `root` and retries if a block it was about to read was replaced.
//!
//! Destroying a key ([`KeyStore::write`] with `fresh`) gives every block
//! on the path, and the root, a new random key. Every old copy of those
//! blocks (a file system's freed blocks, a copy of `keys/`) is then sealed
//! under a key that was only in the old versions of their parents, up to
//! the old root key, which was only in the old `root` file: no key that
//! exists any more opens it. Cost: one block per level, whatever the
//! log's size. Adding keys reuses the blocks' keys (nothing is destroyed).
//!
//! A write is prepared in memory ([`KeyStore::prepare_write`]), made
//! durable ([`PreparedWrite::persist`], which needs no lock on the open
//! store, so an erasure does it without the vault's lock) and then taken
//! as current ([`KeyStore::finish_write`]); no other write is prepared
//! meanwhile, and reads see the store as it was until it is finished.
//!
//! Invariants: `root` always names blocks that exist and open; a write
//! whose sync failed leaves both roots and every block of both in place
//! and latches the store (nothing more is written until it is reopened,
//! and opening settles which root is current); old block versions are
//! removed only once the root naming their replacements is durable.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::crypto::{DataKey, KEY_LEN};
use crate::durable::{self, Secrecy};
use crate::store::fields::Fields;
use crate::store::{RecordBatch, RecordSpace, Store};

use super::VaultError;

/// The key store's directory in a data directory.
pub const KEYS_DIR: &str = "keys";
const ROOT_FILE: &str = "root";
const ROOT_NEW: &str = "root.new";
const ROOT_MAGIC: &[u8] = b"veritrail-keys/v1\n";
/// Keys per leaf block.
pub(super) const LEAF_ENTRIES: u64 = 256;
/// Children per internal block.
const FANOUT: u64 = 256;
/// The root block's level (leaves are level 0).
const ROOT_LEVEL: u8 = 3;
/// The largest key number the tree holds.
pub(super) const MAX_KEY_NUMBER: u64 = LEAF_ENTRIES * FANOUT * FANOUT * FANOUT - 1;
/// Decoded blocks kept in memory at most (about 10 KiB each).
const MAX_CACHED_BLOCKS: usize = 2048;
/// How often a reader in another process starts over when the writer
/// replaced a block under it.
const MAX_READ_ATTEMPTS: usize = 50;
/// Meta record prefix of the key store's files in [`KeyHome::Store`].
const STORE_PREFIX: &[u8] = b"keys/";

fn err(m: impl Into<String>) -> VaultError {
    VaultError::MasterKey(m.into())
}

fn local(e: impl std::fmt::Display) -> VaultError {
    VaultError::Local(e.to_string())
}

fn random_key() -> Result<DataKey, VaultError> {
    DataKey::generate().map_err(local)
}

/// One part of a numbered key: the seed of the events whose offsets in
/// the bundle start with the `depth` bits `prefix` (depth 0: all of them).
#[derive(Clone)]
pub(super) struct Node {
    depth: u8,
    prefix: u8,
    value: DataKey,
}

/// A numbered key: what is left of it (empty: destroyed).
pub(super) type Entry = Vec<Node>;

/// A new, whole key.
pub(super) fn new_entry() -> Result<Entry, VaultError> {
    Ok(vec![Node {
        depth: 0,
        prefix: 0,
        value: random_key()?,
    }])
}

/// A new leaf block's worth of whole keys.
pub(super) fn new_leaf() -> Result<Vec<Entry>, VaultError> {
    (0..LEAF_ENTRIES).map(|_| new_entry()).collect()
}

fn covers(n: &Node, i: u8) -> bool {
    n.depth == 0 || (i >> (8 - n.depth)) == n.prefix
}

fn ggm_child(v: &DataKey, bit: u8) -> DataKey {
    v.derive(&[b"veritrail/ggm/v1", &[bit]])
}

/// The key of offset `i` under `entry`; `None` once punctured.
pub(super) fn offset_key(entry: &Entry, i: u8) -> Option<DataKey> {
    let node = entry.iter().find(|n| covers(n, i))?;
    let mut v = node.value.clone();
    for d in node.depth..8 {
        v = ggm_child(&v, (i >> (7 - d)) & 1);
    }
    Some(v)
}

/// Every offset's key under `entry` (`None` where punctured): each node
/// expanded level by level, about two hashes per offset.
pub(super) fn expand(entry: &Entry) -> Vec<Option<DataKey>> {
    let mut out = vec![None; 256];
    for node in entry {
        let mut values = vec![node.value.clone()];
        for _ in node.depth..8 {
            values = values
                .iter()
                .flat_map(|v| [ggm_child(v, 0), ggm_child(v, 1)])
                .collect();
        }
        let first = if node.depth == 0 {
            0
        } else {
            usize::from(node.prefix) << (8 - node.depth)
        };
        for (k, v) in values.into_iter().enumerate() {
            if let Some(slot) = out.get_mut(first + k) {
                *slot = Some(v);
            }
        }
    }
    out
}

/// Removes offset `i`'s key from `entry`, keeping every other offset's:
/// the node covering `i` is replaced by its descendants beside `i`'s path.
/// False when `i` had no key left.
pub(super) fn puncture(entry: &mut Entry, i: u8) -> bool {
    let Some(at) = entry.iter().position(|n| covers(n, i)) else {
        return false;
    };
    let node = entry.swap_remove(at);
    let mut v = node.value;
    for d in node.depth..8 {
        let bit = (i >> (7 - d)) & 1;
        entry.push(Node {
            depth: d + 1,
            prefix: (i >> (7 - d)) ^ 1,
            value: ggm_child(&v, 1 - bit),
        });
        v = ggm_child(&v, bit);
    }
    true
}

/// Gives offset `i` a new random key of its own (for an offset punctured
/// in a key store that a restored log, which never had that event, uses).
pub(super) fn add_offset(entry: &mut Entry, i: u8) -> Result<(), VaultError> {
    entry.push(Node {
        depth: 8,
        prefix: i,
        value: random_key()?,
    });
    Ok(())
}

/// The whole key of `entry` (a subject slot's); `None` once destroyed.
pub(super) fn whole_key(entry: &Entry) -> Option<DataKey> {
    match entry.as_slice() {
        [n] if n.depth == 0 => Some(n.value.clone()),
        _ => None,
    }
}

/// `entry` holding exactly `key` (a key converted from an earlier format).
pub(super) fn entry_of(key: DataKey) -> Entry {
    vec![Node {
        depth: 0,
        prefix: 0,
        value: key,
    }]
}

/// Where a child block is and what opens it.
#[derive(Clone)]
struct Child {
    version: u64,
    key: DataKey,
}

#[derive(Clone)]
enum Block {
    Internal(BTreeMap<u8, Child>),
    Leaf(Vec<Entry>),
}

const INTERNAL: u8 = 1;
const LEAF: u8 = 2;

impl Block {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Block::Internal(children) => {
                out.push(INTERNAL);
                out.extend_from_slice(&(children.len() as u16).to_be_bytes());
                for (idx, c) in children {
                    out.push(*idx);
                    out.extend_from_slice(&c.version.to_be_bytes());
                    out.extend_from_slice(c.key.secret());
                }
            }
            Block::Leaf(entries) => {
                out.push(LEAF);
                for e in entries {
                    out.extend_from_slice(&(e.len() as u16).to_be_bytes());
                    for n in e {
                        out.extend_from_slice(&[n.depth, n.prefix]);
                        out.extend_from_slice(n.value.secret());
                    }
                }
            }
        }
        out
    }

    fn decode(b: &[u8]) -> Option<Block> {
        let mut r = Fields(b);
        let block = match r.u8()? {
            INTERNAL => {
                let n = r.u16()?;
                let mut children = BTreeMap::new();
                for _ in 0..n {
                    let idx = r.u8()?;
                    let version = r.u64()?;
                    children.insert(
                        idx,
                        Child {
                            version,
                            key: read_key(&mut r)?,
                        },
                    );
                }
                Block::Internal(children)
            }
            LEAF => {
                let mut entries = Vec::with_capacity(LEAF_ENTRIES as usize);
                for _ in 0..LEAF_ENTRIES {
                    let n = r.u16()?;
                    let mut e = Vec::with_capacity(usize::from(n));
                    for _ in 0..n {
                        let (depth, prefix) = (r.u8()?, r.u8()?);
                        if depth > 8 {
                            return None;
                        }
                        e.push(Node {
                            depth,
                            prefix,
                            value: read_key(&mut r)?,
                        });
                    }
                    entries.push(e);
                }
                Block::Leaf(entries)
            }
            _ => return None,
        };
        r.is_empty().then_some(block)
    }
}

/// The next data key of a block.
fn read_key(r: &mut Fields<'_>) -> Option<DataKey> {
    r.array::<KEY_LEN>().map(DataKey::from_secret)
}

fn block_name(level: u8, pos: u64, version: u64) -> String {
    format!("{level}-{pos:x}-{version:x}")
}

fn parse_block_name(name: &str) -> Option<(u8, u64, u64)> {
    let mut p = name.split('-');
    let level = p.next()?.parse().ok()?;
    let pos = u64::from_str_radix(p.next()?, 16).ok()?;
    let version = u64::from_str_radix(p.next()?, 16).ok()?;
    p.next().is_none().then_some((level, pos, version))
}

fn block_aad(level: u8, pos: u64, version: u64) -> Vec<u8> {
    let mut aad = b"veritrail/key-block/v1\0".to_vec();
    aad.push(level);
    aad.extend_from_slice(&pos.to_be_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

fn root_aad(version: u64) -> Vec<u8> {
    [
        b"veritrail/key-root/v1\0".as_slice(),
        &version.to_be_bytes(),
    ]
    .concat()
}

fn encode_root(master_wrap: &DataKey, version: u64, key: &DataKey) -> Result<Vec<u8>, VaultError> {
    let sealed = master_wrap
        .seal(&root_aad(version), key.secret())
        .map_err(local)?;
    Ok([ROOT_MAGIC, &version.to_be_bytes(), &sealed].concat())
}

fn decode_root(master_wrap: &DataKey, bytes: &[u8]) -> Result<(u64, DataKey), VaultError> {
    let bad = || err("the key store's root is not a root file of this version");
    let rest = bytes.strip_prefix(ROOT_MAGIC).ok_or_else(bad)?;
    let version = u64::from_be_bytes(
        rest.get(..8)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?,
    );
    let raw = master_wrap
        .open(&root_aad(version), &rest[8..])
        .map_err(|_| err("the key store's root does not open with this master key"))?;
    let key: [u8; KEY_LEN] = raw.try_into().map_err(|_| bad())?;
    Ok((version, DataKey::from_secret(key)))
}

fn open_block(
    key: &DataKey,
    level: u8,
    pos: u64,
    version: u64,
    bytes: &[u8],
) -> Result<Block, VaultError> {
    let name = block_name(level, pos, version);
    let plain = key
        .open(&block_aad(level, pos, version), bytes)
        .map_err(|_| err(format!("key block {name} does not open")))?;
    let block =
        Block::decode(&plain).ok_or_else(|| err(format!("key block {name} is malformed")))?;
    match (&block, level) {
        (Block::Leaf(_), 0) | (Block::Internal(_), 1..) => Ok(block),
        _ => Err(err(format!("key block {name} is of the wrong kind"))),
    }
}

/// Injected failures of the key store's syncs, a hold on its writes, and
/// the record of what was made durable, in order (tests only).
#[derive(Default)]
pub(super) struct Faults {
    /// 0: none; `n`: the `n`-th sync from now fails, after its data was
    /// written (as an fsync error after the write reached the disk).
    fail_at: AtomicU32,
    /// While closed, a write waits before its first block.
    #[cfg(test)]
    pub writes: crate::store::memory::Gate,
    /// Each step once it is durable: `file <name>` (synced), `dir` (the
    /// directory synced), `rename root` (renamed, the directory synced).
    #[cfg(test)]
    pub durable: std::sync::Mutex<Vec<String>>,
}

impl Faults {
    /// Makes the `nth` sync from now fail (0: none).
    pub fn fail_at(&self, nth: u32) {
        self.fail_at.store(nth, Ordering::SeqCst);
    }

    /// Notes a step that is durable now (tests read the order).
    #[cfg_attr(not(test), allow(unused_variables))]
    fn durable(&self, step: impl FnOnce() -> String) {
        #[cfg(test)]
        self.durable.lock().unwrap().push(step());
    }

    fn sync_point(&self) -> std::io::Result<()> {
        let n = self.fail_at.load(Ordering::SeqCst);
        if n == 0 {
            return Ok(());
        }
        self.fail_at.store(n - 1, Ordering::SeqCst);
        if n == 1 {
            return Err(std::io::Error::other("injected fsync failure"));
        }
        Ok(())
    }
}

/// Where the key store's files live.
#[derive(Clone)]
pub(super) enum KeyHome {
    /// A directory (the data directory's `keys/`).
    Dir(PathBuf),
    /// Meta records of a store that keeps no stale copies (tests, in memory).
    Store(Arc<dyn Store>),
}

impl KeyHome {
    pub(super) fn read(&self, name: &str) -> Result<Option<Vec<u8>>, VaultError> {
        match self {
            KeyHome::Dir(d) => match fs::read(d.join(name)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(local(format!("couldn't read key file {name}: {e}"))),
            },
            KeyHome::Store(s) => Ok(s.record(RecordSpace::Meta, &store_key(name))?),
        }
    }

    /// Writes a file that no root names yet, and syncs it.
    fn write(&self, name: &str, bytes: &[u8], faults: &Faults) -> std::io::Result<()> {
        match self {
            KeyHome::Dir(d) => {
                let mut options = OpenOptions::new();
                options.write(true).create(true).truncate(true);
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut f = options.open(d.join(name))?;
                f.write_all(bytes)?;
                f.sync_all()?;
                faults.durable(|| format!("file {name}"));
            }
            KeyHome::Store(s) => s
                .put_record(RecordSpace::Meta, &store_key(name), bytes)
                .map_err(std::io::Error::other)?,
        }
        faults.sync_point()
    }

    fn sync_dir(&self, faults: &Faults) -> std::io::Result<()> {
        if let KeyHome::Dir(d) = self {
            durable::sync_dir(d)?;
            faults.durable(|| "dir".into());
        }
        faults.sync_point()
    }

    fn rename_root_new(&self, faults: &Faults) -> std::io::Result<()> {
        match self {
            KeyHome::Dir(d) => {
                durable::rename(&d.join(ROOT_NEW), &d.join(ROOT_FILE))?;
                faults.durable(|| "rename root".into());
                Ok(())
            }
            KeyHome::Store(s) => {
                let v = s
                    .record(RecordSpace::Meta, &store_key(ROOT_NEW))
                    .map_err(std::io::Error::other)?
                    .unwrap_or_default();
                s.commit_records(&RecordBatch {
                    put: vec![(RecordSpace::Meta, store_key(ROOT_FILE), v)],
                    delete: vec![(RecordSpace::Meta, store_key(ROOT_NEW))],
                    ..RecordBatch::default()
                })
                .map_err(std::io::Error::other)
            }
        }
    }

    /// Replaces the root: `root.new` written and synced, its directory
    /// entry synced, renamed over `root`, the directory synced.
    fn replace_root(&self, bytes: &[u8], faults: &Faults) -> std::io::Result<()> {
        self.write(ROOT_NEW, bytes, faults)?;
        self.sync_dir(faults)?;
        self.rename_root_new(faults)?;
        faults.sync_point()
    }

    /// Replaces a small file of the key store whole (not a block).
    pub(super) fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<(), VaultError> {
        match self {
            KeyHome::Dir(d) => durable::replace(&d.join(name), bytes, Secrecy::Secret)
                .map_err(|e| local(format!("couldn't write key file {name}: {e}"))),
            KeyHome::Store(s) => Ok(s.put_record(RecordSpace::Meta, &store_key(name), bytes)?),
        }
    }

    fn remove(&self, name: &str) {
        let result = match self {
            KeyHome::Dir(d) => match fs::remove_file(d.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
            KeyHome::Store(s) => s
                .commit_records(&RecordBatch {
                    delete: vec![(RecordSpace::Meta, store_key(name))],
                    ..RecordBatch::default()
                })
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            // An old block left behind opens with no key that exists.
            tracing::warn!(file = name, error = %e, "couldn't remove an old key block");
        }
    }

    /// The block files present (directories only; a store keeps none stale).
    fn blocks(&self) -> Result<Vec<(u8, u64, u64)>, VaultError> {
        let KeyHome::Dir(d) = self else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in fs::read_dir(d).map_err(local)? {
            let name = entry.map_err(local)?.file_name();
            if let Some(b) = parse_block_name(&name.to_string_lossy()) {
                out.push(b);
            }
        }
        Ok(out)
    }
}

fn store_key(name: &str) -> Vec<u8> {
    [STORE_PREFIX, name.as_bytes()].concat()
}

/// The open key store.
pub(super) struct KeyStore {
    home: KeyHome,
    master_wrap: DataKey,
    version: u64,
    root_key: DataKey,
    root: BTreeMap<u8, Child>,
    /// Decoded blocks below the root by (level, position): this process
    /// is the only writer, so they stay current.
    cache: HashMap<(u8, u64), Arc<Block>>,
    /// Why the store refuses to write until it is reopened.
    broken: Option<String>,
    /// The version of the write prepared and not finished yet.
    in_flight: Option<u64>,
    faults: Arc<Faults>,
}

impl KeyStore {
    /// Opens the key store in `home`, creating an empty one if there is
    /// none, and settles a root replacement that a crash or a failed sync
    /// interrupted.
    pub fn open(home: KeyHome, master_wrap: DataKey) -> Result<KeyStore, VaultError> {
        if let KeyHome::Dir(d) = &home {
            fs::create_dir_all(d)
                .map_err(|e| local(format!("couldn't create {}: {e}", d.display())))?;
            fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(local)?;
        }
        if let Some(bytes) = home.read(ROOT_NEW)? {
            let usable = decode_root(&master_wrap, &bytes).and_then(|(v, key)| {
                let root = home
                    .read(&block_name(ROOT_LEVEL, 0, v))?
                    .ok_or_else(|| err("missing"))?;
                open_block(&key, ROOT_LEVEL, 0, v, &root).map(|_| ())
            });
            match usable {
                // Complete and synced: it may already be what the events
                // were committed against; it holds every key the old root
                // holds that was not destroyed.
                Ok(()) => home.rename_root_new(&Faults::default()).map_err(local)?,
                // Torn: it never replaced the root.
                Err(_) => home.remove(ROOT_NEW),
            }
        }
        let mut ks = KeyStore::empty(home, master_wrap, None)?;
        match ks.home.read(ROOT_FILE)? {
            Some(bytes) => {
                ks.load_root(&bytes)?;
                ks.remove_stale()?;
            }
            None if ks.home.blocks()?.is_empty() => ks.write(BTreeMap::new(), true)?,
            None => {
                return Err(err(
                    "refusing to start: the key store has blocks but no root file; without it no event can be read",
                ));
            }
        }
        Ok(ks)
    }

    /// Opens the key store in `home` without writing anything (an offline
    /// check): a store without a root is empty.
    pub fn open_read_only(home: KeyHome, master_wrap: DataKey) -> Result<KeyStore, VaultError> {
        let mut ks = KeyStore::empty(home, master_wrap, Some("opened for a check".into()))?;
        if let Some(bytes) = ks.home.read(ROOT_FILE)? {
            ks.load_root(&bytes)?;
        }
        Ok(ks)
    }

    /// An empty store in `home` (nothing read or written yet).
    fn empty(
        home: KeyHome,
        master_wrap: DataKey,
        broken: Option<String>,
    ) -> Result<KeyStore, VaultError> {
        Ok(KeyStore {
            home,
            master_wrap,
            version: 0,
            root_key: random_key()?,
            root: BTreeMap::new(),
            cache: HashMap::new(),
            broken,
            in_flight: None,
            faults: Arc::new(Faults::default()),
        })
    }

    /// Takes the root file `bytes` and the root block it names as current.
    fn load_root(&mut self, bytes: &[u8]) -> Result<(), VaultError> {
        let (version, key) = decode_root(&self.master_wrap, bytes)?;
        let block = self
            .home
            .read(&block_name(ROOT_LEVEL, 0, version))?
            .ok_or_else(|| err("the key store's root block is missing"))?;
        let Block::Internal(root) = open_block(&key, ROOT_LEVEL, 0, version, &block)? else {
            return Err(err("the key store's root block is a leaf"));
        };
        (self.version, self.root_key, self.root) = (version, key, root);
        Ok(())
    }

    /// Removes block files that the root does not name: versions above it
    /// (a write that never became current) and versions below each
    /// position's newest (replaced, left by a crash before their removal).
    fn remove_stale(&self) -> Result<(), VaultError> {
        let mut newest: HashMap<(u8, u64), u64> = HashMap::new();
        let mut stale = Vec::new();
        for (level, pos, v) in self.home.blocks()? {
            if v > self.version {
                stale.push((level, pos, v));
                continue;
            }
            match newest.insert((level, pos), v) {
                Some(old) if old > v => {
                    newest.insert((level, pos), old);
                    stale.push((level, pos, v));
                }
                Some(old) => stale.push((level, pos, old)),
                None => {}
            }
        }
        for (level, pos, v) in stale {
            self.home.remove(&block_name(level, pos, v));
        }
        Ok(())
    }

    /// The fault switch (tests inject failed syncs through it).
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }

    /// The child entry naming block (`level`, `pos`), from its parent.
    fn child_ref(&mut self, level: u8, pos: u64) -> Result<Option<Child>, VaultError> {
        if level == ROOT_LEVEL {
            return Ok(Some(Child {
                version: self.version,
                key: self.root_key.clone(),
            }));
        }
        let idx = (pos % FANOUT) as u8;
        if level + 1 == ROOT_LEVEL {
            return Ok(self.root.get(&idx).cloned());
        }
        match self.block(level + 1, pos / FANOUT)?.as_deref() {
            Some(Block::Internal(children)) => Ok(children.get(&idx).cloned()),
            _ => Ok(None),
        }
    }

    fn block(&mut self, level: u8, pos: u64) -> Result<Option<Arc<Block>>, VaultError> {
        if level == ROOT_LEVEL {
            return Ok(Some(Arc::new(Block::Internal(self.root.clone()))));
        }
        if let Some(b) = self.cache.get(&(level, pos)) {
            return Ok(Some(b.clone()));
        }
        let Some(c) = self.child_ref(level, pos)? else {
            return Ok(None);
        };
        let name = block_name(level, pos, c.version);
        let bytes = self
            .home
            .read(&name)?
            .ok_or_else(|| err(format!("key block {name} is missing")))?;
        let block = Arc::new(open_block(&c.key, level, pos, c.version, &bytes)?);
        if self.cache.len() >= MAX_CACHED_BLOCKS {
            // Bounded memory: start over rather than track recency.
            self.cache.clear();
        }
        self.cache.insert((level, pos), block.clone());
        Ok(Some(block))
    }

    /// The entries of leaf block `pos`; `None` if it was never written.
    pub fn leaf(&mut self, pos: u64) -> Result<Option<Arc<Vec<Entry>>>, VaultError> {
        Ok(match self.block(0, pos)?.as_deref() {
            Some(Block::Leaf(entries)) => Some(Arc::new(entries.clone())),
            _ => None,
        })
    }

    /// Numbered key `n`; `None` if its leaf was never written.
    pub fn entry(&mut self, n: u64) -> Result<Option<Entry>, VaultError> {
        if n > MAX_KEY_NUMBER {
            return Ok(None);
        }
        Ok(match self.block(0, n / LEAF_ENTRIES)?.as_deref() {
            Some(Block::Leaf(entries)) => Some(entries[(n % LEAF_ENTRIES) as usize].clone()),
            _ => None,
        })
    }

    /// Writes `leaves` (position → all its entries) and the path from each
    /// to the root, durably, before returning. With `fresh`, every block
    /// written and the root get new random keys (a destruction); without,
    /// blocks keep their keys (an addition). Any failure latches the store.
    pub fn write(
        &mut self,
        leaves: BTreeMap<u64, Vec<Entry>>,
        fresh: bool,
    ) -> Result<(), VaultError> {
        let prepared = self.prepare_write(leaves, fresh)?;
        let persisted = prepared.persist();
        self.finish_write(prepared, persisted)
    }

    /// Whether a write prepared by [`KeyStore::prepare_write`] is not
    /// finished yet: no other write may be prepared until it is.
    pub fn writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The first part of [`KeyStore::write`]: the new blocks and root,
    /// sealed, in memory. The store reads as before until
    /// [`KeyStore::finish_write`] takes the write's outcome; meanwhile no
    /// other write may be prepared, and the caller may persist it without
    /// holding the store (reads go on from the current blocks, which stay
    /// in place until it is finished).
    pub fn prepare_write(
        &mut self,
        leaves: BTreeMap<u64, Vec<Entry>>,
        fresh: bool,
    ) -> Result<PreparedWrite, VaultError> {
        if let Some(why) = &self.broken {
            return Err(VaultError::Store(crate::store::StoreError::Backend(
                format!("the key store refuses writes until the log restarts: {why}"),
            )));
        }
        if self.in_flight.is_some() {
            return Err(local(
                "a key store write was prepared while another one is under way (internal error)",
            ));
        }
        match self.prepare_unlatched(leaves, fresh) {
            Ok(p) => {
                self.in_flight = Some(p.version);
                Ok(p)
            }
            Err(e) => {
                self.broken = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn prepare_unlatched(
        &mut self,
        leaves: BTreeMap<u64, Vec<Entry>>,
        fresh: bool,
    ) -> Result<PreparedWrite, VaultError> {
        if leaves.keys().any(|p| *p > MAX_KEY_NUMBER / LEAF_ENTRIES) {
            return Err(local("the key store is full"));
        }
        let v = self.version + 1;
        let mut level_blocks: BTreeMap<u64, Block> = leaves
            .into_iter()
            .map(|(p, e)| (p, Block::Leaf(e)))
            .collect();
        let mut files = Vec::new();
        // (level, position, replaced version, block)
        let mut written: Vec<(u8, u64, Option<u64>, Block)> = Vec::new();
        let mut new_root = None;
        for level in 0..=ROOT_LEVEL {
            if level == ROOT_LEVEL && level_blocks.is_empty() {
                level_blocks.insert(0, Block::Internal(self.root.clone()));
            }
            let mut parents: BTreeMap<u64, BTreeMap<u8, Child>> = BTreeMap::new();
            for (pos, block) in std::mem::take(&mut level_blocks) {
                let old = self.child_ref(level, pos)?;
                let key = match (&old, fresh) {
                    (Some(c), false) => c.key.clone(),
                    _ => random_key()?,
                };
                let sealed = key
                    .seal(&block_aad(level, pos, v), &block.encode())
                    .map_err(local)?;
                files.push((block_name(level, pos, v), sealed));
                if level == ROOT_LEVEL {
                    if let Block::Internal(children) = &block {
                        new_root = Some((key.clone(), children.clone()));
                    }
                } else {
                    let parent = pos / FANOUT;
                    if let std::collections::btree_map::Entry::Vacant(slot) = parents.entry(parent)
                    {
                        slot.insert(match self.block(level + 1, parent)?.as_deref() {
                            Some(Block::Internal(c)) => c.clone(),
                            _ => BTreeMap::new(),
                        });
                    }
                    if let Some(children) = parents.get_mut(&parent) {
                        children.insert((pos % FANOUT) as u8, Child { version: v, key });
                    }
                }
                written.push((level, pos, old.map(|c| c.version), block));
            }
            level_blocks = parents
                .into_iter()
                .map(|(p, c)| (p, Block::Internal(c)))
                .collect();
        }
        let (root_key, root) = new_root.ok_or_else(|| local("no root block was written"))?;
        let root_file = encode_root(&self.master_wrap, v, &root_key)?;
        Ok(PreparedWrite {
            version: v,
            home: self.home.clone(),
            faults: self.faults.clone(),
            files,
            root_file,
            root_key,
            root,
            written,
        })
    }

    /// The last part of [`KeyStore::write`]: takes `prepared`, whose
    /// [`PreparedWrite::persist`] answered `persisted`, as current, and
    /// only then removes the blocks it replaced; a failure latches the
    /// store (both roots and all their blocks stay, for the next open to
    /// settle on one).
    pub fn finish_write(
        &mut self,
        prepared: PreparedWrite,
        persisted: Result<(), VaultError>,
    ) -> Result<(), VaultError> {
        if self.in_flight != Some(prepared.version) {
            return Err(local(
                "a key store write was finished that was not under way (internal error)",
            ));
        }
        self.in_flight = None;
        if let Err(e) = persisted {
            self.broken = Some(e.to_string());
            return Err(e);
        }
        // Durable: the new blocks are current, the old ones named by nothing.
        let v = prepared.version;
        self.version = v;
        self.root_key = prepared.root_key;
        self.root = prepared.root;
        for (level, pos, old, block) in prepared.written {
            if let Some(old) = old
                && old != v
            {
                self.home.remove(&block_name(level, pos, old));
            }
            if level < ROOT_LEVEL {
                if self.cache.len() >= MAX_CACHED_BLOCKS {
                    self.cache.clear();
                }
                self.cache.insert((level, pos), Arc::new(block));
            }
        }
        Ok(())
    }
}

/// A write of the key store between [`KeyStore::prepare_write`] and
/// [`KeyStore::finish_write`]: new versions of the blocks on its paths and
/// the root file naming them, sealed.
pub(super) struct PreparedWrite {
    version: u64,
    home: KeyHome,
    faults: Arc<Faults>,
    files: Vec<(String, Vec<u8>)>,
    root_file: Vec<u8>,
    root_key: DataKey,
    root: BTreeMap<u8, Child>,
    written: Vec<(u8, u64, Option<u64>, Block)>,
}

impl PreparedWrite {
    /// Makes the write durable: each new block written and synced, their
    /// directory synced, then the root replaced. It needs nothing of the
    /// open store (no block is removed here), so it runs without its lock.
    pub fn persist(&self) -> Result<(), VaultError> {
        let io = |what: &str, e: std::io::Error| {
            VaultError::Store(crate::store::StoreError::Backend(format!(
                "key store: couldn't {what}: {e}"
            )))
        };
        #[cfg(test)]
        self.faults.writes.pass();
        for (name, sealed) in &self.files {
            self.home
                .write(name, sealed, &self.faults)
                .map_err(|e| io("write a key block", e))?;
        }
        self.home
            .sync_dir(&self.faults)
            .map_err(|e| io("sync the key store's directory", e))?;
        self.home
            .replace_root(&self.root_file, &self.faults)
            .map_err(|e| io("replace the key store's root", e))
    }
}

/// Copies the current state of the key store in `from` (which a running
/// log may be changing) into the new directory `to`, every file synced,
/// the root last. Opening every internal block proves `master_wrap` opens
/// it. Returns the number of blocks copied.
pub fn copy_current(from: &Path, to: &Path, master_wrap: &DataKey) -> Result<u64, VaultError> {
    copy_current_into(from, &KeyHome::Dir(to.to_path_buf()), master_wrap)
}

/// As [`copy_current`], into the records of `store` as [`KeyHome::Store`]
/// keeps them (the remote backend's key store): blocks first, `root`
/// last, so the copy opens only once it is whole. Copying again over a
/// partial copy of the same store finishes it.
pub fn copy_current_to_store(
    from: &Path,
    store: Arc<dyn Store>,
    master_wrap: &DataKey,
) -> Result<u64, VaultError> {
    copy_current_into(from, &KeyHome::Store(store), master_wrap)
}

fn copy_current_into(from: &Path, to: &KeyHome, master_wrap: &DataKey) -> Result<u64, VaultError> {
    let mut last = None;
    for _ in 0..MAX_READ_ATTEMPTS {
        match copy_once(from, to, master_wrap, &Faults::default()) {
            Ok(n) => return Ok(n),
            Err(Retry::Again(why)) => last = Some(why),
            Err(Retry::Fail(e)) => return Err(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Err(err(format!(
        "the key store in {} kept changing while it was copied: {}",
        from.display(),
        last.unwrap_or_default()
    )))
}

enum Retry {
    Again(String),
    Fail(VaultError),
}

impl From<VaultError> for Retry {
    fn from(e: VaultError) -> Retry {
        Retry::Fail(e)
    }
}

/// One attempt of [`copy_current_into`]: every block and the legacy file
/// written and synced, the directory synced, then the root replaced
/// durably, so a crash leaves a copy that has no root or opens whole.
fn copy_once(
    from: &Path,
    home: &KeyHome,
    master_wrap: &DataKey,
    faults: &Faults,
) -> Result<u64, Retry> {
    if let KeyHome::Dir(to) = home {
        if to.exists() {
            fs::remove_dir_all(to).map_err(local)?;
        }
        fs::create_dir_all(to).map_err(local)?;
        fs::set_permissions(to, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .map_err(local)?;
    }
    let read = |name: &str| -> Result<Vec<u8>, Retry> {
        match fs::read(from.join(name)) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Retry::Again(format!("{name} was replaced")))
            }
            Err(e) => Err(Retry::Fail(local(format!(
                "couldn't read key file {name}: {e}"
            )))),
        }
    };
    let root_bytes = read(ROOT_FILE)?;
    let (version, root_key) = decode_root(master_wrap, &root_bytes)?;
    let mut stack = vec![(
        ROOT_LEVEL,
        0u64,
        Child {
            version,
            key: root_key,
        },
    )];
    let mut copied = 0;
    while let Some((level, pos, c)) = stack.pop() {
        let name = block_name(level, pos, c.version);
        let bytes = read(&name)?;
        if let Block::Internal(children) = open_block(&c.key, level, pos, c.version, &bytes)? {
            for (idx, child) in children {
                stack.push((level - 1, pos * FANOUT + u64::from(idx), child));
            }
        }
        home.write(&name, &bytes, faults).map_err(local)?;
        copied += 1;
    }
    if let Ok(legacy) = fs::read(from.join(super::keys::LEGACY_FILE)) {
        home.write(super::keys::LEGACY_FILE, &legacy, faults)
            .map_err(local)?;
    }
    home.sync_dir(faults).map_err(local)?;
    home.replace_file(ROOT_FILE, &root_bytes)?;
    faults.durable(|| "replace root".into());
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrap() -> DataKey {
        DataKey::from_secret([7; 32])
    }

    #[test]
    fn puncturing_removes_one_offset_and_keeps_every_other() {
        let mut e = new_entry().unwrap();
        let before: Vec<_> = (0..=255u8).map(|i| offset_key(&e, i).unwrap()).collect();
        assert!(puncture(&mut e, 77));
        assert!(puncture(&mut e, 78));
        assert!(!puncture(&mut e, 77));
        for i in 0..=255u8 {
            match i {
                77 | 78 => assert!(offset_key(&e, i).is_none()),
                _ => assert!(offset_key(&e, i).as_ref() == Some(&before[usize::from(i)])),
            }
        }
        assert!(e.len() <= 16, "{}", e.len());
        let all = expand(&e);
        for i in 0..=255u8 {
            assert!(all[usize::from(i)] == offset_key(&e, i), "{i}");
        }
        assert!(whole_key(&e).is_none());
    }

    #[test]
    fn a_destruction_writes_one_block_per_level_and_old_copies_open_with_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join(KEYS_DIR);
        let mut ks = KeyStore::open(KeyHome::Dir(keys.clone()), wrap()).unwrap();
        // Hundreds of leaves: the log's size is not the destruction's cost.
        let leaves: BTreeMap<u64, Vec<Entry>> =
            (0..300).map(|p| (p * 64, new_leaf().unwrap())).collect();
        ks.write(leaves, false).unwrap();
        let victim = 150 * 64 * LEAF_ENTRIES + 3;
        let old_root = fs::read(keys.join(ROOT_FILE)).unwrap();
        let before: Vec<String> = fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut leaf = (*ks.leaf(victim / LEAF_ENTRIES).unwrap().unwrap()).clone();
        leaf[3].clear();
        ks.write(BTreeMap::from([(victim / LEAF_ENTRIES, leaf)]), true)
            .unwrap();
        let after: Vec<String> = fs::read_dir(&keys)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let new: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
        assert_eq!(new.len(), usize::from(ROOT_LEVEL) + 1, "{new:?}");
        assert_eq!(after.len(), before.len());
        assert!(ks.entry(victim).unwrap().unwrap().is_empty());
        assert!(ks.entry(victim + 1).unwrap().is_some());
        // The old root opens with the master key, but names blocks whose
        // keys are gone; a reopened store has the destruction.
        assert_ne!(
            decode_root(&wrap(), &old_root).unwrap().1.secret(),
            ks.root_key.secret()
        );
        drop(ks);
        let mut ks = KeyStore::open(KeyHome::Dir(keys.clone()), wrap()).unwrap();
        assert!(ks.entry(victim).unwrap().unwrap().is_empty());
        let copy = dir.path().join("copy");
        assert_eq!(
            copy_current(&keys, &copy, &wrap()).unwrap(),
            (after.len() - 1) as u64
        );
        let mut copied = KeyStore::open(KeyHome::Dir(copy), wrap()).unwrap();
        assert!(copied.entry(victim).unwrap().unwrap().is_empty());
        assert!(
            copied.entry(victim + 1).unwrap().unwrap().len() == 1
                && offset_key(&copied.entry(victim + 1).unwrap().unwrap(), 9)
                    == offset_key(&ks.entry(victim + 1).unwrap().unwrap(), 9)
        );
        assert!(KeyStore::open(KeyHome::Dir(keys), DataKey::from_secret([8; 32])).is_err());
    }

    /// The names of the files in `dir`.
    fn files(dir: &Path) -> std::collections::BTreeSet<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_write_and_a_copy_sync_each_block_and_the_directory_before_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join(KEYS_DIR);
        let mut ks = KeyStore::open(KeyHome::Dir(keys.clone()), wrap()).unwrap();
        ks.write(BTreeMap::from([(0, new_leaf().unwrap())]), false)
            .unwrap();
        let before = files(&keys);
        let faults = ks.faults();
        faults.durable.lock().unwrap().clear();
        // A destruction: a new version of each block on the key's path.
        let mut leaf = (*ks.leaf(0).unwrap().unwrap()).clone();
        leaf[0].clear();
        ks.write(BTreeMap::from([(0, leaf)]), true).unwrap();
        let steps = faults.durable.lock().unwrap().clone();
        // The new blocks, their directory entries, `root.new` and its entry
        // are durable before the rename makes the root name them.
        let root = ["dir", "file root.new", "dir", "rename root"].map(String::from);
        assert!(steps.ends_with(&root), "{steps:?}");
        let synced: std::collections::BTreeSet<String> = steps[..steps.len() - root.len()]
            .iter()
            .map(|s| s.strip_prefix("file ").unwrap_or(s).to_string())
            .collect();
        let new: std::collections::BTreeSet<String> =
            files(&keys).difference(&before).cloned().collect();
        assert_eq!(synced, new, "{steps:?}");
        assert_eq!(new.len(), usize::from(ROOT_LEVEL) + 1);

        // Restore's copy: every file synced, then the directory, then the
        // root replaced durably, last.
        let to = dir.path().join("copy");
        let faults = Faults::default();
        let copied = match copy_once(&keys, &KeyHome::Dir(to.clone()), &wrap(), &faults) {
            Ok(n) => n,
            Err(Retry::Again(why)) => panic!("{why}"),
            Err(Retry::Fail(e)) => panic!("{e}"),
        };
        let steps = faults.durable.lock().unwrap().clone();
        assert!(
            steps.ends_with(&["dir".into(), "replace root".into()]),
            "{steps:?}"
        );
        let mut blocks = files(&to);
        assert!(blocks.remove(ROOT_FILE));
        let synced: std::collections::BTreeSet<String> = steps[..steps.len() - 2]
            .iter()
            .map(|s| s.strip_prefix("file ").unwrap().to_string())
            .collect();
        assert_eq!(synced, blocks);
        assert_eq!(copied as usize, blocks.len());
        assert_eq!(files(&to), files(&keys));
    }

    #[test]
    fn a_failed_sync_keeps_both_roots_latches_and_reopening_settles_on_one() {
        for fail_at in 1..=8 {
            let dir = tempfile::tempdir().unwrap();
            let keys = dir.path().join(KEYS_DIR);
            let mut ks = KeyStore::open(KeyHome::Dir(keys.clone()), wrap()).unwrap();
            ks.write(BTreeMap::from([(0, new_leaf().unwrap())]), false)
                .unwrap();
            let kept = ks.entry(1).unwrap().unwrap();
            let mut leaf = (*ks.leaf(0).unwrap().unwrap()).clone();
            leaf[0].clear();
            ks.faults().fail_at(fail_at);
            let failed = ks.write(BTreeMap::from([(0, leaf)]), true).is_err();
            if failed {
                // Latched: nothing more is written.
                assert!(ks.write(BTreeMap::new(), false).is_err(), "{fail_at}");
            }
            drop(ks);
            let mut ks = KeyStore::open(KeyHome::Dir(keys.clone()), wrap()).unwrap();
            let e1 = ks.entry(1).unwrap().unwrap();
            assert!(offset_key(&e1, 5) == offset_key(&kept, 5), "{fail_at}");
            // Either outcome, whole: the old key or none.
            let e0 = ks.entry(0).unwrap().unwrap();
            assert!(e0.is_empty() || e0.len() == 1, "{fail_at}");
            assert!(!keys.join(ROOT_NEW).exists());
            ks.write(BTreeMap::new(), false).unwrap();
        }
    }
}
