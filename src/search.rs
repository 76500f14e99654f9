//! Searching events: by data subject, actor, action, resource and app
//! (secondary index terms, see [`crate::vault`]) and by receive time.
//!
//! Results come newest first, in pages. A page ends at a leaf index; the
//! cursor of the next page is that index, so pages are stable while the log
//! grows (new events only ever get larger indexes) and never skip or repeat
//! an event. Time ranges need no index: the log's `received` time never
//! goes backwards along the leaves, so a binary search over the leaves maps
//! a time range to an index range.
//!
//! Invariant: a search never returns an erased event, and it reads at most
//! [`MAX_EXAMINED`] candidates per page, whatever the query.

use base64::Engine as _;

use crate::crypto::{Field, Term};
use crate::event::{AuditEvent, LeafRecord};
use crate::merkle::{self, Hash};
use crate::sequencer::read_entry;
use crate::store::{Store, StoreError, StoredEvent};
use crate::vault::Vault;

/// Largest page.
pub const MAX_LIMIT: usize = 1000;
/// Default page.
pub const DEFAULT_LIMIT: usize = 100;
/// Candidates examined per page at most; a page that reaches it ends early
/// with a cursor, so a query that matches little cannot read the whole log
/// in one request.
pub const MAX_EXAMINED: usize = 20_000;

/// A parsed query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Equality filters, as (field, value).
    pub filters: Vec<(Field, String)>,
    /// Earliest receive time, Unix ms, inclusive.
    pub since_ms: Option<i64>,
    /// Latest receive time, Unix ms, exclusive.
    pub until_ms: Option<i64>,
    /// Page size, 1..=MAX_LIMIT.
    pub limit: usize,
    /// Only events with a smaller index (from the previous page's cursor).
    pub before: Option<u64>,
}

/// Why a query is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// A parameter is malformed; the message names it.
    #[error("{0}")]
    Invalid(String),
}

/// An opaque page cursor.
pub fn encode_cursor(before: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{before}"))
}

/// Parses what [`encode_cursor`] made.
pub fn decode_cursor(cursor: &str) -> Result<u64, QueryError> {
    let bad = || QueryError::Invalid("cursor: not a cursor this server issued".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    text.strip_prefix("v1:")
        .and_then(|n| n.parse().ok())
        .ok_or_else(bad)
}

/// One result.
#[derive(Clone, Debug)]
pub struct Hit {
    /// Leaf index.
    pub index: u64,
    /// The leaf record bytes.
    pub leaf: Vec<u8>,
    /// RFC 6962 leaf hash of `leaf`.
    pub leaf_hash: Hash,
    /// The parsed leaf.
    pub record: LeafRecord,
    /// App, salt and canonical event bytes.
    pub stored: StoredEvent,
    /// The parsed event.
    pub event: AuditEvent,
}

/// A page of results.
#[derive(Clone, Debug)]
pub struct Page {
    /// Newest first.
    pub hits: Vec<Hit>,
    /// Set when more results may follow.
    pub next: Option<u64>,
}

/// The leaf at `index`, parsed.
pub fn leaf_at(store: &dyn Store, index: u64) -> Result<(Vec<u8>, LeafRecord), StoreError> {
    let leaf = read_entry(store, index)?;
    let record = LeafRecord::parse(&leaf)
        .map_err(|e| StoreError::Corrupt(format!("leaf {index} is not a leaf record: {e}")))?;
    Ok((leaf, record))
}

/// The first index in `0..size` whose receive time is at least `t_ms`
/// (`size` if none): receive times never decrease along the leaves.
pub fn first_received_at_or_after(
    store: &dyn Store,
    size: u64,
    t_ms: i64,
) -> Result<u64, StoreError> {
    let (mut lo, mut hi) = (0u64, size);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if leaf_at(store, mid)?.1.received_ms >= t_ms {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// The opened event at `index` with its leaf, or `None` if erased.
pub fn hit_at(vault: &Vault, index: u64) -> Result<Option<Hit>, StoreError> {
    let Some((stored, event)) = vault.open_event(index)? else {
        return Ok(None);
    };
    let (leaf, record) = leaf_at(vault.store().as_ref(), index)?;
    Ok(Some(Hit {
        index,
        leaf_hash: merkle::leaf_hash(&leaf),
        leaf,
        record,
        stored,
        event,
    }))
}

/// Runs `q` over the first `size` leaves.
pub fn search(vault: &Vault, size: u64, q: &EventQuery) -> Result<Page, StoreError> {
    let lo = match q.since_ms {
        Some(t) => first_received_at_or_after(vault.store().as_ref(), size, t)?,
        None => 0,
    };
    let mut hi = match q.until_ms {
        Some(t) => first_received_at_or_after(vault.store().as_ref(), size, t)?,
        None => size,
    };
    if let Some(b) = q.before {
        hi = hi.min(b);
    }
    let terms: Vec<Term> = q.filters.iter().map(|(f, v)| vault.term(*f, v)).collect();
    let mut hits = Vec::new();
    let mut examined = 0usize;
    // The first filter drives the scan (the API orders them most selective
    // first); the others are checked on each candidate.
    let mut cursor = hi;
    loop {
        if hits.len() >= q.limit || cursor <= lo {
            break;
        }
        if examined >= MAX_EXAMINED {
            return Ok(Page {
                hits,
                next: Some(cursor),
            });
        }
        let chunk = (q.limit - hits.len()).clamp(16, 512);
        let candidates: Vec<u64> = match terms.first() {
            Some(driver) => vault.scan(driver, cursor, chunk)?,
            None => (cursor.saturating_sub(chunk as u64).max(lo)..cursor)
                .rev()
                .collect(),
        };
        if candidates.is_empty() {
            break;
        }
        for index in candidates {
            if index < lo {
                cursor = lo;
                break;
            }
            cursor = index;
            examined += 1;
            let Some(hit) = hit_at(vault, index)? else {
                continue;
            };
            if terms.len() > 1 {
                let have = vault.terms_of(&hit.stored.app, &hit.event);
                if !terms[1..].iter().all(|t| have.contains(t)) {
                    continue;
                }
            }
            hits.push(hit);
            if hits.len() >= q.limit {
                break;
            }
        }
    }
    let next = if hits.len() >= q.limit && cursor > lo {
        Some(cursor)
    } else {
        None
    };
    Ok(Page { hits, next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::sequencer::{
        CheckpointSigner, Clock, LogView, PreparedEvent, RightEdge, Sealing, Sequencer,
        SequencerConfig,
    };
    use crate::store::memory::MemoryStore;
    use std::sync::Arc;

    fn event(subject: &str, actor: &str) -> PreparedEvent {
        let v = serde_json::json!({
            "actor": {"id": actor, "type": "user"},
            "action": "record.read",
            "resource": {"type": "doc", "id": "d-1"},
            "subject": subject,
            "purpose": "care",
            "outcome": "success",
            "occurred_at": "2026-11-25T10:00:00.000Z",
        });
        let ev = crate::event::parse_event(&v, &crate::event::EventLimits::default()).unwrap();
        let canonical = ev.canonical_bytes();
        let salt = [3u8; 32];
        PreparedEvent {
            id: None,
            commitment: crate::event::commitment(&salt, &canonical),
            terms: None,
            canonical,
            salt,
        }
    }

    /// A vault with `n` events: subject `s{i % 3}`, actor `a{i % 2}`.
    fn log(n: usize) -> Arc<Vault> {
        let inner = Arc::new(MemoryStore::new());
        let vault = Arc::new(Vault::new(inner.clone(), &MasterKey::from_bytes([5; 32])).unwrap());
        let keys = crate::note::keys::LogKeys::generate().unwrap();
        let signer = Arc::new(CheckpointSigner::from_keys(&keys, "example.com/log").unwrap());
        let empty = signer.sign(0, merkle::empty_root(), 0).unwrap();
        let view = Arc::new(LogView::new(empty, 0, Clock::system()));
        let seq = Sequencer::start(
            inner,
            Sealing::Vault(vault.clone()),
            signer,
            SequencerConfig::default(),
            view,
            RightEdge::empty(),
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for i in 0..n {
            let ev = event(&format!("s{}", i % 3), &format!("a{}", i % 2));
            rt.block_on(seq.handle().submit("app".into(), vec![ev], false))
                .unwrap();
        }
        seq.shutdown();
        vault
    }

    fn indexes(p: &Page) -> Vec<u64> {
        p.hits.iter().map(|h| h.index).collect()
    }

    #[test]
    fn filters_combine_and_pages_cover_every_match_once() {
        let vault = log(40);
        let q = EventQuery {
            filters: vec![(Field::Subject, "s1".into()), (Field::Actor, "a0".into())],
            limit: 3,
            ..EventQuery::default()
        };
        let expected: Vec<u64> = (0..40u64)
            .rev()
            .filter(|i| i % 3 == 1 && i % 2 == 0)
            .collect();
        let mut got = Vec::new();
        let mut q = q;
        loop {
            let page = search(&vault, 40, &q).unwrap();
            assert!(page.hits.len() <= 3);
            got.extend(indexes(&page));
            match page.next {
                Some(n) => q.before = Some(n),
                None => break,
            }
        }
        assert_eq!(got, expected);
        let all = search(
            &vault,
            40,
            &EventQuery {
                limit: 1000,
                ..EventQuery::default()
            },
        )
        .unwrap();
        assert_eq!(indexes(&all), (0..40u64).rev().collect::<Vec<_>>());
        assert_eq!(all.next, None);
        let none = search(
            &vault,
            40,
            &EventQuery {
                filters: vec![(Field::Subject, "nobody".into())],
                limit: 10,
                ..EventQuery::default()
            },
        )
        .unwrap();
        assert!(none.hits.is_empty() && none.next.is_none());
    }

    #[test]
    fn a_time_range_maps_to_an_index_range() {
        let vault = log(10);
        let t5 = leaf_at(vault.store().as_ref(), 5).unwrap().1.received_ms;
        let first = first_received_at_or_after(vault.store().as_ref(), 10, t5).unwrap();
        assert!(first <= 5);
        assert_eq!(
            first_received_at_or_after(vault.store().as_ref(), 10, i64::MAX).unwrap(),
            10
        );
        assert_eq!(
            first_received_at_or_after(vault.store().as_ref(), 10, 0).unwrap(),
            0
        );
        let page = search(
            &vault,
            10,
            &EventQuery {
                until_ms: Some(0),
                limit: 10,
                ..EventQuery::default()
            },
        )
        .unwrap();
        assert!(page.hits.is_empty());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor(&encode_cursor(42)).unwrap(), 42);
        assert!(decode_cursor("42").is_err());
        assert!(decode_cursor("").is_err());
    }
}
