//! Rule evaluation: each rule's windows, per group, over the plaintext of
//! accepted events, and the alerts they raise.
//!
//! Time is the events' own `occurred_at`, never the clock, so replaying a
//! file (`veritrail alerts test`) gives what the server would have raised.
//! Invariants: a rule holds at most `max_entries` state entries (a group
//! costs one, plus one per timestamp or value it keeps); beyond that the
//! least recently active groups are dropped (by last activity, then key:
//! the same events leave the same state in every process) and counted.
//! A group raises at most one alert per window: after an alert it is quiet
//! until a window has passed (a first-seen pair alerts once, ever).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The groups' and values' maps: a fast hash of short strings, seeded per
/// map (group values come from events, so the seed keeps an attacker from
/// choosing colliding ones). Nothing that decides an outcome depends on
/// their order (see [`shrink`]).
type Map<V> = HashMap<Key, V, foldhash::fast::RandomState>;

/// A group's or a value's key: up to 24 bytes (actor ids, addresses,
/// subjects, first-seen pairs) are stored inline, so a lookup compares it
/// without reading another cache line, and a lookup by `&str` copies nothing.
type Key = compact_str::CompactString;

use chrono::{Datelike, TimeZone, Timelike};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::rules::{Distinct, Filters, GroupBy, Kind, Of, Rule};
use super::state;
use crate::event::{self, AuditEvent};

/// Most triggering event indexes an alert lists (the newest); `count`
/// says how many there were.
pub const MAX_LISTED_EVENTS: usize = 200;

/// What a rule needs of one accepted event: the fields rules read (never
/// the context), and which rules match it. The fields are written back to
/// back in one string (one allocation per watched event, whatever the
/// number of rules), in the order of [`Field`].
#[derive(Debug, Clone)]
pub struct Observed {
    rules: u64,
    text: String,
    /// Where each [`Field`] ends in `text`.
    ends: [u32; FIELDS],
    /// Which optional fields the event has (bit per [`Field`]).
    present: u8,
    occurred_ms: i64,
}

/// The fields of an [`Observed`], in the order they are written. The
/// resource is `type/id`, so the resource type is its first part.
#[derive(Clone, Copy)]
enum Field {
    App,
    Actor,
    ActorIp,
    Action,
    ResourceType,
    Resource,
    Subject,
}
const FIELDS: usize = 7;

impl Observed {
    fn field(&self, f: Field) -> &str {
        let i = f as usize;
        let start = match f {
            Field::App => 0,
            // The resource starts with its type.
            Field::Resource => self.ends[Field::Action as usize],
            _ => self.ends[i - 1],
        };
        &self.text[start as usize..self.ends[i] as usize]
    }

    fn optional(&self, f: Field) -> Option<&str> {
        (self.present & (1 << f as u8) != 0).then(|| self.field(f))
    }

    fn actor(&self) -> &str {
        self.field(Field::Actor)
    }

    fn subject(&self) -> Option<&str> {
        self.optional(Field::Subject)
    }

    fn resource(&self) -> &str {
        self.field(Field::Resource)
    }
}

/// An alert, as recorded in the log (the `details` of its audit event) and
/// posted to the webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule's name.
    pub rule: String,
    /// The rule's kind.
    pub kind: String,
    /// What the group is: field name to value (empty for `group_by = "nothing"`).
    pub group: serde_json::Map<String, Value>,
    /// Matching events (or distinct values) counted when it fired.
    pub count: u64,
    /// First and last `occurred_at` of the counted events.
    pub window_start: String,
    pub window_end: String,
    /// Leaf indexes of the triggering events, oldest first (at most [`MAX_LISTED_EVENTS`], the newest).
    pub events: Vec<u64>,
}

impl Alert {
    /// The data subject the alert names, when its group is one.
    pub fn subject(&self) -> Option<&str> {
        self.group.get("subject").and_then(Value::as_str)
    }
}

/// The state of one group of one rule.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(super) struct Group {
    /// Newest `occurred_at` seen in the group.
    pub(super) last_ms: i64,
    /// No alert before this time.
    pub(super) quiet_until: i64,
    /// Threshold: the counted events `(occurred, index)`, in that order.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub(super) hits: VecDeque<(i64, u64)>,
    /// Breadth: distinct value -> newest `(occurred, index)`.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub(super) seen: Map<(i64, u64)>,
    /// The checkpoint shard its key falls in ([`state::shard_of`]),
    /// computed once when the group is made.
    #[serde(skip)]
    pub(super) shard: u8,
}

impl Group {
    fn entries(&self) -> usize {
        1 + self.hits.len() + self.seen.len()
    }
}

/// The state of one rule; what is checkpointed.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RuleState {
    /// Newest `occurred_at` the rule has seen.
    pub(super) newest_ms: i64,
    /// First-seen: when the rule started learning.
    pub(super) started_ms: Option<i64>,
    pub(super) groups: Map<Group>,
    #[serde(skip)]
    entries: usize,
    /// The checkpoint shards changed since they were last written, a bit
    /// each (see `alerts/state.rs`).
    #[serde(skip)]
    pub(super) dirty: u64,
    /// Whether anything (the rule's own times included) changed since the
    /// last checkpoint of the rule.
    #[serde(skip)]
    pub(super) touched: bool,
    /// First seen: where the `(actor, value)` key is written, so that a
    /// known pair costs no allocation.
    #[serde(skip)]
    scratch: String,
    /// Time of day: the last UTC second looked up in the time zone, and
    /// whether it is within the allowed hours and days (`None`: beyond the
    /// zone's range). Offsets and transitions fall on whole seconds, so a
    /// UTC second is within one local minute.
    #[serde(skip)]
    allowed: Option<(i64, Option<bool>)>,
}

impl RuleState {
    /// Recounts what a restored state holds, and places each group in
    /// its checkpoint shard.
    pub(super) fn recount(&mut self) {
        self.entries = 0;
        for (k, g) in self.groups.iter_mut() {
            g.shard = state::shard_of(k);
            self.entries += g.entries();
        }
    }

    /// Marks every shard and the rule's own times as changed, so the next
    /// checkpoint writes the whole rule.
    pub(super) fn mark_all(&mut self) {
        self.dirty = u64::MAX;
        self.touched = true;
    }
}

/// One rule with its state.
struct Evaluated {
    rule: Rule,
    state: Mutex<RuleState>,
}

/// The rules and their state. Shared by every request thread; each rule
/// has its own lock, held only while one event is counted.
pub struct Engine {
    filters: Filters,
    rules: Vec<Evaluated>,
    max_entries: usize,
}

impl Engine {
    /// An engine with empty windows.
    pub fn new(rules: Vec<Rule>, max_entries: usize) -> Engine {
        Engine {
            filters: Filters::new(&rules),
            rules: rules
                .into_iter()
                .map(|rule| Evaluated {
                    rule,
                    state: Mutex::new(RuleState::default()),
                })
                .collect(),
            max_entries: max_entries.max(2),
        }
    }

    /// The rules, in order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|e| &e.rule)
    }

    /// What the rules need of `ev` written by `app`, or `None` when no rule
    /// matches it (the usual case: nothing is copied).
    pub fn observe(&self, app: &str, ev: &AuditEvent) -> Option<Observed> {
        let mask = self.filters.matching(app, ev);
        if mask == 0 {
            return None;
        }
        let mut text = String::with_capacity(
            app.len()
                + ev.actor.id.len()
                + 40
                + ev.action.len()
                + ev.resource.kind.len()
                + 1
                + ev.resource.id.len()
                + ev.subject.as_ref().map_or(0, String::len),
        );
        let mut ends = [0u32; FIELDS];
        let mut present = 0u8;
        // Every field is bounded by the event limits, far below 4 GiB.
        let mut end = |text: &String, f: Field| ends[f as usize] = text.len() as u32;
        text.push_str(app);
        end(&text, Field::App);
        text.push_str(&ev.actor.id);
        end(&text, Field::Actor);
        if let Some(ip) = ev.actor.ip {
            push_ip(&mut text, ip);
            present |= 1 << Field::ActorIp as u8;
        }
        end(&text, Field::ActorIp);
        text.push_str(&ev.action);
        end(&text, Field::Action);
        text.push_str(&ev.resource.kind);
        end(&text, Field::ResourceType);
        text.push('/');
        text.push_str(&ev.resource.id);
        end(&text, Field::Resource);
        if let Some(subject) = &ev.subject {
            text.push_str(subject);
            present |= 1 << Field::Subject as u8;
        }
        end(&text, Field::Subject);
        Some(Observed {
            rules: mask,
            text,
            ends,
            present,
            // A parsed event's time is valid by construction.
            occurred_ms: event::parse_rfc3339_ms(&ev.occurred_at).unwrap_or(0),
        })
    }

    /// Counts `ob`, now at leaf `index`, in every rule it matched; returns
    /// the alerts that fired.
    pub fn evaluate(&self, ob: &Observed, index: u64) -> Vec<Alert> {
        self.evaluate_batch(std::slice::from_ref(&(ob, index)))
    }

    /// Counts each `(event, leaf index)` of a batch, in order, in every rule
    /// it matched; returns the alerts that fired, in the order one event
    /// at a time would have raised them (by event, then by rule). Each rule
    /// is locked once per batch, not once per event, and walks the whole
    /// batch while its state is warm in the cache.
    pub fn evaluate_batch(&self, batch: &[(&Observed, u64)]) -> Vec<Alert> {
        let any = batch.iter().fold(0u64, |m, (ob, _)| m | ob.rules);
        let mut out: Vec<(usize, usize, Alert)> = Vec::new();
        for (r, e) in self.rules.iter().enumerate() {
            let bit = 1u64 << r;
            if any & bit == 0 {
                continue;
            }
            let mut st = e.state.lock().unwrap_or_else(|p| p.into_inner());
            st.touched = true;
            let mut dropped = 0;
            for (k, (ob, index)) in batch.iter().enumerate() {
                if ob.rules & bit == 0 {
                    continue;
                }
                if let Some(alert) = count(&e.rule, &mut st, ob, *index) {
                    out.push((k, r, alert));
                }
                // The usual case (under the cap) without a call.
                if st.entries > self.max_entries {
                    dropped += shrink(&e.rule, &mut st, self.max_entries);
                }
            }
            drop(st);
            if dropped > 0 {
                metrics::counter!("veritrail_alerts_state_dropped_total", "rule" => e.rule.name.clone())
                    .increment(dropped as u64);
                tracing::warn!(rule = %e.rule.name, dropped, "alert rule state reached its cap; the least recently active groups were dropped");
            }
        }
        // Found rule by rule; raised event by event.
        out.sort_by_key(|(k, r, _)| (*k, *r));
        out.into_iter().map(|(_, _, a)| a).collect()
    }

    /// Every rule's state, by name, with the rule's fingerprint.
    pub fn snapshot(&self) -> Vec<(String, String, RuleState)> {
        self.rules
            .iter()
            .map(|e| {
                let st = e.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
                (e.rule.name.clone(), fingerprint(&e.rule), st)
            })
            .collect()
    }

    /// Restores the state of the rules that are unchanged since the
    /// snapshot (same name and fingerprint); returns how many were.
    pub fn restore(&self, saved: Vec<(String, String, RuleState)>) -> usize {
        let mut restored = 0;
        for (name, print, mut st) in saved {
            if let Some(e) = self.rules.iter().find(|e| e.rule.name == name)
                && fingerprint(&e.rule) == print
            {
                self.settle(&e.rule, &mut st);
                st.mark_all();
                *e.state.lock().unwrap_or_else(|p| p.into_inner()) = st;
                restored += 1;
            }
        }
        restored
    }

    /// Each rule with its state, for the checkpoint (`alerts/state.rs`).
    pub(super) fn states(&self) -> impl Iterator<Item = (&Rule, &Mutex<RuleState>)> {
        self.rules.iter().map(|e| (&e.rule, &e.state))
    }

    /// After a rule's state was loaded: counts its entries, places its
    /// groups in their shards, and trims it to the cap (which may have
    /// been lowered since).
    pub(super) fn settle(&self, rule: &Rule, st: &mut RuleState) {
        st.recount();
        shrink(rule, st, self.max_entries);
    }
}

/// Writes `ip` as its `Display` does (the event's canonical text form).
/// An IPv4 address, the usual case, is written digit by digit: through
/// the formatting machinery it cost a third of taking an event.
fn push_ip(text: &mut String, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
        }
        std::net::IpAddr::V6(_) => {
            use std::fmt::Write as _;
            let _ = write!(text, "{ip}");
        }
    }
}

/// Identifies a rule's definition: a changed rule starts afresh.
pub(super) fn fingerprint(rule: &Rule) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(format!("{rule:?}").as_bytes()))
}

fn group_of(by: GroupBy, ob: &Observed) -> Option<(&'static str, &str)> {
    let v = match by {
        GroupBy::Actor => ob.actor(),
        GroupBy::ActorIp => ob.optional(Field::ActorIp)?,
        GroupBy::Subject => ob.subject()?,
        GroupBy::Resource => ob.resource(),
        GroupBy::App => ob.field(Field::App),
        GroupBy::Nothing => "",
    };
    Some((by.name(), v))
}

fn group_json(fields: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    fields
        .iter()
        .filter(|(k, _)| *k != "nothing")
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

fn alert(
    rule: &Rule,
    group: serde_json::Map<String, Value>,
    count: u64,
    mut events: Vec<(i64, u64)>,
) -> Alert {
    events.sort_unstable();
    let start = events.first().map_or(0, |e| e.0);
    let end = events.last().map_or(0, |e| e.0);
    let skip = events.len().saturating_sub(MAX_LISTED_EVENTS);
    Alert {
        rule: rule.name.clone(),
        kind: rule.kind.name().to_string(),
        group,
        count,
        window_start: event::format_rfc3339_ms(start),
        window_end: event::format_rfc3339_ms(end),
        events: events[skip..].iter().map(|e| e.1).collect(),
    }
}

/// Counts one event in one rule.
fn count(rule: &Rule, st: &mut RuleState, ob: &Observed, index: u64) -> Option<Alert> {
    let t = ob.occurred_ms;
    st.newest_ms = st.newest_ms.max(t);
    match &rule.kind {
        Kind::Threshold {
            group_by,
            more_than,
            window_ms,
        } => in_window(rule, st, ob, *group_by, *window_ms, |g, horizon| {
            // Kept in time order: expired hits leave from the front, and
            // an event arrives in order (at the back) but for stragglers.
            while g.hits.front().is_some_and(|(ms, _)| *ms <= horizon) {
                g.hits.pop_front();
            }
            if g.hits.back().is_none_or(|&h| h <= (t, index)) {
                g.hits.push_back((t, index));
            } else {
                let at = g.hits.partition_point(|&h| h <= (t, index));
                g.hits.insert(at, (t, index));
            }
            (g.hits.len() as u64 > *more_than).then(|| g.hits.drain(..).collect())
        }),
        Kind::Breadth {
            group_by,
            distinct,
            more_than,
            window_ms,
        } => {
            let value = match distinct {
                Distinct::Subject => ob.subject()?,
                Distinct::Resource => ob.resource(),
            };
            in_window(rule, st, ob, *group_by, *window_ms, |g, horizon| {
                // A value seen before is found without a copy.
                match g.seen.get_mut(value) {
                    Some(e) if *e < (t, index) => *e = (t, index),
                    Some(_) => {}
                    None => {
                        g.seen.insert(Key::new(value), (t, index));
                    }
                }
                if g.seen.len() as u64 > *more_than {
                    g.seen.retain(|_, (ms, _)| *ms > horizon);
                }
                (g.seen.len() as u64 > *more_than).then(|| g.seen.drain().map(|(_, v)| v).collect())
            })
        }
        Kind::TimeOfDay {
            group_by,
            time_zone,
            from_minute,
            to_minute,
            days,
            window_ms,
        } => {
            let second = t.div_euclid(1000);
            let allowed = match st.allowed {
                Some((s, allowed)) if s == second => allowed,
                _ => {
                    let allowed = time_zone.timestamp_opt(second, 0).single().map(|local| {
                        let minute = local.hour() * 60 + local.minute();
                        let in_hours = if from_minute < to_minute {
                            (*from_minute..*to_minute).contains(&minute)
                        } else {
                            minute >= *from_minute || minute < *to_minute
                        };
                        in_hours && days & (1 << local.weekday().num_days_from_monday()) != 0
                    });
                    st.allowed = Some((second, allowed));
                    allowed
                }
            };
            if allowed? {
                return None;
            }
            let (field, key) = group_of(*group_by, ob)?;
            let fire = with_group(st, key, |g, _| {
                g.last_ms = g.last_ms.max(t);
                let fire = t >= g.quiet_until;
                if fire {
                    g.quiet_until = t + window_ms;
                }
                fire
            });
            fire.then(|| alert(rule, group_json(&[(field, key)]), 1, vec![(t, index)]))
        }
        Kind::FirstSeen { of, learning_ms } => {
            let started = *st.started_ms.get_or_insert(t);
            let (field, value) = match of {
                Of::Action => ("action", ob.field(Field::Action)),
                Of::ResourceType => ("resource_type", ob.field(Field::ResourceType)),
            };
            let mut key = std::mem::take(&mut st.scratch);
            key.clear();
            key.push_str(ob.actor());
            key.push('\u{0}');
            key.push_str(value);
            let new = with_group(st, &key, |g, new| {
                g.last_ms = g.last_ms.max(t);
                new
            });
            st.scratch = key;
            (new && t >= started + learning_ms).then(|| {
                alert(
                    rule,
                    group_json(&[("actor", ob.actor()), (field, value)]),
                    1,
                    vec![(t, index)],
                )
            })
        }
    }
}

/// Counts `ob` in its group of a windowed rule: unless the group is quiet
/// or the event older than the group's window, `add` puts it in (events
/// before `horizon` no longer count) and answers the counted events once
/// they exceed the rule's count; the group is then quiet for a window.
fn in_window(
    rule: &Rule,
    st: &mut RuleState,
    ob: &Observed,
    group_by: GroupBy,
    window_ms: i64,
    add: impl FnOnce(&mut Group, i64) -> Option<Vec<(i64, u64)>>,
) -> Option<Alert> {
    let t = ob.occurred_ms;
    let (field, key) = group_of(group_by, ob)?;
    let hits = with_group(st, key, |g, _| {
        g.last_ms = g.last_ms.max(t);
        let horizon = g.last_ms - window_ms;
        if t < g.quiet_until || t <= horizon {
            return None;
        }
        let hits = add(g, horizon);
        if hits.is_some() {
            g.quiet_until = g.last_ms + window_ms;
        }
        hits
    })?;
    Some(alert(
        rule,
        group_json(&[(field, key)]),
        hits.len() as u64,
        hits,
    ))
}

/// Runs `f` on the group `key` (created if new; `f` is told which),
/// keeping the rule's count of entries.
fn with_group<R>(st: &mut RuleState, key: &str, f: impl FnOnce(&mut Group, bool) -> R) -> R {
    // One lookup for a known group (the usual case).
    if let Some(g) = st.groups.get_mut(key) {
        let before = g.entries();
        let out = f(g, false);
        st.entries = st.entries + g.entries() - before;
        st.dirty |= 1 << g.shard;
        return out;
    }
    let mut g = Group {
        shard: state::shard_of(key),
        ..Group::default()
    };
    let out = f(&mut g, true);
    st.entries += g.entries();
    st.dirty |= 1 << g.shard;
    st.groups.insert(Key::new(key), g);
    out
}

/// Keeps `st` within `max` entries. Past it, the rule is trimmed to
/// seven eighths of `max`: first groups with nothing left to count, then
/// the least recently active, in `(last activity, key)` order, an eighth
/// of the groups at a time. Which groups go depends only on the events
/// counted, never on the maps' hash seeds, so the same events give the
/// same state and alerts in every process. A trim costs time in
/// proportion to the groups (at most `max`) and frees at least `max / 8`
/// entries, which takes at least `max / 16` events to fill (an event adds
/// at most a group and one entry in it): O(1) amortised per event.
/// Returns how many live groups were dropped.
fn shrink(rule: &Rule, st: &mut RuleState, max: usize) -> usize {
    if st.entries <= max {
        return 0;
    }
    let target = max - max / 8;
    let newest = st.newest_ms;
    let window_ms = match &rule.kind {
        Kind::Threshold { window_ms, .. }
        | Kind::Breadth { window_ms, .. }
        | Kind::TimeOfDay { window_ms, .. } => Some(*window_ms),
        Kind::FirstSeen { .. } => None,
    };
    if let Some(w) = window_ms {
        remove_groups(st, |_, g| {
            g.last_ms <= newest - w && g.quiet_until <= newest
        });
    }
    let mut dropped = 0;
    while st.entries > target && !st.groups.is_empty() {
        let cut = {
            let mut order: Vec<(i64, &str)> = st
                .groups
                .iter()
                .map(|(k, g)| (g.last_ms, k.as_str()))
                .collect();
            let n = (order.len() / 8).max(1);
            let (_, cut, _) = order.select_nth_unstable(n - 1);
            (cut.0, Key::new(cut.1))
        };
        dropped += remove_groups(st, |k, g| {
            (g.last_ms, k.as_str()) <= (cut.0, cut.1.as_str())
        });
    }
    dropped
}

/// Removes the groups `gone` picks, keeping the rule's count of entries
/// and marking their shards changed; how many it removed.
fn remove_groups(st: &mut RuleState, mut gone: impl FnMut(&Key, &Group) -> bool) -> usize {
    let (mut groups, mut entries, mut dirty) = (0, 0, 0u64);
    st.groups.retain(|k, g| {
        let drop = gone(k, g);
        if drop {
            groups += 1;
            entries += g.entries();
            dirty |= 1 << g.shard;
        }
        !drop
    });
    st.entries -= entries;
    st.dirty |= dirty;
    groups
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::alerts::rules::AlertsConfig;

    fn engine(rules: &str, max_entries: usize) -> Engine {
        let c = AlertsConfig::parse(&format!("[alerts]\n{rules}"), "t")
            .unwrap()
            .unwrap();
        Engine::new(c.rules, max_entries)
    }

    fn ev(actor: &str, action: &str, subject: &str, at: &str) -> AuditEvent {
        event::parse_event(
            &json!({
                "actor": {"id": actor, "type": "user"}, "action": action,
                "resource": {"type": "patient_record", "id": subject}, "subject": subject,
                "purpose": "care", "outcome": "failure", "occurred_at": at,
            }),
            &event::EventLimits::default(),
        )
        .unwrap()
    }

    fn feed(e: &Engine, events: &[AuditEvent], first_index: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        for (i, ev) in events.iter().enumerate() {
            if let Some(ob) = e.observe("clinic", ev) {
                out.extend(e.evaluate(&ob, first_index + i as u64));
            }
        }
        out
    }

    const LOGINS: &str = "[[alerts.rule]]\nname = \"logins\"\nkind = \"threshold\"\nmatch = { action = \"login\" }\ngroup_by = \"actor\"\nmore_than = 3\nwindow = \"10m\"\n";

    #[test]
    fn addresses_are_written_as_their_canonical_text() {
        let mut addresses: Vec<std::net::IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.9.100",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        // Every octet value in every position.
        addresses.extend((0..=255u8).map(|o| {
            std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                o,
                o.wrapping_mul(7),
                o ^ 0x5a,
                255 - o,
            ))
        }));
        for ip in addresses {
            let mut text = String::from("x");
            push_ip(&mut text, ip);
            assert_eq!(text, format!("x{ip}"));
        }
    }

    #[test]
    fn a_threshold_fires_once_per_group_per_window() {
        let e = engine(LOGINS, 1000);
        let burst: Vec<_> = (0..10)
            .map(|i| {
                ev(
                    "mallory",
                    "login",
                    "p",
                    &format!("2026-01-01T10:00:{i:02}Z"),
                )
            })
            .collect();
        let alerts = feed(&e, &burst, 100);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].count, 4);
        assert_eq!(alerts[0].events, vec![100, 101, 102, 103]);
        assert_eq!(alerts[0].group["actor"], "mallory");
        assert_eq!(alerts[0].window_start, "2026-01-01T10:00:00.000Z");
        // A window later, it can fire again.
        let later: Vec<_> = (0..4)
            .map(|i| {
                ev(
                    "mallory",
                    "login",
                    "p",
                    &format!("2026-01-01T10:20:{i:02}Z"),
                )
            })
            .collect();
        assert_eq!(feed(&e, &later, 200).len(), 1);
    }

    #[test]
    fn spread_out_or_other_events_do_not_fire() {
        let e = engine(LOGINS, 1000);
        // 3 per 10 minutes per actor, for an hour, and reads that do not match.
        let mut quiet = Vec::new();
        for m in 0..60 {
            quiet.push(ev(
                "alice",
                "login",
                "p",
                &format!("2026-01-01T10:{m:02}:00Z"),
            ));
            quiet.push(ev(
                "bob",
                "record.read",
                "p",
                &format!("2026-01-01T10:{m:02}:01Z"),
            ));
        }
        let filtered: Vec<_> = quiet
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 8 == 0 || i % 2 == 1)
            .map(|(_, e)| e.clone())
            .collect();
        assert!(feed(&e, &filtered, 0).is_empty());
    }

    #[test]
    fn breadth_time_of_day_and_first_seen() {
        let e = engine(
            "[[alerts.rule]]\nname = \"b\"\nkind = \"breadth\"\ndistinct = \"subject\"\nmore_than = 5\nwindow = \"5m\"\n\
             [[alerts.rule]]\nname = \"n\"\nkind = \"time_of_day\"\nmatch = { action = \"export\" }\ntime_zone = \"Europe/Paris\"\nallowed_hours = \"07:00-20:00\"\n\
             [[alerts.rule]]\nname = \"f\"\nkind = \"first_seen\"\nmatch = { action = { prefix = \"admin.\" } }\nof = \"action\"\nlearning = \"1h\"\n",
            1000,
        );
        // The same 5 subjects again and again: no breadth alert; a sixth: one.
        let same: Vec<_> = (0..20)
            .map(|i| {
                ev(
                    "dr",
                    "record.read",
                    &format!("p{}", i % 5),
                    &format!("2026-01-01T10:00:{i:02}Z"),
                )
            })
            .collect();
        assert!(feed(&e, &same, 0).is_empty());
        let sixth = feed(
            &e,
            &[ev("dr", "record.read", "p9", "2026-01-01T10:01:00Z")],
            20,
        );
        assert_eq!(sixth.len(), 1);
        assert_eq!((sixth[0].rule.as_str(), sixth[0].count), ("b", 6));
        // 18:59 UTC is 19:59 in Paris (allowed); 19:00 UTC is 20:00 (not).
        assert!(feed(&e, &[ev("x", "export", "q", "2026-01-01T18:59:00Z")], 30).is_empty());
        let night = feed(&e, &[ev("x", "export", "q", "2026-01-01T19:00:00Z")], 31);
        assert_eq!(night.len(), 1);
        assert_eq!(night[0].events, vec![31]);
        // Learning: the first admin action by anyone starts the hour.
        assert!(
            feed(
                &e,
                &[ev("alice", "admin.grant", "q", "2026-01-01T10:00:00Z")],
                40
            )
            .is_empty()
        );
        assert!(
            feed(
                &e,
                &[ev("alice", "admin.grant", "q", "2026-01-01T12:00:00Z")],
                41
            )
            .is_empty()
        );
        let first = feed(
            &e,
            &[ev("bob", "admin.grant", "q", "2026-01-01T12:00:00Z")],
            42,
        );
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].group["action"], "admin.grant");
        assert!(
            feed(
                &e,
                &[ev("bob", "admin.grant", "q", "2026-01-01T12:01:00Z")],
                43
            )
            .is_empty()
        );
    }

    #[test]
    fn state_stays_within_its_cap_and_survives_a_snapshot() {
        let e = engine(LOGINS, 100);
        let many: Vec<_> = (0..500)
            .map(|i| ev(&format!("u{i}"), "login", "p", "2026-01-01T10:00:00Z"))
            .collect();
        assert!(feed(&e, &many, 0).is_empty());
        let snap = e.snapshot();
        assert!(snap[0].2.entries <= 100, "{}", snap[0].2.entries);
        // Three logins of a live group, a snapshot, a new engine: the fourth fires.
        let e = engine(LOGINS, 1000);
        let three: Vec<_> = (0..3)
            .map(|_| ev("m", "login", "p", "2026-01-01T11:00:00Z"))
            .collect();
        assert!(feed(&e, &three, 0).is_empty());
        let snap = serde_json::to_string(&e.snapshot()).unwrap();
        let fresh = engine(LOGINS, 1000);
        assert_eq!(fresh.restore(serde_json::from_str(&snap).unwrap()), 1);
        assert_eq!(
            feed(&fresh, &[ev("m", "login", "p", "2026-01-01T11:01:00Z")], 3).len(),
            1
        );
        // A changed rule does not take the old state.
        let changed = engine(&LOGINS.replace("more_than = 3", "more_than = 4"), 1000);
        assert_eq!(changed.restore(serde_json::from_str(&snap).unwrap()), 0);
    }

    #[test]
    fn trimming_at_the_cap_does_not_depend_on_the_hash_seeds() {
        // Four busy actors among far more one-off ones than the cap allows,
        // fifty events at a time equally idle (one occurred_at per fifty
        // events): engines whose maps each hash with their own seed keep
        // the same groups and raise the same alerts.
        let rules = format!(
            "{LOGINS}[[alerts.rule]]\nname = \"b\"\nkind = \"breadth\"\ndistinct = \"subject\"\nmore_than = 3\nwindow = \"10m\"\n"
        );
        let events: Vec<AuditEvent> = (0..3000u32)
            .map(|i| {
                let second = i / 50;
                let actor = if i % 3 == 0 {
                    format!("busy{}", i % 4)
                } else {
                    format!("once{i}")
                };
                ev(
                    &actor,
                    "login",
                    &format!("p{}", i % 17),
                    &format!("2026-01-01T10:{:02}:{:02}Z", second / 60, second % 60),
                )
            })
            .collect();
        let run = || {
            let e = engine(&rules, 100);
            let alerts = feed(&e, &events, 0);
            (alerts, serde_json::to_value(e.snapshot()).unwrap(), e)
        };
        let (first, first_state, e) = run();
        assert!(
            first.iter().any(|a| a.rule == "logins") && first.iter().any(|a| a.rule == "b"),
            "{first:?}"
        );
        for (_, _, st) in e.snapshot() {
            assert!(st.entries <= 100, "{}", st.entries);
        }
        for _ in 0..3 {
            let (again, again_state, _) = run();
            assert_eq!(again, first);
            assert_eq!(again_state, first_state);
        }
    }

    #[test]
    fn a_batch_raises_what_one_event_at_a_time_raises() {
        let rules = format!(
            "{LOGINS}[[alerts.rule]]\nname = \"by-ip\"\nkind = \"threshold\"\ngroup_by = \"actor_ip\"\nmore_than = 4\nwindow = \"1m\"\n\
             [[alerts.rule]]\nname = \"by-subject\"\nkind = \"threshold\"\ngroup_by = \"subject\"\nmore_than = 2\nwindow = \"1m\"\n\
             [[alerts.rule]]\nname = \"b\"\nkind = \"breadth\"\ndistinct = \"resource\"\nmore_than = 3\nwindow = \"5m\"\n\
             [[alerts.rule]]\nname = \"n\"\nkind = \"time_of_day\"\ntime_zone = \"Asia/Kolkata\"\nallowed_hours = \"09:00-16:57\"\n\
             [[alerts.rule]]\nname = \"f\"\nkind = \"first_seen\"\nof = \"resource_type\"\nlearning = \"1m\"\n"
        );
        // Mixed events: with and without an IP or a subject, out of order
        // now and then, across the allowed hours (11:27 UTC is 16:57 in Kolkata).
        let events: Vec<AuditEvent> = (0..300u32)
            .map(|i| {
                let mut v = json!({
                    "actor": {"id": format!("u{}", i % 7), "type": "user"},
                    "action": if i % 3 == 0 { "login" } else { "record.read" },
                    "resource": {"type": format!("t{}", i % 4), "id": format!("r{}", i % 11)},
                    "purpose": "care", "outcome": "failure",
                    "occurred_at": format!("2026-01-01T11:{:02}:{:02}.{:03}Z", 25 + i / 60 - (i % 13 == 0) as u32, i % 60, i * 7 % 1000),
                });
                if i % 5 != 0 {
                    v["subject"] = json!(format!("p{}", i % 9));
                }
                if i % 2 == 0 {
                    v["actor"]["ip"] = json!(format!("192.0.2.{}", i % 3));
                }
                event::parse_event(&v, &event::EventLimits::default()).unwrap()
            })
            .collect();
        let one_by_one = engine(&rules, 1000);
        let expected = feed(&one_by_one, &events, 0);
        let batched = engine(&rules, 1000);
        let mut got = Vec::new();
        for (c, chunk) in events.chunks(37).enumerate() {
            let watched: Vec<(Observed, u64)> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, ev)| Some((batched.observe("clinic", ev)?, (c * 37 + i) as u64)))
                .collect();
            let batch: Vec<(&Observed, u64)> = watched.iter().map(|(o, i)| (o, *i)).collect();
            got.extend(batched.evaluate_batch(&batch));
        }
        let kinds: BTreeSet<&str> = expected.iter().map(|a| a.rule.as_str()).collect();
        assert_eq!(kinds.len(), 6, "every rule fires at least once: {kinds:?}");
        assert_eq!(got, expected);
        assert_eq!(
            serde_json::to_value(batched.snapshot()).unwrap(),
            serde_json::to_value(one_by_one.snapshot()).unwrap()
        );
    }
}
