//! Evidence bundles and tlog-proof files: how they are written, and their
//! offline verification.
//!
//! A bundle is NDJSON (one JSON object per line; docs/evidence-bundle.md is
//! the user-facing description):
//!
//! 1. a header: the log's origin and verifier keys, a signed checkpoint,
//!    when and for which query it was exported;
//! 2. one line per event: index, leaf, leaf hash, event, salt and the
//!    inclusion proof of the leaf in the header's checkpoint;
//! 3. an end line with the number of events, so a truncated bundle is
//!    detected.
//!
//! Verification trusts only the verifier keys the user gives, never the
//! ones in the bundle, and checks for each event: the commitment
//! recomputed from body and salt is the leaf's, the leaf hash is the
//! leaf's, and the inclusion proof leads from it to the signed root. A
//! failure names the line.
//!
//! Pure: no I/O.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::event::{self, EventLimits, LeafRecord};
use crate::merkle::{self, Hash};
use crate::note::{Checkpoint, CheckpointPolicy, NoteError, NoteVerifier, Rejection};

pub mod report;

/// The `type` of a bundle's header line.
pub const BUNDLE_TYPE: &str = "veritrail-evidence-bundle";
/// First line of a c2sp.org/tlog-proof file.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// The header of a bundle.
#[derive(Clone, Debug)]
pub struct BundleHeader {
    /// The log's origin.
    pub origin: String,
    /// The log's verifier keys (for information; verification uses the user's).
    pub verifier_keys: Vec<String>,
    /// The signed checkpoint note every proof leads to.
    pub checkpoint: String,
    /// RFC 3339 time of the export.
    pub exported_at: String,
    /// The query the bundle answers.
    pub query: Value,
}

/// One event of a bundle.
#[derive(Clone, Debug)]
pub struct BundleEvent {
    /// Leaf index.
    pub index: u64,
    /// The leaf record (canonical JSON text).
    pub leaf: String,
    /// Its RFC 6962 leaf hash.
    pub leaf_hash: Hash,
    /// The event (canonical form as JSON).
    pub event: Value,
    /// The commitment's salt.
    pub salt: [u8; 32],
    /// Inclusion proof of the leaf in the header's checkpoint.
    pub audit_path: Vec<Hash>,
}

fn line(v: Value) -> Vec<u8> {
    let mut out = v.to_string().into_bytes();
    out.push(b'\n');
    out
}

/// The header line.
pub fn header_line(h: &BundleHeader) -> Vec<u8> {
    line(json!({
        "type": BUNDLE_TYPE,
        "version": 1,
        "origin": h.origin,
        "verifier_keys": h.verifier_keys,
        "checkpoint": h.checkpoint,
        "exported_at": h.exported_at,
        "query": h.query,
    }))
}

fn event_json(e: &BundleEvent) -> Value {
    json!({
        "index": e.index,
        "leaf": e.leaf,
        "leaf_hash": e.leaf_hash.to_base64(),
        "event": e.event,
        "salt": hex::encode(e.salt),
    })
}

/// One event line.
pub fn event_line(e: &BundleEvent) -> Vec<u8> {
    let mut v = event_json(e);
    v["type"] = json!("event");
    v["inclusion_proof"] = json!(e.audit_path.iter().map(Hash::to_base64).collect::<Vec<_>>());
    line(v)
}

/// The end line.
pub fn end_line(count: u64) -> Vec<u8> {
    line(json!({ "type": "end", "events": count }))
}

/// A c2sp.org/tlog-proof file for one event, proven into `checkpoint`.
/// The `extra` line carries the event, salt and leaf (base64 of JSON).
pub fn tlog_proof_text(e: &BundleEvent, checkpoint: &str) -> String {
    let extra = base64::engine::general_purpose::STANDARD.encode(event_json(e).to_string());
    let mut out = format!("{TLOG_PROOF_HEADER}\nextra {extra}\nindex {}\n", e.index);
    for h in &e.audit_path {
        out.push_str(&h.to_base64());
        out.push('\n');
    }
    out.push('\n');
    out.push_str(checkpoint);
    out
}

/// Why a bundle or proof does not verify: the 1-based line and what is wrong.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {message}")]
pub struct BundleError {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn fail(line: usize, message: impl Into<String>) -> BundleError {
    BundleError {
        line,
        message: message.into(),
    }
}

/// What a verified bundle or proof holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The log's origin.
    pub origin: String,
    /// The verified checkpoint's tree size.
    pub tree_size: u64,
    /// The leaf indexes of the verified events, in file order.
    pub indexes: Vec<u64>,
}

/// Verifies a signed checkpoint note with `verifiers` under the checkpoint
/// policy: every given key must have signed it.
fn verify_checkpoint(
    note_text: &str,
    verifiers: &[&dyn NoteVerifier],
) -> Result<Checkpoint, String> {
    if verifiers.is_empty() {
        return Err("no verifier key given".into());
    }
    let policy = CheckpointPolicy::new(
        verifiers
            .iter()
            .map(|v| Box::new(*v) as Box<dyn NoteVerifier + '_>)
            .collect(),
    );
    let not_signed_by = |key: usize| {
        let v = verifiers[key];
        format!(
            "checkpoint is not signed by the given key {}+{:08x}",
            v.name(),
            v.key_id()
        )
    };
    match policy.check(note_text.as_bytes(), None) {
        Ok(accepted) => Ok(accepted.checkpoint),
        Err(Rejection::MalformedNote(e)) => Err(format!("checkpoint is not a signed note: {e}")),
        Err(Rejection::MalformedCheckpoint(e)) => Err(format!("checkpoint body is malformed: {e}")),
        Err(Rejection::BadLogSignature { key }) => {
            let v = verifiers[key];
            Err(format!(
                "checkpoint signature does not verify: {}",
                NoteError::InvalidSignature {
                    name: v.name().to_string(),
                    key_id: v.key_id()
                }
            ))
        }
        Err(Rejection::OriginMismatch { key, .. } | Rejection::MissingLogSignature { key, .. }) => {
            Err(not_signed_by(key))
        }
        Err(other) => Err(format!("checkpoint: {other}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFields {
    #[serde(rename = "type", default)]
    _kind: Option<String>,
    index: u64,
    leaf: String,
    leaf_hash: String,
    event: Value,
    salt: String,
    #[serde(default)]
    inclusion_proof: Option<Vec<String>>,
}

/// Checks that an event answers the header's query: each equality filter,
/// whether the log's own audit records were excluded, and the time ranges
/// (when it occurred, when the log received it). Bundles exported before
/// occurred-time filters existed named the receive-time range `since` and
/// `until`; those still mean the receive time here. The console's
/// `queryMismatch` (web/js/evidence-bundle.js) applies the same rules.
fn matches_query(f: &EventFields, record: &LeafRecord, query: &Value) -> Result<(), String> {
    let fields = [
        ("subject", &f.event["subject"]),
        ("actor", &f.event["actor"]["id"]),
        ("action", &f.event["action"]),
        ("resource", &f.event["resource"]["id"]),
        ("outcome", &f.event["outcome"]),
        ("purpose", &f.event["purpose"]),
    ];
    for (name, have) in fields {
        if let Some(want) = query[name].as_str()
            && have.as_str() != Some(want)
        {
            return Err(format!(
                "the event does not match the bundle's query ({name})"
            ));
        }
    }
    if let Some(app) = query["app"].as_str()
        && record.app != app
    {
        return Err("the event does not match the bundle's query (app)".into());
    }
    if query["include_audit"] == Value::Bool(false) && record.app == crate::auth::INTERNAL_APP {
        return Err("the bundle's query excludes the log's own audit records".into());
    }
    let bound = |names: &[&str]| -> Result<Option<i64>, String> {
        let Some((name, t)) = names
            .iter()
            .find_map(|n| query[*n].as_str().map(|t| (*n, t)))
        else {
            return Ok(None);
        };
        event::parse_rfc3339_ms(t)
            .map(Some)
            .map_err(|e| format!("query {name}: {e}"))
    };
    let outside = |t: i64, since: Option<i64>, until: Option<i64>| {
        since.is_some_and(|s| t < s) || until.is_some_and(|u| t >= u)
    };
    if outside(
        record.received_ms,
        bound(&["received_since", "since"])?,
        bound(&["received_until", "until"])?,
    ) {
        return Err("the event's receive time is outside the bundle's query".into());
    }
    let occurred_since = bound(&["occurred_since"])?;
    let occurred_until = bound(&["occurred_until"])?;
    if occurred_since.is_some() || occurred_until.is_some() {
        let occurred = f.event["occurred_at"]
            .as_str()
            .and_then(|t| event::parse_rfc3339_ms(t).ok())
            .ok_or("the event has no valid occurred_at")?;
        if outside(occurred, occurred_since, occurred_until) {
            return Err("the event's occurred time is outside the bundle's query".into());
        }
    }
    Ok(())
}

/// Checks one event against the checkpoint, given its proof; returns its leaf.
fn verify_event(f: &EventFields, path: &[Hash], cp: &Checkpoint) -> Result<LeafRecord, String> {
    let salt: [u8; 32] = hex::decode(&f.salt)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("salt: not 32 bytes of hex")?;
    let parsed = event::parse_event(&f.event, &EventLimits::default())
        .map_err(|e| format!("event is not a valid audit event: {e}"))?;
    let canonical = parsed.canonical_bytes();
    let as_given = serde_json_canonicalizer::to_vec(&f.event)
        .map_err(|e| format!("event cannot be canonicalised: {e}"))?;
    if canonical != as_given {
        return Err("event is not in canonical (normalised) form".into());
    }
    let record =
        LeafRecord::parse(f.leaf.as_bytes()).map_err(|e| format!("leaf is malformed: {e}"))?;
    let computed = event::commitment(&salt, &canonical);
    if computed != record.commitment {
        return Err(format!(
            "the commitment recomputed from event and salt ({}) is not the leaf's ({}): event, salt or leaf was altered",
            computed.to_hex(),
            record.commitment.to_hex()
        ));
    }
    let leaf_hash = merkle::leaf_hash(f.leaf.as_bytes());
    let stated = Hash::from_base64(&f.leaf_hash).map_err(|e| format!("leaf_hash: {e}"))?;
    if leaf_hash != stated {
        return Err("leaf_hash is not the hash of the leaf".into());
    }
    if f.index >= cp.size {
        return Err(format!(
            "index {} is not in the checkpoint's tree of size {}",
            f.index, cp.size
        ));
    }
    merkle::verify_inclusion(f.index, cp.size, &leaf_hash, path, &cp.root).map_err(|e| {
        format!(
            "inclusion proof of leaf {} does not lead to the signed root: {e}",
            f.index
        )
    })?;
    Ok(record)
}

fn hashes(list: &[String]) -> Result<Vec<Hash>, String> {
    list.iter()
        .map(|h| Hash::from_base64(h).map_err(|e| format!("inclusion_proof: {e}")))
        .collect()
}

/// Verifies an NDJSON evidence bundle offline with the log's verifier keys.
pub fn verify_bundle(text: &str, verifiers: &[&dyn NoteVerifier]) -> Result<Verified, BundleError> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
    let (n, first) = lines.next().ok_or_else(|| fail(1, "the file is empty"))?;
    let header: Value =
        serde_json::from_str(first).map_err(|e| fail(n, format!("not JSON: {e}")))?;
    if header["type"] != BUNDLE_TYPE || header["version"] != 1 {
        return Err(fail(n, format!("not a {BUNDLE_TYPE} version 1 header")));
    }
    let origin = header["origin"]
        .as_str()
        .ok_or_else(|| fail(n, "origin is missing"))?;
    let note = header["checkpoint"]
        .as_str()
        .ok_or_else(|| fail(n, "checkpoint is missing"))?;
    let cp = verify_checkpoint(note, verifiers).map_err(|m| fail(n, m))?;
    if cp.origin != origin {
        return Err(fail(
            n,
            format!(
                "the checkpoint is for origin {:?}, the header says {origin:?}",
                cp.origin
            ),
        ));
    }
    let mut indexes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut ended = false;
    for (n, l) in lines {
        if ended {
            return Err(fail(n, "content after the end line"));
        }
        if l.is_empty() {
            return Err(fail(n, "an empty line"));
        }
        let v: Value = serde_json::from_str(l).map_err(|e| fail(n, format!("not JSON: {e}")))?;
        match v["type"].as_str() {
            Some("event") => {
                let f: EventFields = serde_json::from_value(v)
                    .map_err(|e| fail(n, format!("malformed event line: {e}")))?;
                let path =
                    hashes(f.inclusion_proof.as_deref().unwrap_or(&[])).map_err(|m| fail(n, m))?;
                let record = verify_event(&f, &path, &cp).map_err(|m| fail(n, m))?;
                matches_query(&f, &record, &header["query"]).map_err(|m| fail(n, m))?;
                if !seen.insert(f.index) {
                    return Err(fail(n, format!("leaf {} appears twice", f.index)));
                }
                indexes.push(f.index);
            }
            Some("end") => {
                let count = v["events"]
                    .as_u64()
                    .ok_or_else(|| fail(n, "end line without an event count"))?;
                if count != indexes.len() as u64 {
                    return Err(fail(
                        n,
                        format!(
                            "the end line counts {count} events, the bundle has {}: events were added or removed",
                            indexes.len()
                        ),
                    ));
                }
                ended = true;
            }
            _ => return Err(fail(n, "a line of unknown type")),
        }
    }
    if !ended {
        return Err(fail(0, "the bundle has no end line: it is truncated"));
    }
    Ok(Verified {
        origin: cp.origin,
        tree_size: cp.size,
        indexes,
    })
}

/// Verifies a c2sp.org/tlog-proof file whose `extra` line carries the
/// event, salt and leaf (as `GET /v1/events/<index>/tlog-proof` writes it).
pub fn verify_tlog_proof(
    text: &str,
    verifiers: &[&dyn NoteVerifier],
) -> Result<Verified, BundleError> {
    let (head, note) = text
        .split_once("\n\n")
        .ok_or_else(|| fail(0, "no empty line before the checkpoint"))?;
    let mut lines = head.split('\n').enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, TLOG_PROOF_HEADER)) => {}
        _ => {
            return Err(fail(
                1,
                format!("the first line is not {TLOG_PROOF_HEADER}"),
            ));
        }
    }
    let mut extra = None;
    let mut index = None;
    let mut path = Vec::new();
    let mut index_line = 0;
    for (n, l) in lines {
        if let Some(e) = l.strip_prefix("extra ") {
            if index.is_some() || extra.is_some() {
                return Err(fail(n, "extra must come once, before the index"));
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(e)
                .map_err(|_| fail(n, "extra is not base64"))?;
            let f: EventFields = serde_json::from_slice(&raw)
                .map_err(|e| fail(n, format!("extra is not an event record: {e}")))?;
            extra = Some((n, f));
        } else if let Some(i) = l.strip_prefix("index ") {
            if index.is_some() {
                return Err(fail(n, "a second index line"));
            }
            index = Some(
                i.parse::<u64>()
                    .map_err(|_| fail(n, "index is not a number"))?,
            );
            index_line = n;
        } else if index.is_some() {
            path.push(Hash::from_base64(l).map_err(|e| fail(n, format!("proof hash: {e}")))?);
        } else {
            return Err(fail(n, "unexpected line before the index"));
        }
    }
    let index = index.ok_or_else(|| fail(0, "no index line"))?;
    let note_line = head.split('\n').count() + 2;
    let cp = verify_checkpoint(note, verifiers).map_err(|m| fail(note_line, m))?;
    let (n, f) = extra.ok_or_else(|| {
        fail(
            0,
            "no extra line: this file proves a leaf but does not carry the event",
        )
    })?;
    if f.index != index {
        return Err(fail(
            n,
            format!("extra is for leaf {}, the proof for {index}", f.index),
        ));
    }
    verify_event(&f, &path, &cp).map_err(|m| {
        let line = if m.contains("inclusion proof") {
            index_line
        } else {
            n
        };
        fail(line, m)
    })?;
    Ok(Verified {
        origin: cp.origin,
        tree_size: cp.size,
        indexes: vec![index],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::MemoryTree;
    use crate::note::keys::LogKeys;
    use crate::note::{Note, NoteSigner};

    const ORIGIN: &str = "example.com/log";

    /// A valid bundle of `n` events, and the log's verifiers.
    fn bundle(n: usize) -> (String, Vec<Box<dyn NoteVerifier>>) {
        bundle_for(n, json!({ "subject": "s" }))
    }

    /// `n` events (subject `s`, outcome success, occurred 2026-11-25,
    /// received 2026-11-18, app `clinic`) exported for `query`.
    fn bundle_for(n: usize, query: Value) -> (String, Vec<Box<dyn NoteVerifier>>) {
        let keys = LogKeys::generate().unwrap();
        let signers = keys.signers(ORIGIN).unwrap();
        let mut tree = MemoryTree::new();
        let mut events = Vec::new();
        for i in 0..n {
            let raw = json!({
                "actor": {"id": format!("a{i}"), "type": "user"}, "action": "record.read",
                "resource": {"type": "doc", "id": "d"}, "subject": "s", "purpose": "p",
                "outcome": "success", "occurred_at": "2026-11-25T10:00:00.000Z",
            });
            let ev = event::parse_event(&raw, &EventLimits::default()).unwrap();
            let salt = [i as u8 + 1; 32];
            let leaf = LeafRecord {
                app: "clinic".into(),
                received_ms: 1_795_000_000_000,
                commitment: event::commitment(&salt, &ev.canonical_bytes()),
            }
            .to_bytes();
            tree.push(merkle::leaf_hash(&leaf));
            events.push((i as u64, leaf, serde_json::to_value(&ev).unwrap(), salt));
        }
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: n as u64,
            root: merkle::tree_root(n as u64, &tree).unwrap(),
            extensions: vec![],
        };
        let mut note = Note::new(&cp.to_text()).unwrap();
        note.sign(&signers.ecdsa).unwrap();
        note.sign(&signers.ed25519).unwrap();
        let note = String::from_utf8(note.to_bytes()).unwrap();
        let mut out = header_line(&BundleHeader {
            origin: ORIGIN.into(),
            verifier_keys: vec![signers.ecdsa.verifier_key(), signers.ed25519.verifier_key()],
            checkpoint: note,
            exported_at: "2026-11-25T10:00:00.000Z".into(),
            query,
        });
        for (index, leaf, ev, salt) in events.into_iter().rev() {
            out.extend(event_line(&BundleEvent {
                index,
                leaf_hash: merkle::leaf_hash(&leaf),
                leaf: String::from_utf8(leaf).unwrap(),
                event: ev,
                salt,
                audit_path: merkle::inclusion_proof(index, n as u64, &tree).unwrap(),
            }));
        }
        out.extend(end_line(n as u64));
        let verifiers = vec![
            crate::note::parse_verifier_key(&signers.ecdsa.verifier_key()).unwrap(),
            crate::note::parse_verifier_key(&signers.ed25519.verifier_key()).unwrap(),
        ];
        (String::from_utf8(out).unwrap(), verifiers)
    }

    #[test]
    fn events_must_answer_every_filter_of_the_query() {
        let verify = |query: Value| {
            let (text, verifiers) = bundle_for(2, query);
            let refs: Vec<&dyn NoteVerifier> = verifiers.iter().map(|v| v.as_ref()).collect();
            verify_bundle(&text, &refs)
                .map(|_| ())
                .map_err(|e| e.message)
        };
        for answered in [
            json!({ "occurred_since": "2026-11-01T00:00:00Z", "occurred_until": "2026-12-01T00:00:00Z" }),
            json!({ "received_since": "2026-11-01T00:00:00Z", "outcome": "success", "purpose": "p" }),
            json!({ "include_audit": false, "app": "clinic" }),
            // Older bundles: since/until bound the receive time.
            json!({ "since": "2026-11-18T00:00:00Z", "until": "2026-11-19T00:00:00Z" }),
        ] {
            assert_eq!(verify(answered.clone()), Ok(()), "{answered}");
        }
        for (query, why) in [
            (
                json!({ "occurred_since": "2026-03-01T00:00:00Z", "occurred_until": "2026-04-01T00:00:00Z" }),
                "occurred time",
            ),
            (
                json!({ "received_since": "2026-11-20T00:00:00Z" }),
                "receive time",
            ),
            (json!({ "since": "2026-11-20T00:00:00Z" }), "receive time"),
            (json!({ "outcome": "denied" }), "(outcome)"),
            (json!({ "purpose": "billing" }), "(purpose)"),
        ] {
            let err = verify(query.clone()).unwrap_err();
            assert!(err.contains(why), "{query}: {err}");
        }
    }

    #[test]
    fn every_single_byte_change_fails_or_leaves_the_evidence_unchanged() {
        let (text, verifiers) = bundle(3);
        let refs: Vec<&dyn NoteVerifier> = verifiers.iter().map(|v| v.as_ref()).collect();
        let good = verify_bundle(&text, &refs).unwrap();
        assert_eq!(good.indexes, vec![2, 1, 0]);
        let bytes = text.as_bytes();
        let mut caught = 0;
        for at in 0..bytes.len() {
            let mut changed = bytes.to_vec();
            changed[at] ^= 0x01;
            let Ok(changed) = String::from_utf8(changed) else {
                continue;
            };
            match verify_bundle(&changed, &refs) {
                Err(e) => {
                    caught += 1;
                    let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
                    assert!(
                        e.line == line || e.line == 0 || e.line == line + 1,
                        "byte {at} (line {line}) reported at line {}: {e}",
                        e.line
                    );
                }
                // Only the unauthenticated header fields may change unnoticed.
                Ok(v) => {
                    assert_eq!(v, good, "byte {at} changed the evidence");
                    let line_start = bytes[..at]
                        .iter()
                        .rposition(|b| *b == b'\n')
                        .map_or(0, |p| p + 1);
                    assert_eq!(line_start, 0, "byte {at} outside the header went unnoticed");
                }
            }
        }
        assert!(caught > bytes.len() / 2, "{caught} of {}", bytes.len());
    }

    #[test]
    fn tlog_proofs_verify_and_garbage_is_an_error_not_a_panic() {
        let (text, verifiers) = bundle(5);
        let refs: Vec<&dyn NoteVerifier> = verifiers.iter().map(|v| v.as_ref()).collect();
        let lines: Vec<&str> = text.lines().collect();
        let header: Value = serde_json::from_str(lines[0]).unwrap();
        let ev: Value = serde_json::from_str(lines[2]).unwrap();
        let e = BundleEvent {
            index: ev["index"].as_u64().unwrap(),
            leaf: ev["leaf"].as_str().unwrap().into(),
            leaf_hash: Hash::from_base64(ev["leaf_hash"].as_str().unwrap()).unwrap(),
            event: ev["event"].clone(),
            salt: hex::decode(ev["salt"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap(),
            audit_path: hashes(
                &ev["inclusion_proof"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().to_string())
                    .collect::<Vec<_>>(),
            )
            .unwrap(),
        };
        let proof = tlog_proof_text(&e, header["checkpoint"].as_str().unwrap());
        assert_eq!(verify_tlog_proof(&proof, &refs).unwrap().indexes, vec![3]);
        for junk in [
            "",
            "\n",
            "\n\n",
            "c2sp.org/tlog-proof@v1\n\n",
            "{}",
            "{}\n{}",
        ] {
            assert!(verify_tlog_proof(junk, &refs).is_err());
            assert!(verify_bundle(junk, &refs).is_err());
        }
        for cut in 0..proof.len() {
            if proof.is_char_boundary(cut) {
                let _ = verify_tlog_proof(&proof[..cut], &refs);
            }
        }
        assert!(verify_bundle(&text, &[]).is_err(), "no key, no trust");
    }
}
