//! Alert rules: the `[alerts]` table of the configuration file (and the
//! rules file of `veritrail alerts test`), parsed and checked into
//! [`AlertsConfig`].
//!
//! Invariant: a configuration that parses is complete and within every
//! limit below; every refusal names the file, the line, the rule (when
//! there is one) and what is wrong. Unknown keys are refused, and so is a
//! key that the rule's kind does not use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::event::AuditEvent;

/// Most rules in one configuration (a rule set is a 64-bit mask per event).
pub const MAX_RULES: usize = 64;
/// Largest `more_than` of a threshold or breadth rule.
pub const MAX_MORE_THAN: u64 = 10_000;
/// Longest window of a threshold, breadth or time-of-day rule.
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 86_400);
/// Longest learning period of a first-seen rule.
pub const MAX_LEARNING: Duration = Duration::from_secs(366 * 86_400);
/// Default and largest state entries per rule (groups, timestamps, values).
pub const DEFAULT_MAX_ENTRIES: usize = 100_000;
const MAX_MAX_ENTRIES: u64 = 10_000_000;
/// Conditions per `match` table, values per set.
const MAX_CONDITIONS: usize = 16;
const MAX_SET: usize = 256;

/// Everything the `[alerts]` table configures.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// The rules, in file order; names are unique.
    pub rules: Vec<Rule>,
    /// Where alerts are posted, if anywhere.
    pub webhook: Option<WebhookConfig>,
    /// State entries one rule may hold before the oldest groups are dropped.
    pub max_entries_per_rule: usize,
    /// How often the rule windows are checkpointed to the data directory.
    pub checkpoint_interval: Duration,
}

/// The webhook: a URL, the HMAC key, retries, the dead-letter file.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL the alerts are posted to.
    pub url: String,
    /// HMAC-SHA256 key of the `veritrail-signature` header.
    pub secret: Vec<u8>,
    /// Attempts per alert before it goes to the dead-letter file.
    pub attempts: u32,
    /// Wait before the first retry; doubled each time, at most 60 s.
    pub backoff: Duration,
    /// Timeout of one attempt.
    pub timeout: Duration,
    /// Where undeliverable alerts are appended [default: in the data directory].
    pub dead_letter: Option<PathBuf>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// One rule: a name, which events it looks at, and what it counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique name; the alert's resource id.
    pub name: String,
    /// Which events the rule sees (all conditions hold).
    pub filter: Vec<Condition>,
    /// What it counts and when it fires.
    pub kind: Kind,
}

/// What a rule counts.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// More than `more_than` matching events per group within `window`.
    Threshold {
        group_by: GroupBy,
        more_than: u64,
        window_ms: i64,
    },
    /// One group touching more than `more_than` distinct `distinct` values within `window`.
    Breadth {
        group_by: GroupBy,
        distinct: Distinct,
        more_than: u64,
        window_ms: i64,
    },
    /// A matching event outside the allowed hours and days, in `time_zone`;
    /// at most one alert per group per `window`.
    TimeOfDay {
        group_by: GroupBy,
        time_zone: chrono_tz::Tz,
        /// Minutes after midnight: allowed from `from` (inclusive) to `to`
        /// (exclusive), across midnight when `to <= from`.
        from_minute: u32,
        to_minute: u32,
        /// Bit `n` set: weekday `n` (Monday = 0) allowed.
        days: u8,
        window_ms: i64,
    },
    /// An actor's first use of an action or resource type, once the rule
    /// has watched for `learning`.
    FirstSeen { of: Of, learning_ms: i64 },
}

impl Kind {
    /// The name used in the file and in alerts.
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Threshold { .. } => "threshold",
            Kind::Breadth { .. } => "breadth",
            Kind::TimeOfDay { .. } => "time_of_day",
            Kind::FirstSeen { .. } => "first_seen",
        }
    }
}

/// An event field a filter may test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterField {
    App,
    Action,
    Outcome,
    ActorType,
    ResourceType,
    Purpose,
}

impl FilterField {
    const ALL: [(&'static str, FilterField); 6] = [
        ("app", FilterField::App),
        ("action", FilterField::Action),
        ("outcome", FilterField::Outcome),
        ("actor_type", FilterField::ActorType),
        ("resource_type", FilterField::ResourceType),
        ("purpose", FilterField::Purpose),
    ];

    /// The field's value in `ev` written by `app`.
    pub fn of<'a>(self, app: &'a str, ev: &'a AuditEvent) -> &'a str {
        match self {
            FilterField::App => app,
            FilterField::Action => &ev.action,
            FilterField::Outcome => ev.outcome.as_str(),
            FilterField::ActorType => &ev.actor.kind,
            FilterField::ResourceType => &ev.resource.kind,
            FilterField::Purpose => &ev.purpose,
        }
    }
}

/// How a field's value is tested.
#[derive(Debug, Clone, PartialEq)]
pub enum Matcher {
    /// `field = "value"`
    Exact(String),
    /// `field = { prefix = "export." }`
    Prefix(String),
    /// `field = ["a", "b"]`
    OneOf(Vec<String>),
}

/// One condition of a `match` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: FilterField,
    pub matcher: Matcher,
}

impl Condition {
    /// The condition tested alone: what [`Filters`] must agree with.
    #[cfg(test)]
    fn holds(&self, app: &str, ev: &AuditEvent) -> bool {
        let v = self.field.of(app, ev);
        match &self.matcher {
            Matcher::Exact(x) => v == x,
            Matcher::Prefix(p) => v.starts_with(p.as_str()),
            Matcher::OneOf(set) => set.iter().any(|x| x == v),
        }
    }
}

/// Most distinct conditions of a configuration.
const MAX_DISTINCT_CONDITIONS: usize = MAX_RULES * MAX_CONDITIONS;
/// Words of a bit set over the distinct conditions.
const WORDS: usize = MAX_DISTINCT_CONDITIONS / 64;

/// The filters of a rule set, compiled together. The exact and one-of
/// conditions on a field are answered by one lookup of the event's value
/// (which of them that value satisfies was worked out when the rules were
/// read), a prefix once per distinct prefix, and a rule then holds when
/// the bits of all its conditions are set: an event costs a lookup per
/// tested field, whatever the number of rules and values.
#[derive(Debug, Clone)]
pub struct Filters {
    /// Per field that exact or one-of conditions test: each value named,
    /// with the conditions (as bit positions) it satisfies.
    by_value: Vec<(FilterField, ValueMap)>,
    /// Prefix conditions: field, prefix, bit position.
    prefixes: Vec<(FilterField, String, u16)>,
    /// Per rule, in order, the bits that must all be set: `(word, bits)`
    /// pairs at `needs[ranges[r].0..ranges[r].1]`.
    needs: Vec<(u16, u64)>,
    ranges: Vec<(u32, u32)>,
}

/// A tested value and the conditions it satisfies. The values are fixed
/// by the configuration, so a seeded fast hash is enough.
type ValueMap = std::collections::HashMap<String, Vec<u16>, foldhash::fast::RandomState>;

impl Filters {
    /// Compiles the filters of `rules` (at most [`MAX_RULES`]).
    pub fn new(rules: &[Rule]) -> Filters {
        let mut conditions: Vec<&Condition> = Vec::new();
        let mut needs = Vec::new();
        let mut ranges = Vec::new();
        for r in rules.iter().take(MAX_RULES) {
            let mut bits = [0u64; WORDS];
            for c in r.filter.iter().take(MAX_CONDITIONS) {
                let at = conditions.iter().position(|x| *x == c).unwrap_or_else(|| {
                    conditions.push(c);
                    conditions.len() - 1
                });
                bits[at / 64] |= 1 << (at % 64);
            }
            let start = needs.len() as u32;
            needs.extend((0..WORDS as u16).zip(bits).filter(|(_, b)| *b != 0));
            ranges.push((start, needs.len() as u32));
        }
        let mut by_value: Vec<(FilterField, ValueMap)> = Vec::new();
        let mut prefixes = Vec::new();
        for (at, c) in conditions.iter().enumerate() {
            let values = match &c.matcher {
                Matcher::Prefix(p) => {
                    prefixes.push((c.field, p.clone(), at as u16));
                    continue;
                }
                Matcher::Exact(v) => std::slice::from_ref(v),
                Matcher::OneOf(set) => set.as_slice(),
            };
            let i = by_value
                .iter()
                .position(|(f, _)| *f == c.field)
                .unwrap_or_else(|| {
                    by_value.push((c.field, ValueMap::default()));
                    by_value.len() - 1
                });
            let map = &mut by_value[i].1;
            for v in values {
                let satisfied = map.entry(v.clone()).or_default();
                // A set may name a value twice.
                if satisfied.last() != Some(&(at as u16)) {
                    satisfied.push(at as u16);
                }
            }
        }
        Filters {
            by_value,
            prefixes,
            needs,
            ranges,
        }
    }

    /// Bit `i` is set when every condition of rule `i` holds for `ev`
    /// written by `app`.
    pub fn matching(&self, app: &str, ev: &AuditEvent) -> u64 {
        let mut held = [0u64; WORDS];
        for (field, values) in &self.by_value {
            if let Some(satisfied) = values.get(field.of(app, ev)) {
                for &at in satisfied {
                    held[at as usize / 64] |= 1 << (at % 64);
                }
            }
        }
        for (field, prefix, at) in &self.prefixes {
            if field.of(app, ev).starts_with(prefix.as_str()) {
                held[*at as usize / 64] |= 1 << (at % 64);
            }
        }
        let mut mask = 0u64;
        for (r, &(start, end)) in self.ranges.iter().enumerate() {
            let needs = &self.needs[start as usize..end as usize];
            if needs
                .iter()
                .all(|&(w, bits)| held[w as usize] & bits == bits)
            {
                mask |= 1 << r;
            }
        }
        mask
    }
}

/// What a rule groups by; its value names the group in the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Actor,
    ActorIp,
    Subject,
    Resource,
    App,
    /// One group for every matching event.
    Nothing,
}

impl GroupBy {
    const ALL: [(&'static str, GroupBy); 6] = [
        ("actor", GroupBy::Actor),
        ("actor_ip", GroupBy::ActorIp),
        ("subject", GroupBy::Subject),
        ("resource", GroupBy::Resource),
        ("app", GroupBy::App),
        ("nothing", GroupBy::Nothing),
    ];

    /// The name of the field, as in the file.
    pub fn name(self) -> &'static str {
        // A match, not a search of `ALL`: every counted event asks it.
        match self {
            GroupBy::Actor => "actor",
            GroupBy::ActorIp => "actor_ip",
            GroupBy::Subject => "subject",
            GroupBy::Resource => "resource",
            GroupBy::App => "app",
            GroupBy::Nothing => "nothing",
        }
    }
}

/// What a breadth rule counts distinct values of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distinct {
    Subject,
    Resource,
}

/// What a first-seen rule learns per actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Of {
    Action,
    ResourceType,
}

// --- The file as written --------------------------------------------------

#[derive(Deserialize)]
struct Doc {
    alerts: Option<Spanned<RawAlerts>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    webhook_url: Option<Spanned<String>>,
    webhook_secret_file: Option<Spanned<PathBuf>>,
    webhook_attempts: Option<Spanned<u32>>,
    webhook_backoff_ms: Option<Spanned<u64>>,
    webhook_timeout_ms: Option<Spanned<u64>>,
    dead_letter_file: Option<PathBuf>,
    max_entries_per_rule: Option<Spanned<u64>>,
    checkpoint_interval_s: Option<Spanned<u64>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    #[serde(rename = "match")]
    filter: Option<Spanned<toml::Table>>,
    group_by: Option<Spanned<String>>,
    distinct: Option<Spanned<String>>,
    more_than: Option<Spanned<i64>>,
    window: Option<Spanned<String>>,
    time_zone: Option<Spanned<String>>,
    allowed_hours: Option<Spanned<String>>,
    allowed_days: Option<Spanned<Vec<String>>>,
    of: Option<Spanned<String>>,
    learning: Option<Spanned<String>>,
}

/// Where the text being parsed came from, to name it and its lines.
struct Source<'a> {
    name: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn line(&self, at: usize) -> usize {
        self.text[..at.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    fn msg(&self, span: std::ops::Range<usize>, rule: Option<&str>, msg: String) -> String {
        let line = self.line(span.start);
        match rule {
            Some(r) => format!("{}: line {line}: alert rule {r:?}: {msg}", self.name),
            None => format!("{}: line {line}: {msg}", self.name),
        }
    }

    fn err<T>(
        &self,
        span: std::ops::Range<usize>,
        rule: Option<&str>,
        msg: String,
    ) -> Result<T, String> {
        Err(self.msg(span, rule, msg))
    }
}

impl AlertsConfig {
    /// Reads the `[alerts]` table of the TOML file at `path` (other keys
    /// are left to their own parser); `None` when the file has none.
    pub fn load(path: &Path) -> Result<Option<AlertsConfig>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("couldn't read {}: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses the `[alerts]` table of `text`, naming the source `name` in errors.
    pub fn parse(text: &str, name: &str) -> Result<Option<AlertsConfig>, String> {
        let src = Source { name, text };
        let doc: Doc = toml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        let Some(raw) = doc.alerts else {
            return Ok(None);
        };
        let table_span = raw.span();
        let raw = raw.into_inner();
        if raw.rule.len() > MAX_RULES {
            return src.err(
                table_span,
                None,
                format!("at most {MAX_RULES} alert rules, got {}", raw.rule.len()),
            );
        }
        let mut rules: Vec<Rule> = Vec::new();
        let mut names = BTreeSet::new();
        for r in &raw.rule {
            let rule = parse_rule(&src, r)?;
            if !names.insert(rule.name.clone()) {
                let at = r.get_ref().name.as_ref().map_or(r.span(), |n| n.span());
                return src.err(
                    at,
                    Some(&rule.name),
                    "a rule of this name is already defined".into(),
                );
            }
            rules.push(rule);
        }
        let max_entries_per_rule = match &raw.max_entries_per_rule {
            None => DEFAULT_MAX_ENTRIES,
            Some(n) if (100..=MAX_MAX_ENTRIES).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                return src.err(
                    n.span(),
                    None,
                    format!("max_entries_per_rule must be between 100 and {MAX_MAX_ENTRIES}"),
                );
            }
        };
        let checkpoint_interval = match &raw.checkpoint_interval_s {
            None => Duration::from_secs(10),
            Some(s) if (1..=3600).contains(s.get_ref()) => Duration::from_secs(*s.get_ref()),
            Some(s) => {
                return src.err(
                    s.span(),
                    None,
                    "checkpoint_interval_s must be between 1 and 3600".into(),
                );
            }
        };
        let webhook = parse_webhook(&src, &raw, table_span)?;
        Ok(Some(AlertsConfig {
            rules,
            webhook,
            max_entries_per_rule,
            checkpoint_interval,
        }))
    }
}

fn parse_webhook(
    src: &Source<'_>,
    raw: &RawAlerts,
    table_span: std::ops::Range<usize>,
) -> Result<Option<WebhookConfig>, String> {
    let Some(url) = &raw.webhook_url else {
        if let Some(s) = &raw.webhook_secret_file {
            return src.err(
                s.span(),
                None,
                "webhook_secret_file is set but webhook_url is not".into(),
            );
        }
        return Ok(None);
    };
    let parsed = reqwest::Url::parse(url.get_ref());
    if !parsed
        .as_ref()
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
    {
        return src.err(
            url.span(),
            None,
            "webhook_url must be an http:// or https:// URL".into(),
        );
    }
    let Some(secret_file) = &raw.webhook_secret_file else {
        return src.err(
            table_span,
            None,
            "webhook_url needs webhook_secret_file (the HMAC-SHA256 key, at least 16 bytes)".into(),
        );
    };
    let secret = std::fs::read(secret_file.get_ref()).map_err(|e| {
        format!(
            "{}: line {}: couldn't read webhook_secret_file {}: {e}",
            src.name,
            src.line(secret_file.span().start),
            secret_file.get_ref().display()
        )
    })?;
    let secret = secret.trim_ascii().to_vec();
    if secret.len() < 16 {
        return src.err(
            secret_file.span(),
            None,
            "the webhook secret must hold at least 16 bytes".into(),
        );
    }
    let bounded = |v: &Option<Spanned<u64>>, name: &str, default: u64, lo: u64, hi: u64| match v {
        None => Ok(default),
        Some(x) if (lo..=hi).contains(x.get_ref()) => Ok(*x.get_ref()),
        Some(x) => src.err(
            x.span(),
            None,
            format!("{name} must be between {lo} and {hi}"),
        ),
    };
    let attempts = match &raw.webhook_attempts {
        None => 5,
        Some(a) if (1..=20).contains(a.get_ref()) => *a.get_ref(),
        Some(a) => {
            return src.err(
                a.span(),
                None,
                "webhook_attempts must be between 1 and 20".into(),
            );
        }
    };
    Ok(Some(WebhookConfig {
        url: url.get_ref().clone(),
        secret,
        attempts,
        backoff: Duration::from_millis(bounded(
            &raw.webhook_backoff_ms,
            "webhook_backoff_ms",
            1000,
            10,
            60_000,
        )?),
        timeout: Duration::from_millis(bounded(
            &raw.webhook_timeout_ms,
            "webhook_timeout_ms",
            5000,
            100,
            60_000,
        )?),
        dead_letter: raw.dead_letter_file.clone(),
    }))
}

/// Which keys each kind uses, besides `name`, `kind` and `match`.
fn keys_of(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "threshold" => &["group_by", "more_than", "window"],
        "breadth" => &["group_by", "distinct", "more_than", "window"],
        "time_of_day" => &[
            "group_by",
            "time_zone",
            "allowed_hours",
            "allowed_days",
            "window",
        ],
        "first_seen" => &["of", "learning"],
        _ => return None,
    })
}

fn parse_rule(src: &Source<'_>, spanned: &Spanned<RawRule>) -> Result<Rule, String> {
    let r = spanned.get_ref();
    let Some(name) = &r.name else {
        return src.err(spanned.span(), None, "an alert rule needs a name".into());
    };
    let n = name.get_ref().as_str();
    if n.is_empty()
        || n.len() > 64
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return src.err(
            name.span(),
            None,
            format!("rule name {n:?}: 1 to 64 letters, digits, '-', '_' or '.'"),
        );
    }
    let rule = Some(n);
    let Some(kind) = &r.kind else {
        return src.err(
            spanned.span(),
            rule,
            "needs a kind: threshold, breadth, time_of_day or first_seen".into(),
        );
    };
    let Some(allowed) = keys_of(kind.get_ref()) else {
        return src.err(
            kind.span(),
            rule,
            format!(
                "unknown kind {:?}: use threshold, breadth, time_of_day or first_seen",
                kind.get_ref()
            ),
        );
    };
    // A key the kind does not use is a mistake, never silently ignored.
    let present: [(&str, Option<std::ops::Range<usize>>); 9] = [
        ("group_by", r.group_by.as_ref().map(|v| v.span())),
        ("distinct", r.distinct.as_ref().map(|v| v.span())),
        ("more_than", r.more_than.as_ref().map(|v| v.span())),
        ("window", r.window.as_ref().map(|v| v.span())),
        ("time_zone", r.time_zone.as_ref().map(|v| v.span())),
        ("allowed_hours", r.allowed_hours.as_ref().map(|v| v.span())),
        ("allowed_days", r.allowed_days.as_ref().map(|v| v.span())),
        ("of", r.of.as_ref().map(|v| v.span())),
        ("learning", r.learning.as_ref().map(|v| v.span())),
    ];
    for (key, span) in present {
        if let Some(span) = span
            && !allowed.contains(&key)
        {
            return src.err(
                span,
                rule,
                format!(
                    "unknown field {key:?} for a {} rule (it takes {})",
                    kind.get_ref(),
                    allowed.join(", ")
                ),
            );
        }
    }
    let filter = match &r.filter {
        Some(t) => parse_filter(src, rule, t)?,
        None => Vec::new(),
    };
    let need = |what: &str| {
        src.msg(
            spanned.span(),
            rule,
            format!("a {} rule needs {what}", kind.get_ref()),
        )
    };
    let group_by = |default: GroupBy| -> Result<GroupBy, String> {
        match &r.group_by {
            None => Ok(default),
            Some(g) => one_of(src, rule, g, "group_by", &GroupBy::ALL),
        }
    };
    let more_than = || -> Result<u64, String> {
        let m = r
            .more_than
            .as_ref()
            .ok_or_else(|| need("more_than (a count)"))?;
        match u64::try_from(*m.get_ref()) {
            Ok(v) if (1..=MAX_MORE_THAN).contains(&v) => Ok(v),
            _ => src.err(
                m.span(),
                rule,
                format!("more_than must be between 1 and {MAX_MORE_THAN}"),
            ),
        }
    };
    let window = |default: Option<Duration>| -> Result<i64, String> {
        let d = match (&r.window, default) {
            (Some(w), _) => duration(src, rule, w, "window", MAX_WINDOW)?,
            (None, Some(d)) => d,
            (None, None) => return Err(need("a window (e.g. \"10m\")")),
        };
        Ok(d.as_millis() as i64)
    };
    let kind = match kind.get_ref().as_str() {
        "threshold" => Kind::Threshold {
            group_by: group_by(GroupBy::Nothing)?,
            more_than: more_than()?,
            window_ms: window(None)?,
        },
        "breadth" => {
            let d = r
                .distinct
                .as_ref()
                .ok_or_else(|| need("distinct (subject or resource)"))?;
            Kind::Breadth {
                group_by: group_by(GroupBy::Actor)?,
                distinct: one_of(
                    src,
                    rule,
                    d,
                    "distinct",
                    &[
                        ("subject", Distinct::Subject),
                        ("resource", Distinct::Resource),
                    ],
                )?,
                more_than: more_than()?,
                window_ms: window(None)?,
            }
        }
        "time_of_day" => {
            let tz = r
                .time_zone
                .as_ref()
                .ok_or_else(|| need("a time_zone (e.g. \"Europe/Paris\")"))?;
            let time_zone: chrono_tz::Tz = tz.get_ref().parse().map_err(|_| {
                src.msg(
                    tz.span(),
                    rule,
                    format!(
                        "unknown time zone {:?}: use an IANA name such as \"Europe/Paris\"",
                        tz.get_ref()
                    ),
                )
            })?;
            let (from_minute, to_minute) = match &r.allowed_hours {
                Some(h) => hours(src, rule, h)?,
                None => (0, 24 * 60),
            };
            let days = match &r.allowed_days {
                Some(d) => weekdays(src, rule, d)?,
                None => 0x7f,
            };
            if r.allowed_hours.is_none() && r.allowed_days.is_none() {
                return Err(need("allowed_hours or allowed_days"));
            }
            Kind::TimeOfDay {
                group_by: group_by(GroupBy::Actor)?,
                time_zone,
                from_minute,
                to_minute,
                days,
                window_ms: window(Some(Duration::from_secs(3600)))?,
            }
        }
        _ => {
            let of =
                r.of.as_ref()
                    .ok_or_else(|| need("of (action or resource_type)"))?;
            let learning = r
                .learning
                .as_ref()
                .ok_or_else(|| need("a learning period (e.g. \"7d\")"))?;
            Kind::FirstSeen {
                of: one_of(
                    src,
                    rule,
                    of,
                    "of",
                    &[("action", Of::Action), ("resource_type", Of::ResourceType)],
                )?,
                learning_ms: duration(src, rule, learning, "learning", MAX_LEARNING)?.as_millis()
                    as i64,
            }
        }
    };
    Ok(Rule {
        name: n.to_string(),
        filter,
        kind,
    })
}

fn one_of<T: Copy>(
    src: &Source<'_>,
    rule: Option<&str>,
    v: &Spanned<String>,
    key: &str,
    choices: &[(&str, T)],
) -> Result<T, String> {
    choices
        .iter()
        .find(|(n, _)| *n == v.get_ref())
        .map(|(_, t)| *t)
        .map_or_else(
            || {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                src.err(
                    v.span(),
                    rule,
                    format!(
                        "{key}: unknown value {:?}; use one of {}",
                        v.get_ref(),
                        names.join(", ")
                    ),
                )
            },
            Ok,
        )
}

/// `"30s"`, `"10m"`, `"2h"`, `"7d"`: a positive whole number and a unit.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = text.split_at(unit_at);
    let n: u64 = num.parse().ok().filter(|n| *n > 0)?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(secs).map(Duration::from_secs)
}

fn duration(
    src: &Source<'_>,
    rule: Option<&str>,
    v: &Spanned<String>,
    key: &str,
    max: Duration,
) -> Result<Duration, String> {
    match parse_duration(v.get_ref()) {
        Some(d) if d <= max => Ok(d),
        Some(_) => src.err(
            v.span(),
            rule,
            format!("{key} {:?} is longer than the limit of {} days", v.get_ref(), max.as_secs() / 86_400),
        ),
        None => src.err(
            v.span(),
            rule,
            format!(
                "{key} {:?} is not a duration: a positive whole number and s, m, h or d (e.g. \"10m\")",
                v.get_ref()
            ),
        ),
    }
}

/// `"07:00-19:30"` into minutes after midnight.
fn hours(src: &Source<'_>, rule: Option<&str>, v: &Spanned<String>) -> Result<(u32, u32), String> {
    let minute = |t: &str| -> Option<u32> {
        let (h, m) = t.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    };
    let parsed = v
        .get_ref()
        .split_once('-')
        .and_then(|(a, b)| Some((minute(a.trim())?, minute(b.trim())?)));
    match parsed {
        Some((a, b)) if a != b => Ok((a, b)),
        _ => src.err(
            v.span(),
            rule,
            format!(
                "allowed_hours {:?}: expected \"HH:MM-HH:MM\" with two different times, e.g. \"07:00-19:00\"",
                v.get_ref()
            ),
        ),
    }
}

fn weekdays(src: &Source<'_>, rule: Option<&str>, v: &Spanned<Vec<String>>) -> Result<u8, String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut mask = 0u8;
    for d in v.get_ref() {
        let Some(i) = DAYS.iter().position(|x| x.eq_ignore_ascii_case(d)) else {
            return src.err(
                v.span(),
                rule,
                format!("allowed_days: unknown day {d:?}; use mon, tue, wed, thu, fri, sat, sun"),
            );
        };
        mask |= 1 << i;
    }
    if mask == 0 {
        return src.err(
            v.span(),
            rule,
            "allowed_days must name at least one day".into(),
        );
    }
    Ok(mask)
}

fn parse_filter(
    src: &Source<'_>,
    rule: Option<&str>,
    t: &Spanned<toml::Table>,
) -> Result<Vec<Condition>, String> {
    let bad = |msg: String| src.err::<Vec<Condition>>(t.span(), rule, format!("match: {msg}"));
    if t.get_ref().len() > MAX_CONDITIONS {
        return bad(format!("at most {MAX_CONDITIONS} conditions"));
    }
    let mut out = Vec::new();
    for (key, value) in t.get_ref() {
        let Some(field) = FilterField::ALL
            .iter()
            .find(|(n, _)| n == key)
            .map(|(_, f)| *f)
        else {
            let names: Vec<&str> = FilterField::ALL.iter().map(|(n, _)| *n).collect();
            return bad(format!("unknown field {key:?}; use {}", names.join(", ")));
        };
        let text = |v: &toml::Value| -> Option<String> {
            v.as_str()
                .filter(|s| !s.is_empty() && s.len() <= 512)
                .map(str::to_string)
        };
        let matcher = match value {
            toml::Value::String(_) => text(value).map(Matcher::Exact),
            toml::Value::Array(a) if !a.is_empty() && a.len() <= MAX_SET => a
                .iter()
                .map(text)
                .collect::<Option<Vec<_>>>()
                .map(Matcher::OneOf),
            toml::Value::Table(p) if p.len() == 1 => {
                p.get("prefix").and_then(text).map(Matcher::Prefix)
            }
            _ => None,
        };
        let Some(matcher) = matcher else {
            return bad(format!(
                "{key}: expected \"value\", [\"one\", \"of\"] (1 to {MAX_SET}) or {{ prefix = \"...\" }}, each 1 to 512 bytes"
            ));
        };
        out.push(Condition { field, matcher });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AlertsConfig, String> {
        AlertsConfig::parse(text, "rules.toml").map(|c| c.expect("an [alerts] table"))
    }

    #[test]
    fn compiled_filters_match_what_each_rule_tests_alone() {
        let rules = [
            r#"{ action = "record.read" }"#,
            r#"{ action = ["record.read", "record.export", "record.read"], outcome = "success" }"#,
            r#"{ action = { prefix = "record." }, purpose = "care" }"#,
            "{}",
            r#"{ app = "clinic", actor_type = ["user", "service"] }"#,
            r#"{ resource_type = { prefix = "patient" }, outcome = ["failure", "denied"] }"#,
            r#"{ action = "record.read", resource_type = { prefix = "pat" } }"#,
            r#"{ purpose = ["billing", "care"], action = "login", outcome = "success" }"#,
        ];
        let text: String = rules
            .iter()
            .enumerate()
            .map(|(i, m)| {
                format!(
                    "[[alerts.rule]]\nname = \"r{i}\"\nkind = \"threshold\"\nmatch = {m}\nmore_than = 1\nwindow = \"1m\"\n"
                )
            })
            .collect();
        let c = parse(&format!("[alerts]\n{text}")).unwrap();
        let filters = Filters::new(&c.rules);
        let mut seen = [(0, 0); 8];
        for action in ["record.read", "record.export", "login", "record"] {
            for outcome in ["success", "failure", "denied"] {
                for actor_type in ["user", "service", "device"] {
                    for resource_type in ["patient_record", "pat", "billing"] {
                        for purpose in ["care", "billing"] {
                            let ev = crate::event::parse_event(
                                &serde_json::json!({
                                    "actor": {"id": "a", "type": actor_type}, "action": action,
                                    "resource": {"type": resource_type, "id": "1"},
                                    "purpose": purpose, "outcome": outcome,
                                    "occurred_at": "2026-01-01T10:00:00Z",
                                }),
                                &crate::event::EventLimits::default(),
                            )
                            .unwrap();
                            for app in ["clinic", "billing"] {
                                let mask = filters.matching(app, &ev);
                                for (i, r) in c.rules.iter().enumerate() {
                                    let alone = r.filter.iter().all(|c| c.holds(app, &ev));
                                    assert_eq!(
                                        mask & (1 << i) != 0,
                                        alone,
                                        "{} {ev:?} {app}",
                                        r.name
                                    );
                                    if alone {
                                        seen[i].0 += 1
                                    } else {
                                        seen[i].1 += 1
                                    }
                                }
                                assert_eq!(mask >> rules.len(), 0);
                            }
                        }
                    }
                }
            }
        }
        // Every rule but the empty one both matched and did not.
        for (i, (held, not)) in seen.into_iter().enumerate() {
            assert!(held > 0 && (not > 0 || i == 3), "r{i}: {held} {not}");
        }
    }

    #[test]
    fn each_kind_parses() {
        let c = parse(&format!(
            "[alerts]\n{}",
            include_str!("../../tests/fixtures/alert-rules.toml")
        ))
        .unwrap();
        assert_eq!(c.rules.len(), 4);
        assert_eq!(
            c.rules[0].kind,
            Kind::Threshold {
                group_by: GroupBy::Actor,
                more_than: 5,
                window_ms: 600_000
            }
        );
        assert!(matches!(
            c.rules[2].kind,
            Kind::TimeOfDay {
                from_minute: 420,
                to_minute: 1200,
                days: 0x1f,
                window_ms: 3_600_000,
                ..
            }
        ));
        assert_eq!(
            c.rules[3].kind,
            Kind::FirstSeen {
                of: Of::Action,
                learning_ms: 86_400_000
            }
        );
        assert_eq!(
            c.rules[2].filter,
            vec![Condition {
                field: FilterField::Action,
                matcher: Matcher::Prefix("export.".into())
            }]
        );
        assert!(c.webhook.is_none());
        assert_eq!(c.max_entries_per_rule, DEFAULT_MAX_ENTRIES);
    }

    #[test]
    fn no_alerts_table_is_no_alerts() {
        assert!(
            AlertsConfig::parse("listen = \"127.0.0.1:1\"", "f")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn every_refusal_names_the_line_and_the_rule() {
        let head = "[alerts]\n[[alerts.rule]]\nname = \"r\"\n";
        for (body, line, words) in [
            (
                "kind = \"threshold\"\nmore_than = 5\nwindw = \"1m\"\n",
                6,
                "unknown field",
            ),
            (
                "kind = \"threshold\"\nmore_than = 5\nwindow = \"ten minutes\"\n",
                6,
                "not a duration",
            ),
            (
                "kind = \"threshold\"\nmore_than = 5\nwindow = \"30d\"\n",
                6,
                "longer than",
            ),
            (
                "kind = \"threshold\"\nmore_than = 0\nwindow = \"1m\"\n",
                5,
                "more_than",
            ),
            (
                "kind = \"threshold\"\nmore_than = 5\nwindow = \"1m\"\ntime_zone = \"UTC\"\n",
                7,
                "unknown field \"time_zone\"",
            ),
            (
                "kind = \"time_of_day\"\ntime_zone = \"Mars/Olympus\"\nallowed_hours = \"07:00-19:00\"\n",
                5,
                "unknown time zone",
            ),
            (
                "kind = \"time_of_day\"\ntime_zone = \"UTC\"\nallowed_hours = \"7-19\"\n",
                6,
                "allowed_hours",
            ),
            ("kind = \"sometimes\"\n", 4, "unknown kind"),
            (
                "kind = \"threshold\"\nmore_than = 5\nwindow = \"1m\"\nmatch = { actor = \"x\" }\n",
                7,
                "unknown field \"actor\"",
            ),
            (
                "kind = \"threshold\"\nmore_than = 5\nwindow = \"1m\"\ngroup_by = \"mood\"\n",
                7,
                "group_by",
            ),
            (
                "kind = \"first_seen\"\nof = \"action\"\nlearning = \"0d\"\n",
                6,
                "not a duration",
            ),
        ] {
            let err = parse(&format!("{head}{body}")).unwrap_err();
            assert!(
                err.contains(&format!("line {line}")),
                "{err} (wanted line {line})"
            );
            assert!(err.contains(words), "{err} (wanted {words})");
            assert!(err.starts_with("rules.toml"), "{err}");
        }
        let twice = format!(
            "{head}kind = \"threshold\"\nmore_than = 5\nwindow = \"1m\"\n[[alerts.rule]]\nname = \"r\"\nkind = \"threshold\"\nmore_than = 5\nwindow = \"1m\"\n"
        );
        let err = parse(&twice).unwrap_err();
        assert!(
            err.contains("line 8") && err.contains("already defined") && err.contains("\"r\""),
            "{err}"
        );
    }

    #[test]
    fn a_webhook_needs_a_secret_of_16_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "abc\n").unwrap();
        let long = dir.path().join("long");
        std::fs::write(&long, "0123456789abcdef0123\n").unwrap();
        let text = |secret: &Path| {
            format!(
                "[alerts]\nwebhook_url = \"http://127.0.0.1:9/hook\"\nwebhook_secret_file = {:?}\n",
                secret.display().to_string()
            )
        };
        assert!(
            parse(&text(&short))
                .unwrap_err()
                .contains("at least 16 bytes")
        );
        let ok = parse(&text(&long)).unwrap().webhook.unwrap();
        assert_eq!(ok.secret, b"0123456789abcdef0123");
        assert_eq!(ok.attempts, 5);
        assert!(
            parse("[alerts]\nwebhook_url = \"ftp://x\"\n")
                .unwrap_err()
                .contains("line 2")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        for bad in ["", "m", "10", "1.5h", "-1m", "0s", "10 m", "10M"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
