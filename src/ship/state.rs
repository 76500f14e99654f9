//! What `veritrail ship` keeps on disk: the state file (how far each file
//! was delivered, and the last checkpoint verified) and the dead-letter file
//! (lines the log refused, with its reason).
//!
//! Invariant: the state file only ever names offsets whose lines the log
//! acknowledged with verified receipts (or that were dead-lettered first),
//! and it is replaced whole through the crate's durable-file helper, so a
//! crash leaves the previous state or the new one. A dead-letter record is
//! written and synced before the state that moves past its line; after a
//! crash between the two, the line is dead-lettered again on restart (one
//! record may repeat; none is lost). A partial record left by a crash is cut
//! off when the file is opened again.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::durable::{self, Secrecy};

/// The largest state file read back (it holds one entry per watched file,
/// at most `MAX_FILES`).
pub const MAX_STATE_BYTES: u64 = 4 << 20;

/// How far each file was delivered, and the last verified checkpoint.
#[derive(Serialize, Deserialize, Default, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Per file identity (see `source::FileKey`): where its next line starts.
    pub files: BTreeMap<String, FileState>,
    /// The signed note of the largest checkpoint verified so far.
    pub checkpoint: Option<String>,
    /// The journal's cursor after the last entry delivered (`ship::journal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal_cursor: Option<String>,
}

/// One file's progress.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileState {
    /// The path it was last seen at (for people; identity is the key).
    pub path: PathBuf,
    /// Bytes delivered: every line before this offset is in the log or in
    /// the dead-letter file.
    pub offset: u64,
}

/// A line the log refused, as written to the dead-letter file.
#[derive(Serialize, Debug, Clone)]
pub struct DeadLetter {
    /// The file it came from.
    pub file: PathBuf,
    /// The file's identity.
    pub identity: String,
    /// Byte offset of the line in the file.
    pub offset: u64,
    /// HTTP status of the refusal (0: refused before sending, see `reason`).
    pub status: u16,
    /// The server's reason.
    pub reason: String,
    /// The line (lossy UTF-8, at most the agent's line limit).
    pub line: String,
}

/// Injected failures of the agent's durable writes, for fault-injection
/// tests: after `ok` successful writes of a kind, every further one fails.
#[derive(Default, Debug)]
pub struct Faults {
    /// Successful state-file writes before they fail.
    pub state_writes_ok: Option<u64>,
    /// Successful dead-letter writes before they fail.
    pub dead_letter_writes_ok: Option<u64>,
    done: Mutex<(u64, u64)>,
}

impl Faults {
    /// Fails state writes after `state` and dead-letter writes after `dead` successes.
    pub fn after(state: Option<u64>, dead: Option<u64>) -> Faults {
        Faults {
            state_writes_ok: state,
            dead_letter_writes_ok: dead,
            done: Mutex::new((0, 0)),
        }
    }

    fn check(&self, dead_letter: bool) -> io::Result<()> {
        let mut done = self.done.lock().map_err(|_| io::Error::other("poisoned"))?;
        let (count, limit) = if dead_letter {
            (&mut done.1, self.dead_letter_writes_ok)
        } else {
            (&mut done.0, self.state_writes_ok)
        };
        if limit.is_some_and(|l| *count >= l) {
            return Err(io::Error::other("injected write failure"));
        }
        *count += 1;
        Ok(())
    }
}

/// The agent's directory: `state.json` and `dead-letter.jsonl`.
pub struct Disk {
    state_path: PathBuf,
    dead_path: PathBuf,
    dead: File,
    faults: Option<Faults>,
}

impl Disk {
    /// Opens (creating) the agent's directory `dir`; cuts off a partial
    /// dead-letter record a crash may have left.
    pub fn open(dir: &Path, faults: Option<Faults>) -> io::Result<Disk> {
        std::fs::create_dir_all(dir)?;
        let dead_path = dir.join("dead-letter.jsonl");
        let mut dead = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&dead_path)?;
        cut_partial_record(&mut dead)?;
        Ok(Disk {
            state_path: dir.join("state.json"),
            dead_path,
            dead,
            faults,
        })
    }

    /// The state file's path.
    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// The dead-letter file's path.
    pub fn dead_letter_path(&self) -> &Path {
        &self.dead_path
    }

    /// The saved state (empty when there is none yet).
    pub fn load(&self) -> io::Result<State> {
        let file = match File::open(&self.state_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("larger than {MAX_STATE_BYTES} bytes"),
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Replaces the state file with `state`, durably.
    pub fn save(&self, state: &State) -> io::Result<()> {
        if let Some(f) = &self.faults {
            f.check(false)?;
        }
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        durable::replace(&self.state_path, &bytes, Secrecy::Public)
    }

    /// Appends `records` to the dead-letter file and syncs it.
    pub fn dead_letter(&mut self, records: &[DeadLetter]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        if let Some(f) = &self.faults {
            f.check(true)?;
        }
        let mut out = Vec::new();
        for r in records {
            serde_json::to_writer(&mut out, r).map_err(io::Error::other)?;
            out.push(b'\n');
        }
        self.dead.write_all(&out)?;
        self.dead.sync_data()
    }
}

/// Truncates `file` after its last newline (a record cut by a crash).
fn cut_partial_record(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Look back at most one block at a time for the last newline.
    let mut end = len;
    let mut buf = vec![0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep != len {
                file.set_len(keep)?;
                file.sync_data()?;
            }
            return Ok(());
        }
        end = start;
    }
    file.set_len(0)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_round_trips_and_a_failed_save_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), Some(Faults::after(Some(1), None))).unwrap();
        assert_eq!(disk.load().unwrap(), State::default());
        let mut s = State::default();
        s.files.insert(
            "k".into(),
            FileState {
                path: "a.log".into(),
                offset: 10,
            },
        );
        disk.save(&s).unwrap();
        let mut t = s.clone();
        t.files.get_mut("k").unwrap().offset = 20;
        assert!(disk.save(&t).is_err());
        assert_eq!(disk.load().unwrap(), s);
    }

    #[test]
    fn a_partial_dead_letter_record_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead-letter.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":").unwrap();
        let mut disk = Disk::open(dir.path(), None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":1}\n");
        let rec = DeadLetter {
            file: "x".into(),
            identity: "i".into(),
            offset: 3,
            status: 400,
            reason: "bad".into(),
            line: "l".into(),
        };
        disk.dead_letter(std::slice::from_ref(&rec)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        std::fs::write(&path, "no newline at all").unwrap();
        Disk::open(dir.path(), None).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }

    #[test]
    fn a_failing_dead_letter_write_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut disk = Disk::open(dir.path(), Some(Faults::after(None, Some(0)))).unwrap();
        let rec = DeadLetter {
            file: "x".into(),
            identity: "i".into(),
            offset: 0,
            status: 400,
            reason: "bad".into(),
            line: "l".into(),
        };
        assert!(disk.dead_letter(&[rec]).is_err());
        assert!(disk.dead_letter(&[]).is_ok());
    }
}
