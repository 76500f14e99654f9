//! The snapshot stream format: pure encoding and a strict, incremental
//! decoder (no I/O). A snapshot is untrusted input when restored.
//!
//! ```text
//! snapshot = MAGIC frame* end
//! frame    = kind(u8) || length(u32 BE) || payload
//! header   = kind 0x01, payload: JSON SnapshotHeader          (first frame)
//! record   = kind 0x02, payload: space(u8) || u16 key len || key || value
//! tile     = kind 0x03, payload: level(u8) || index(u64) || hashes
//! bundle   = kind 0x04, payload: index(u64) || bundle
//! event    = kind 0x05, payload: index(u64) || StoredEvent::encode
//! dedupe   = kind 0x06, payload: index(u64) || u16 app len || app || id   (read only)
//! leaf     = kind 0x07, payload: index(u64) || leaf hash(32)             (read only)
//! dedupe2  = kind 0x08, payload: index(u64) || idempotency key(16)
//! end      = kind 0xFF, payload: frame count(u64) || SHA-256 of every byte before this frame
//! ```
//!
//! Snapshots carry idempotency entries as their 16-byte keys (0x08), and
//! no leaf-hash entries: a restore derives those from the level-0 tiles.
//! The older frames 0x06 and 0x07 are still read.
//!
//! Invariant: [`SnapshotReader`] yields frames only from a stream that
//! starts with the magic and a header, and accepts the stream as complete
//! only when the end frame's count and SHA-256 match what it read — a
//! truncated or altered download is never taken for a backup.

use sha2::{Digest, Sha256};

use crate::merkle::Hash;
use crate::note::keys::LogVerifierKeys;
use crate::store::{DedupeKey, RecordSpace, StoredEvent};

/// First bytes of every snapshot.
pub const MAGIC: &[u8] = b"veritrail-snapshot/1\n";
/// Largest frame payload accepted (a tile is 8 KiB, a bundle at most ~17 MiB
/// in theory; real ones are far smaller).
pub const MAX_FRAME: usize = 32 << 20;

const HEADER: u8 = 0x01;
const RECORD: u8 = 0x02;
const TILE: u8 = 0x03;
const BUNDLE: u8 = 0x04;
const EVENT: u8 = 0x05;
const DEDUPE: u8 = 0x06;
const LEAF: u8 = 0x07;
const DEDUPE_KEY: u8 = 0x08;
const END: u8 = 0xFF;

/// Every record space, in the order a snapshot carries them. A new
/// [`RecordSpace`] must be added here (its byte is [`RecordSpace::code`]),
/// but for the alert rules' windows (`AlertState`): they are checkpointed
/// apart from the log's batches, so they could name events past the
/// snapshot's cut, and a restored log starts with empty windows.
pub const RECORD_SPACES: [RecordSpace; 6] = [
    RecordSpace::Meta,
    RecordSpace::ApiKey,
    RecordSpace::DataKey,
    RecordSpace::Sealed,
    RecordSpace::Erased,
    RecordSpace::Governance,
];

fn space_of(b: u8) -> Option<RecordSpace> {
    RECORD_SPACES.iter().copied().find(|s| s.code() == b)
}

/// What a snapshot is of: which log, at which size, under which checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotHeader {
    /// The log's origin.
    pub origin: String,
    /// Entries in the snapshot: the tree was committed at this size.
    pub tree_size: u64,
    /// The latest checkpoint published when the snapshot was taken
    /// (its size is at most `tree_size`), signed note text.
    pub checkpoint: String,
    /// When that checkpoint was signed (Unix ms).
    pub checkpoint_published_at_ms: i64,
    /// The log's verifier keys, to recognise the right private keys at restore.
    pub ecdsa_vkey: String,
    /// See `ecdsa_vkey`.
    pub ed25519_vkey: String,
    /// When the snapshot was taken (RFC 3339).
    pub taken_at: String,
}

impl SnapshotHeader {
    /// The verifier keys named in the header.
    pub fn verifier_keys(&self) -> LogVerifierKeys {
        LogVerifierKeys {
            ecdsa: self.ecdsa_vkey.clone(),
            ed25519: self.ed25519_vkey.clone(),
        }
    }
}

/// One object of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// What the snapshot is of.
    Header(SnapshotHeader),
    /// A small record.
    Record {
        /// Its space.
        space: RecordSpace,
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// A hash tile at the snapshot's size.
    Tile {
        /// Tile level.
        level: u8,
        /// Tile index.
        index: u64,
        /// The hashes.
        hashes: Vec<u8>,
    },
    /// An entry bundle at the snapshot's size.
    Bundle {
        /// Bundle index.
        index: u64,
        /// The encoded bundle.
        data: Vec<u8>,
    },
    /// A stored event body.
    Event {
        /// Leaf index.
        index: u64,
        /// The body, salt and app.
        event: StoredEvent,
    },
    /// An idempotency entry.
    Dedupe {
        /// Leaf index of the first occurrence.
        index: u64,
        /// App id.
        app: String,
        /// Event id.
        id: String,
    },
    /// An idempotency entry by its key.
    DedupeKey {
        /// Leaf index of the first occurrence.
        index: u64,
        /// The key of the app and event id.
        key: DedupeKey,
    },
    /// A leaf-hash index entry.
    LeafIndex {
        /// Leaf index.
        index: u64,
        /// Leaf hash.
        hash: Hash,
    },
}

/// Why a snapshot stream is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The stream is not a Veritrail snapshot, or is damaged.
    #[error("not a valid snapshot: {0}")]
    Invalid(String),
    /// The stream ended before its end frame.
    #[error("the snapshot is incomplete (it ends before its end frame): the transfer was cut")]
    Truncated,
}

fn invalid(m: impl Into<String>) -> FormatError {
    FormatError::Invalid(m.into())
}

fn frame(kind: u8, payload: &[u8]) -> Result<Vec<u8>, FormatError> {
    if payload.len() > MAX_FRAME {
        return Err(invalid(format!(
            "a frame of {} bytes exceeds the limit",
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

fn short_string(out: &mut Vec<u8>, s: &[u8]) -> Result<(), FormatError> {
    let len = u16::try_from(s.len()).map_err(|_| invalid("a key is longer than 65535 bytes"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s);
    Ok(())
}

/// Encodes one frame.
pub fn encode(f: &Frame) -> Result<Vec<u8>, FormatError> {
    let mut p = Vec::new();
    let kind = match f {
        Frame::Header(h) => {
            p = serde_json::to_vec(h).map_err(|e| invalid(e.to_string()))?;
            HEADER
        }
        Frame::Record { space, key, value } => {
            p.push(space.code());
            short_string(&mut p, key)?;
            p.extend_from_slice(value);
            RECORD
        }
        Frame::Tile {
            level,
            index,
            hashes,
        } => {
            p.push(*level);
            p.extend_from_slice(&index.to_be_bytes());
            p.extend_from_slice(hashes);
            TILE
        }
        Frame::Bundle { index, data } => {
            p.extend_from_slice(&index.to_be_bytes());
            p.extend_from_slice(data);
            BUNDLE
        }
        Frame::Event { index, event } => {
            p.extend_from_slice(&index.to_be_bytes());
            p.extend_from_slice(&event.encode());
            EVENT
        }
        Frame::Dedupe { index, app, id } => {
            p.extend_from_slice(&index.to_be_bytes());
            short_string(&mut p, app.as_bytes())?;
            p.extend_from_slice(id.as_bytes());
            DEDUPE
        }
        Frame::LeafIndex { index, hash } => {
            p.extend_from_slice(&index.to_be_bytes());
            p.extend_from_slice(hash.as_bytes());
            LEAF
        }
        Frame::DedupeKey { index, key } => {
            p.extend_from_slice(&index.to_be_bytes());
            p.extend_from_slice(&key.0);
            DEDUPE_KEY
        }
    };
    frame(kind, &p)
}

/// Builds a snapshot stream: the magic, then frames, then the end frame.
pub struct SnapshotWriter {
    hasher: Sha256,
    frames: u64,
}

impl Default for SnapshotWriter {
    fn default() -> Self {
        SnapshotWriter::new()
    }
}

impl SnapshotWriter {
    /// A writer; [`SnapshotWriter::start`] gives the first bytes.
    pub fn new() -> SnapshotWriter {
        SnapshotWriter {
            hasher: Sha256::new(),
            frames: 0,
        }
    }

    /// The magic.
    pub fn start(&mut self) -> Vec<u8> {
        self.hasher.update(MAGIC);
        MAGIC.to_vec()
    }

    /// The bytes of one frame.
    pub fn frame(&mut self, f: &Frame) -> Result<Vec<u8>, FormatError> {
        let bytes = encode(f)?;
        self.hasher.update(&bytes);
        self.frames += 1;
        Ok(bytes)
    }

    /// The end frame.
    pub fn finish(self) -> Result<Vec<u8>, FormatError> {
        let mut p = self.frames.to_be_bytes().to_vec();
        p.extend_from_slice(&self.hasher.finalize());
        frame(END, &p)
    }
}

/// Decodes a snapshot stream fed in pieces of any size.
pub struct SnapshotReader {
    buf: Vec<u8>,
    hasher: Sha256,
    magic_seen: bool,
    frames: u64,
    ended: bool,
    digest: Option<[u8; 32]>,
}

impl Default for SnapshotReader {
    fn default() -> Self {
        SnapshotReader::new()
    }
}

fn u64_at(p: &[u8], at: usize) -> Result<u64, FormatError> {
    p.get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| invalid("a frame is too short"))
}

fn short_string_at(p: &[u8], at: usize) -> Result<(&[u8], usize), FormatError> {
    let len = p
        .get(at..at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| invalid("a frame is too short"))?;
    let s = p
        .get(at + 2..at + 2 + len)
        .ok_or_else(|| invalid("a frame is too short"))?;
    Ok((s, at + 2 + len))
}

fn decode(kind: u8, p: &[u8]) -> Result<Frame, FormatError> {
    Ok(match kind {
        HEADER => {
            Frame::Header(serde_json::from_slice(p).map_err(|e| invalid(format!("header: {e}")))?)
        }
        RECORD => {
            let space = p
                .first()
                .and_then(|b| space_of(*b))
                .ok_or_else(|| invalid("a record of an unknown space"))?;
            let (key, rest) = short_string_at(p, 1)?;
            Frame::Record {
                space,
                key: key.to_vec(),
                value: p[rest..].to_vec(),
            }
        }
        TILE => {
            let level = *p.first().ok_or_else(|| invalid("a frame is too short"))?;
            let hashes = p[9.min(p.len())..].to_vec();
            if hashes.is_empty() || !hashes.len().is_multiple_of(32) || hashes.len() > 256 * 32 {
                return Err(invalid("a tile is not 1 to 256 hashes"));
            }
            Frame::Tile {
                level,
                index: u64_at(p, 1)?,
                hashes,
            }
        }
        BUNDLE => Frame::Bundle {
            index: u64_at(p, 0)?,
            data: p[8.min(p.len())..].to_vec(),
        },
        EVENT => Frame::Event {
            index: u64_at(p, 0)?,
            event: StoredEvent::decode(&p[8.min(p.len())..])
                .map_err(|e| invalid(format!("event: {e}")))?,
        },
        DEDUPE => {
            let index = u64_at(p, 0)?;
            let (app, rest) = short_string_at(p, 8)?;
            let text = |b: &[u8]| {
                String::from_utf8(b.to_vec())
                    .map_err(|_| invalid("an idempotency key is not UTF-8"))
            };
            Frame::Dedupe {
                index,
                app: text(app)?,
                id: text(&p[rest..])?,
            }
        }
        LEAF => Frame::LeafIndex {
            index: u64_at(p, 0)?,
            hash: Hash::from_slice(p.get(8..).unwrap_or_default())
                .map_err(|_| invalid("a leaf hash is not 32 bytes"))?,
        },
        DEDUPE_KEY => Frame::DedupeKey {
            index: u64_at(p, 0)?,
            key: DedupeKey(
                p.get(8..)
                    .and_then(|k| k.try_into().ok())
                    .ok_or_else(|| invalid("an idempotency key is not 16 bytes"))?,
            ),
        },
        other => return Err(invalid(format!("unknown frame kind {other:#04x}"))),
    })
}

impl SnapshotReader {
    /// A reader expecting the magic.
    pub fn new() -> SnapshotReader {
        SnapshotReader {
            buf: Vec::new(),
            hasher: Sha256::new(),
            magic_seen: false,
            frames: 0,
            ended: false,
            digest: None,
        }
    }

    /// Takes the next piece of the stream and returns the frames it completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, FormatError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        if !self.magic_seen {
            if self.buf.len() < MAGIC.len() {
                if !MAGIC.starts_with(&self.buf) {
                    return Err(invalid("it does not start with the snapshot magic"));
                }
                return Ok(out);
            }
            if &self.buf[..MAGIC.len()] != MAGIC {
                return Err(invalid("it does not start with the snapshot magic"));
            }
            self.hasher.update(MAGIC);
            self.magic_seen = true;
            at = MAGIC.len();
        }
        while self.buf.len() - at >= 5 {
            if self.ended {
                return Err(invalid("bytes follow the end frame"));
            }
            let kind = self.buf[at];
            let len = u32::from_be_bytes([
                self.buf[at + 1],
                self.buf[at + 2],
                self.buf[at + 3],
                self.buf[at + 4],
            ]) as usize;
            if len > MAX_FRAME {
                return Err(invalid(format!("a frame claims {len} bytes")));
            }
            if self.buf.len() - at < 5 + len {
                break;
            }
            let payload = &self.buf[at + 5..at + 5 + len];
            if kind == END {
                let frames = u64_at(payload, 0)?;
                let digest = payload
                    .get(8..)
                    .and_then(|d| <[u8; 32]>::try_from(d).ok())
                    .ok_or_else(|| invalid("the end frame is malformed"))?;
                let ours: [u8; 32] = self.hasher.clone().finalize().into();
                if frames != self.frames || digest != ours {
                    return Err(invalid(
                        "its checksum does not match its content (damaged or altered)",
                    ));
                }
                self.ended = true;
                self.digest = Some(ours);
            } else {
                let f = decode(kind, payload)?;
                let is_header = matches!(f, Frame::Header(_));
                if (self.frames == 0) != is_header {
                    return Err(invalid("the header must be the first frame, and only it"));
                }
                self.hasher.update(&self.buf[at..at + 5 + len]);
                self.frames += 1;
                out.push(f);
            }
            at += 5 + len;
        }
        self.buf.drain(..at);
        if self.ended && !self.buf.is_empty() {
            return Err(invalid("bytes follow the end frame"));
        }
        Ok(out)
    }

    /// Accepts the stream as complete: the end frame was read and nothing
    /// follows it. Returns the SHA-256 of the content.
    pub fn finish(&self) -> Result<[u8; 32], FormatError> {
        match self.digest {
            Some(d) if self.buf.is_empty() => Ok(d),
            Some(_) => Err(invalid("bytes follow the end frame")),
            None => Err(FormatError::Truncated),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SnapshotHeader {
        SnapshotHeader {
            origin: "example.com/log".into(),
            tree_size: 3,
            checkpoint: "note\n".into(),
            checkpoint_published_at_ms: 7,
            ecdsa_vkey: "e".into(),
            ed25519_vkey: "d".into(),
            taken_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    fn sample() -> (Vec<Frame>, Vec<u8>) {
        let frames = vec![
            Frame::Header(header()),
            Frame::Record {
                space: RecordSpace::ApiKey,
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
            Frame::Tile {
                level: 0,
                index: 2,
                hashes: vec![9; 64],
            },
            Frame::Bundle {
                index: 2,
                data: vec![0, 1, b'a'],
            },
            Frame::Event {
                index: 5,
                event: StoredEvent {
                    app: "a".into(),
                    salt: [3; 32],
                    event: b"{}".to_vec(),
                },
            },
            Frame::Dedupe {
                index: 5,
                app: "a".into(),
                id: "x".into(),
            },
            Frame::LeafIndex {
                index: 5,
                hash: Hash([4; 32]),
            },
            Frame::DedupeKey {
                index: 5,
                key: DedupeKey([6; 16]),
            },
        ];
        let mut w = SnapshotWriter::new();
        let mut bytes = w.start();
        for f in &frames {
            bytes.extend(w.frame(f).unwrap());
        }
        bytes.extend(w.finish().unwrap());
        (frames, bytes)
    }

    #[test]
    fn round_trips_in_pieces_of_any_size() {
        let (frames, bytes) = sample();
        for piece in [1, 2, 7, 64, bytes.len()] {
            let mut r = SnapshotReader::new();
            let mut got = Vec::new();
            for chunk in bytes.chunks(piece) {
                got.extend(r.feed(chunk).unwrap());
            }
            r.finish().unwrap();
            assert_eq!(got, frames, "piece size {piece}");
        }
    }

    #[test]
    fn a_cut_or_altered_stream_is_rejected() {
        let (_, bytes) = sample();
        let mut r = SnapshotReader::new();
        r.feed(&bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(r.finish(), Err(FormatError::Truncated)));
        // Flip one bit anywhere in a frame body: a decode error or a checksum mismatch.
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            let mut r = SnapshotReader::new();
            let ok = r.feed(&bad).is_ok() && r.finish().is_ok();
            assert!(!ok, "a flipped bit at {at} went unnoticed");
        }
        let mut r = SnapshotReader::new();
        assert!(r.feed(b"not a snapshot at all").is_err());
        let mut extra = bytes.clone();
        extra.push(0);
        let mut r = SnapshotReader::new();
        assert!(r.feed(&extra).is_err() || r.finish().is_err());
    }
}
