//! `veritrail bench search`: latency of `GET /v1/events` on a seeded log,
//! with every answer checked.
//!
//! Each search the log answers is first appended to the log as an
//! `audit.search` event (durably, before the answer), so the latency
//! measured here includes one durable append: that is the service's real
//! cost of a search. Searches for a subject name that subject in their audit
//! event, so the subject's matches grow by one per search; the checks count
//! only events of the seeding app against what the seeding generated.
//!
//! Invariant: a latency is reported only when every answer it covers was
//! checked: each hit carries the searched field, hits come newest first,
//! a full page is full, and (when the seeding is described) walking every
//! page finds exactly the seeded events of the subject and the actor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::population::{ACTIONS, Population};
use super::{BenchError, LatencySummary, ms};

/// What was seeded into the log, so answers can be checked for completeness.
#[derive(Clone, Debug)]
pub struct Seeded {
    /// The generator's parameters.
    pub population: Population,
    /// Events `0..events` of the population were seeded (once).
    pub events: u64,
    /// The app the seeding writer key records events under.
    pub app: String,
}

/// One `bench search` run.
#[derive(Clone, Debug)]
pub struct SearchOptions {
    /// Base URL of the log.
    pub url: String,
    /// An auditor API key.
    pub key: String,
    /// The subject searched for.
    pub subject: String,
    /// Also measure a search by this actor.
    pub actor: Option<String>,
    /// Also measure a search by this action.
    pub action: Option<String>,
    /// Timed requests per measured query.
    pub requests: usize,
    /// Concurrent clients, one request in flight each.
    pub clients: usize,
    /// Page size.
    pub limit: usize,
    /// Untimed first-page requests before the timed ones (caches, connections).
    pub warmup: usize,
    /// The seeding, when known: enables the completeness checks.
    pub seeded: Option<Seeded>,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// Latency of one measured query.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Request → checked answer.
    pub latency: LatencySummary,
    /// Hits on the fewest-hits answer.
    pub min_hits: usize,
}

/// The outcome of a search run.
#[derive(Clone, Debug)]
pub struct SearchReport {
    /// Seeded events of the subject (from the seeding's description).
    pub expected_subject_events: Option<u64>,
    /// Seeded events of the subject found by walking every page.
    pub found_subject_events: u64,
    /// All matches of the subject found by the walk (with audit events).
    pub subject_matches: u64,
    /// Pages the subject walk took.
    pub subject_pages: u64,
    /// Seeded events of the actor, expected and found.
    pub actor_events: Option<(Option<u64>, u64)>,
    /// First page of the subject search.
    pub first_page: Measured,
    /// The page after it (through the first page's cursor), if there is one.
    pub next_page: Option<Measured>,
    /// First page of the actor search.
    pub actor_page: Option<Measured>,
    /// First page of the action search.
    pub action_page: Option<Measured>,
    /// 503 answers retried.
    pub busy_retries: u64,
}

fn summary_json(
    prefix: &str,
    m: Option<&Measured>,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    let l = m.map(|m| m.latency);
    let put = |out: &mut serde_json::Map<String, serde_json::Value>, k: &str, v: Option<f64>| {
        out.insert(format!("{prefix}{k}"), serde_json::json!(v));
    };
    put(out, "p50_ms", l.map(|l| ms(l.p50)));
    put(out, "p95_ms", l.map(|l| ms(l.p95)));
    put(out, "p99_ms", l.map(|l| ms(l.p99)));
    put(out, "max_ms", l.map(|l| ms(l.max)));
    put(out, "mean_ms", l.map(|l| ms(l.mean)));
    out.insert(
        format!("{prefix}requests"),
        serde_json::json!(l.map(|l| l.count)),
    );
    out.insert(
        format!("{prefix}min_hits"),
        serde_json::json!(m.map(|m| m.min_hits)),
    );
}

impl SearchReport {
    /// The report as one flat JSON object (for scripts).
    pub fn to_json(&self, opts: &SearchOptions) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        out.insert("subject".into(), serde_json::json!(opts.subject));
        out.insert("clients".into(), serde_json::json!(opts.clients));
        out.insert("limit".into(), serde_json::json!(opts.limit));
        out.insert(
            "seeded_events".into(),
            serde_json::json!(opts.seeded.as_ref().map(|s| s.events)),
        );
        out.insert(
            "expected_subject_events".into(),
            serde_json::json!(self.expected_subject_events),
        );
        out.insert(
            "found_subject_events".into(),
            serde_json::json!(self.found_subject_events),
        );
        out.insert(
            "subject_matches".into(),
            serde_json::json!(self.subject_matches),
        );
        out.insert(
            "subject_pages".into(),
            serde_json::json!(self.subject_pages),
        );
        out.insert(
            "expected_actor_events".into(),
            serde_json::json!(self.actor_events.and_then(|a| a.0)),
        );
        out.insert(
            "found_actor_events".into(),
            serde_json::json!(self.actor_events.map(|a| a.1)),
        );
        out.insert("busy_retries".into(), serde_json::json!(self.busy_retries));
        summary_json("", Some(&self.first_page), &mut out);
        summary_json("next_", self.next_page.as_ref(), &mut out);
        summary_json("actor_", self.actor_page.as_ref(), &mut out);
        summary_json("action_", self.action_page.as_ref(), &mut out);
        serde_json::Value::Object(out)
    }

    /// A human-readable summary.
    pub fn describe(&self, opts: &SearchOptions) -> String {
        let line = |what: &str, m: &Measured| {
            format!(
                "{what}: {} requests, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms (≥ {} hits each)\n",
                m.latency.count,
                ms(m.latency.p50),
                ms(m.latency.p95),
                ms(m.latency.p99),
                ms(m.latency.max),
                m.min_hits
            )
        };
        let mut s = format!(
            "search subject={:?}, limit {}, {} clients: {} seeded events found{} ({} matches with audit events, {} pages)\n",
            opts.subject,
            opts.limit,
            opts.clients,
            self.found_subject_events,
            self.expected_subject_events
                .map(|e| format!(" of {e} expected"))
                .unwrap_or_default(),
            self.subject_matches,
            self.subject_pages,
        );
        s += &line("first page", &self.first_page);
        if let Some(m) = &self.next_page {
            s += &line("next page (cursor)", m);
        }
        if let Some(m) = &self.actor_page {
            s += &line("actor first page", m);
        }
        if let Some(m) = &self.action_page {
            s += &line("action first page", m);
        }
        s
    }
}

#[derive(Deserialize)]
struct Page {
    events: Vec<Hit>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Hit {
    index: u64,
    app: String,
    event: HitEvent,
}

#[derive(Deserialize)]
struct HitEvent {
    subject: Option<String>,
    action: String,
    actor: HitActor,
}

#[derive(Deserialize)]
struct HitActor {
    id: String,
}

/// The field a query filters on, and its value.
#[derive(Clone, Debug)]
enum Filter {
    Subject(String),
    Actor(String),
    Action(String),
}

impl Filter {
    fn param(&self) -> (&'static str, &str) {
        match self {
            Filter::Subject(v) => ("subject", v),
            Filter::Actor(v) => ("actor", v),
            Filter::Action(v) => ("action", v),
        }
    }

    fn holds(&self, h: &Hit) -> bool {
        match self {
            Filter::Subject(v) => h.event.subject.as_deref() == Some(v.as_str()),
            Filter::Actor(v) => &h.event.actor.id == v,
            Filter::Action(v) => &h.event.action == v,
        }
    }

    /// Seeded events matching, from the seeding's description.
    fn expected(&self, s: &Seeded) -> u64 {
        let p = s.population;
        let number = |name: &str, prefix: &str| {
            name.strip_prefix(prefix)
                .and_then(|k| k.parse::<u64>().ok())
                .filter(|k| k.to_string() == name[prefix.len()..])
        };
        match self {
            Filter::Subject(v) => match number(v, "person-") {
                Some(k) => p.count(s.events, |p, n| p.subject_of(n) == k),
                None => 0,
            },
            Filter::Actor(v) => match number(v, "staff-") {
                Some(k) => p.count(s.events, |p, n| p.actor_of(n) == k),
                None => 0,
            },
            Filter::Action(v) => match ACTIONS.iter().find(|a| **a == v.as_str()) {
                Some(a) => p.count(s.events, |p, n| p.action_of(n) == *a),
                None => 0,
            },
        }
    }
}

struct Http {
    client: reqwest::Client,
    endpoint: String,
    auth: String,
    limit: usize,
}

/// Longest a client waits for a busy log before the run fails.
const MAX_BUSY_RETRIES: u32 = 1_000;

impl Http {
    /// One search, retried on pushback; the parsed page.
    async fn get(
        &self,
        filter: &Filter,
        limit: usize,
        cursor: Option<&str>,
        busy: &mut u64,
    ) -> Result<Page, BenchError> {
        let (name, value) = filter.param();
        let limit = limit.to_string();
        let mut query = vec![(name, value), ("limit", limit.as_str())];
        if let Some(c) = cursor {
            query.push(("cursor", c));
        }
        let url = reqwest::Url::parse_with_params(&self.endpoint, &query)
            .map_err(|e| BenchError::Options(format!("URL: {e}")))?;
        let mut attempts = 0;
        loop {
            let resp = self
                .client
                .get(url.clone())
                .header(reqwest::header::AUTHORIZATION, &self.auth)
                .send()
                .await
                .map_err(|e| BenchError::Transport(e.to_string()))?;
            let status = resp.status();
            let bytes = resp
                .bytes()
                .await
                .map_err(|e| BenchError::Transport(e.to_string()))?;
            if status.is_success() {
                return serde_json::from_slice(&bytes)
                    .map_err(|e| BenchError::Answer(format!("not a search answer: {e}")));
            }
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempts < MAX_BUSY_RETRIES {
                attempts += 1;
                *busy += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            return Err(BenchError::Status {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
    }
}

/// Every hit matches, newest first, below `below` when paging.
fn check_page(filter: &Filter, page: &Page, below: Option<u64>) -> Result<(), BenchError> {
    let mut last = below;
    for h in &page.events {
        if !filter.holds(h) {
            return Err(BenchError::Answer(format!(
                "event {} does not match {:?}",
                h.index, filter
            )));
        }
        if last.is_some_and(|l| h.index >= l) {
            return Err(BenchError::Answer(format!(
                "event {} out of order (after {last:?})",
                h.index
            )));
        }
        last = Some(h.index);
    }
    Ok(())
}

/// Walks every page of `filter`: (seeded events of `app`, all matches, pages).
async fn walk(
    http: &Http,
    filter: &Filter,
    app: Option<&str>,
    busy: &mut u64,
) -> Result<(u64, u64, u64), BenchError> {
    let (mut seeded, mut all, mut pages) = (0u64, 0u64, 0u64);
    let mut cursor: Option<String> = None;
    let mut below = None;
    loop {
        let page = http
            .get(
                filter,
                veritrail::search::MAX_LIMIT,
                cursor.as_deref(),
                busy,
            )
            .await?;
        pages += 1;
        check_page(filter, &page, below)?;
        all += page.events.len() as u64;
        seeded += page
            .events
            .iter()
            .filter(|h| app.is_none_or(|a| h.app == a))
            .count() as u64;
        below = page.events.last().map(|h| h.index).or(below);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok((seeded, all, pages)),
        }
    }
}

/// Times `requests` searches by `clients` concurrent clients; each answer
/// must match and hold at least `min_hits` hits.
async fn measure(
    http: &Arc<Http>,
    opts: &SearchOptions,
    filter: &Filter,
    cursor: Option<(String, u64)>,
    min_hits: usize,
    busy: &mut u64,
) -> Result<Measured, BenchError> {
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..opts.clients.max(1) {
        let (http, next, failed, filter, cursor) = (
            http.clone(),
            next.clone(),
            failed.clone(),
            filter.clone(),
            cursor.clone(),
        );
        let requests = opts.requests;
        let limit = opts.limit;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut busy = 0u64;
            let mut fewest = usize::MAX;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                let result = async {
                    let page = http
                        .get(
                            &filter,
                            limit,
                            cursor.as_ref().map(|c| c.0.as_str()),
                            &mut busy,
                        )
                        .await?;
                    check_page(&filter, &page, cursor.as_ref().map(|c| c.1))?;
                    if page.events.len() < min_hits || page.events.len() > limit {
                        return Err(BenchError::Answer(format!(
                            "{} hits for {filter:?}, expected {min_hits}..={limit}",
                            page.events.len()
                        )));
                    }
                    Ok(page.events.len())
                }
                .await;
                match result {
                    Ok(n) => {
                        lat.push(started.elapsed());
                        fewest = fewest.min(n);
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
            Ok::<_, BenchError>((lat, busy, fewest))
        }));
    }
    let mut all = Vec::new();
    let mut fewest = usize::MAX;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok((lat, b, f))) => {
                all.extend(lat);
                *busy += b;
                fewest = fewest.min(f);
            }
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(BenchError::Transport(format!("client task: {e}")));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(Measured {
        latency: LatencySummary::from_samples(all),
        min_hits: if fewest == usize::MAX { 0 } else { fewest },
    })
}

/// Checks the seeded matches of the subject (and actor), then measures the
/// first page of each query, and the page after the subject's first.
pub async fn search(opts: &SearchOptions) -> Result<SearchReport, BenchError> {
    if opts.requests == 0 || opts.clients == 0 {
        return Err(BenchError::Options(
            "requests and clients must be at least 1".into(),
        ));
    }
    if opts.limit == 0 || opts.limit > veritrail::search::MAX_LIMIT {
        return Err(BenchError::Options(format!(
            "limit must be between 1 and {}",
            veritrail::search::MAX_LIMIT
        )));
    }
    let client = super::load_client(opts.clients + 1, opts.timeout)?;
    let http = Arc::new(Http {
        client,
        endpoint: format!("{}/v1/events", opts.url.trim_end_matches('/')),
        auth: format!("Bearer {}", opts.key),
        limit: opts.limit,
    });
    let mut busy = 0u64;
    let app = opts.seeded.as_ref().map(|s| s.app.as_str());
    let completeness = |filter: &Filter, found: u64| -> Result<Option<u64>, BenchError> {
        let Some(s) = &opts.seeded else {
            return Ok(None);
        };
        let expected = filter.expected(s);
        if found != expected {
            return Err(BenchError::Answer(format!(
                "{found} seeded events found for {filter:?}, {expected} were seeded"
            )));
        }
        Ok(Some(expected))
    };

    let subject = Filter::Subject(opts.subject.clone());
    let (found, matches, pages) = walk(&http, &subject, app, &mut busy).await?;
    let expected_subject_events = completeness(&subject, found)?;
    // The subject only gains matches (each search adds one audit event).
    let full = usize::try_from(matches)
        .unwrap_or(usize::MAX)
        .min(http.limit);
    if opts.warmup > 0 {
        let warm = SearchOptions {
            requests: opts.warmup,
            ..opts.clone()
        };
        measure(&http, &warm, &subject, None, full, &mut busy).await?;
    }
    let first_page = measure(&http, opts, &subject, None, full, &mut busy).await?;

    let first = http.get(&subject, opts.limit, None, &mut busy).await?;
    let next_page = match (first.next_cursor, first.events.last()) {
        (Some(c), Some(last)) => {
            Some(measure(&http, opts, &subject, Some((c, last.index)), 1, &mut busy).await?)
        }
        _ => None,
    };

    let mut actor_events = None;
    let actor_page = match &opts.actor {
        Some(a) => {
            let filter = Filter::Actor(a.clone());
            let (found, matches, _) = walk(&http, &filter, app, &mut busy).await?;
            actor_events = Some((completeness(&filter, found)?, found));
            let full = usize::try_from(matches)
                .unwrap_or(usize::MAX)
                .min(http.limit);
            Some(measure(&http, opts, &filter, None, full, &mut busy).await?)
        }
        None => None,
    };
    let action_page = match &opts.action {
        Some(a) => {
            let filter = Filter::Action(a.clone());
            // No walk: an action matches a large share of the log. A full
            // first page is expected when the seeding has enough of them.
            let full = opts
                .seeded
                .as_ref()
                .map_or(0, |s| filter.expected(s))
                .min(opts.limit as u64) as usize;
            Some(measure(&http, opts, &filter, None, full, &mut busy).await?)
        }
        None => None,
    };
    Ok(SearchReport {
        expected_subject_events,
        found_subject_events: found,
        subject_matches: matches,
        subject_pages: pages,
        actor_events,
        first_page,
        next_page,
        actor_page,
        action_page,
        busy_retries: busy,
    })
}
