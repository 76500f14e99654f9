//! The files `veritrail ship` tails: finding them, knowing each one through
//! renames and truncations, and reading complete lines from where its
//! delivery stopped.
//!
//! A file is known by its identity, a [`FileKey`]: device and inode (which
//! a rename keeps), a fingerprint of its first line (SHA-256 of at most its
//! first 4 KiB up to the first newline, which tells a new file that reuses
//! an inode from the old one), and a generation counting truncations that
//! kept the same first line. A file is only picked up once its first line
//! is complete. Rotation by rename: the renamed file keeps its identity and
//! is read to its end through the open descriptor, and to its delivered
//! offset after a restart if it still matches a pattern; the new file is
//! another identity. Rotation by truncation: a file shorter than the
//! offset read is a new generation (or a new identity, if its first line
//! changed), read from 0. A truncated file that grew back past the old
//! offset before it was looked at is told by its first line, which every
//! scan and every batch read checks (a batch read across a truncation is
//! dropped, not sent); as with every tailer, one whose first line is the
//! same as before cannot be told apart.
//!
//! Invariant: a [`Batch`] holds only complete lines (ending in `\n`), in
//! file order, contiguous from where the previous batch of that identity
//! ended; a line longer than the limit is passed on as [`Item::Oversized`]
//! with a prefix, never held whole.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::state::FileState;

/// Most files tracked at once; more are ignored, with a warning.
pub const MAX_FILES: usize = 1024;

/// How much of the first line is fingerprinted.
const FINGERPRINT_BYTES: usize = 4096;

/// A file's identity (see the module header).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileKey {
    dev: u64,
    ino: u64,
    fingerprint: [u8; 8],
    generation: u32,
}

impl FileKey {
    /// `dev-ino-fingerprint-generation`, hex: the state file's key and the
    /// prefix of each line's idempotency id.
    pub fn to_text(&self) -> String {
        format!(
            "{:x}-{:x}-{}-{}",
            self.dev,
            self.ino,
            hex::encode(self.fingerprint),
            self.generation
        )
    }

    fn parse(text: &str) -> Option<FileKey> {
        let mut it = text.split('-');
        let dev = u64::from_str_radix(it.next()?, 16).ok()?;
        let ino = u64::from_str_radix(it.next()?, 16).ok()?;
        let fingerprint = hex::decode(it.next()?).ok()?.try_into().ok()?;
        let generation = it.next()?.parse().ok()?;
        it.next().is_none().then_some(FileKey {
            dev,
            ino,
            fingerprint,
            generation,
        })
    }
}

/// One line of a batch.
#[derive(Debug, Clone)]
pub enum Item {
    /// A complete line, without its newline.
    Line {
        /// Offset of its first byte.
        offset: u64,
        /// Its bytes.
        bytes: Vec<u8>,
    },
    /// A line over the limit: where it starts and its first bytes.
    Oversized {
        /// Offset of its first byte.
        offset: u64,
        /// Its first `max_line_bytes` bytes.
        prefix: Vec<u8>,
    },
}

/// Consecutive complete lines of one file.
#[derive(Debug)]
pub struct Batch {
    /// The file's identity.
    pub key: String,
    /// Where it was read from.
    pub path: PathBuf,
    /// The lines, in order.
    pub items: Vec<Item>,
    /// The offset after the last line.
    pub end: u64,
}

struct Tracked {
    key: FileKey,
    /// Bytes of the file the fingerprint covers (see [`fingerprint`]).
    head: usize,
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    matched: bool,
}

/// The tailer: patterns, tracked files and their read offsets.
pub struct Tailer {
    patterns: Vec<PathBuf>,
    max_line_bytes: usize,
    tracked: HashMap<(u64, u64), Tracked>,
    /// Delivered offsets at start-up, by identity.
    resume: HashMap<(u64, u64, [u8; 8]), (u32, u64)>,
    warned_full: bool,
    /// Identities replaced by a truncation, to forget once delivered.
    retired: Vec<String>,
}

impl Tailer {
    /// A tailer of the files matching `patterns` (a path whose last
    /// component may hold `*` and `?`), resuming from `delivered`.
    pub fn new(
        patterns: Vec<PathBuf>,
        max_line_bytes: usize,
        delivered: &BTreeMap<String, FileState>,
    ) -> Tailer {
        let mut resume: HashMap<(u64, u64, [u8; 8]), (u32, u64)> = HashMap::new();
        for (text, st) in delivered {
            if let Some(k) = FileKey::parse(text) {
                let e = resume
                    .entry((k.dev, k.ino, k.fingerprint))
                    .or_insert((k.generation, st.offset));
                if k.generation >= e.0 {
                    *e = (k.generation, st.offset);
                }
            }
        }
        Tailer {
            patterns,
            max_line_bytes,
            tracked: HashMap::new(),
            resume,
            warned_full: false,
            retired: Vec::new(),
        }
    }

    /// Looks for new, renamed and truncated files. Returns the identities
    /// that are done with: files gone (no longer matched) and read to their
    /// end, which are dropped, and identities a truncation replaced.
    pub fn scan(&mut self) -> Vec<String> {
        for t in self.tracked.values_mut() {
            t.matched = false;
        }
        for path in self.matching_paths() {
            if let Err(e) = self.look_at(&path) {
                tracing::warn!("{}: {e}", path.display());
            }
        }
        let mut gone = std::mem::take(&mut self.retired);
        self.tracked.retain(|_, t| {
            if t.matched {
                return true;
            }
            let len = t.reader.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
            if len > t.pos {
                return true;
            }
            gone.push(t.key.to_text());
            false
        });
        gone
    }

    fn matching_paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in &self.patterns {
            let (Some(dir), Some(name)) = (p.parent(), p.file_name().and_then(|n| n.to_str()))
            else {
                continue;
            };
            if !name.contains(['*', '?']) {
                out.push(p.clone());
                continue;
            }
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name().to_str().is_some_and(|n| wildcard(name, n)) {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn look_at(&mut self, path: &Path) -> io::Result<()> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(());
        }
        let id = (meta.dev(), meta.ino());
        if let Some(t) = self.tracked.get_mut(&id) {
            t.matched = true;
            t.path = path.to_path_buf();
            // Truncated (shorter than read), or truncated and grown back
            // with another first line: a new generation, or a new file if
            // its first line changed.
            if meta.len() < t.pos || !t.head_unchanged()? {
                let Some((fp, head)) = fingerprint(&file)? else {
                    return Ok(());
                };
                let old = t.restart(fp, head)?;
                self.retired.push(old.to_text());
                tracing::info!(
                    "{} was truncated; reading it from the start",
                    path.display()
                );
            }
            return Ok(());
        }
        if self.tracked.len() >= MAX_FILES {
            if !self.warned_full {
                tracing::warn!("tracking {MAX_FILES} files already; ignoring more");
                self.warned_full = true;
            }
            return Ok(());
        }
        let Some((fp, head)) = fingerprint(&file)? else {
            return Ok(());
        };
        let (generation, offset) = match self.resume.get(&(id.0, id.1, fp)) {
            Some(&(g, off)) if meta.len() >= off => (g, off),
            // Truncated while the agent was away.
            Some(&(g, _)) => {
                let old = FileKey {
                    dev: id.0,
                    ino: id.1,
                    fingerprint: fp,
                    generation: g,
                };
                self.retired.push(old.to_text());
                (g + 1, 0)
            }
            None => (0, 0),
        };
        let mut reader = BufReader::with_capacity(64 * 1024, file);
        reader.seek(SeekFrom::Start(offset))?;
        self.tracked.insert(
            id,
            Tracked {
                key: FileKey {
                    dev: id.0,
                    ino: id.1,
                    fingerprint: fp,
                    generation,
                },
                head,
                path: path.to_path_buf(),
                reader,
                pos: offset,
                matched: true,
            },
        );
        Ok(())
    }

    /// The next complete lines of some file: at most `max_lines` lines and
    /// about `max_bytes` bytes. `None` when every file is read to its end.
    pub fn next_batch(&mut self, max_lines: usize, max_bytes: usize) -> io::Result<Option<Batch>> {
        let max_line = self.max_line_bytes;
        // Oldest path first, so rotated files drain before the live one.
        let mut ids: Vec<(PathBuf, (u64, u64))> = self
            .tracked
            .iter()
            .map(|(id, t)| (t.path.clone(), *id))
            .collect();
        ids.sort();
        ids.reverse();
        for (_, id) in ids {
            let Some(t) = self.tracked.get_mut(&id) else {
                continue;
            };
            let start = t.pos;
            let mut items = Vec::new();
            let mut bytes = 0usize;
            while items.len() < max_lines && bytes < max_bytes {
                match read_line(&mut t.reader, max_line)? {
                    Read::Line(line, consumed) => {
                        bytes += line.len();
                        items.push(Item::Line {
                            offset: t.pos,
                            bytes: line,
                        });
                        t.pos += consumed;
                    }
                    Read::Oversized(prefix, consumed) => {
                        bytes += prefix.len();
                        items.push(Item::Oversized {
                            offset: t.pos,
                            prefix,
                        });
                        t.pos += consumed;
                    }
                    Read::Incomplete => {
                        // Wait for the rest of the line (or for nothing).
                        t.reader.seek(SeekFrom::Start(t.pos))?;
                        break;
                    }
                }
            }
            if !items.is_empty() && !t.head_unchanged()? {
                // Truncated while being read: these lines may be halves of
                // old and new ones. The next scan starts the file afresh.
                t.pos = start;
                t.reader.seek(SeekFrom::Start(start))?;
                continue;
            }
            if !items.is_empty() {
                return Ok(Some(Batch {
                    key: t.key.to_text(),
                    path: t.path.clone(),
                    items,
                    end: t.pos,
                }));
            }
        }
        Ok(None)
    }

    /// How many files are tracked.
    pub fn files(&self) -> usize {
        self.tracked.len()
    }
}

impl Tracked {
    /// Whether the file still starts with the first line it was known by.
    fn head_unchanged(&self) -> io::Result<bool> {
        let file = self.reader.get_ref();
        let mut buf = vec![0u8; self.head];
        let mut n = 0;
        while n < buf.len() {
            let got = file.read_at(&mut buf[n..], n as u64)?;
            if got == 0 {
                return Ok(false);
            }
            n += got;
        }
        Ok(fingerprint_of(&buf).map(|(fp, _)| fp) == Some(self.key.fingerprint))
    }

    /// Starts the file afresh at offset 0 under the identity its first
    /// line `fp` gives; returns the identity it replaces.
    fn restart(&mut self, fp: [u8; 8], head: usize) -> io::Result<FileKey> {
        let generation = if fp == self.key.fingerprint {
            self.key.generation + 1
        } else {
            0
        };
        let key = FileKey {
            fingerprint: fp,
            generation,
            ..self.key.clone()
        };
        self.head = head;
        self.pos = 0;
        self.reader.seek(SeekFrom::Start(0))?;
        Ok(std::mem::replace(&mut self.key, key))
    }
}

enum Read {
    Line(Vec<u8>, u64),
    Oversized(Vec<u8>, u64),
    Incomplete,
}

/// Reads one line, keeping at most `max` bytes of it.
fn read_line(r: &mut BufReader<File>, max: usize) -> io::Result<Read> {
    let mut line = Vec::new();
    let mut consumed = 0u64;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(Read::Incomplete);
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = (max + 1).saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        consumed += used as u64;
        if done.is_some() {
            if line.len() > max {
                line.truncate(max);
                return Ok(Read::Oversized(line, consumed));
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Read::Line(line, consumed));
        }
    }
}

/// The fingerprint of `file`'s first line, once that line is complete (or
/// once the file holds `FINGERPRINT_BYTES` without a newline), and how many
/// bytes of the file it covers.
fn fingerprint(file: &File) -> io::Result<Option<([u8; 8], usize)>> {
    let mut buf = vec![0u8; FINGERPRINT_BYTES];
    let mut n = 0;
    while n < buf.len() {
        let got = file.read_at(&mut buf[n..], n as u64)?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(fingerprint_of(&buf[..n]))
}

/// The fingerprint of the first line in `buf`, the start of a file (see
/// [`fingerprint`]).
fn fingerprint_of(buf: &[u8]) -> Option<([u8; 8], usize)> {
    let (line, covered) = match buf.iter().position(|&b| b == b'\n') {
        Some(i) => (&buf[..i], i + 1),
        None if buf.len() == FINGERPRINT_BYTES => (buf, buf.len()),
        None => return None,
    };
    let digest = Sha256::digest(line);
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&digest[..8]);
    Some((fp, covered))
}

/// Whether `name` matches `pattern` (`*` any run, `?` any one character).
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(b: &Batch) -> Vec<String> {
        b.items
            .iter()
            .map(|i| match i {
                Item::Line { bytes, .. } => String::from_utf8_lossy(bytes).into_owned(),
                Item::Oversized { prefix, .. } => {
                    format!("OVERSIZED:{}", String::from_utf8_lossy(prefix))
                }
            })
            .collect()
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("app.log*", "app.log"));
        assert!(wildcard("app.log*", "app.log.3"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("app.log*", "other.log"));
        assert!(wildcard("*.jsonl", "x.jsonl"));
        assert!(!wildcard("*.jsonl", "x.jsonl.gz"));
    }

    #[test]
    fn complete_lines_only_through_rename_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("app.log");
        append(&live, "first\nsecond\npart");
        let mut t = Tailer::new(vec![dir.path().join("app.log*")], 10, &BTreeMap::new());
        t.scan();
        let b = t.next_batch(100, 1 << 20).unwrap().unwrap();
        assert_eq!(lines(&b), ["first", "second"]);
        assert_eq!(b.end, 13);
        let key = b.key.clone();
        assert!(t.next_batch(100, 1 << 20).unwrap().is_none());
        // The rest of the line, then a rename and a new file.
        append(&live, "ial\n");
        std::fs::rename(&live, dir.path().join("app.log.1")).unwrap();
        append(&live, "new file\nsecond\n");
        t.scan();
        let b = t.next_batch(100, 1 << 20).unwrap().unwrap();
        assert_eq!(
            (lines(&b), b.key.clone()),
            (vec!["partial".into()], key.clone())
        );
        let b = t.next_batch(100, 1 << 20).unwrap().unwrap();
        assert_eq!(lines(&b), ["new file", "second"]);
        assert_ne!(b.key, key);
        // Truncation keeping the same first line: a new generation.
        let new_key = b.key.clone();
        std::fs::write(&live, "new file\n").unwrap();
        assert_eq!(t.scan(), std::slice::from_ref(&new_key));
        let b = t.next_batch(100, 1 << 20).unwrap().unwrap();
        assert_eq!(lines(&b), ["new file"]);
        assert!(b.key.ends_with("-1") && b.key != new_key);
        // An oversized line is passed on as a prefix.
        append(&live, "0123456789abcdef\nok\n");
        let b = t.next_batch(100, 1 << 20).unwrap().unwrap();
        assert_eq!(lines(&b), ["OVERSIZED:0123456789", "ok"]);
    }

    #[test]
    fn a_file_truncated_and_grown_back_past_the_offset_is_read_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.log");
        append(&path, "one\ntwo\n");
        let mut t = Tailer::new(vec![path.clone()], 100, &BTreeMap::new());
        t.scan();
        let b = t.next_batch(100, 1 << 20).unwrap().unwrap();
        assert_eq!((lines(&b), b.end), (vec!["one".into(), "two".into()], 8));
        let old = b.key.clone();
        // copytruncate, then more written than was there before the
        // tailer looks again: reading on at offset 8 would yield "elve".
        std::fs::write(&path, "eleven\ntwelve\n").unwrap();
        assert!(t.next_batch(100, 1 << 20).unwrap().is_none());
        assert_eq!(t.scan(), std::slice::from_ref(&old));
        let b = t.next_batch(100, 1 << 20).unwrap().unwrap();
        assert_eq!(lines(&b), ["eleven", "twelve"]);
        assert!(b.key.ends_with("-0") && b.key != old);
        // A file that only grew keeps its identity.
        append(&path, "thirteen\n");
        assert!(t.scan().is_empty());
        let b = t.next_batch(100, 1 << 20).unwrap().unwrap();
        assert_eq!(lines(&b), ["thirteen"]);
        assert_eq!(b.end, 23);
    }

    #[test]
    fn resumes_at_the_delivered_offset_of_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        append(&path, "one\ntwo\nthree\n");
        let mut t = Tailer::new(vec![path.clone()], 100, &BTreeMap::new());
        t.scan();
        let b = t.next_batch(2, 1 << 20).unwrap().unwrap();
        let mut delivered = BTreeMap::new();
        delivered.insert(
            b.key.clone(),
            FileState {
                path: path.clone(),
                offset: b.end,
            },
        );
        let mut again = Tailer::new(vec![path.clone()], 100, &delivered);
        again.scan();
        let b = again.next_batch(100, 1 << 20).unwrap().unwrap();
        assert_eq!(lines(&b), ["three"]);
        // Truncated while away: the next generation, from 0.
        std::fs::write(&path, "one\n").unwrap();
        let mut third = Tailer::new(vec![path], 100, &delivered);
        third.scan();
        let b = third.next_batch(100, 1 << 20).unwrap().unwrap();
        assert_eq!(lines(&b), ["one"]);
        assert!(b.key.ends_with("-1"));
    }
}
