//! Searching events: by data subject, actor, action, resource and app
//! (secondary index terms: [`index`] keeps them, the vault computes them),
//! by when the log received
//! them, and by when they occurred, their outcome and their purpose.
//!
//! Results come newest first (by leaf index), in pages. A page ends at a
//! leaf index; the cursor of the next page is that index, so pages are
//! stable while the log grows (new events only ever get larger indexes) and
//! never skip or repeat an event. The receive-time range needs no index:
//! the log's `received` time never goes backwards along the leaves, so a
//! binary search over the leaves maps it to an index range. The occurred
//! time, outcome and purpose are not indexed yet: they are checked on each
//! candidate the index terms and the receive range yield.
//!
//! The log's own audit records (app [`INTERNAL_APP`]: searches, reads,
//! exports, erasures) are left out unless the query asks for them.
//!
//! Invariant: a search never returns an erased event, and it reads at most
//! [`MAX_EXAMINED`] candidates per page (plus [`EventQuery::count_ahead`]
//! to count what follows), whatever the query. A page that reaches the
//! bound ends early with a cursor, possibly with fewer hits than asked for,
//! or none.

use base64::Engine as _;
use std::collections::VecDeque;

use crate::auth::INTERNAL_APP;
use crate::crypto::{Field, Term};
use crate::event::{self, AuditEvent, LeafRecord, Outcome};
use crate::merkle::{self, Hash};
use crate::sequencer::read_entry;
use crate::store::{Store, StoreError, StoredEvent};
use crate::vault::Vault;

pub(crate) mod index;

/// Largest page.
pub const MAX_LIMIT: usize = 1000;
/// Default page.
pub const DEFAULT_LIMIT: usize = 100;
/// Candidates examined per page at most; a page that reaches it ends early
/// with a cursor, so a query that matches little cannot read the whole log
/// in one request.
pub const MAX_EXAMINED: usize = 20_000;
/// Candidates a search page examines beyond a full page to count the
/// matches that follow, so small result sets get an exact total.
pub const COUNT_AHEAD: usize = 2_000;
/// Candidates fetched from the index at a time.
const CHUNK: usize = 256;

/// A parsed query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Equality filters on index terms, as (field, value).
    pub filters: Vec<(Field, String)>,
    /// Earliest receive time, Unix ms, inclusive.
    pub received_since_ms: Option<i64>,
    /// Latest receive time, Unix ms, exclusive.
    pub received_until_ms: Option<i64>,
    /// Earliest `occurred_at`, Unix ms, inclusive.
    pub occurred_since_ms: Option<i64>,
    /// Latest `occurred_at`, Unix ms, exclusive.
    pub occurred_until_ms: Option<i64>,
    /// Only events with this outcome.
    pub outcome: Option<Outcome>,
    /// Only events with this purpose.
    pub purpose: Option<String>,
    /// Also return the log's own audit records.
    pub include_audit: bool,
    /// Page size, 1..=MAX_LIMIT.
    pub limit: usize,
    /// Where the page starts, from the previous page's cursor.
    pub before: Option<Cursor>,
    /// Candidates to examine after a full page to count further matches
    /// (0: don't count).
    pub count_ahead: usize,
}

/// Why a query is not valid.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueryError {
    /// A parameter is malformed; the message names it.
    #[error("{0}")]
    Invalid(String),
}

/// Where a page starts, and what the pages before it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Only events with a smaller index.
    pub before: u64,
    /// Hits on the earlier pages; `None` for a cursor that did not say.
    pub matched: Option<u64>,
    /// Candidates the earlier pages examined.
    pub examined: u64,
}

impl Cursor {
    /// A cursor that knows nothing of earlier pages.
    pub fn at(before: u64) -> Cursor {
        Cursor {
            before,
            matched: None,
            examined: 0,
        }
    }
}

/// An opaque page cursor.
pub fn encode_cursor(c: &Cursor) -> String {
    let text = match c.matched {
        Some(m) => format!("v2:{}:{m}:{}", c.before, c.examined),
        None => format!("v1:{}", c.before),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// Parses what [`encode_cursor`] made (and the older `v1` form).
pub fn decode_cursor(cursor: &str) -> Result<Cursor, QueryError> {
    let bad = || QueryError::Invalid("cursor: not a cursor this server issued".into());
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    if let Some(n) = text.strip_prefix("v1:") {
        return n.parse().map(Cursor::at).map_err(|_| bad());
    }
    let parts: Vec<&str> = text
        .strip_prefix("v2:")
        .ok_or_else(bad)?
        .split(':')
        .collect();
    match parts[..] {
        [b, m, e] => Ok(Cursor {
            before: b.parse().map_err(|_| bad())?,
            matched: Some(m.parse().map_err(|_| bad())?),
            examined: e.parse().map_err(|_| bad())?,
        }),
        _ => Err(bad()),
    }
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

impl Hit {
    /// Whether this is one of the log's own audit records.
    pub fn is_audit_record(&self) -> bool {
        self.record.app == INTERNAL_APP
    }
}

/// How many events match the query over all pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Total {
    /// Matches counted.
    pub count: u64,
    /// `true` when `count` is every match; `false` when it is a lower
    /// bound ("at least").
    pub exact: bool,
}

/// A page of results.
#[derive(Clone, Debug)]
pub struct Page {
    /// Newest first.
    pub hits: Vec<Hit>,
    /// Set when more results may follow.
    pub next: Option<Cursor>,
    /// Candidates examined on this page and the ones before it.
    pub examined: u64,
    /// The count of matches, over all pages.
    pub total: Total,
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

/// Candidate indexes in `lo..cursor`, newest first: from the driving
/// index term's postings, or every leaf when there is none.
struct Candidates<'a> {
    vault: &'a Vault,
    driver: Option<&'a Term>,
    lo: u64,
    /// Everything at or above it has been handed out.
    cursor: u64,
    buf: VecDeque<u64>,
}

impl Candidates<'_> {
    fn next(&mut self) -> Result<Option<u64>, StoreError> {
        if self.buf.is_empty() && self.cursor > self.lo {
            match self.driver {
                Some(term) => self.buf.extend(self.vault.scan(term, self.cursor, CHUNK)?),
                None => self.buf.extend(
                    (self.cursor.saturating_sub(CHUNK as u64).max(self.lo)..self.cursor).rev(),
                ),
            }
        }
        match self.buf.pop_front() {
            Some(index) if index >= self.lo && index < self.cursor => {
                self.cursor = index;
                Ok(Some(index))
            }
            _ => {
                self.buf.clear();
                self.cursor = self.lo;
                Ok(None)
            }
        }
    }
}

/// Whether `hit` answers the filters that the index scan does not apply.
fn answers(vault: &Vault, q: &EventQuery, other_terms: &[Term], hit: &Hit) -> bool {
    if !q.include_audit && hit.is_audit_record() {
        return false;
    }
    if q.outcome.is_some_and(|o| hit.event.outcome != o)
        || q.purpose.as_ref().is_some_and(|p| hit.event.purpose != *p)
    {
        return false;
    }
    if q.occurred_since_ms.is_some() || q.occurred_until_ms.is_some() {
        // Stored events were validated on the way in; one that no longer
        // parses cannot be placed in time, so it answers no time range.
        let Ok(t) = event::parse_rfc3339_ms(&hit.event.occurred_at) else {
            return false;
        };
        if q.occurred_since_ms.is_some_and(|s| t < s) || q.occurred_until_ms.is_some_and(|u| t >= u)
        {
            return false;
        }
    }
    if !other_terms.is_empty() {
        let have = vault.terms_of(&hit.stored.app, &hit.event);
        if !other_terms.iter().all(|t| have.contains(t)) {
            return false;
        }
    }
    true
}

/// Runs `q` over the first `size` leaves.
pub fn search(vault: &Vault, size: u64, q: &EventQuery) -> Result<Page, StoreError> {
    let lo = match q.received_since_ms {
        Some(t) => first_received_at_or_after(vault.store().as_ref(), size, t)?,
        None => 0,
    };
    let mut hi = match q.received_until_ms {
        Some(t) => first_received_at_or_after(vault.store().as_ref(), size, t)?,
        None => size,
    };
    if let Some(c) = q.before {
        hi = hi.min(c.before);
    }
    let matched_before = q.before.map_or(Some(0), |c| c.matched);
    let examined_before = q.before.map_or(0, |c| c.examined);
    let terms: Vec<Term> = q.filters.iter().map(|(f, v)| vault.term(*f, v)).collect();
    // The first filter drives the scan (the API orders them most selective
    // first); the others are checked on each candidate.
    let mut candidates = Candidates {
        vault,
        driver: terms.first(),
        lo,
        cursor: hi.max(lo),
        buf: VecDeque::new(),
    };
    let other_terms = terms.get(1..).unwrap_or_default();
    let mut hits = Vec::new();
    let mut examined = 0usize;
    let page_end = |found: usize, examined: usize, at: u64| Cursor {
        before: at,
        matched: matched_before.map(|m| m + found as u64),
        examined: examined_before + examined as u64,
    };
    while hits.len() < q.limit {
        if examined >= MAX_EXAMINED {
            let next = page_end(hits.len(), examined, candidates.cursor);
            return Ok(Page {
                total: Total {
                    count: next.matched.unwrap_or(hits.len() as u64),
                    exact: false,
                },
                examined: next.examined,
                next: Some(next),
                hits,
            });
        }
        let Some(index) = candidates.next()? else {
            break;
        };
        examined += 1;
        if let Some(hit) = hit_at(vault, index)?
            && answers(vault, q, other_terms, &hit)
        {
            hits.push(hit);
        }
    }
    let here = page_end(hits.len(), examined, candidates.cursor);
    // Count what follows the page, within a budget.
    let (mut ahead, mut looked) = (0u64, 0usize);
    let exhausted = loop {
        if looked >= q.count_ahead && hits.len() >= q.limit {
            break candidates.cursor <= lo;
        }
        let Some(index) = candidates.next()? else {
            break true;
        };
        looked += 1;
        if let Some(hit) = hit_at(vault, index)?
            && answers(vault, q, other_terms, &hit)
        {
            ahead += 1;
        }
    };
    let more = !exhausted || ahead > 0;
    let count = here.matched.unwrap_or(hits.len() as u64) + ahead;
    Ok(Page {
        next: more.then_some(here),
        examined: here.examined + looked as u64,
        total: Total {
            count,
            exact: exhausted && here.matched.is_some(),
        },
        hits,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequencer::PreparedEvent;
    use crate::sequencer::test_log::TestLogBuilder;
    use std::sync::Arc;

    fn event_json(subject: &str, actor: &str) -> serde_json::Value {
        serde_json::json!({
            "actor": {"id": actor, "type": "user"},
            "action": "record.read",
            "resource": {"type": "doc", "id": "d-1"},
            "subject": subject,
            "purpose": "care",
            "outcome": "success",
            "occurred_at": "2026-11-25T10:00:00.000Z",
        })
    }

    fn prepared(v: &serde_json::Value) -> PreparedEvent {
        let ev = crate::event::parse_event(v, &crate::event::EventLimits::default()).unwrap();
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
        log_of(n, |i| {
            (
                "app",
                event_json(&format!("s{}", i % 3), &format!("a{}", i % 2)),
            )
        })
    }

    /// A vault with the `n` events `make(i)` gives, as (app, event).
    fn log_of(n: usize, make: impl Fn(usize) -> (&'static str, serde_json::Value)) -> Arc<Vault> {
        let mut log = TestLogBuilder::new("example.com/log").start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Runs of one app go in one batch, in order.
        let mut i = 0;
        while i < n {
            let (app, ev) = make(i);
            let mut batch = vec![prepared(&ev)];
            i += 1;
            while i < n && batch.len() < 256 && make(i).0 == app {
                batch.push(prepared(&make(i).1));
                i += 1;
            }
            rt.block_on(log.submit(app, batch));
        }
        log.shutdown();
        log.vault()
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
                received_until_ms: Some(0),
                limit: 10,
                ..EventQuery::default()
            },
        )
        .unwrap();
        assert!(page.hits.is_empty());
    }

    /// Event `i`: occurred in month `i % 12 + 1` of 2026, denied when
    /// `i % 4 == 0`, purpose `billing` when `i % 5 == 0`; every 7th is
    /// one of the log's own audit records.
    fn varied(i: usize) -> (&'static str, serde_json::Value) {
        let mut v = event_json(&format!("s{}", i % 3), "a");
        v["occurred_at"] = format!("2026-{:02}-15T12:00:00.000Z", i % 12 + 1).into();
        if i.is_multiple_of(4) {
            v["outcome"] = "denied".into();
        }
        if i.is_multiple_of(5) {
            v["purpose"] = "billing".into();
        }
        if i.is_multiple_of(7) {
            v["action"] = "audit.search".into();
            (INTERNAL_APP, v)
        } else {
            ("app", v)
        }
    }

    fn all_pages(vault: &Vault, size: u64, mut q: EventQuery) -> (Vec<u64>, Page) {
        let mut got = Vec::new();
        loop {
            let page = search(vault, size, &q).unwrap();
            got.extend(indexes(&page));
            match page.next {
                Some(n) => q.before = Some(n),
                None => return (got, page),
            }
        }
    }

    #[test]
    fn occurred_outcome_purpose_and_audit_records_filter_candidates() {
        let vault = log_of(60, varied);
        let ms = |t: &str| crate::event::parse_rfc3339_ms(t).unwrap();
        let want = |f: &dyn Fn(usize) -> bool| -> Vec<u64> {
            (0..60usize)
                .rev()
                .filter(|i| i % 7 != 0 && f(*i))
                .map(|i| i as u64)
                .collect()
        };
        let march = EventQuery {
            occurred_since_ms: Some(ms("2026-03-01T00:00:00Z")),
            occurred_until_ms: Some(ms("2026-04-01T00:00:00Z")),
            limit: 2,
            ..EventQuery::default()
        };
        let (got, last) = all_pages(&vault, 60, march.clone());
        assert_eq!(got, want(&|i| i % 12 == 2));
        assert_eq!(
            last.total,
            Total {
                count: got.len() as u64,
                exact: true
            }
        );
        let denied = EventQuery {
            outcome: Some(Outcome::Denied),
            purpose: Some("billing".into()),
            limit: 100,
            ..EventQuery::default()
        };
        assert_eq!(
            all_pages(&vault, 60, denied).0,
            want(&|i| i % 4 == 0 && i % 5 == 0)
        );
        let with_audit = EventQuery {
            include_audit: true,
            filters: vec![(Field::Subject, "s1".into())],
            limit: 100,
            ..EventQuery::default()
        };
        let (got, _) = all_pages(&vault, 60, with_audit.clone());
        assert_eq!(
            got,
            (0..60u64).rev().filter(|i| i % 3 == 1).collect::<Vec<_>>()
        );
        let page = search(&vault, 60, &with_audit).unwrap();
        assert!(page.hits.iter().any(|h| h.is_audit_record()));
        let hidden = EventQuery {
            include_audit: false,
            ..with_audit
        };
        let page = search(&vault, 60, &hidden).unwrap();
        assert!(page.hits.iter().all(|h| !h.is_audit_record()));
        assert_eq!(indexes(&page), want(&|i| i % 3 == 1));
    }

    #[test]
    fn totals_are_exact_when_counted_to_the_end_and_lower_bounds_otherwise() {
        let vault = log_of(60, varied);
        let q = EventQuery {
            limit: 5,
            count_ahead: 1000,
            ..EventQuery::default()
        };
        let matching = (0..60u64).filter(|i| i % 7 != 0).count() as u64;
        let page = search(&vault, 60, &q).unwrap();
        assert_eq!(page.hits.len(), 5);
        assert_eq!(
            page.total,
            Total {
                count: matching,
                exact: true
            }
        );
        // The second page still knows the total, through its cursor.
        let second = search(
            &vault,
            60,
            &EventQuery {
                before: page.next,
                ..q.clone()
            },
        )
        .unwrap();
        assert_eq!(second.total.count, matching);
        assert!(second.total.exact);
        // Counting only a little ahead gives an honest lower bound.
        let short = search(
            &vault,
            60,
            &EventQuery {
                count_ahead: 3,
                ..q.clone()
            },
        )
        .unwrap();
        assert!(!short.total.exact);
        assert!(short.total.count >= 5 && short.total.count < matching);
        // A cursor that does not carry the count gives no exact total.
        let old = search(
            &vault,
            60,
            &EventQuery {
                before: Some(Cursor::at(30)),
                ..q
            },
        )
        .unwrap();
        assert!(!old.total.exact);
    }

    #[test]
    fn a_page_examines_a_bounded_number_of_candidates() {
        let n = MAX_EXAMINED + 40;
        let vault = log_of(n, |i| {
            let mut v = event_json("s", "a");
            if i < 10 {
                v["outcome"] = "denied".into();
            }
            ("app", v)
        });
        let q = EventQuery {
            outcome: Some(Outcome::Denied),
            limit: 100,
            count_ahead: COUNT_AHEAD,
            ..EventQuery::default()
        };
        let first = search(&vault, n as u64, &q).unwrap();
        assert!(first.hits.is_empty(), "the denied events are the oldest");
        assert_eq!(first.examined, MAX_EXAMINED as u64);
        assert_eq!(
            first.total,
            Total {
                count: 0,
                exact: false
            }
        );
        let next = first.next.expect("an early end carries a cursor");
        let second = search(
            &vault,
            n as u64,
            &EventQuery {
                before: Some(next),
                ..q
            },
        )
        .unwrap();
        assert_eq!(indexes(&second), (0..10u64).rev().collect::<Vec<_>>());
        assert_eq!(
            second.total,
            Total {
                count: 10,
                exact: true
            }
        );
        assert_eq!(second.examined, n as u64);
        assert!(second.next.is_none());
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            before: 42,
            matched: Some(7),
            examined: 900,
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)).unwrap(), c);
        assert_eq!(
            decode_cursor(&encode_cursor(&Cursor::at(42))).unwrap(),
            Cursor::at(42)
        );
        assert!(
            decode_cursor(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("v2:1:2"))
                .is_err()
        );
        assert!(decode_cursor("42").is_err());
        assert!(decode_cursor("").is_err());
    }
}
