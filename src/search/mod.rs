//! Searching events: by data subject, actor, action, resource, app,
//! outcome, purpose and the time they occurred (index terms: [`index`]
//! keeps them, the vault computes them), and by when the log received them.
//!
//! Results come newest first (by leaf index), in pages. A page ends at a
//! leaf index; the cursor of the next page is that index, so pages are
//! stable while the log grows (new events only ever get larger indexes) and
//! never skip or repeat an event. The receive-time range needs no index:
//! the log's `received` time never goes backwards along the leaves, so a
//! binary search over the leaves maps it to an index range.
//!
//! Every other filter is an index term, and a query is the intersection of
//! its terms' postings, walked newest first by skipping ("leapfrog"): each
//! term's cursor jumps to the largest posting at or below the current
//! candidate, so what lies between two matches is never read. The time an
//! event occurred is indexed as the UTC day, month and year it falls in
//! (and one term for 2200 and later); a time range becomes the union of
//! the fewest such terms that cover it ([`occurred_cover`]): March is one
//! month term, and reads only March's postings. Terms at the range's edges
//! that reach outside it (a day the range starts within) are marked
//! partial, and only their events are opened to check the exact time.
//!
//! The log's own audit records (app [`INTERNAL_APP`]: searches, reads,
//! exports, erasures) are left out unless the query asks for them: the
//! postings of that app's term are skipped.
//!
//! Counting: after a full page the walk goes on without opening events, up
//! to [`EventQuery::count_ahead`] units of work, and the total is exact if
//! it reached the end, or a lower bound ("at least") if not. Postings of
//! an erased subject's events under their other terms stay in the index
//! (the erasure cannot read the events to find those terms; see
//! [`crate::vault`]): a search skips them, but a count made from the index
//! alone includes them.
//!
//! Invariant: a search never returns an erased event, and a page does at
//! most [`MAX_EXAMINED`] units of index work (a step of a cursor is one
//! unit, an index read [`READ_COST`], and a block read one more read for
//! every 1,024 postings it holds, see `index`) plus
//! `count_ahead`, and opens at
//! most twice `limit` events plus twice [`EDGE_CHECKS`], whatever the
//! query (as many events that are no hits as it has hits, erased ones
//! included, plus the checks at a time range's edges). A page
//! that reaches a bound ends early with a cursor, possibly with fewer hits
//! than asked for, or none.

use base64::Engine as _;

use crate::auth::INTERNAL_APP;
use crate::crypto::{Field, Term};
use crate::event::{self, AuditEvent, LeafRecord, Outcome};
use crate::merkle::{self, Hash};
use crate::sequencer::{TileCache, read_entry};
use crate::store::{Store, StoreError, StoredEvent};
use crate::tiles::TILE_WIDTH;
use crate::vault::Vault;

pub(crate) mod index;
pub mod rebuild;

pub use index::BuildProgress;
use index::PostingCursor;

/// Largest page.
pub const MAX_LIMIT: usize = 1000;
/// Default page.
pub const DEFAULT_LIMIT: usize = 100;
/// Units of index work per page at most, to find its hits; a page that
/// reaches it ends early with a cursor, so a query that matches little
/// cannot walk the whole index in one request.
pub const MAX_EXAMINED: usize = 200_000;
/// Units of index work a search page spends beyond a full page to count
/// the matches that follow, so small result sets get an exact total.
pub const COUNT_AHEAD: usize = 100_000;
/// Units of work of one index read (a block from the store, or a scan of
/// the postings in memory), against one step of a cursor.
pub const READ_COST: usize = 100;
/// Events opened beyond the page's hits to check the exact time of those
/// in a partial edge term while counting; past it, the total is a lower
/// bound.
pub const EDGE_CHECKS: usize = 200;

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
    parse_leaf(read_entry(store, index)?, index)
}

/// The leaf at `index` of a tree of `size` leaves, parsed, through the
/// read cache: the entry bundles of a page's hits are read once for all
/// the searches that return them, within the cache's budget.
fn cached_leaf_at(
    tiles: &TileCache,
    size: u64,
    index: u64,
) -> Result<(Vec<u8>, LeafRecord), StoreError> {
    let bundle = index / TILE_WIDTH;
    let width = size.saturating_sub(bundle * TILE_WIDTH).min(TILE_WIDTH);
    let width = u16::try_from(width).unwrap_or(u16::MAX);
    parse_leaf(tiles.entry(index, width)?, index)
}

fn parse_leaf(leaf: Vec<u8>, index: u64) -> Result<(Vec<u8>, LeafRecord), StoreError> {
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

/// Most points [`growth`] gives.
pub const MAX_GROWTH_POINTS: usize = 64;

/// One point of the tree's growth: `size` leaves had been received by
/// `t_ms` (Unix ms).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct GrowthPoint {
    /// The time, Unix ms.
    pub t_ms: i64,
    /// Leaves received by then.
    pub size: u64,
}

/// How the first `size` leaves grew: `points` + 1 evenly spaced times
/// (`points` at most [`MAX_GROWTH_POINTS`]) from the first leaf's receive
/// time to the last one's, each with the leaves received by then. Each
/// point is one binary search over the receive times, so it costs at most
/// `points` x log2(`size`) leaf reads at any size.
pub fn growth(store: &dyn Store, size: u64, points: usize) -> Result<Vec<GrowthPoint>, StoreError> {
    if size == 0 {
        return Ok(Vec::new());
    }
    let points = points.clamp(1, MAX_GROWTH_POINTS);
    let first = leaf_at(store, 0)?.1.received_ms;
    let last = leaf_at(store, size - 1)?.1.received_ms.max(first);
    let mut out = Vec::with_capacity(points + 1);
    for k in 0..=points {
        let span = i128::from(last - first) * k as i128 / points as i128;
        let t_ms = first + i64::try_from(span).unwrap_or(0);
        let size = if k == points {
            size
        } else {
            first_received_at_or_after(store, size, t_ms.saturating_add(1))?
        };
        out.push(GrowthPoint { t_ms, size });
    }
    Ok(out)
}

/// The opened event at `index` with its leaf, or `None` if erased.
pub fn hit_at(vault: &Vault, index: u64) -> Result<Option<Hit>, StoreError> {
    hit_with(vault, index, |i| leaf_at(vault.store().as_ref(), i))
}

/// [`hit_at`], with the leaf from `leaf`.
fn hit_with(
    vault: &Vault,
    index: u64,
    leaf: impl FnOnce(u64) -> Result<(Vec<u8>, LeafRecord), StoreError>,
) -> Result<Option<Hit>, StoreError> {
    let Some((stored, event)) = vault.open_event(index)? else {
        return Ok(None);
    };
    let (leaf, record) = leaf(index)?;
    Ok(Some(Hit {
        index,
        leaf_hash: merkle::leaf_hash(&leaf),
        leaf,
        record,
        stored,
        event,
    }))
}

const DAY_MS: i64 = 86_400_000;
/// From this year on, one term ([`Field::OccurredFar`]) stands for every
/// year: a range open at its end is then a few terms, not thousands.
const FAR_YEAR: &str = "2200";

/// The index terms of an event's `occurred_at` (RFC 3339): the UTC day,
/// month and year it falls in, and [`Field::OccurredFar`] from
/// [`FAR_YEAR`] on. None for a time that does not parse (stored events
/// were validated on the way in).
pub fn occurred_terms(occurred_at: &str) -> Vec<(Field, String)> {
    let Ok(ms) = event::parse_rfc3339_ms(occurred_at) else {
        return Vec::new();
    };
    let t = event::format_rfc3339_ms(ms);
    let mut out = vec![
        (Field::OccurredDay, t[..10].to_string()),
        (Field::OccurredMonth, t[..7].to_string()),
        (Field::OccurredYear, t[..4].to_string()),
    ];
    if &t[..4] >= FAR_YEAR {
        out.push((Field::OccurredFar, String::new()));
    }
    out
}

/// `YYYY-MM-DD` of a day (days since 1970-01-01).
fn date_of(day: i64) -> String {
    event::format_rfc3339_ms(day * DAY_MS)[..10].to_string()
}

/// The day (since 1970-01-01) of `YYYY-MM-DD`; past 9999 for 10000-01-01.
fn day_of(year: i64, month: u32) -> i64 {
    if year > 9999 {
        return event::MAX_UNIX_MS.div_euclid(DAY_MS) + 1;
    }
    event::parse_rfc3339_ms(&format!("{year:04}-{month:02}-01T00:00:00Z"))
        .map_or(0, |ms| ms.div_euclid(DAY_MS))
}

/// One term of a time range's cover, `partial` when its span reaches
/// outside the range (its events' times are checked one by one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoverTerm {
    /// Day, month, year or far.
    pub field: Field,
    /// Its value (`YYYY-MM-DD`, `YYYY-MM`, `YYYY` or empty).
    pub value: String,
    /// Whether the term also holds events outside the range.
    pub partial: bool,
}

/// The fewest day, month and year terms whose union is the occurred-time
/// range `[since, until)` (open ends: the whole supported range), with
/// the terms at its edges that reach outside it marked partial. Empty
/// when the range is. At most about 60 days, 22 months and the years
/// from 1970 to [`FAR_YEAR`].
pub fn occurred_cover(since_ms: Option<i64>, until_ms: Option<i64>) -> Vec<CoverTerm> {
    let s = since_ms
        .unwrap_or(event::MIN_UNIX_MS)
        .max(event::MIN_UNIX_MS);
    let u = until_ms
        .unwrap_or(event::MAX_UNIX_MS + 1)
        .min(event::MAX_UNIX_MS + 1);
    let mut out = Vec::new();
    if s >= u {
        return out;
    }
    let term = |field, value: &str, partial| CoverTerm {
        field,
        value: value.to_string(),
        partial,
    };
    let (first, last) = (s.div_euclid(DAY_MS), (u - 1).div_euclid(DAY_MS));
    let (first_partial, last_partial) = (s.rem_euclid(DAY_MS) != 0, u.rem_euclid(DAY_MS) != 0);
    let (mut d, mut end) = (first, last);
    if first_partial || (first == last && last_partial) {
        out.push(term(Field::OccurredDay, &date_of(first), true));
        d += 1;
    }
    if last_partial && last >= d {
        out.push(term(Field::OccurredDay, &date_of(last), true));
        end -= 1;
    }
    let max_day = event::MAX_UNIX_MS.div_euclid(DAY_MS);
    while d <= end {
        let date = date_of(d);
        let year: i64 = date[..4].parse().unwrap_or(0);
        let month: u32 = date[5..7].parse().unwrap_or(1);
        if &date[..4] >= FAR_YEAR {
            let whole = date[4..] == *"-01-01" && date[..4] == *FAR_YEAR && end == max_day;
            out.push(term(Field::OccurredFar, "", !whole));
            break;
        }
        let next_year = day_of(year + 1, 1);
        if date[5..] == *"01-01" && next_year - 1 <= end {
            out.push(term(Field::OccurredYear, &date[..4], false));
            d = next_year;
            continue;
        }
        let next_month = if month == 12 {
            next_year
        } else {
            day_of(year, month + 1)
        };
        if date[8..] == *"01" && next_month - 1 <= end {
            out.push(term(Field::OccurredMonth, &date[..7], false));
            d = next_month;
            continue;
        }
        out.push(term(Field::OccurredDay, &date, false));
        d += 1;
    }
    out
}

/// The leaves a filter allows, newest first, with skips.
enum Stream {
    /// No filter: every leaf.
    Every,
    /// One term's postings.
    Term(PostingCursor),
    /// The union of a time range's cover terms, each with its `partial`,
    /// and the reads of the members already exhausted and dropped.
    Union(Vec<(PostingCursor, bool)>, u64),
}

impl Stream {
    /// The largest leaf at or below `x` the filter allows, and whether it
    /// came from a partial term only.
    fn seek(&mut self, vault: &Vault, x: u64) -> Result<Option<(u64, bool)>, StoreError> {
        match self {
            Stream::Every => Ok(Some((x, false))),
            Stream::Term(c) => Ok(c.seek(vault, x)?.map(|p| (p, false))),
            Stream::Union(members, dropped) => {
                let mut best: Option<(u64, bool)> = None;
                for (c, partial) in members.iter_mut() {
                    if let Some(p) = c.seek(vault, x)? {
                        best = match best {
                            Some((b, bp)) if b > p => Some((b, bp)),
                            Some((b, bp)) if b == p => Some((b, bp && *partial)),
                            _ => Some((p, *partial)),
                        };
                    }
                }
                members.retain(|(c, _)| {
                    if c.is_done() {
                        *dropped += c.reads;
                    }
                    !c.is_done()
                });
                Ok(best)
            }
        }
    }

    fn reads(&self) -> u64 {
        match self {
            Stream::Every => 0,
            Stream::Term(c) => c.reads,
            Stream::Union(m, dropped) => dropped + m.iter().map(|(c, _)| c.reads).sum::<u64>(),
        }
    }

    /// Cursors a seek moves.
    fn width(&self) -> u64 {
        match self {
            Stream::Union(m, _) => m.len().max(1) as u64,
            _ => 1,
        }
    }
}

/// A query's walk over the index: the intersection of its streams in
/// `lo..`, less the postings of `exclude`.
struct Walk<'a> {
    vault: &'a Vault,
    streams: Vec<Stream>,
    exclude: Option<PostingCursor>,
    lo: u64,
    steps: u64,
}

impl Walk<'_> {
    /// Work done so far, in units (see [`READ_COST`]).
    fn work(&self) -> u64 {
        let reads = self.streams.iter().map(Stream::reads).sum::<u64>()
            + self.exclude.as_ref().map_or(0, |c| c.reads);
        self.steps + reads * READ_COST as u64
    }

    /// The largest match below `below` (and at or above `lo`), and whether
    /// its occurred time must be checked; or a pause, once the walk's
    /// work reaches `max_work`, with where to go on from.
    fn next(&mut self, below: u64, max_work: u64) -> Result<Step, StoreError> {
        if below <= self.lo {
            return Ok(Step::End);
        }
        let mut x = below - 1;
        let n = self.streams.len();
        'candidate: loop {
            let (mut agreed, mut partial, mut i) = (0, false, 0);
            while agreed < n {
                // Nothing in `x + 1..below` matches.
                if self.work() >= max_work {
                    return Ok(Step::Paused(x + 1));
                }
                self.steps += self.streams[i].width();
                let Some((y, p)) = self.streams[i].seek(self.vault, x)? else {
                    return Ok(Step::End);
                };
                if y < self.lo {
                    return Ok(Step::End);
                }
                if y == x {
                    agreed += 1;
                    partial |= p;
                } else {
                    (x, agreed, partial) = (y, 1, p);
                }
                i = (i + 1) % n;
            }
            if let Some(ex) = &mut self.exclude {
                self.steps += 1;
                if ex.seek(self.vault, x)? == Some(x) {
                    if x <= self.lo {
                        return Ok(Step::End);
                    }
                    x -= 1;
                    continue 'candidate;
                }
            }
            return Ok(Step::Match(x, partial));
        }
    }
}

/// What [`Walk::next`] found.
enum Step {
    /// A match, and whether its occurred time must be checked.
    Match(u64, bool),
    /// No match is left.
    End,
    /// The work budget is spent; nothing at or above this index is left.
    Paused(u64),
}

/// Whether an opened `hit` answers the filters that are not index terms
/// or that its term may only partly answer (a checked edge of a time
/// range); the index answered the rest.
fn answers(q: &EventQuery, hit: &Hit) -> bool {
    if !q.include_audit && hit.is_audit_record() {
        return false;
    }
    if q.outcome.is_some_and(|o| hit.event.outcome != o)
        || q.purpose.as_ref().is_some_and(|p| hit.event.purpose != *p)
    {
        return false;
    }
    if q.occurred_since_ms.is_some() || q.occurred_until_ms.is_some() {
        // One that no longer parses cannot be placed in time, so it
        // answers no time range.
        let Ok(t) = event::parse_rfc3339_ms(&hit.event.occurred_at) else {
            return false;
        };
        if q.occurred_since_ms.is_some_and(|s| t < s) || q.occurred_until_ms.is_some_and(|u| t >= u)
        {
            return false;
        }
    }
    true
}

/// The walk of `q` over `lo..`: its streams, most selective first (the
/// API orders the field filters so).
fn walk<'a>(vault: &'a Vault, q: &EventQuery, lo: u64) -> Result<Walk<'a>, StoreError> {
    let cursor = |t: Term| PostingCursor::new(vault, t);
    let mut streams = Vec::new();
    for (f, v) in &q.filters {
        streams.push(Stream::Term(cursor(vault.term(*f, v))?));
    }
    if let Some(p) = &q.purpose {
        streams.push(Stream::Term(cursor(vault.term(Field::Purpose, p))?));
    }
    if let Some(o) = q.outcome {
        streams.push(Stream::Term(cursor(
            vault.term(Field::Outcome, o.as_str()),
        )?));
    }
    if q.occurred_since_ms.is_some() || q.occurred_until_ms.is_some() {
        let members = occurred_cover(q.occurred_since_ms, q.occurred_until_ms)
            .into_iter()
            .map(|c| Ok((cursor(vault.term(c.field, &c.value))?, c.partial)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        streams.push(Stream::Union(members, 0));
    }
    if streams.is_empty() {
        streams.push(Stream::Every);
    }
    let exclude = if q.include_audit {
        None
    } else {
        Some(cursor(vault.term(Field::App, INTERNAL_APP))?)
    };
    Ok(Walk {
        vault,
        streams,
        exclude,
        lo,
        steps: 0,
    })
}

/// Runs `q` over the first `size` leaves (committed), reading the hits'
/// leaves through `tiles`. Refused while the index is being built
/// ([`rebuild`]): it would miss the events not yet indexed.
pub fn search(
    vault: &Vault,
    tiles: &TileCache,
    size: u64,
    q: &EventQuery,
) -> Result<Page, StoreError> {
    if let Some(p) = vault.index_building()? {
        return Err(StoreError::Backend(format!(
            "the search index is being built ({} of {} events indexed)",
            p.indexed, p.target
        )));
    }
    search_within(vault, tiles, size, q, MAX_EXAMINED as u64)
}

/// [`search`], ending the page early after `max_work` units of work.
fn search_within(
    vault: &Vault,
    tiles: &TileCache,
    size: u64,
    q: &EventQuery,
    max_work: u64,
) -> Result<Page, StoreError> {
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
    let hi = hi.max(lo);
    let matched_before = q.before.map_or(Some(0), |c| c.matched);
    let examined_before = q.before.map_or(0, |c| c.examined);
    let mut walk = walk(vault, q, lo)?;
    let mut hits = Vec::new();
    let mut at = hi;
    let page_end = |found: usize, examined: u64, at: u64| Cursor {
        before: at,
        matched: matched_before.map(|m| m + found as u64),
        examined: examined_before + examined,
    };
    // Events opened that were not hits (outside a partial term's part of
    // the range, or erased since the index was read): as many as the page
    // has room for hits, and the edge checks.
    let mut misses = 0;
    let open_hit = |index| hit_with(vault, index, |i| cached_leaf_at(tiles, size, i));
    while hits.len() < q.limit {
        let step = if misses >= q.limit + EDGE_CHECKS {
            Step::Paused(at)
        } else {
            walk.next(at, max_work)?
        };
        match step {
            Step::Match(index, _) => {
                at = index;
                match open_hit(index)? {
                    Some(hit) if answers(q, &hit) => hits.push(hit),
                    _ => misses += 1,
                }
            }
            Step::End => {
                at = lo;
                break;
            }
            Step::Paused(below) => {
                let next = page_end(hits.len(), walk.work(), below);
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
        }
    }
    let fetched = walk.work();
    let here = page_end(hits.len(), fetched, at);
    // Count what follows the page from the index alone, within a budget;
    // only events in a partial edge term are opened.
    let (mut ahead, mut unsure, mut checks) = (0u64, false, 0usize);
    let mut cursor = at;
    let exhausted = loop {
        match walk.next(cursor, fetched + q.count_ahead as u64)? {
            Step::End => break true,
            Step::Paused(_) => break false,
            Step::Match(index, partial) => {
                cursor = index;
                if !partial {
                    ahead += 1;
                } else if checks < EDGE_CHECKS {
                    checks += 1;
                    if open_hit(index)?.is_some_and(|h| answers(q, &h)) {
                        ahead += 1;
                    }
                } else {
                    unsure = true;
                }
            }
        }
    };
    let more = at > lo && (!exhausted || ahead > 0 || unsure);
    let count = here.matched.unwrap_or(hits.len() as u64) + ahead;
    Ok(Page {
        next: more.then_some(here),
        examined: examined_before + walk.work(),
        total: Total {
            count,
            exact: exhausted && !unsure && here.matched.is_some(),
        },
        hits,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequencer::test_log::{TestLogBuilder, prepared};
    use std::sync::Arc;

    /// [`super::search`] through a read cache of its own.
    fn search(vault: &Vault, size: u64, q: &EventQuery) -> Result<Page, StoreError> {
        super::search(
            vault,
            &TileCache::new(vault.store().clone(), 1 << 20, 0),
            size,
            q,
        )
    }

    /// [`super::search_within`] through a read cache of its own.
    fn search_within(
        vault: &Vault,
        size: u64,
        q: &EventQuery,
        max: u64,
    ) -> Result<Page, StoreError> {
        let tiles = TileCache::new(vault.store().clone(), 1 << 20, 0);
        super::search_within(vault, &tiles, size, q, max)
    }

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
        submit_all(&mut log, n, 256, make);
        log.vault()
    }

    /// As [`log_of`], with the search index written out every
    /// `flush_events` events (batches of that many events at most).
    fn log_with_flush(
        n: usize,
        flush_events: usize,
        make: impl Fn(usize) -> (&'static str, serde_json::Value),
    ) -> Arc<Vault> {
        let mut log = TestLogBuilder::new("example.com/log")
            .index_flush_events(flush_events)
            .start();
        submit_all(&mut log, n, flush_events, make);
        let vault = log.vault();
        vault.flush_index().unwrap();
        vault
    }

    /// Submits the `n` events `make(i)` gives and shuts the log down.
    fn submit_all(
        log: &mut crate::sequencer::test_log::TestLog,
        n: usize,
        batch_events: usize,
        make: impl Fn(usize) -> (&'static str, serde_json::Value),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        // Runs of one app go in one batch, in order.
        let mut i = 0;
        while i < n {
            let (app, ev) = make(i);
            let mut batch = vec![prepared(&ev)];
            i += 1;
            while i < n && batch.len() < batch_events && make(i).0 == app {
                batch.push(prepared(&make(i).1));
                i += 1;
            }
            rt.block_on(log.submit(app, batch));
        }
        log.shutdown();
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
    fn a_large_block_counts_as_several_reads_and_the_count_stays_right() {
        // Every event is a success, of subject `s{i % 100}`. One flush of
        // 8,192 events is stored, the rest is the in-memory tail.
        let n = 8_192 + 500;
        let vault = log_with_flush(n, 8_192, |i| {
            ("app", event_json(&format!("s{}", i % 100), "a"))
        });
        let reads = |field, value: &str| {
            let mut c = PostingCursor::new(&vault, vault.term(field, value)).unwrap();
            assert!(c.seek(&vault, 8_000).unwrap().is_some());
            c.reads
        };
        assert_eq!(reads(Field::Subject, "s7"), 1, "82 postings: one read");
        assert_eq!(reads(Field::Outcome, "success"), 9, "8,192 postings: 1 + 8");
        // Counted so, the intersection still finds and counts every match.
        let page = search(
            &vault,
            n as u64,
            &EventQuery {
                filters: vec![(Field::Subject, "s7".into())],
                outcome: Some(Outcome::Success),
                limit: 10,
                count_ahead: COUNT_AHEAD,
                ..EventQuery::default()
            },
        )
        .unwrap();
        assert_eq!(page.hits.len(), 10);
        assert_eq!(
            page.total,
            Total {
                count: 87,
                exact: true
            }
        );
    }

    #[test]
    fn a_page_does_a_bounded_amount_of_work() {
        // Only the ten oldest events are not the log's own audit records:
        // a search that leaves those out steps over all the others.
        let n = 400;
        let vault = log_of(n, |i| {
            let app = if i < 10 { "app" } else { INTERNAL_APP };
            (app, event_json("s", "a"))
        });
        let q = EventQuery {
            limit: 100,
            ..EventQuery::default()
        };
        let budget = 300;
        let first = search_within(&vault, n as u64, &q, budget).unwrap();
        assert!(first.hits.is_empty(), "the matches are the oldest");
        assert!(first.examined >= budget && first.examined < budget + READ_COST as u64 + 4);
        assert_eq!(
            first.total,
            Total {
                count: 0,
                exact: false
            }
        );
        let (mut page, mut got, mut pages) = (first, Vec::new(), 1);
        while let Some(next) = page.next {
            let q = EventQuery {
                before: Some(next),
                ..q.clone()
            };
            page = search_within(&vault, n as u64, &q, budget).unwrap();
            got.extend(indexes(&page));
            pages += 1;
        }
        assert_eq!(got, (0..10u64).rev().collect::<Vec<_>>());
        assert!(pages > 2, "{pages} pages");
        assert_eq!(
            page.total,
            Total {
                count: 10,
                exact: true
            }
        );
    }

    #[test]
    fn a_time_range_is_covered_by_the_fewest_day_month_and_year_terms() {
        let ms = |t: &str| crate::event::parse_rfc3339_ms(t).unwrap();
        let show = |c: Vec<CoverTerm>| -> Vec<String> {
            c.iter()
                .map(|t| {
                    let kind = match t.field {
                        Field::OccurredDay => "d",
                        Field::OccurredMonth => "m",
                        Field::OccurredYear => "y",
                        Field::OccurredFar => "far",
                        _ => "?",
                    };
                    format!("{kind}{}{}", t.value, if t.partial { "~" } else { "" })
                })
                .collect()
        };
        let cover =
            |since: &str, until: &str| show(occurred_cover(Some(ms(since)), Some(ms(until))));
        assert_eq!(
            cover("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
            ["m2026-03"]
        );
        assert_eq!(
            cover("2026-02-27T12:00:00Z", "2026-04-02T00:00:00Z"),
            ["d2026-02-27~", "d2026-02-28", "m2026-03", "d2026-04-01"]
        );
        assert_eq!(
            cover("2026-03-05T10:00:00Z", "2026-03-05T11:00:00Z"),
            ["d2026-03-05~"]
        );
        assert_eq!(
            cover("2024-12-31T00:00:00Z", "2026-01-01T00:00:01Z"),
            ["d2026-01-01~", "d2024-12-31", "y2025"]
        );
        // Open at the end: the years to 2199, then one term for the rest.
        let since = show(occurred_cover(Some(ms("2190-01-01T00:00:00Z")), None));
        assert_eq!(since.len(), 11);
        assert_eq!(since.last().map(String::as_str), Some("far"));
        assert_eq!(
            cover("2300-01-01T00:00:00Z", "2301-01-01T00:00:00Z"),
            ["far~"]
        );
        // Open at the start: from 1970.
        let until = show(occurred_cover(None, Some(ms("1972-03-01T00:00:00Z"))));
        assert_eq!(until, ["y1970", "y1971", "m1972-01", "m1972-02"]);
        assert!(occurred_cover(Some(5), Some(5)).is_empty());
        assert_eq!(occurred_cover(None, None).len(), 2200 - 1970 + 1);
    }

    #[test]
    fn an_event_has_the_terms_of_its_occurred_day_month_and_year() {
        let terms = occurred_terms("2026-03-31T23:30:00.000-02:00");
        assert_eq!(
            terms,
            vec![
                (Field::OccurredDay, "2026-04-01".to_string()),
                (Field::OccurredMonth, "2026-04".to_string()),
                (Field::OccurredYear, "2026".to_string()),
            ]
        );
        assert_eq!(occurred_terms("2250-01-01T00:00:00Z").len(), 4);
        assert!(occurred_terms("not a time").is_empty());
    }

    /// Event `i` of `n`: occurred in month `i * 12 / n + 1` of 2026, so the
    /// months follow one another along the log; denied when `i % 3 == 0`.
    fn by_month(n: usize) -> impl Fn(usize) -> (&'static str, serde_json::Value) {
        move |i| {
            let mut v = event_json(&format!("s{}", i % 7), "a");
            v["occurred_at"] = format!("2026-{:02}-10T08:00:00.000Z", i * 12 / n + 1).into();
            if i.is_multiple_of(3) {
                v["outcome"] = "denied".into();
            }
            ("app", v)
        }
    }

    #[test]
    fn a_month_query_reads_only_that_months_postings_and_counts_from_the_index() {
        let n = 1200;
        // An index written out every 50 events or so: about 24 flushes.
        let vault = log_with_flush(n, 50, by_month(n));
        assert_eq!(vault.index_watermark().unwrap(), 1200);
        let ms = |t: &str| crate::event::parse_rfc3339_ms(t).unwrap();
        let q = EventQuery {
            occurred_since_ms: Some(ms("2026-03-01T00:00:00Z")),
            occurred_until_ms: Some(ms("2026-04-01T00:00:00Z")),
            outcome: Some(Outcome::Denied),
            limit: 10,
            count_ahead: COUNT_AHEAD,
            ..EventQuery::default()
        };
        let expect: Vec<u64> = (200..300u64).rev().filter(|i| i % 3 == 0).collect();
        let page = search(&vault, n as u64, &q).unwrap();
        assert_eq!(indexes(&page), expect[..10]);
        assert_eq!(
            page.total,
            Total {
                count: expect.len() as u64,
                exact: true
            }
        );
        // March's 100 events are in 2 or 3 of the 24 flushes; the outcome
        // term is in every flush, but it is only read where March is (the
        // walk skips), and the audit records' term is empty.
        let mut walk = walk(&vault, &q, 0).unwrap();
        let mut at = n as u64;
        while let Step::Match(i, _) = walk.next(at, u64::MAX).unwrap() {
            at = i;
        }
        let reads = walk.work() / READ_COST as u64;
        assert!(reads <= 12, "{reads} index reads for March");
        // A December query finds none of March's events.
        let december = EventQuery {
            occurred_since_ms: Some(ms("2026-12-01T00:00:00Z")),
            occurred_until_ms: Some(ms("2027-01-01T00:00:00Z")),
            outcome: None,
            ..q.clone()
        };
        let (got, last) = all_pages(&vault, n as u64, december);
        assert_eq!(got, (1100..1200u64).rev().collect::<Vec<_>>());
        assert!(last.total.exact);
        // A range starting within a day: that day's events are checked
        // one by one, in the page and in the count.
        let partial = EventQuery {
            occurred_since_ms: Some(ms("2026-03-10T08:00:00Z")),
            occurred_until_ms: Some(ms("2026-03-10T08:00:01Z")),
            outcome: None,
            limit: 5,
            ..q.clone()
        };
        let page = search(&vault, n as u64, &partial).unwrap();
        assert_eq!(indexes(&page), (295..300u64).rev().collect::<Vec<_>>());
        assert_eq!(page.total.count, 100);
        assert!(page.total.exact);
        let missed = EventQuery {
            occurred_since_ms: Some(ms("2026-03-10T08:00:01Z")),
            occurred_until_ms: Some(ms("2026-03-10T09:00:00Z")),
            ..partial
        };
        let page = search(&vault, n as u64, &missed).unwrap();
        assert!(page.hits.is_empty() && page.next.is_none());
        assert_eq!(
            page.total,
            Total {
                count: 0,
                exact: true
            }
        );
    }

    #[test]
    fn an_index_of_an_earlier_format_is_rebuilt_when_the_vault_opens() {
        let n = 300;
        let mut log = TestLogBuilder::new("example.com/log").start();
        submit_all(&mut log, n, 256, by_month(n));
        let vault = log.vault();
        vault.flush_index().unwrap();
        let store = log.dyn_store();
        assert_eq!(index::stored_watermark(store.as_ref()).unwrap(), Some(300));
        // An index written before the format marker existed.
        store
            .commit_records(&crate::store::RecordBatch {
                index_blocks: vec![crate::store::IndexBlock {
                    value: None,
                    ..index::format_marker()
                }],
                ..crate::store::RecordBatch::default()
            })
            .unwrap();
        assert_eq!(index::stored_watermark(store.as_ref()).unwrap(), None);
        drop(vault);
        let reopened = Vault::open_with_index_flush(
            store.clone(),
            &crate::crypto::MasterKey::from_bytes([9; 32]),
            crate::vault::KeyringHome::Store,
            64,
        )
        .unwrap();
        assert_eq!(index::stored_watermark(store.as_ref()).unwrap(), Some(300));
        let ms = |t: &str| crate::event::parse_rfc3339_ms(t).unwrap();
        let (got, _) = all_pages(
            &reopened,
            n as u64,
            EventQuery {
                occurred_since_ms: Some(ms("2026-12-01T00:00:00Z")),
                limit: 7,
                ..EventQuery::default()
            },
        );
        assert_eq!(got, (275..300u64).rev().collect::<Vec<_>>());
    }

    #[test]
    fn an_index_built_in_the_background_is_refused_until_done_and_resumes_after_a_crash() {
        let n = 1000;
        let mut log = TestLogBuilder::new("example.com/log").start();
        submit_all(&mut log, n, 256, by_month(n));
        let vault = log.vault();
        let ms = |t: &str| crate::event::parse_rfc3339_ms(t).unwrap();
        let queries = [
            EventQuery {
                occurred_since_ms: Some(ms("2026-03-01T00:00:00Z")),
                occurred_until_ms: Some(ms("2026-04-01T00:00:00Z")),
                limit: 50,
                ..EventQuery::default()
            },
            EventQuery {
                filters: vec![
                    (Field::Subject, "s3".into()),
                    (Field::Outcome, "denied".into()),
                ],
                limit: 50,
                ..EventQuery::default()
            },
        ];
        let expected: Vec<Vec<u64>> = queries
            .iter()
            .map(|q| all_pages(&vault, n as u64, q.clone()).0)
            .collect();
        assert!(expected.iter().all(|e| !e.is_empty()));
        drop(vault);
        let store = log.dyn_store();
        store.clear_index().unwrap();
        let master = crate::crypto::MasterKey::from_bytes([9; 32]);
        let open = || {
            Arc::new(
                Vault::open_building_index(
                    store.clone(),
                    &master,
                    crate::vault::KeyringHome::Store,
                    64,
                )
                .unwrap(),
            )
        };
        let building = open();
        assert_eq!(
            building.index_building().unwrap(),
            Some(BuildProgress {
                indexed: 0,
                target: n as u64
            })
        );
        assert!(search(&building, n as u64, &queries[0]).is_err());
        // Two steps, then a crash: nothing flushed on the way out.
        for _ in 0..2 {
            assert!(!building.index_step(rebuild::STEP_EVENTS).unwrap());
        }
        let stored = store.index_watermark().unwrap().unwrap();
        assert!(stored > 0 && stored <= 2 * rebuild::STEP_EVENTS, "{stored}");
        drop(building);
        // The next open resumes where the stored index ends.
        let resumed = open();
        assert_eq!(resumed.index_building().unwrap().unwrap().indexed, stored);
        rebuild::start(&resumed, Default::default()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while resumed.index_building().unwrap().is_some() {
            assert!(std::time::Instant::now() < deadline, "the build never ends");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for (q, want) in queries.iter().zip(&expected) {
            assert_eq!(&all_pages(&resumed, n as u64, q.clone()).0, want);
        }
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
