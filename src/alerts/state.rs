//! The checkpoint of the rules' windows, in the store
//! ([`RecordSpace::AlertState`]), written incrementally.
//!
//! A rule's groups fall in [`SHARDS`] shards by a fixed hash of their key
//! (CRC-32: the same in every process). A rule is stored as one header
//! record (its own times) and one record per non-empty shard, keyed by the
//! first 8 bytes of the rule's fingerprint and the shard's number, each in
//! a compact binary form (varints, times and indexes as deltas) sealed
//! under the alert state key with its own key as associated data (a record
//! moved under another key does not open). The engine marks the shard of
//! every group it changes (`eval.rs`); a checkpoint writes, rule by rule,
//! in one atomic `commit_records` per rule, the header and the whole of
//! every marked shard (or deletes it when it is empty). A record is never
//! a delta, so writing it twice (a write that landed but reported a
//! failure, then its retry) changes nothing.
//!
//! Invariants: a rule's stored records are its state as of the last
//! checkpoint that wrote it (a record is whole, a rule's records change
//! together, and a shard that was not written is unchanged since it
//! was). A failed write leaves its shards marked, for the next checkpoint.
//! A checkpoint holds one rule's lock at a time, while it encodes that
//! rule's marked shards, and holds at most one rule's encoded state (the
//! rule's cap bounds it). A start reads the records once, page by page:
//! time in proportion to the rules' state, never to the log.

use std::sync::Mutex;

use prost::encoding::{decode_varint, encode_varint};

use super::eval::{Engine, Group, RuleState, fingerprint};
use super::rules::Rule;
use crate::crypto::DataKey;
use crate::store::{RecordBatch, RecordSpace, ScanCursor, Store};

/// Shards per rule: a bit each in [`RuleState::dirty`](super::eval).
pub const SHARDS: u32 = 64;
/// The part number of a rule's header record.
const HEADER: u16 = u16::MAX;
/// The format of every record's plaintext (its first byte).
const FORMAT: u8 = 1;
/// Associated data of every record, before its key.
const AAD: &[u8] = b"veritrail/alerts-state/v2";
/// Records read per page at start, and stale records deleted per write.
const PAGE: usize = 256;

/// The shard of a group's key.
pub(super) fn shard_of(key: &str) -> u8 {
    (crc32fast::hash(key.as_bytes()) % SHARDS) as u8
}

/// What one checkpoint wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Rules whose records were written.
    pub rules: usize,
    /// Records written or deleted.
    pub records: usize,
    /// Sealed bytes written.
    pub bytes: usize,
}

/// What a start read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Loaded {
    /// Rules whose windows were restored.
    pub rules: usize,
    /// Records of rules no longer configured (or changed), deleted.
    pub stale: usize,
}

/// The first 8 bytes of a rule's fingerprint: its records' key prefix.
fn prefix_of(rule: &Rule) -> [u8; 8] {
    let mut p = [0u8; 8];
    // A fingerprint is 64 hex digits.
    let _ = hex::decode_to_slice(&fingerprint(rule)[..16], &mut p);
    p
}

fn record_key(prefix: &[u8; 8], part: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(10);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

fn aad(key: &[u8]) -> Vec<u8> {
    [AAD, key].concat()
}

/// Writes the changed part of every rule's windows, rule by rule. On a
/// failure the rule's shards stay marked and the error is returned (the
/// rules after it are left for the next checkpoint).
pub(super) fn write(engine: &Engine, store: &dyn Store, key: &DataKey) -> Result<Written, String> {
    let mut written = Written::default();
    for (rule, lock) in engine.states() {
        let Some((mask, parts)) = take_changes(&mut lock_state(lock)) else {
            continue;
        };
        match write_rule(rule, parts, store, key) {
            Ok((records, bytes)) => {
                written.rules += 1;
                written.records += records;
                written.bytes += bytes;
            }
            Err(e) => {
                let mut st = lock_state(lock);
                st.dirty |= mask;
                st.touched = true;
                return Err(format!(
                    "couldn't checkpoint the windows of alert rule {}: {e}",
                    rule.name
                ));
            }
        }
    }
    Ok(written)
}

fn lock_state(lock: &Mutex<RuleState>) -> std::sync::MutexGuard<'_, RuleState> {
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

/// A rule's records to write: `(part, plaintext, or None for an empty shard)`.
type Parts = Vec<(u16, Option<Vec<u8>>)>;

/// Encodes a rule's header and its marked shards, and clears the marks:
/// `(marks, parts)`, or `None` when nothing changed since the last checkpoint.
fn take_changes(st: &mut RuleState) -> Option<(u64, Parts)> {
    if !st.touched && st.dirty == 0 {
        return None;
    }
    let mask = std::mem::take(&mut st.dirty);
    st.touched = false;
    let mut shards: Vec<(u64, Vec<u8>)> = vec![(0, Vec::new()); SHARDS as usize];
    if mask != 0 {
        for (k, g) in &st.groups {
            if mask & (1 << g.shard) != 0 {
                let (n, buf) = &mut shards[g.shard as usize];
                *n += 1;
                encode_group(buf, k, g);
            }
        }
    }
    let mut parts = Vec::with_capacity(mask.count_ones() as usize + 1);
    let mut header = vec![FORMAT];
    put_i(&mut header, st.newest_ms);
    match st.started_ms {
        Some(ms) => {
            encode_varint(1, &mut header);
            put_i(&mut header, ms);
        }
        None => encode_varint(0, &mut header),
    }
    parts.push((HEADER, Some(header)));
    for (s, (n, body)) in shards.into_iter().enumerate() {
        if mask & (1 << s) == 0 {
            continue;
        }
        let plain = (n > 0).then(|| {
            let mut p = Vec::with_capacity(body.len() + 6);
            p.push(FORMAT);
            encode_varint(n, &mut p);
            p.extend_from_slice(&body);
            p
        });
        parts.push((s as u16, plain));
    }
    Some((mask, parts))
}

/// Seals a rule's parts and writes them in one atomic change: how many
/// records and sealed bytes.
fn write_rule(
    rule: &Rule,
    parts: Parts,
    store: &dyn Store,
    key: &DataKey,
) -> Result<(usize, usize), String> {
    let prefix = prefix_of(rule);
    let mut batch = RecordBatch::default();
    let mut bytes = 0;
    for (part, plain) in parts {
        let k = record_key(&prefix, part);
        match plain {
            Some(plain) => {
                let sealed = key.seal(&aad(&k), &plain).map_err(|e| e.to_string())?;
                bytes += sealed.len();
                batch.put.push((RecordSpace::AlertState, k, sealed));
            }
            None => batch.delete.push((RecordSpace::AlertState, k)),
        }
    }
    let records = batch.put.len() + batch.delete.len();
    store.commit_records(&batch).map_err(|e| e.to_string())?;
    Ok((records, bytes))
}

/// Restores every configured rule's windows from the store and deletes the
/// records of rules no longer configured. A record that does not open or
/// decode stops the start, naming its rule.
pub(super) fn load(engine: &Engine, store: &dyn Store, key: &DataKey) -> Result<Loaded, String> {
    let rules: Vec<([u8; 8], &Rule, &Mutex<RuleState>)> = engine
        .states()
        .map(|(rule, lock)| (prefix_of(rule), rule, lock))
        .collect();
    let mut restored = vec![false; rules.len()];
    let mut stale = RecordBatch::default();
    let mut loaded = Loaded::default();
    let mut cursor = ScanCursor::start();
    loop {
        let page = store
            .scan_records(RecordSpace::AlertState, &cursor, PAGE)
            .map_err(|e| format!("couldn't read the alert state: {e}"))?;
        for item in page.items {
            let (k, sealed) = item.map_err(|e| format!("couldn't read the alert state: {e}"))?;
            let found = (k.len() == 10)
                .then(|| rules.iter().position(|(p, _, _)| k[..8] == p[..]))
                .flatten();
            let Some(r) = found else {
                stale.delete.push((RecordSpace::AlertState, k));
                if stale.delete.len() >= PAGE {
                    loaded.stale += delete(store, &mut stale)?;
                }
                continue;
            };
            let (_, rule, lock) = rules[r];
            let part = u16::from_be_bytes([k[8], k[9]]);
            let damaged = |e: String| {
                format!(
                    "the checkpoint of alert rule {} is damaged or was sealed under another master key ({e}); change the rule (its name, say) to start it with empty windows",
                    rule.name
                )
            };
            let plain = key
                .open(&aad(&k), &sealed)
                .map_err(|e| damaged(e.to_string()))?;
            decode_part(&mut lock_state(lock), part, &plain).map_err(damaged)?;
            restored[r] = true;
        }
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    loaded.stale += delete(store, &mut stale)?;
    for ((_, rule, lock), _) in rules.iter().zip(&restored).filter(|(_, r)| **r) {
        let mut st = lock_state(lock);
        engine.settle(rule, &mut st);
        // What was read is what is stored, but for what the cap trimmed.
        st.touched = st.dirty != 0;
        loaded.rules += 1;
    }
    Ok(loaded)
}

fn delete(store: &dyn Store, stale: &mut RecordBatch) -> Result<usize, String> {
    let n = stale.delete.len();
    if n > 0 {
        store
            .commit_records(stale)
            .map_err(|e| format!("couldn't delete the checkpoint of a removed alert rule: {e}"))?;
        stale.delete.clear();
    }
    Ok(n)
}

/// The bytes a checkpoint of every rule whole would encode (before
/// sealing), as `veritrail bench alerts` reports it.
pub fn encoded_size(engine: &Engine) -> usize {
    engine
        .states()
        .map(|(_, lock)| {
            let st = lock_state(lock);
            let mut buf = Vec::new();
            for (k, g) in &st.groups {
                encode_group(&mut buf, k, g);
            }
            buf.len() + 16
        })
        .sum()
}

fn put_i(buf: &mut Vec<u8>, v: i64) {
    encode_varint(((v << 1) ^ (v >> 63)) as u64, buf);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    encode_varint(s.len() as u64, buf);
    buf.extend_from_slice(s.as_bytes());
}

/// A group: key, last activity, quiet until, then its hits as deltas of
/// `(occurred, index)` from the previous one, then its distinct values.
fn encode_group(buf: &mut Vec<u8>, key: &str, g: &Group) {
    put_str(buf, key);
    put_i(buf, g.last_ms);
    put_i(buf, g.quiet_until);
    encode_varint(g.hits.len() as u64, buf);
    let (mut t0, mut i0) = (0i64, 0u64);
    for &(t, i) in &g.hits {
        put_i(buf, t.wrapping_sub(t0));
        put_i(buf, i.wrapping_sub(i0) as i64);
        (t0, i0) = (t, i);
    }
    encode_varint(g.seen.len() as u64, buf);
    for (v, &(t, i)) in &g.seen {
        put_str(buf, v);
        put_i(buf, t);
        encode_varint(i, buf);
    }
}

/// Reads what [`encode_group`] and the header wrote, checking every length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn u(&mut self) -> Result<u64, String> {
        decode_varint(&mut self.0).map_err(|e| e.to_string())
    }

    fn i(&mut self) -> Result<i64, String> {
        let u = self.u()?;
        Ok((u >> 1) as i64 ^ -((u & 1) as i64))
    }

    /// A count of items of at least one byte each.
    fn count(&mut self) -> Result<usize, String> {
        let n = self.u()?;
        if n > self.0.len() as u64 {
            return Err(format!("a count of {n} with {} bytes left", self.0.len()));
        }
        Ok(n as usize)
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = self.count()?;
        let (s, rest) = self.0.split_at(n);
        self.0 = rest;
        std::str::from_utf8(s).map_err(|e| e.to_string())
    }
}

fn decode_part(st: &mut RuleState, part: u16, plain: &[u8]) -> Result<(), String> {
    let Some((&FORMAT, body)) = plain.split_first() else {
        return Err("an unknown record format".into());
    };
    let mut r = Reader(body);
    if part == HEADER {
        st.newest_ms = r.i()?;
        st.started_ms = match r.u()? {
            0 => None,
            _ => Some(r.i()?),
        };
    } else {
        if u32::from(part) >= SHARDS {
            return Err(format!("a shard {part} beyond {SHARDS}"));
        }
        for _ in 0..r.count()? {
            let key = r.str()?;
            if u16::from(shard_of(key)) != part {
                return Err(format!("a group in shard {part} that belongs elsewhere"));
            }
            let mut g = Group {
                last_ms: r.i()?,
                quiet_until: r.i()?,
                shard: part as u8,
                ..Group::default()
            };
            let (mut t, mut i) = (0i64, 0u64);
            for _ in 0..r.count()? {
                t = t.wrapping_add(r.i()?);
                i = i.wrapping_add(r.i()? as u64);
                g.hits.push_back((t, i));
            }
            for _ in 0..r.count()? {
                let v = r.str()?;
                g.seen.insert(v.into(), (r.i()?, r.u()?));
            }
            st.groups.insert(key.into(), g);
        }
    }
    if !r.0.is_empty() {
        return Err(format!("{} bytes after the record", r.0.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::AlertsConfig;
    use crate::crypto::MasterKey;
    use crate::event::{EventLimits, parse_event};
    use crate::store::memory::MemoryStore;

    const RULES: &str = "[alerts]\n\
        [[alerts.rule]]\nname = \"t\"\nkind = \"threshold\"\ngroup_by = \"actor\"\nmore_than = 1000\nwindow = \"1h\"\n\
        [[alerts.rule]]\nname = \"b\"\nkind = \"breadth\"\ndistinct = \"subject\"\nmore_than = 1000\nwindow = \"1h\"\n\
        [[alerts.rule]]\nname = \"n\"\nkind = \"time_of_day\"\ntime_zone = \"UTC\"\nallowed_hours = \"09:00-10:00\"\n\
        [[alerts.rule]]\nname = \"f\"\nkind = \"first_seen\"\nof = \"action\"\nlearning = \"1m\"\n";

    fn engine() -> Engine {
        let c = AlertsConfig::parse(RULES, "t").unwrap().unwrap();
        Engine::new(c.rules, 100_000)
    }

    fn state(e: &Engine) -> serde_json::Value {
        // Maps in a stable order: the JSON of sorted entries.
        let mut v = serde_json::to_value(e.snapshot()).unwrap();
        for rule in v.as_array_mut().unwrap() {
            let groups = rule[2]["groups"].as_object_mut().unwrap();
            for g in groups.values_mut() {
                if let Some(seen) = g.get_mut("seen") {
                    let sorted: std::collections::BTreeMap<_, _> =
                        seen.as_object().unwrap().clone().into_iter().collect();
                    *seen = serde_json::to_value(sorted).unwrap();
                }
            }
            let sorted: std::collections::BTreeMap<_, _> = groups.clone().into_iter().collect();
            rule[2]["groups"] = serde_json::to_value(sorted).unwrap();
        }
        v
    }

    #[test]
    fn every_kind_of_state_reads_back_as_written() {
        let key = MasterKey::from_bytes([5; 32]).alerts_state_key();
        let store = MemoryStore::new();
        let e = engine();
        // Out of order now and then, with gaps in the indexes.
        for i in 0..2000u64 {
            let ev = parse_event(
                &serde_json::json!({
                    "actor": {"id": format!("u{}", i % 37), "type": "user"},
                    "action": format!("a{}", i % 5),
                    "resource": {"type": "r", "id": format!("x{}", i % 11)},
                    "subject": format!("p{}", i % 101), "purpose": "care", "outcome": "success",
                    "occurred_at": format!("2026-01-01T{:02}:{:02}:{:02}Z", 8 + i / 600, i / 10 % 60, (i * 7 + (i % 13 == 0) as u64 * 30) % 60),
                }),
                &EventLimits::default(),
            )
            .unwrap();
            if let Some(ob) = e.observe("app", &ev) {
                e.evaluate(&ob, i * 3);
            }
            if i % 500 == 499 {
                write(&e, &store, &key).unwrap();
            }
        }
        let fresh = engine();
        let loaded = load(&fresh, &store, &key).unwrap();
        assert_eq!(loaded, Loaded { rules: 4, stale: 0 });
        assert_eq!(state(&fresh), state(&e));
        // Nothing changed since: the next checkpoint writes nothing.
        assert_eq!(write(&fresh, &store, &key).unwrap(), Written::default());
    }
}
