//! The systemd journal as a source of `veritrail ship`: entries read with
//! `journalctl -o json`, each entry's `MESSAGE` one event line, exactly as
//! an application would write it to a JSON-lines file (through
//! `systemd-cat`, `sd_journal_send` or its logging library's journal
//! handler).
//!
//! `journalctl` runs as a child with the operator's matches and options
//! (`_SYSTEMD_UNIT=app.service`, `--file=…`, `--directory=…`), reading
//! after the cursor kept in the state file, or the whole journal the
//! matches select on the first start; it follows the journal unless the
//! agent stops at the end. An event without an `id` gets
//! `ship-journald-` and the first 32 hex digits of the SHA-256 of its
//! entry's cursor, which names one entry of one journal for good. An entry
//! without a message, or whose message is not one event, goes to the
//! dead-letter file with its cursor.
//!
//! Invariant: a [`Batch`] holds consecutive entries in journal order, and
//! its cursor is that of its last entry read whole; the agent saves it only
//! once every entry of the batch is in the log or dead-lettered, and
//! `journalctl --after-cursor` starts after it, so an entry is sent again
//! only after a crash, with the same id (the log answers it as a duplicate).

use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::Work;

/// The name of the source in dead letters and metrics.
pub const SOURCE: &str = "journald";

/// How the journal is read.
#[derive(Clone, Debug)]
pub struct Config {
    /// The `journalctl` program.
    pub program: PathBuf,
    /// Arguments appended: matches and options that pick the journal and
    /// its entries.
    pub args: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            program: PathBuf::from("journalctl"),
            args: Vec::new(),
        }
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its cursor.
    pub cursor: String,
    /// Its message, or why it is not one event line.
    pub message: Result<Vec<u8>, String>,
}

/// Consecutive entries, in journal order.
#[derive(Debug, Default)]
pub struct Batch {
    /// The entries.
    pub entries: Vec<Entry>,
    /// The cursor to resume after once the batch is delivered.
    pub cursor: Option<String>,
}

/// The idempotency id of an entry's event that carries none.
pub fn event_id(cursor: &str) -> String {
    let digest = Sha256::digest(cursor.as_bytes());
    format!("ship-journald-{}", &hex::encode(digest)[..32])
}

/// The running `journalctl` and the thread that cuts its output into batches.
pub(super) struct Reader {
    child: Arc<Mutex<Child>>,
    thread: tokio::task::JoinHandle<()>,
}

impl Reader {
    /// Starts `journalctl` after `cursor` and a thread that sends its
    /// entries to `tx` in batches of at most `lines` entries and about
    /// `bytes` bytes.
    pub(super) fn start(
        cfg: &Config,
        cursor: Option<&str>,
        tx: tokio::sync::mpsc::Sender<Work>,
        (lines, bytes, _poll, exit_at_eof): (usize, usize, Duration, bool),
        max_line_bytes: usize,
    ) -> io::Result<Reader> {
        let mut cmd = Command::new(&cfg.program);
        // --all: fields over 4 KiB are printed, not replaced by null; the
        // cursor is always printed.
        cmd.args([
            "--output=json",
            "--all",
            "--no-pager",
            "--output-fields=MESSAGE",
        ]);
        if !exit_at_eof {
            cmd.args(["--follow", "--no-tail"]);
        }
        if let Some(c) = cursor {
            cmd.arg(format!("--after-cursor={c}"));
        }
        cmd.args(&cfg.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let child = Arc::new(Mutex::new(child));
        let held = child.clone();
        let thread = tokio::task::spawn_blocking(move || {
            let outcome = cut(stdout, &tx, lines, bytes, max_line_bytes);
            let status = held.lock().map(|mut c| {
                let mut err = String::new();
                if let Some(e) = c.stderr.as_mut() {
                    let _ = e.take(4096).read_to_string(&mut err);
                }
                (c.wait(), err)
            });
            let failed = match (outcome, status) {
                (Err(e), _) => Some(format!("reading journalctl's output: {e}")),
                (Ok(false), _) => None,
                (Ok(true), Ok((Ok(s), _))) if s.success() => None,
                (Ok(true), Ok((Ok(s), err))) => Some(format!("journalctl {s}: {}", err.trim())),
                (Ok(true), Ok((Err(e), _))) => Some(format!("journalctl: {e}")),
                (Ok(true), Err(_)) => Some("journalctl: poisoned".into()),
            };
            if let Some(why) = failed {
                let _ = tx.blocking_send(Work::Failed(why));
            }
        });
        Ok(Reader { child, thread })
    }

    /// Stops `journalctl` (if it still runs) and waits for the thread.
    pub(super) async fn stop(self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
        }
        let _ = self.thread.await;
    }
}

/// Reads entries until the end of the output (true) or until the agent
/// stops taking batches (false).
fn cut(
    stdout: ChildStdout,
    tx: &tokio::sync::mpsc::Sender<Work>,
    lines: usize,
    bytes: usize,
    max_line_bytes: usize,
) -> io::Result<bool> {
    let mut reader = BufReader::with_capacity(256 * 1024, stdout);
    // JSON escaping at most sextuples a message; the cursor and the
    // field names are small.
    let limit = max_line_bytes.saturating_mul(6).saturating_add(4096);
    let mut batch = Batch::default();
    let mut held = 0usize;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(limit as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') && line.len() > limit {
            // Too long to hold: skip to the end of the entry. Its cursor is
            // unknown, so it is dead-lettered without one.
            skip_line(&mut reader)?;
            batch.entries.push(Entry {
                cursor: String::new(),
                message: Err(format!("the journal entry is longer than {limit} bytes")),
            });
        } else if let Some(entry) = parse_entry(&line, max_line_bytes) {
            held += entry.message.as_ref().map_or(0, Vec::len);
            batch.cursor = Some(entry.cursor.clone());
            batch.entries.push(entry);
        }
        // A full batch, or nothing more to read without waiting: send it.
        if batch.entries.len() >= lines || held >= bytes || reader.buffer().is_empty() {
            held = 0;
            if tx
                .blocking_send(Work::Journal(std::mem::take(&mut batch)))
                .is_err()
            {
                return Ok(false);
            }
        }
    }
    if !batch.entries.is_empty() && tx.blocking_send(Work::Journal(batch)).is_err() {
        return Ok(false);
    }
    Ok(true)
}

fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// One entry of `journalctl -o json`. `MESSAGE` is a string, or an array
/// of bytes when it is not valid UTF-8 (or holds control characters).
#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "__CURSOR")]
    cursor: String,
    #[serde(rename = "MESSAGE", default)]
    message: Option<RawMessage>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMessage {
    Text(String),
    Bytes(Vec<u8>),
}

/// The entry of one output line; `None` for a line that is not an entry
/// (journalctl writes nothing else, so this is only ever a blank line).
pub fn parse_entry(line: &[u8], max_line_bytes: usize) -> Option<Entry> {
    let raw: RawEntry = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) if line.iter().all(u8::is_ascii_whitespace) => {
            let _ = e;
            return None;
        }
        Err(e) => {
            return Some(Entry {
                cursor: String::new(),
                message: Err(format!("journalctl wrote an entry that is not JSON: {e}")),
            });
        }
    };
    let message = match raw.message {
        None => Err("the journal entry has no MESSAGE".to_owned()),
        Some(RawMessage::Text(t)) => Ok(t.into_bytes()),
        Some(RawMessage::Bytes(b)) => Ok(b),
    }
    .and_then(|m| {
        if m.len() > max_line_bytes {
            Err(format!("the line is longer than {max_line_bytes} bytes"))
        } else {
            Ok(m)
        }
    });
    Some(Entry {
        cursor: raw.cursor,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_in_each_form_journalctl_writes() {
        let text =
            br#"{"__CURSOR":"s=a;i=1","__REALTIME_TIMESTAMP":"1","MESSAGE":"{\"action\":\"x\"}"}"#;
        let e = parse_entry(text, 1024).unwrap();
        assert_eq!(e.cursor, "s=a;i=1");
        assert_eq!(e.message.unwrap(), br#"{"action":"x"}"#);
        let bytes = br#"{"__CURSOR":"c","MESSAGE":[123,125]}"#;
        assert_eq!(parse_entry(bytes, 1024).unwrap().message.unwrap(), b"{}");
        let none = br#"{"__CURSOR":"c","MESSAGE":null}"#;
        assert!(parse_entry(none, 1024).unwrap().message.is_err());
        let long = br#"{"__CURSOR":"c","MESSAGE":"0123456789"}"#;
        assert!(parse_entry(long, 4).unwrap().message.is_err());
        assert_eq!(parse_entry(b"\n", 1024), None);
        assert!(parse_entry(b"{nope", 1024).unwrap().message.is_err());
    }

    #[test]
    fn an_entry_id_comes_from_its_cursor() {
        let a = event_id("s=a;i=1;b=b;m=1;t=2;x=3");
        assert!(a.starts_with("ship-journald-") && a.len() == 14 + 32);
        assert_eq!(a, event_id("s=a;i=1;b=b;m=1;t=2;x=3"));
        assert_ne!(a, event_id("s=a;i=2;b=b;m=1;t=2;x=3"));
    }
}
