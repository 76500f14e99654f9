//! `veritrail ship`: the agent that tails JSON-lines files next to an
//! application and delivers each line to the log exactly once, as one audit
//! event, with a verified receipt.
//!
//! The pipeline, read top to bottom: a tailer thread ([`source`]) cuts the
//! files into batches of complete lines, and optionally a second thread
//! cuts the systemd journal's entries into batches ([`journal`]); up to
//! `in_flight` batches are submitted at once with `wait=checkpoint` and one
//! batch proof each, through the crate's client ([`crate::client`]:
//! retries with the same ids, `Retry-After`, receipt verification against
//! the pinned log keys); the answers are taken in the order the batches
//! were cut, and committed ([`state`]): refused lines to the dead-letter
//! file first, then the new offsets (or journal cursor) and the last
//! verified checkpoint to the state file, one write for the answers that
//! are in when it starts.
//!
//! Exactly once: a line's idempotency id is `ship-<identity>-<offset>`
//! (the file's identity, see [`source`], and the line's byte offset), unless
//! the line carries its own `id`. After a crash the agent resends from the
//! delivered offset with the same ids, and the log answers lines it already
//! holds with their original receipt (`duplicate`). A line the log refuses
//! (400, 413, 422) goes to the dead-letter file with the server's reason and
//! the batch is sent again without it; a line that is not a JSON object,
//! or longer than the line limit, is refused by the agent itself. Nothing
//! blocks the lines after a refused one.
//!
//! Invariant: a file's offset in the state file only moves past a line once
//! the log acknowledged it with a receipt that verified, or once it is in
//! the dead-letter file. Any other failure (a checkpoint or proof that does
//! not verify, a key the log refuses, the state or dead-letter file that
//! cannot be written) stops the agent with the state as it was.

pub mod journal;
pub mod source;
pub mod state;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde_json::Value;

use crate::client::{Client, ReceiptVerifier, Retry, SubmitError, VerifiedCheckpoint, Wait};
use crate::note::{CheckpointPolicy, Known};
use source::{Batch, Item, Tailer};
use state::{DeadLetter, Disk, Faults, FileState, State};

/// What the agent reads, where it keeps its state, and its limits.
pub struct Config {
    /// Files to tail: paths whose last component may hold `*` and `?`.
    pub include: Vec<PathBuf>,
    /// The agent's directory (state and dead-letter files).
    pub dir: PathBuf,
    /// Longest line sent; longer ones are dead-lettered.
    pub max_line_bytes: usize,
    /// Most lines per request (at most the server's batch limit).
    pub batch_lines: usize,
    /// About the most bytes of lines per request.
    pub batch_bytes: usize,
    /// Requests in flight at once ([`DEFAULT_IN_FLIGHT`] by default).
    pub in_flight: usize,
    /// How often the files are looked at when there is nothing to read.
    pub poll: Duration,
    /// Also read the systemd journal (see [`journal`]).
    pub journal: Option<journal::Config>,
    /// Stop once every file is delivered to its end (instead of following).
    pub exit_at_eof: bool,
    /// Injected write failures (fault-injection tests only).
    pub faults: Option<Faults>,
}

/// Requests in flight at once by default: each waits for a signed
/// checkpoint, so this times the batch size bounds the lines per checkpoint
/// interval, and each holds its batch and answer in memory. 12 keeps the
/// agent under 64 MiB resident with 1000-line batches (docs/ship.md).
pub const DEFAULT_IN_FLIGHT: u16 = 12;

impl Config {
    /// The defaults for `include` and `dir`.
    pub fn new(include: Vec<PathBuf>, dir: PathBuf) -> Config {
        Config {
            include,
            dir,
            max_line_bytes: 64 * 1024,
            batch_lines: 1000,
            batch_bytes: 1 << 20,
            in_flight: usize::from(DEFAULT_IN_FLIGHT),
            poll: Duration::from_millis(200),
            journal: None,
            exit_at_eof: false,
            faults: None,
        }
    }
}

/// Counts since the agent started.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Lines appended to the log.
    pub appended: u64,
    /// Lines the log already held (resent after a restart).
    pub duplicates: u64,
    /// Lines written to the dead-letter file.
    pub dead_letters: u64,
    /// Batches committed.
    pub batches: u64,
    /// Size of the last verified checkpoint.
    pub checkpoint_size: u64,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The state or dead-letter file could not be read or written.
    #[error("{path}: {why}")]
    Disk {
        /// The file.
        path: PathBuf,
        /// What failed.
        why: std::io::Error,
    },
    /// A receipt or checkpoint does not verify: the log cannot be trusted.
    #[error("{0}")]
    Verification(String),
    /// The log refuses the agent itself (its key, its requests).
    #[error("{0}")]
    Refused(String),
    /// A file could not be read.
    #[error("reading the files: {0}")]
    Read(String),
}

/// Runs the agent until the files are delivered (`exit_at_eof`) or an
/// error stops it; `on_commit` sees the counts after each commit.
pub async fn run(
    mut cfg: Config,
    client: Client,
    policy: CheckpointPolicy<'static>,
    mut on_commit: impl FnMut(&Stats),
) -> Result<Stats, ShipError> {
    let mut disk = Disk::open(&cfg.dir, cfg.faults.take()).map_err(|why| ShipError::Disk {
        path: cfg.dir.clone(),
        why,
    })?;
    let mut state = disk.load().map_err(|why| ShipError::Disk {
        path: disk.state_path().to_path_buf(),
        why,
    })?;
    let latest = match &state.checkpoint {
        None => None,
        Some(note) => {
            let accepted = policy.check(note.as_bytes(), None).map_err(|r| {
                ShipError::Verification(format!(
                    "the checkpoint in {} does not verify with the given keys: {r}",
                    disk.state_path().display()
                ))
            })?;
            Some(VerifiedCheckpoint {
                note: note.clone(),
                known: Known::from(&accepted.checkpoint),
            })
        }
    };
    let verifier = ReceiptVerifier::new(policy, latest);
    // The tailer keeps a few batches ready beyond those in flight; more
    // would only hold memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<Work>(cfg.in_flight.clamp(1, 4));
    let tailer = Tailer::new(cfg.include.clone(), cfg.max_line_bytes, &state.files);
    let limits = (
        cfg.batch_lines.clamp(1, 1000),
        cfg.batch_bytes.max(1),
        cfg.poll,
        cfg.exit_at_eof,
    );
    let journal_reader = match cfg.journal.take() {
        Some(j) => Some(
            journal::Reader::start(
                &j,
                state.journal_cursor.as_deref(),
                tx.clone(),
                limits,
                cfg.max_line_bytes,
            )
            .map_err(|e| ShipError::Read(format!("starting journalctl: {e}")))?,
        ),
        None => None,
    };
    let reader = tokio::task::spawn_blocking(move || tail(tailer, tx, limits));

    let retry = Retry {
        max_attempts: None,
        ..Retry::default()
    };
    let works =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|w| (w, rx)) });
    // The stream is dropped at the end of this block, which closes the
    // channel: the tailer stops at its next send.
    let outcome = {
        let mut done = std::pin::pin!(
            works
                .map(|w| deliver(&client, &verifier, &retry, w))
                .buffered(cfg.in_flight.max(1))
        );
        let mut stats = Stats::default();
        loop {
            let Some(result) = done.next().await else {
                break Ok(stats);
            };
            // Every answer already in, in batch order, goes into one
            // commit: one state-file write for all of them.
            let mut changed = false;
            let mut step = result.and_then(|d| apply(&mut disk, &mut state, d, &mut stats));
            while let Ok(c) = step {
                changed |= c;
                match futures_util::FutureExt::now_or_never(done.next()) {
                    Some(Some(next)) => {
                        step = next.and_then(|d| apply(&mut disk, &mut state, d, &mut stats));
                    }
                    _ => break,
                }
            }
            // What the batches before a failure delivered is still committed.
            let saved = match changed {
                true => save(&disk, &mut state, &verifier, &mut stats),
                false => Ok(()),
            };
            if let Err(e) = step.and(saved) {
                break Err(e);
            }
            on_commit(&stats);
        }
    };
    if let Some(j) = journal_reader {
        j.stop().await;
    }
    let _ = reader.await;
    outcome
}

/// What the tailer hands on, in file order.
enum Work {
    Batch(Batch),
    /// Journal entries, in journal order.
    Journal(journal::Batch),
    /// A file that is gone, read to its end: forget it once what came before is committed.
    Gone(String),
    Failed(String),
}

/// The tailer thread: cuts batches until the consumer stops, or (with
/// `exit_at_eof`) until a scan finds nothing left to read.
fn tail(
    mut tailer: Tailer,
    tx: tokio::sync::mpsc::Sender<Work>,
    (lines, bytes, poll, exit_at_eof): (usize, usize, Duration, bool),
) {
    loop {
        for key in tailer.scan() {
            if tx.blocking_send(Work::Gone(key)).is_err() {
                return;
            }
        }
        metrics::gauge!("veritrail_ship_files").set(tailer.files() as f64);
        let mut read_any = false;
        loop {
            match tailer.next_batch(lines, bytes) {
                Ok(Some(b)) => {
                    read_any = true;
                    if tx.blocking_send(Work::Batch(b)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.blocking_send(Work::Failed(e.to_string()));
                    return;
                }
            }
        }
        if !read_any {
            if exit_at_eof {
                return;
            }
            std::thread::sleep(poll);
        }
    }
}

/// A batch's fate, ready to commit.
enum Delivered {
    Sent {
        progress: Progress,
        appended: u64,
        duplicates: u64,
        dead: Vec<DeadLetter>,
    },
    Forget(String),
}

/// Where a delivered batch's source resumes.
enum Progress {
    File {
        key: String,
        path: PathBuf,
        end: u64,
    },
    /// The journal's cursor after the batch (none when no entry of it had one).
    Journal(Option<String>),
}

/// Sends a batch until every line is in the log or refused.
async fn deliver(
    client: &Client,
    verifier: &ReceiptVerifier,
    retry: &Retry,
    work: Work,
) -> Result<Delivered, ShipError> {
    match work {
        Work::Batch(batch) => {
            let mut out = Outgoing::default();
            for item in &batch.items {
                match item {
                    Item::Oversized { offset, prefix } => out.dead.push(DeadLetter {
                        file: batch.path.clone(),
                        identity: batch.key.clone(),
                        offset: *offset,
                        status: 0,
                        reason: format!("the line is longer than {} bytes", prefix.len()),
                        line: String::from_utf8_lossy(prefix).into_owned(),
                    }),
                    Item::Line { offset, bytes } => out.push(
                        (batch.key.as_str(), *offset),
                        bytes,
                        event_of(bytes, || format!("ship-{}-{offset}", batch.key)),
                    ),
                }
            }
            let (appended, duplicates, dead) =
                out.send(client, verifier, retry, &batch.path).await?;
            Ok(Delivered::Sent {
                progress: Progress::File {
                    key: batch.key.clone(),
                    path: batch.path.clone(),
                    end: batch.end,
                },
                appended,
                duplicates,
                dead,
            })
        }
        Work::Journal(batch) => {
            let mut out = Outgoing::default();
            let path = PathBuf::from(journal::SOURCE);
            for entry in &batch.entries {
                let origin = (entry.cursor.as_str(), 0);
                match &entry.message {
                    Ok(line) => out.push(
                        origin,
                        line,
                        event_of(line, || journal::event_id(&entry.cursor)),
                    ),
                    Err(why) => out.push(origin, b"", Err(why.clone())),
                }
            }
            let (appended, duplicates, dead) = out.send(client, verifier, retry, &path).await?;
            Ok(Delivered::Sent {
                progress: Progress::Journal(batch.cursor.clone()),
                appended,
                duplicates,
                dead,
            })
        }
        Work::Gone(key) => Ok(Delivered::Forget(key)),
        Work::Failed(why) => Err(ShipError::Read(why)),
    }
}

/// Where a line came from: its source's identity (a file's identity, or
/// the journal entry's cursor) and its offset (0 in the journal).
type Origin<'a> = (&'a str, u64);

/// The lines of one batch on their way: the events to send, in order, with
/// where each came from, and the lines already refused.
#[derive(Default)]
struct Outgoing<'a> {
    /// Origin and line of each event.
    origins: Vec<(Origin<'a>, &'a [u8])>,
    events: Vec<(String, Vec<u8>)>,
    /// Refused lines: origin, status, reason, line.
    refused: Vec<(Origin<'a>, u16, String, &'a [u8])>,
    /// Lines refused before anything was read of them (oversized).
    dead: Vec<DeadLetter>,
}

impl<'a> Outgoing<'a> {
    fn push(
        &mut self,
        origin: Origin<'a>,
        line: &'a [u8],
        event: Result<(String, Vec<u8>), String>,
    ) {
        match event {
            Ok(e) => {
                self.origins.push((origin, line));
                self.events.push(e);
            }
            Err(why) => self.refused.push((origin, 0, why, line)),
        }
    }

    /// Sends the events until each is in the log or refused; the counts of
    /// appended and repeated lines, and the dead letters, in line order.
    async fn send(
        mut self,
        client: &Client,
        verifier: &ReceiptVerifier,
        retry: &Retry,
        file: &std::path::Path,
    ) -> Result<(u64, u64, Vec<DeadLetter>), ShipError> {
        let (mut appended, mut duplicates) = (0, 0);
        let mut one_by_one = false;
        // events[..sent] are in the log.
        let mut sent = 0;
        while sent < self.events.len() {
            let end = if one_by_one {
                sent + 1
            } else {
                self.events.len()
            };
            match client
                .submit_encoded(&self.events[sent..end], Wait::Checkpoint, retry, verifier)
                .await
            {
                Ok(s) => {
                    for r in &s.receipts {
                        if r.duplicate {
                            duplicates += 1;
                        } else {
                            appended += 1;
                        }
                    }
                    sent = end;
                }
                Err(SubmitError::Refused { status, message })
                    if matches!(status, 400 | 413 | 422) =>
                {
                    let at = if end - sent == 1 {
                        Some(0)
                    } else {
                        refused_position(&message).filter(|&i| i < end - sent)
                    };
                    match at {
                        Some(i) => {
                            let (origin, line) = self.origins.remove(sent + i);
                            self.events.remove(sent + i);
                            self.refused.push((origin, status, message, line));
                        }
                        // The server did not say which line: find it one by one.
                        None => one_by_one = true,
                    }
                }
                Err(SubmitError::Verification(why)) => return Err(ShipError::Verification(why)),
                Err(e) => return Err(ShipError::Refused(e.to_string())),
            }
        }
        let mut dead = self.dead;
        dead.extend(
            self.refused
                .into_iter()
                .map(|((identity, offset), status, reason, line)| DeadLetter {
                    file: file.to_path_buf(),
                    identity: identity.to_owned(),
                    offset,
                    status,
                    reason,
                    line: String::from_utf8_lossy(line).into_owned(),
                }),
        );
        dead.sort_by_key(|d| d.offset);
        Ok((appended, duplicates, dead))
    }
}

/// The line as `(id, event JSON)`: its own `id`, or one from its place
/// spliced in; or why it is not one event. The line is read once, without
/// building it in memory (the server validates the event itself).
fn event_of(
    line: &[u8],
    id_from_place: impl FnOnce() -> String,
) -> Result<(String, Vec<u8>), String> {
    let probe = Probe::of(line)?;
    match probe.id {
        Some(Some(id)) => Ok((id, line.to_vec())),
        Some(None) => Err("the line's id is not a string".into()),
        None => {
            let id = id_from_place();
            // The line is an object: its first non-blank byte is `{`.
            let open = line.iter().position(|&b| b == b'{').unwrap_or(0);
            let mut out = Vec::with_capacity(line.len() + id.len() + 8);
            out.extend_from_slice(b"{\"id\":\"");
            out.extend_from_slice(id.as_bytes());
            out.push(b'"');
            if !probe.empty {
                out.push(b',');
            }
            out.extend_from_slice(&line[open + 1..]);
            Ok((id, out))
        }
    }
}

/// What the agent needs to know of a line: that it is one JSON object (not
/// a batch), its `id` (`Some(None)`: present but not a string), and
/// whether it has no members at all.
struct Probe {
    id: Option<Option<String>>,
    empty: bool,
}

impl Probe {
    fn of(line: &[u8]) -> Result<Probe, String> {
        use serde::Deserializer as _;
        let mut de = serde_json::Deserializer::from_slice(line);
        let probe = de
            .deserialize_map(ProbeVisitor)
            .map_err(|e| format!("the line is not one JSON event object: {e}"))?;
        de.end().map_err(|e| format!("the line is not JSON: {e}"))?;
        probe
    }
}

struct ProbeVisitor;

impl<'de> serde::de::Visitor<'de> for ProbeVisitor {
    type Value = Result<Probe, String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut probe = Probe {
            id: None,
            empty: true,
        };
        let mut batch = false;
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            probe.empty = false;
            match k.as_ref() {
                "id" => {
                    probe.id = Some(match map.next_value::<Value>()? {
                        Value::String(s) => Some(s),
                        _ => None,
                    });
                }
                other => {
                    batch |= other == "events";
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(if batch {
            Err("the line is not one JSON event object".into())
        } else {
            Ok(probe)
        })
    }
}

/// The position the server names in a refusal (`events[3].actor.id: ...`).
fn refused_position(message: &str) -> Option<usize> {
    let rest = &message[message.find("events[")? + "events[".len()..];
    rest[..rest.find(']')?].parse().ok()
}

/// Takes one delivered batch into the state in memory, after writing its
/// dead letters (synced): a later [`save`] moves past them. False when the
/// state did not change.
fn apply(
    disk: &mut Disk,
    state: &mut State,
    done: Delivered,
    stats: &mut Stats,
) -> Result<bool, ShipError> {
    let (progress, appended, duplicates, dead) = match done {
        Delivered::Forget(key) => return Ok(state.files.remove(&key).is_some()),
        Delivered::Sent {
            progress,
            appended,
            duplicates,
            dead,
        } => (progress, appended, duplicates, dead),
    };
    disk.dead_letter(&dead).map_err(|why| ShipError::Disk {
        path: disk.dead_letter_path().to_path_buf(),
        why,
    })?;
    match progress {
        Progress::File { key, path, end } => {
            state.files.insert(key, FileState { path, offset: end });
        }
        Progress::Journal(Some(cursor)) => state.journal_cursor = Some(cursor),
        Progress::Journal(None) => {}
    }
    count(stats, appended, duplicates, dead.len() as u64);
    Ok(true)
}

/// Adds one committed batch to the counts and the metrics.
fn count(stats: &mut Stats, appended: u64, duplicates: u64, dead: u64) {
    stats.appended += appended;
    stats.duplicates += duplicates;
    stats.dead_letters += dead;
    stats.batches += 1;
    metrics::counter!("veritrail_ship_lines_total", "outcome" => "appended").increment(appended);
    metrics::counter!("veritrail_ship_lines_total", "outcome" => "duplicate").increment(duplicates);
    metrics::counter!("veritrail_ship_lines_total", "outcome" => "dead_letter").increment(dead);
    metrics::counter!("veritrail_ship_batches_total").increment(1);
}

/// Writes the state file: the files' offsets and the last verified checkpoint.
fn save(
    disk: &Disk,
    state: &mut State,
    verifier: &ReceiptVerifier,
    stats: &mut Stats,
) -> Result<(), ShipError> {
    let latest = verifier.latest();
    if let Some(cp) = &latest {
        stats.checkpoint_size = cp.known.size;
        metrics::gauge!("veritrail_ship_checkpoint_size").set(cp.known.size as f64);
    }
    state.checkpoint = latest.map(|cp| cp.note);
    disk.save(state).map_err(|why| ShipError::Disk {
        path: disk.state_path().to_path_buf(),
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_becomes_an_event_with_an_id_from_its_place() {
        let parse = |e: (String, Vec<u8>)| (e.0, serde_json::from_slice::<Value>(&e.1).unwrap());
        let (id, v) = parse(event_of(br#" {"action":"a"}"#, || "ship-1-2-ab-0-42".into()).unwrap());
        assert_eq!(
            (id.as_str(), &v["id"]),
            ("ship-1-2-ab-0-42", &Value::from(id.clone()))
        );
        assert_eq!(v["action"], "a");
        let (id, v) = parse(event_of(b"{ }", || "ship-k-7".into()).unwrap());
        assert_eq!(
            (id.as_str(), v),
            ("ship-k-7", serde_json::json!({"id": "ship-k-7"}))
        );
        let (id, _) = parse(event_of(br#"{"id":"own"}"#, || "ship-k-0".into()).unwrap());
        assert_eq!(id, "own");
        assert!(event_of(b"not json", || "ship-k-0".into()).is_err());
        assert!(event_of(b"[1]", || "ship-k-0".into()).is_err());
        assert!(event_of(br#"{"events":[]}"#, || "ship-k-0".into()).is_err());
        assert!(event_of(br#"{"id":3}"#, || "ship-k-0".into()).is_err());
    }

    #[test]
    fn the_refused_position_is_read_from_the_message() {
        assert_eq!(refused_position("events[3].actor.id: too long"), Some(3));
        assert_eq!(refused_position("events[12]: not an object"), Some(12));
        assert_eq!(refused_position("body is not valid JSON"), None);
    }
}
