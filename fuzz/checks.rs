//! Property checks behind the fuzz targets (`fuzz/`), shared with the test that
//! replays every committed fuzz corpus (`tests/fuzz_corpus.rs`).
//!
//! Each check takes untrusted bytes, feeds them to one parser of the crate and
//! checks what must hold for *every* input: the parser never panics, and what
//! it accepts has exactly one encoding (it formats back to the very bytes it
//! was parsed from) and survives the round trip unchanged. A panic inside a
//! parser propagates; a broken property comes back as a [`Violation`], which
//! the fuzz target turns into a panic (a crash for libFuzzer).
//!
//! Not part of the library: the fuzz crate builds it as its own library, and
//! `tests/fuzz_corpus.rs` includes it as a module. It sees only the
//! library's public API.
//! Pure: no I/O.

use std::sync::OnceLock;

use serde_json::Value;

use veritrail::event::{self, AuditEvent, EventLimits, LeafRecord};
use veritrail::merkle::{self, Hash, NodeId, SubtreeSource};
use veritrail::note::{
    Checkpoint, CosignatureVerifier, Note, NoteError, NoteSignature, NoteVerifier,
    parse_verifier_key,
};
use veritrail::tiles::{self, Tile, TilePath};
use veritrail::witness::{AddCheckpoint, MAX_PROOF_LINES};

/// A property that did not hold for an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Violation(pub String);

/// A property check over one input.
pub type Check = fn(&[u8]) -> Result<(), Violation>;

/// Every fuzz target of `fuzz/` whose check lives here, by target name.
pub const TARGETS: &[(&str, Check)] = &[
    ("signed_note", signed_note),
    ("checkpoint", checkpoint),
    ("tile_path", tile_path),
    ("entry_bundle", entry_bundle),
    ("event_json", event_json),
    ("leaf_record", leaf_record),
    ("proof_verify", proof_verify),
    ("witness_request", witness_request),
    ("bundle_line", bundle_line),
    ("evidence_report", evidence_report),
];

/// The check of the target called `name`.
pub fn check_for(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}

fn ensure(holds: bool, what: impl FnOnce() -> String) -> Result<(), Violation> {
    if holds {
        Ok(())
    } else {
        Err(Violation(what()))
    }
}

/// Verifier keys of the published vectors (C2SP signed-note, golang.org/x/mod
/// note, transparency-dev/formats ECDSA, and the derived log, witness and
/// ECDSA keys): seeds signed by them reach the signature code, not only the
/// parser.
const FIXED_VKEYS: &[&str] = &[
    "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop",
    "example.com/log+baa06b0f+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    "example.com/witness+fae09774+BNdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea",
    "example.com/ecdsa-log+5a7a78cc+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABGD+1LolWp0xyWHrdMY1bWjASbiSO2H6bOZpYi5g8p+2eQP+EAi4vJmkGunpVii8ZPLxsgwtfp9Rd6PClNRGIpk=",
    "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc=",
    "pixel6_transparency_log+91c16e30+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABN+4x0Jk1yTwvLFI9A4NDdGZcX0aiWVdWM5XJVy0M4VWD3AvyW5Q6Hs9A0mcDkpUoYgn+KKPNzFC0H3nN3q6JQ8=",
];

/// The verifiers of [`FIXED_VKEYS`], parsed once.
pub fn fixed_verifiers() -> &'static [Box<dyn NoteVerifier>] {
    static VERIFIERS: OnceLock<Vec<Box<dyn NoteVerifier>>> = OnceLock::new();
    VERIFIERS.get_or_init(|| {
        FIXED_VKEYS
            .iter()
            .filter_map(|k| parse_verifier_key(k).ok())
            .collect()
    })
}

/// Checks a parsed note's verification against the fixed keys: only known keys
/// are reported verified, a rejection names a known key the note carries.
fn check_verification(note: &Note) -> Result<(), Violation> {
    let verifiers: Vec<&dyn NoteVerifier> = fixed_verifiers().iter().map(|v| &**v).collect();
    let known = |name: &str, key_id: u32| {
        verifiers
            .iter()
            .any(|v| v.name() == name && v.key_id() == key_id)
    };
    let carried = |name: &str, key_id: u32| {
        note.signatures()
            .iter()
            .any(|s| s.name == name && s.key_id == key_id)
    };
    match note.verify(&verifiers) {
        Ok(verified) => {
            ensure(!verified.is_empty(), || {
                "verify succeeded with no verified signature".into()
            })?;
            for s in &verified {
                ensure(
                    known(&s.name, s.key_id) && note.signatures().contains(s),
                    || {
                        format!(
                            "verify reported {} {:08x}, not a known key's signature of the note",
                            s.name, s.key_id
                        )
                    },
                )?;
            }
        }
        Err(NoteError::InvalidSignature { name, key_id }) => {
            ensure(known(&name, key_id) && carried(&name, key_id), || {
                format!(
                    "verify rejected the note for {name} {key_id:08x}, which is not a known key it carries"
                )
            })?;
        }
        Err(NoteError::NoVerifiedSignature) => {}
        Err(e) => return Err(Violation(format!("verify failed unexpectedly: {e}"))),
    }
    Ok(())
}

/// `signed_note`: [`Note::parse`] accepts a note only if it formats back to
/// the same bytes, rebuilding it signature by signature gives the same note,
/// and verifying it against fixed keys behaves. Also feeds the bytes to the
/// signature-block and verifier-key parsers.
pub fn signed_note(data: &[u8]) -> Result<(), Violation> {
    if let Ok(note) = Note::parse(data) {
        ensure(note.to_bytes() == data, || {
            "an accepted note formats to other bytes".into()
        })?;
        let mut rebuilt = Note::new(note.text())
            .map_err(|e| Violation(format!("Note::new refuses an accepted note's text: {e}")))?;
        for s in note.signatures() {
            rebuilt.try_add_signature(s.clone()).map_err(|e| {
                Violation(format!(
                    "try_add_signature refuses a signature of an accepted note: {e}"
                ))
            })?;
        }
        ensure(rebuilt == note, || {
            "rebuilding an accepted note gives another note".into()
        })?;
        check_verification(&note)?;
    }
    if let Ok(sigs) = NoteSignature::parse_lines(data) {
        let lines: String = sigs.iter().map(NoteSignature::to_line).collect();
        ensure(lines.as_bytes() == data, || {
            "accepted signature lines format to other bytes".into()
        })?;
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_verifier_key(s);
        let _ = CosignatureVerifier::from_witness_key(s);
    }
    Ok(())
}

/// `checkpoint`: [`Checkpoint::parse`] accepts a text only if it formats back
/// to it, and a checkpoint whose text is a valid note text becomes that note.
/// The bytes are also read as a whole signed note carrying a checkpoint.
pub fn checkpoint(data: &[u8]) -> Result<(), Violation> {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cp) = Checkpoint::parse(text)
    {
        ensure(cp.to_text() == text, || {
            "an accepted checkpoint formats to another text".into()
        })?;
        if Note::new(text).is_ok() {
            let note = cp
                .to_note()
                .map_err(|e| Violation(format!("to_note refuses an accepted checkpoint: {e}")))?;
            ensure(note.text() == text, || {
                "to_note changed the checkpoint text".into()
            })?;
        }
    }
    if let Ok(note) = Note::parse(data)
        && let Ok(cp) = Checkpoint::from_note(&note)
    {
        ensure(cp.to_text() == note.text(), || {
            "a note's checkpoint formats to another text".into()
        })?;
        check_verification(&note)?;
    }
    Ok(())
}

/// `tile_path`: [`tiles::parse_tile_path`] accepts only canonical paths
/// (`path()` gives the input back) naming a valid tile; and, the other way,
/// any tile built from the first 11 bytes formats to a path that parses back
/// to it.
pub fn tile_path(data: &[u8]) -> Result<(), Violation> {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(parsed) = tiles::parse_tile_path(s)
    {
        ensure(parsed.path() == s, || {
            format!("accepted {s:?} formats as {:?}", parsed.path())
        })?;
        let t = parsed.tile();
        ensure(
            (1..=256).contains(&t.width) && t.level <= tiles::MAX_TILE_LEVEL,
            || format!("{s:?} parsed to an impossible tile {t:?}"),
        )?;
        if let TilePath::Entries(t) = parsed {
            ensure(t.level == 0, || {
                format!("entry bundle {s:?} has level {}", t.level)
            })?;
        }
    }
    if let [level, i0, i1, i2, i3, i4, i5, i6, i7, w0, w1, ..] = *data {
        let tile = Tile {
            level: level % (tiles::MAX_TILE_LEVEL + 1),
            index: u64::from_be_bytes([i0, i1, i2, i3, i4, i5, i6, i7]),
            width: u16::from_be_bytes([w0, w1]) % 256 + 1,
        };
        let hash = tile.hash_path();
        ensure(
            tiles::parse_tile_path(&hash).ok() == Some(TilePath::Hash(tile)),
            || format!("{tile:?} formats as {hash:?}, which does not parse back"),
        )?;
        let entries = tile.entries_path();
        let bundle = Tile { level: 0, ..tile };
        ensure(
            tiles::parse_tile_path(&entries).ok() == Some(TilePath::Entries(bundle)),
            || format!("{bundle:?} formats as {entries:?}, which does not parse back"),
        )?;
    }
    Ok(())
}

/// `entry_bundle`: [`tiles::decode_bundle`] accepts 1..=256 entries that
/// [`tiles::encode_bundle`] encodes back to the same bytes.
pub fn entry_bundle(data: &[u8]) -> Result<(), Violation> {
    if let Ok(entries) = tiles::decode_bundle(data) {
        ensure((1..=256).contains(&entries.len()), || {
            format!("decoded a bundle of {} entries", entries.len())
        })?;
        let encoded = tiles::encode_bundle(&entries)
            .map_err(|e| Violation(format!("a decoded bundle does not encode: {e}")))?;
        ensure(encoded == data, || {
            "a decoded bundle encodes to other bytes".into()
        })?;
    }
    Ok(())
}

/// `event_json`: for JSON the writer API would accept
/// ([`event::parse_event_batch`] with default limits), each event's canonical
/// bytes are JSON that parses back to the same event, with the same canonical
/// bytes, both through the schema and through the stored-event reader
/// (serde).
pub fn event_json(data: &[u8]) -> Result<(), Violation> {
    let Ok(raw) = serde_json::from_slice::<Value>(data) else {
        return Ok(());
    };
    let limits = EventLimits::default();
    let Ok(events) = event::parse_event_batch(&raw, &limits) else {
        return Ok(());
    };
    for (i, e) in events.iter().enumerate() {
        let canonical = e.canonical_bytes();
        let again: Value = serde_json::from_slice(&canonical)
            .map_err(|err| Violation(format!("event {i}: canonical bytes are not JSON: {err}")))?;
        let reparsed = event::parse_event(&again, &limits).map_err(|err| {
            Violation(format!(
                "event {i}: canonical bytes are rejected by the schema: {err}"
            ))
        })?;
        ensure(reparsed == *e, || {
            format!("event {i}: canonical bytes parse to another event")
        })?;
        ensure(reparsed.canonical_bytes() == canonical, || {
            format!("event {i}: canonicalising twice changes the bytes")
        })?;
        let stored: AuditEvent = serde_json::from_slice(&canonical).map_err(|err| {
            Violation(format!(
                "event {i}: the stored-event reader rejects canonical bytes: {err}"
            ))
        })?;
        ensure(stored == *e, || {
            format!("event {i}: the stored-event reader reads another event")
        })?;
    }
    Ok(())
}

/// `leaf_record`: [`LeafRecord::parse`] accepts only the bytes
/// [`LeafRecord::to_bytes`] writes, for a record [`LeafRecord::new`] accepts.
pub fn leaf_record(data: &[u8]) -> Result<(), Violation> {
    if let Ok(record) = LeafRecord::parse(data) {
        ensure(record.to_bytes() == data, || {
            "an accepted leaf formats to other bytes".into()
        })?;
        let rebuilt = LeafRecord::new(record.app.clone(), record.received_ms, record.commitment)
            .map_err(|e| Violation(format!("LeafRecord::new refuses an accepted leaf: {e}")))?;
        ensure(rebuilt == record, || {
            "rebuilding an accepted leaf gives another record".into()
        })?;
    }
    Ok(())
}

/// A tree of any size (up to 2^64 − 1 leaves) whose leaves are all the same
/// hash, so every complete subtree of level `l` has the same, cheaply
/// computed hash: honest proofs for huge trees at the cost of a small table.
struct UniformTree {
    /// `by_level[l]` is the hash of every perfect subtree of 2^l leaves.
    by_level: Vec<Hash>,
}

impl UniformTree {
    fn get() -> &'static UniformTree {
        static TREE: OnceLock<UniformTree> = OnceLock::new();
        TREE.get_or_init(|| {
            let mut by_level = vec![merkle::leaf_hash(b"veritrail fuzz leaf")];
            for l in 1..64 {
                let below = by_level[l - 1];
                by_level.push(merkle::node_hash(&below, &below));
            }
            UniformTree { by_level }
        })
    }

    fn leaf(&self) -> Hash {
        self.by_level[0]
    }
}

/// A node id outside the table: only asked for when proof code is wrong.
#[derive(Debug, thiserror::Error)]
#[error("no subtree {0:?} in a tree of 2^64 - 1 leaves")]
struct NoSuchSubtree(NodeId);

impl SubtreeSource for UniformTree {
    type Error = NoSuchSubtree;
    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, NoSuchSubtree> {
        nodes
            .iter()
            .map(|n| {
                n.leaf_range()
                    .and_then(|_| self.by_level.get(usize::from(n.level)).copied())
                    .ok_or(NoSuchSubtree(*n))
            })
            .collect()
    }
}

/// `proof_verify`: arbitrary index, size, hashes and proof into
/// [`merkle::verify_inclusion`] and [`merkle::verify_consistency`] never panic,
/// and accept only proofs of the RFC length. The same two numbers as sizes of
/// a [`UniformTree`]: the proofs the crate generates verify, at any size.
///
/// Layout: `a: u64 BE | b: u64 BE | hash x | hash y | proof hashes (32 bytes
/// each; a short tail is ignored)`; missing bytes read as zero.
pub fn proof_verify(data: &[u8]) -> Result<(), Violation> {
    let mut head = [0u8; 80];
    let n = data.len().min(head.len());
    head[..n].copy_from_slice(&data[..n]);
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[at..at + 8]);
        u64::from_be_bytes(b)
    };
    let hash_at = |at: usize| {
        let mut b = [0u8; 32];
        b.copy_from_slice(&head[at..at + 32]);
        Hash::from_bytes(b)
    };
    let (a, b) = (word(0), word(8));
    let (x, y) = (hash_at(16), hash_at(48));
    let proof: Vec<Hash> = data
        .get(80..)
        .unwrap_or_default()
        .chunks_exact(32)
        .filter_map(|c| Hash::from_slice(c).ok())
        .collect();

    // Arbitrary proofs: never a panic; acceptance only at the RFC length.
    let root = merkle::root_from_inclusion_proof(a, b, &x, &proof);
    let inclusion = merkle::verify_inclusion(a, b, &x, &proof, &y);
    ensure(
        inclusion.is_ok() == (root.as_ref().ok() == Some(&y)),
        || "verify_inclusion disagrees with root_from_inclusion_proof".into(),
    )?;
    if root.is_ok() {
        ensure(
            merkle::inclusion_proof_len(a, b) == Some(proof.len()),
            || {
                format!(
                    "inclusion proof of {} hashes accepted for index {a}, size {b}",
                    proof.len()
                )
            },
        )?;
    }
    if merkle::verify_consistency(a, b, &x, &y, &proof).is_ok() {
        ensure(
            merkle::consistency_proof_len(a, b) == Some(proof.len()),
            || {
                format!(
                    "consistency proof of {} hashes accepted for sizes {a} -> {b}",
                    proof.len()
                )
            },
        )?;
    }

    // Honest proofs over a uniform tree of any size verify.
    let tree = UniformTree::get();
    let root_of = |size: u64| {
        merkle::tree_root(size, tree)
            .map_err(|e| Violation(format!("tree_root({size}) failed: {e}")))
    };
    if a < b {
        let path = merkle::inclusion_proof(a, b, tree)
            .map_err(|e| Violation(format!("inclusion_proof({a}, {b}) failed: {e}")))?;
        merkle::verify_inclusion(a, b, &tree.leaf(), &path, &root_of(b)?).map_err(|e| {
            Violation(format!(
                "honest inclusion proof ({a}, {b}) does not verify: {e}"
            ))
        })?;
    }
    if 0 < a && a <= b {
        let path = merkle::consistency_proof(a, b, tree)
            .map_err(|e| Violation(format!("consistency_proof({a}, {b}) failed: {e}")))?;
        merkle::verify_consistency(a, b, &root_of(a)?, &root_of(b)?, &path).map_err(|e| {
            Violation(format!(
                "honest consistency proof {a} -> {b} does not verify: {e}"
            ))
        })?;
    }
    Ok(())
}

/// `witness_request`: [`AddCheckpoint::parse`] (c2sp.org/tlog-witness
/// `add-checkpoint` bodies) never panics; an accepted body formats back to
/// exactly its bytes, states the checkpoint of its note's text, carries at
/// most [`MAX_PROOF_LINES`] proof hashes, and its note's verification against
/// the fixed keys behaves.
pub fn witness_request(data: &[u8]) -> Result<(), Violation> {
    let Ok(req) = AddCheckpoint::parse(data) else {
        return Ok(());
    };
    let formatted = AddCheckpoint::format(req.old_size, &req.proof, &req.note.to_bytes());
    ensure(formatted == data, || {
        "an accepted request formats to other bytes".into()
    })?;
    ensure(
        Checkpoint::parse(req.note.text()).as_ref() == Ok(&req.checkpoint),
        || "the request's checkpoint is not its note's text".into(),
    )?;
    ensure(req.proof.len() <= MAX_PROOF_LINES, || {
        format!("accepted {} proof lines", req.proof.len())
    })?;
    check_verification(&req.note)
}

/// `bundle_line`: the evidence-bundle reader ([`veritrail::evidence::verify_bundle`])
/// and the tlog-proof reader ([`veritrail::evidence::verify_tlog_proof`]) never
/// panic, with the fixed key of `example.com/log` (the key of the seed
/// bundles' checkpoint); what they verify lies inside the verified tree and
/// names the key's origin.
pub fn bundle_line(data: &[u8]) -> Result<(), Violation> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let verifiers: Vec<&dyn NoteVerifier> = fixed_verifiers()
        .iter()
        .filter(|v| v.name() == "example.com/log")
        .map(|v| &**v)
        .collect();
    for verified in [
        veritrail::evidence::verify_bundle(text, &verifiers),
        veritrail::evidence::verify_tlog_proof(text, &verifiers),
    ]
    .into_iter()
    .flatten()
    {
        ensure(verified.origin == "example.com/log", || {
            format!("verified a bundle of origin {:?}", verified.origin)
        })?;
        if let Some(i) = verified.indexes.iter().find(|&&i| i >= verified.tree_size) {
            return Err(Violation(format!(
                "verified leaf {i} outside the tree of size {}",
                verified.tree_size
            )));
        }
    }
    Ok(())
}

/// An HTML page embedding `bundle` as the console's evidence report does
/// (`web/js/report.js`): base64 in one inert element, wrapped at 76 columns.
fn report_embedding(bundle: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bundle);
    let wrapped: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "<!DOCTYPE html>\n<html><body><h1>Evidence report</h1>\n<script type=\"application/x-ndjson;base64\" id=\"{}\">\n{}\n</script></body></html>\n",
        veritrail::evidence::report::BUNDLE_ELEMENT_ID,
        wrapped.join("\n")
    )
}

/// `evidence::report::bundle_from_report`, which reads the bundle out of an
/// HTML evidence report (`veritrail verify-bundle report.html`): it never
/// panics; it finds a bundle only in an HTML page, and the bundle it finds
/// comes back unchanged from a report embedding it; and any text embedded
/// as the console embeds it comes back byte for byte.
pub fn evidence_report(data: &[u8]) -> Result<(), Violation> {
    use veritrail::evidence::report::bundle_from_report;
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    if let Ok(Some(bundle)) = bundle_from_report(text) {
        ensure(
            text.trim_start()
                .to_ascii_lowercase()
                .starts_with("<!doctype html"),
            || "found a bundle in a text that is not an HTML page".into(),
        )?;
        let again = bundle_from_report(&report_embedding(&bundle));
        ensure(again.as_ref().ok() == Some(&Some(bundle.clone())), || {
            format!("the bundle found ({bundle:?}) does not survive re-embedding: {again:?}")
        })?;
    }
    let back = bundle_from_report(&report_embedding(text));
    ensure(back.as_ref().ok() == Some(&Some(text.to_string())), || {
        format!("the embedded text does not come back whole: {back:?}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixed_key_parses() {
        assert_eq!(fixed_verifiers().len(), FIXED_VKEYS.len());
    }

    fn proof_input(a: u64, b: u64) -> Vec<u8> {
        let mut input = a.to_be_bytes().to_vec();
        input.extend_from_slice(&b.to_be_bytes());
        input
    }

    #[test]
    fn honest_proofs_verify_at_small_and_huge_sizes() {
        assert_eq!(proof_verify(&[]), Ok(()));
        for (a, b) in [
            (2, 9),
            (0, 1),
            (1, 1),
            (255, 256),
            (u64::MAX - 1, u64::MAX),
            (1 << 63, u64::MAX),
            (1, u64::MAX),
        ] {
            assert_eq!(proof_verify(&proof_input(a, b)), Ok(()), "{a} {b}");
        }
    }

    #[test]
    fn a_wrong_proof_is_not_a_violation_but_a_rejection() {
        // Index 0 of a tree of 2 with a proof of one zero hash: well-formed,
        // rejected by the verifier, and not a broken property.
        let mut input = proof_input(0, 2);
        input.resize(80 + 32, 0);
        assert!(
            merkle::verify_inclusion(
                0,
                2,
                &Hash::from_bytes([0; 32]),
                &[Hash::from_bytes([0; 32])],
                &Hash::from_bytes([0; 32])
            )
            .is_err()
        );
        assert_eq!(proof_verify(&input), Ok(()));
    }

    #[test]
    fn uniform_tree_roots_match_a_real_tree() {
        let tree = UniformTree::get();
        for size in 1..=20u64 {
            let leaves = vec![tree.leaf(); size as usize];
            assert_eq!(
                merkle::tree_root(size, tree).unwrap(),
                merkle::root_from_leaf_hashes(&leaves),
                "size {size}"
            );
        }
    }

    #[test]
    fn checks_accept_the_spec_vectors() {
        let note = "example.com/log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n\
            \u{2014} example.com/log uqBrD8md6KH/K8nsTyCpMroEpsokvZnLjgKBwfmwqiP5VtzG9OOz0MvF+3swZXnW5cfj5dOF4rToWcwTH6a7b582ZAQ=\n";
        let parsed = Note::parse(note.as_bytes()).unwrap();
        let verifiers: Vec<&dyn NoteVerifier> = fixed_verifiers().iter().map(|v| &**v).collect();
        assert_eq!(parsed.verify(&verifiers).unwrap().len(), 1);
        assert_eq!(signed_note(note.as_bytes()), Ok(()));
        assert_eq!(checkpoint(note.as_bytes()), Ok(()));
        assert_eq!(tile_path(b"tile/0/x001/x234/067.p/112"), Ok(()));
        let bundle = hex::decode(
            "00000001000001100002202100023031000440414243000850515253545556570010606162636465666768696a6b6c6d6e6f",
        )
        .unwrap();
        assert_eq!(tiles::decode_bundle(&bundle).unwrap().len(), 8);
        assert_eq!(entry_bundle(&bundle), Ok(()));
    }
}
