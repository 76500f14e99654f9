//! Immutable blobs as files beside the database: full hash tiles, full
//! entry bundles, and the sealed-body chunk of each full bundle, under
//! `<db>/objects/` at C2SP paths (`tile/<L>/x001/x234/067`,
//! `entries/...`, `bodies/...`), and the tile packs derived from the
//! level-0 tiles (`packs/...`, see `packs`).
//!
//! Why files: sled 0.34's open time, its periodic reopen and its memory
//! grow with its page count, which these blobs dominated (eight or more
//! KiB per 256 leaves, three times over). One file per blob is the plain
//! choice: a log of 10 million events makes about 120,000 files in
//! directories of at most 1,000 entries, which the file system handles
//! without effort, and each file is written once and never appended to,
//! so no packing, index or garbage collection is needed. Tiles and
//! bundles are stored byte for byte as served (a flipped byte is found
//! against the tree, as in sled); a body chunk keeps the record checksum
//! it has in sled.
//!
//! Invariant: a blob is written before the sled commit that moves the tree
//! size past it (temporary file, fsync, rename, then one fsync of each
//! directory touched), and a reader reads a file only when the committed
//! tree size covers it. A file beyond the committed size is a leftover of
//! a batch that never committed: nobody reads it, and the commit that
//! completes that blob replaces it by rename (its content may differ), so
//! an existing file is never taken as proof of anything. Files are never
//! deleted.
//!
//! Reads keep descriptors open, oldest dropped first: a proof reads a few
//! hashes of one tile, and opening the file (a path walk, `open`, `fstat`,
//! `close`) cost more than the read. How many is [`kept_descriptors`] of
//! the process's limit when the database opens: half of it, between
//! [`MIN_OPEN_FILES`] and [`MAX_OPEN_FILES`], whatever the log's size (`serve`
//! raises its soft limit to the hard one first, [`raise_descriptor_limit`]).
//! A descriptor is kept only for a blob the committed tree covers, whose
//! file no commit renames over again; a write drops the descriptors of
//! the blobs it writes all the same, so a read never sees a replaced
//! file.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::durable::{self, PendingFile, Secrecy};
use crate::store::StoreError;
use crate::tiles::{TILE_WIDTH, encode_tile_index};

/// The directory of the blob files, inside the database's.
pub(super) const DIR: &str = "objects";
/// Descriptors of blob files kept open for reads at least (a quarter of
/// the 1,024 a process may open by default, beside the runs' and the
/// sockets).
pub(crate) const MIN_OPEN_FILES: usize = 256;
/// Descriptors kept at most, whatever the limit: the level-0 tiles of a
/// log of 16 million events, each descriptor a few hundred bytes of kernel
/// memory.
pub(crate) const MAX_OPEN_FILES: usize = 65_536;

/// How many blob descriptors a process that may open `limit` files keeps
/// (`None`: no limit): half of them, so sockets, sled, the runs and the
/// search index keep the other half, within [`MIN_OPEN_FILES`] and
/// [`MAX_OPEN_FILES`].
pub(crate) fn kept_descriptors(limit: Option<u64>) -> usize {
    let half = limit.map_or(u64::MAX, |l| l / 2);
    usize::try_from(half)
        .unwrap_or(usize::MAX)
        .clamp(MIN_OPEN_FILES, MAX_OPEN_FILES)
}

/// The process's soft limit of open files now (`None`: unlimited).
pub(super) fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Raises the process's soft limit of open files to its hard limit (as a
/// server should: the soft default of 1,024 is for programs that never
/// need more), so that the blob files a log's proofs read stay open.
/// Returns the soft limit now; a refusal leaves it as it was.
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        // Refused (a hard limit above the kernel's `nr_open`): the soft
        // limit stays, and fewer descriptors are kept.
        let _ = setrlimit(Resource::Nofile, raised);
    }
    descriptor_limit()
}

/// One immutable blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Blob {
    /// A full hash tile `(level, index)`.
    Tile(u8, u64),
    /// A full entry bundle.
    Bundle(u64),
    /// The sealed bodies of a full bundle, as one chunk.
    Bodies(u64),
    /// The tile pack of full level-1 tile `n`: copies of its 256 level-0
    /// tiles and their upper nodes (derived data, see `packs`).
    Pack(u64),
}

impl Blob {
    /// The path below [`DIR`].
    fn relative(self) -> String {
        match self {
            Blob::Tile(level, n) => format!("tile/{level}/{}", encode_tile_index(n)),
            Blob::Bundle(n) => format!("entries/{}", encode_tile_index(n)),
            Blob::Bodies(n) => format!("bodies/{}", encode_tile_index(n)),
            Blob::Pack(n) => format!("packs/{}", encode_tile_index(n)),
        }
    }

    /// The smallest tree size that holds the whole blob.
    pub(crate) fn full_at(self) -> u64 {
        let (leaves_per_index, n) = match self {
            Blob::Tile(level, n) => (
                TILE_WIDTH
                    .checked_pow(u32::from(level) + 1)
                    .unwrap_or(u64::MAX),
                n,
            ),
            Blob::Bundle(n) | Blob::Bodies(n) => (TILE_WIDTH, n),
            Blob::Pack(n) => (TILE_WIDTH * TILE_WIDTH, n),
        };
        n.saturating_add(1).saturating_mul(leaves_per_index)
    }

    /// Whether a tree of `size` leaves holds the whole blob.
    pub(crate) fn committed_at(self, size: u64) -> bool {
        self.full_at() <= size
    }

    /// The blob's name in messages: `tile file objects/tile/0/001`.
    pub(crate) fn name(self) -> String {
        let kind = match self {
            Blob::Tile(..) => "tile",
            Blob::Bundle(_) => "entry bundle",
            Blob::Bodies(_) => "sealed body",
            Blob::Pack(_) => "tile pack",
        };
        format!("{kind} file {DIR}/{}", self.relative())
    }
}

/// The blob files of one database directory.
pub(crate) struct Files {
    root: PathBuf,
    /// At most [`kept_descriptors`] of them.
    open: Mutex<OpenFiles<Blob>>,
    /// Fault injection: the next write fails after its temporary file.
    #[cfg(test)]
    pub(super) fail_next_write: std::sync::atomic::AtomicBool,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("couldn't {what} {}: {e}", path.display()))
}

impl Files {
    /// The blob files of the database in `db_dir`.
    pub(crate) fn new(db_dir: &Path) -> Files {
        Files::keeping(db_dir, kept_descriptors(descriptor_limit()))
    }

    /// The blob files in `db_dir`, keeping at most `kept` descriptors open.
    fn keeping(db_dir: &Path, kept: usize) -> Files {
        Files {
            root: db_dir.join(DIR),
            open: Mutex::new(OpenFiles::with_limit(kept)),
            #[cfg(test)]
            fail_next_write: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Where `blob` lives.
    pub(crate) fn path(&self, blob: Blob) -> PathBuf {
        self.root.join(blob.relative())
    }

    /// The bytes of `blob`'s file, `None` if there is none. Only for a
    /// blob the committed tree size covers (its descriptor is kept open).
    pub(crate) fn read(&self, blob: Blob) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((file, len)) = self.open_with_len(blob)? else {
            return Ok(None);
        };
        self.read_at(blob, &file, 0, usize::try_from(len).unwrap_or(usize::MAX))
            .map(Some)
    }

    /// Bytes `at .. at + len` of `blob`'s file, `None` if there is none;
    /// one `pread`, so a proof reads the few hashes it needs of a tile.
    /// A file that is not `full_len` bytes long is torn: an error, as
    /// reading it whole would be. Only for a blob the committed tree size
    /// covers (its descriptor is kept open).
    pub(crate) fn read_part(
        &self,
        blob: Blob,
        full_len: u64,
        at: u64,
        len: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let Some((file, found)) = self.open_with_len(blob)? else {
            return Ok(None);
        };
        if found != full_len || at + len as u64 > full_len {
            return Err(StoreError::Corrupt(format!(
                "{} is torn or read past its end: {found} bytes, {full_len} expected, \
                 {len} asked at {at}",
                blob.name()
            )));
        }
        self.read_at(blob, &file, at, len).map(Some)
    }

    /// `blob`'s open file and its length now, `None` if there is no file.
    /// A kept descriptor of a file since unlinked (damage, or a hand
    /// restoring a database) is dropped and the path opened again, so a
    /// missing file reads as missing.
    fn open_with_len(&self, blob: Blob) -> Result<Option<(Arc<File>, u64)>, StoreError> {
        use std::os::unix::fs::MetadataExt;
        for _ in 0..2 {
            let Some(file) = self.open(blob)? else {
                return Ok(None);
            };
            let meta = file
                .metadata()
                .map_err(|e| io_error("stat", &self.path(blob), e))?;
            if meta.nlink() > 0 {
                return Ok(Some((file, meta.len())));
            }
            self.open_files().forget(blob);
        }
        Ok(None)
    }

    fn read_at(&self, blob: Blob, file: &File, at: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, at)
            .map_err(|e| io_error("read", &self.path(blob), e))?;
        Ok(bytes)
    }

    /// `blob`'s open file: a kept descriptor, or a new one kept in place of
    /// the oldest. `None` if there is no file.
    fn open(&self, blob: Blob) -> Result<Option<Arc<File>>, StoreError> {
        if let Some(file) = self.open_files().get(blob) {
            return Ok(Some(file));
        }
        let path = self.path(blob);
        let file = match File::open(&path) {
            Ok(f) => Arc::new(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("open", &path, e)),
        };
        self.open_files().keep(blob, file.clone());
        Ok(Some(file))
    }

    fn open_files(&self) -> MutexGuard<'_, OpenFiles<Blob>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bytes of every blob file (walks them all: benchmarks only).
    pub(crate) fn size_on_disk(&self) -> u64 {
        let mut total = 0;
        let mut todo = vec![self.root.clone()];
        while let Some(dir) = todo.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                match entry.metadata() {
                    Ok(m) if m.is_dir() => todo.push(entry.path()),
                    Ok(m) => total += m.len(),
                    Err(_) => {}
                }
            }
        }
        total
    }

    /// Writes every blob durably (see the module comment): each through a
    /// fsynced temporary file renamed over its path, then one fsync of
    /// every directory that got a new name. On an error some blobs may
    /// have their new content and others not; none is half written, and
    /// no earlier file is removed.
    pub(crate) fn write_all(&self, blobs: &[(Blob, &[u8])]) -> Result<(), StoreError> {
        let mut dirs = BTreeSet::new();
        for (blob, bytes) in blobs {
            let path = self.path(*blob);
            let parent = path.parent().unwrap_or(&self.root).to_path_buf();
            // Directories made now are new names in their parents.
            let mut missing = parent.as_path();
            while !missing.exists() {
                match missing.parent() {
                    Some(up) => {
                        dirs.insert(up.to_path_buf());
                        missing = up;
                    }
                    None => break,
                }
            }
            std::fs::create_dir_all(&parent).map_err(|e| io_error("create", &parent, e))?;
            let mut file = PendingFile::create(&path, Secrecy::Public)
                .map_err(|e| io_error("create", &path, e))?;
            file.write_all(bytes)
                .map_err(|e| io_error("write", &path, e))?;
            #[cfg(test)]
            if self
                .fail_next_write
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                return Err(io_error(
                    "fsync",
                    &path,
                    std::io::Error::other("injected failure"),
                ));
            }
            let renamed = file.commit_without_dir_sync();
            self.open_files().forget(*blob);
            renamed.map_err(|e| io_error("write", &path, e))?;
            dirs.insert(parent);
        }
        for dir in &dirs {
            durable::sync_dir(dir).map_err(|e| io_error("fsync directory", dir, e))?;
        }
        Ok(())
    }
}

/// The kept descriptors and the order they were opened in (of blobs, or
/// of the search index's segments, `index`).
pub(super) struct OpenFiles<K> {
    files: HashMap<K, Arc<File>>,
    order: VecDeque<K>,
    /// Descriptors kept at most.
    limit: usize,
}

impl<K: Copy + Eq + std::hash::Hash> OpenFiles<K> {
    /// Keeps at most `limit` descriptors.
    pub(super) fn with_limit(limit: usize) -> OpenFiles<K> {
        OpenFiles {
            files: HashMap::new(),
            order: VecDeque::new(),
            limit,
        }
    }

    pub(super) fn get(&self, blob: K) -> Option<Arc<File>> {
        self.files.get(&blob).cloned()
    }

    /// Keeps `file` for `blob`, dropping the oldest past the limit.
    pub(super) fn keep(&mut self, blob: K, file: Arc<File>) {
        if self.files.insert(blob, file).is_none() {
            self.order.push_back(blob);
        }
        while self.files.len() > self.limit {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.files.remove(&old);
        }
    }

    pub(super) fn forget(&mut self, blob: K) {
        if self.files.remove(&blob).is_some() {
            self.order.retain(|b| *b != blob);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_live_at_c2sp_paths_and_are_full_at_their_last_leaf() {
        let files = Files::new(Path::new("/data/db"));
        assert_eq!(
            files.path(Blob::Tile(1, 1_234_067)),
            Path::new("/data/db/objects/tile/1/x001/x234/067")
        );
        assert_eq!(
            files.path(Blob::Bodies(5)),
            Path::new("/data/db/objects/bodies/005")
        );
        assert_eq!(Blob::Tile(0, 0).full_at(), 256);
        assert_eq!(Blob::Tile(1, 2).full_at(), 3 * 65_536);
        assert_eq!(Blob::Bundle(3).full_at(), 1024);
        assert_eq!(Blob::Tile(8, 1).full_at(), u64::MAX);
        assert!(Blob::Bundle(0).committed_at(256) && !Blob::Bundle(0).committed_at(255));
    }

    #[test]
    fn a_rewrite_replaces_a_leftover_file_and_a_failed_one_leaves_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        files
            .write_all(&[(Blob::Bundle(7), b"leftover".as_slice())])
            .unwrap();
        files
            .fail_next_write
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            files
                .write_all(&[(Blob::Bundle(7), b"new".as_slice())])
                .is_err()
        );
        assert_eq!(files.read(Blob::Bundle(7)).unwrap().unwrap(), b"leftover");
        let names: Vec<_> = std::fs::read_dir(files.path(Blob::Bundle(7)).parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
        files
            .write_all(&[(Blob::Bundle(7), b"new".as_slice())])
            .unwrap();
        assert_eq!(files.read(Blob::Bundle(7)).unwrap().unwrap(), b"new");
        assert_eq!(files.read(Blob::Bundle(8)).unwrap(), None);
    }

    #[test]
    fn reads_keep_at_most_their_descriptors_and_see_every_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::keeping(dir.path(), MIN_OPEN_FILES);
        let n = MIN_OPEN_FILES as u64 + 10;
        for i in 0..n {
            let bytes = i.to_be_bytes();
            files
                .write_all(&[(Blob::Bundle(i), bytes.as_slice())])
                .unwrap();
        }
        for round in 0..2 {
            for i in 0..n {
                let read = files.read(Blob::Bundle(i)).unwrap().unwrap();
                assert_eq!(read, i.to_be_bytes(), "round {round}, bundle {i}");
                let part = files.read_part(Blob::Bundle(i), 8, 7, 1).unwrap().unwrap();
                assert_eq!(part, [i.to_be_bytes()[7]]);
            }
            let open = files.open_files();
            assert_eq!(open.files.len(), MIN_OPEN_FILES);
            assert_eq!(open.order.len(), MIN_OPEN_FILES);
        }
        // A kept descriptor is dropped when its blob is written again.
        let last = Blob::Bundle(n - 1);
        assert!(files.open_files().get(last).is_some());
        files.write_all(&[(last, b"rewritten".as_slice())]).unwrap();
        assert!(files.open_files().get(last).is_none());
        assert_eq!(files.read(last).unwrap().unwrap(), b"rewritten");
        assert!(
            files.read_part(last, 8, 0, 1).is_err(),
            "a different length is torn"
        );
    }

    #[test]
    fn half_the_descriptor_limit_is_kept_within_bounds() {
        assert_eq!(kept_descriptors(Some(1024)), 512);
        assert_eq!(kept_descriptors(Some(100)), MIN_OPEN_FILES);
        assert_eq!(kept_descriptors(Some(20_000)), 10_000);
        assert_eq!(kept_descriptors(Some(1 << 20)), MAX_OPEN_FILES);
        assert_eq!(kept_descriptors(None), MAX_OPEN_FILES);
        // What a database opened now keeps follows the process's limit.
        let files = Files::new(Path::new("/data/db"));
        assert_eq!(
            files.open_files().limit,
            kept_descriptors(descriptor_limit())
        );
    }
}
