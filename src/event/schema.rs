//! Validation and normalisation of submitted events: untrusted JSON in,
//! [`AuditEvent`] out (parse, don't validate).
//!
//! Fields are checked in a fixed order (unknown members first, then the schema
//! order), so the same bad input always gets the same error.

use std::io;
use std::net::IpAddr;

use serde_json::{Map, Number, Value};

use super::timestamp::{format_rfc3339_ms, parse_rfc3339_ms};
use super::{Actor, AuditEvent, BatchError, EventError, EventLimits, Outcome, Resource};

/// Largest magnitude of any number in `context`: 2^53 − 1. Beyond it an
/// integer no longer survives the IEEE 754 double that RFC 8785 serialises
/// through (I-JSON, RFC 7493 §2.2), so the canonical bytes would silently
/// state a different number. The bound applies to numbers written with a
/// fraction or exponent too, because serde_json reads integers wider than 64
/// bits as doubles and they must not slip through rounded.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

const EVENT_FIELDS: &[&str] = &[
    "action",
    "actor",
    "context",
    "id",
    "occurred_at",
    "outcome",
    "purpose",
    "resource",
    "subject",
];
const ACTOR_FIELDS: &[&str] = &["id", "ip", "type"];
const RESOURCE_FIELDS: &[&str] = &["id", "type"];

/// Validates and normalises one event (see the schema in the
/// [module documentation](super)). The error names the offending field
/// relative to the event (`actor.id`); callers add the batch position.
pub fn parse_event(raw: &Value, limits: &EventLimits) -> Result<AuditEvent, EventError> {
    let obj = object(raw, "", "expected a JSON object (an audit event)")?;
    reject_unknown(obj, "", EVENT_FIELDS)?;

    let actor = parse_actor(required(obj, "", "actor")?, limits)?;
    let action = parse_action(required(obj, "", "action")?, limits)?;
    let resource = parse_resource(required(obj, "", "resource")?, limits)?;
    let subject = optional(obj, "subject")
        .map(|v| identifier(v, "subject", limits.max_id_bytes))
        .transpose()?;
    let purpose = identifier(
        required(obj, "", "purpose")?,
        "purpose",
        limits.max_purpose_bytes,
    )?;
    let outcome = parse_outcome(required(obj, "", "outcome")?)?;
    let occurred_at = parse_occurred_at(required(obj, "", "occurred_at")?)?;
    let id = optional(obj, "id")
        .map(|v| identifier(v, "id", limits.max_id_bytes))
        .transpose()?;
    let context = optional(obj, "context")
        .map(|v| parse_context(v, limits))
        .transpose()?;

    Ok(AuditEvent {
        actor,
        action,
        resource,
        subject,
        purpose,
        outcome,
        occurred_at,
        id,
        context,
    })
}

/// Accepts either one event object or `{"events": [event, ...]}` holding
/// 1..=[`EventLimits::max_batch_events`] events, and returns the events in
/// order. All-or-nothing: the first invalid event rejects the batch, and the
/// error names its position and field (`events[3].actor.id: ...`).
pub fn parse_event_batch(raw: &Value, limits: &EventLimits) -> Result<Vec<AuditEvent>, BatchError> {
    let Value::Object(obj) = raw else {
        return Err(BatchError::Envelope(EventError::new(
            "",
            "expected a JSON object: one event, or {\"events\": [...]}",
        )));
    };
    // An event has no `events` member, so its presence marks a batch.
    let Some(events) = obj.get("events") else {
        return parse_event(raw, limits)
            .map(|e| vec![e])
            .map_err(|error| BatchError::Event {
                position: None,
                error,
            });
    };
    if let Some(other) = obj.keys().find(|k| k.as_str() != "events") {
        return Err(BatchError::Envelope(EventError::new(
            member_path("", other),
            "unknown field: a batch is {\"events\": [...]} and nothing else",
        )));
    }
    let Value::Array(list) = events else {
        return Err(BatchError::Envelope(EventError::new(
            "events",
            "expected an array of events",
        )));
    };
    if list.is_empty() {
        return Err(BatchError::Envelope(EventError::new(
            "events",
            "a batch must hold at least one event",
        )));
    }
    if list.len() > limits.max_batch_events {
        return Err(BatchError::TooMany {
            max: limits.max_batch_events,
            got: list.len(),
        });
    }
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            parse_event(v, limits).map_err(|error| BatchError::Event {
                position: Some(i),
                error,
            })
        })
        .collect()
}

fn parse_actor(v: &Value, limits: &EventLimits) -> Result<Actor, EventError> {
    let obj = object(v, "actor", "expected an object")?;
    reject_unknown(obj, "actor", ACTOR_FIELDS)?;
    let id = identifier(
        required(obj, "actor", "id")?,
        "actor.id",
        limits.max_id_bytes,
    )?;
    let kind = identifier(
        required(obj, "actor", "type")?,
        "actor.type",
        limits.max_type_bytes,
    )?;
    let ip = optional(obj, "ip").map(parse_ip).transpose()?;
    Ok(Actor { id, kind, ip })
}

fn parse_resource(v: &Value, limits: &EventLimits) -> Result<Resource, EventError> {
    let obj = object(v, "resource", "expected an object")?;
    reject_unknown(obj, "resource", RESOURCE_FIELDS)?;
    let kind = identifier(
        required(obj, "resource", "type")?,
        "resource.type",
        limits.max_type_bytes,
    )?;
    let id = identifier(
        required(obj, "resource", "id")?,
        "resource.id",
        limits.max_id_bytes,
    )?;
    Ok(Resource { kind, id })
}

fn parse_ip(v: &Value) -> Result<IpAddr, EventError> {
    let s = string(v, "actor.ip")?;
    let ip: IpAddr = s.parse().map_err(|_| {
        EventError::new(
            "actor.ip",
            "not an IP address (IPv4 dotted quad or IPv6 text, without port, brackets or zone)",
        )
    })?;
    // One spelling per address: IPv4-mapped IPv6 becomes IPv4, and the
    // Display form is RFC 5952 for IPv6 (lowercase, longest zero run as ::).
    Ok(ip.to_canonical())
}

/// `action`: `[a-z0-9_]+(\.[a-z0-9_-]+)*`.
fn parse_action(v: &Value, limits: &EventLimits) -> Result<String, EventError> {
    let s = identifier(v, "action", limits.max_action_bytes)?;
    let mut segments = s.split('.');
    let first_ok = segments
        .next()
        .is_some_and(|seg| !seg.is_empty() && seg.bytes().all(|c| is_lower_alnum(c) || c == b'_'));
    let rest_ok = segments.all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|c| is_lower_alnum(c) || c == b'_' || c == b'-')
    });
    if first_ok && rest_ok {
        Ok(s)
    } else {
        Err(EventError::new(
            "action",
            "must be a lowercase dotted name like record.read: [a-z0-9_]+ then .[a-z0-9_-]+ parts",
        ))
    }
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn parse_outcome(v: &Value) -> Result<Outcome, EventError> {
    match string(v, "outcome")? {
        "success" => Ok(Outcome::Success),
        "failure" => Ok(Outcome::Failure),
        "denied" => Ok(Outcome::Denied),
        _ => Err(EventError::new(
            "outcome",
            "must be one of success, failure, denied",
        )),
    }
}

fn parse_occurred_at(v: &Value) -> Result<String, EventError> {
    let s = string(v, "occurred_at")?;
    let ms = parse_rfc3339_ms(s).map_err(|e| EventError::new("occurred_at", e.to_string()))?;
    Ok(format_rfc3339_ms(ms))
}

fn parse_context(v: &Value, limits: &EventLimits) -> Result<Map<String, Value>, EventError> {
    let obj = object(v, "context", "expected an object")?;
    let mut path = String::from("context");
    check_context_value(v, &mut path, 1, limits)?;
    // Measured in canonical form so the limit does not depend on spelling,
    // and stored as read back from that form, so that numbers hold their
    // canonical value (1.50 and 1.5 alike, 100.0 as 100, -0 as 0) and the
    // event equals the one its canonical bytes describe.
    let mut canonical = LimitedBuffer {
        bytes: Vec::new(),
        limit: limits.max_context_bytes,
    };
    if serde_json_canonicalizer::to_writer(obj, &mut canonical).is_err() {
        let message = if canonical.bytes.len() > canonical.limit {
            format!(
                "larger than {} bytes in canonical JSON form",
                limits.max_context_bytes
            )
        } else {
            "cannot be put in canonical JSON form".to_owned()
        };
        return Err(EventError::new("context", message));
    }
    serde_json::from_slice(&canonical.bytes)
        .map_err(|_| EventError::new("context", "cannot be put in canonical JSON form"))
}

/// Walks `context`, never deeper than the depth limit, checking numbers.
fn check_context_value(
    v: &Value,
    path: &mut String,
    depth: usize,
    limits: &EventLimits,
) -> Result<(), EventError> {
    let descend = |path: &mut String, child: &Value, segment: &str| {
        let len = path.len();
        path.push_str(segment);
        let result = if matches!(child, Value::Object(_) | Value::Array(_))
            && depth + 1 > limits.max_context_depth
        {
            Err(EventError::new(
                path.clone(),
                format!(
                    "context nested deeper than {} levels",
                    limits.max_context_depth
                ),
            ))
        } else {
            check_context_value(child, path, depth + 1, limits)
        };
        path.truncate(len);
        result
    };
    match v {
        Value::Object(map) => {
            for (key, child) in map {
                descend(path, child, &key_segment(key))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                descend(path, child, &format!("[{i}]"))?;
            }
            Ok(())
        }
        Value::Number(n) if !is_safe_number(n) => Err(EventError::new(
            path.clone(),
            "number outside ±(2^53−1), which JSON canonicalisation cannot keep exact \
             (I-JSON, RFC 7493 §2.2); send it as a string",
        )),
        _ => Ok(()),
    }
}

fn is_safe_number(n: &Number) -> bool {
    if let Some(i) = n.as_i64() {
        i.unsigned_abs() <= MAX_SAFE_INTEGER
    } else if let Some(u) = n.as_u64() {
        u <= MAX_SAFE_INTEGER
    } else {
        // serde_json reads integers beyond 64 bits as doubles, so a bound on
        // doubles is what catches them; it also keeps every context number
        // meaning one exact value for every reader.
        n.as_f64()
            .is_some_and(|f| f.is_finite() && f.abs() <= MAX_SAFE_INTEGER as f64)
    }
}

/// How a context key appears in an error path: `.key` for plain keys,
/// `["..."]` (shortened) for anything else.
fn key_segment(key: &str) -> String {
    const SHOWN: usize = 32;
    let plain = !key.is_empty()
        && key.len() <= SHOWN
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    if plain {
        return format!(".{key}");
    }
    let mut shown: String = key.chars().take(SHOWN).collect();
    if shown.len() < key.len() {
        shown.push('…');
    }
    format!("[{}]", Value::String(shown))
}

/// An in-memory `io::Write` that refuses to grow past `limit` bytes; a
/// refused write leaves it holding `limit + 1` bytes as the "too large" mark.
struct LimitedBuffer {
    bytes: Vec<u8>,
    limit: usize,
}

impl io::Write for LimitedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.limit {
            // Record that the limit was crossed without keeping the bytes.
            self.bytes.resize(self.limit.saturating_add(1), 0);
            return Err(io::Error::other("size limit reached"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn field_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Path of a member whose name is untrusted (an unknown field).
fn member_path(prefix: &str, key: &str) -> String {
    let segment = key_segment(key);
    match segment.strip_prefix('.') {
        Some(plain) if prefix.is_empty() => plain.to_owned(),
        _ => format!("{prefix}{segment}"),
    }
}

fn object<'a>(
    v: &'a Value,
    field: &str,
    message: &str,
) -> Result<&'a Map<String, Value>, EventError> {
    v.as_object().ok_or_else(|| EventError::new(field, message))
}

fn reject_unknown(
    obj: &Map<String, Value>,
    prefix: &str,
    allowed: &[&str],
) -> Result<(), EventError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(EventError::new(
            member_path(prefix, k),
            format!("unknown field (allowed: {})", allowed.join(", ")),
        )),
    }
}

/// A member that must be present and not `null`.
fn required<'a>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    name: &str,
) -> Result<&'a Value, EventError> {
    match obj.get(name) {
        None | Some(Value::Null) => Err(EventError::new(field_path(prefix, name), "is required")),
        Some(v) => Ok(v),
    }
}

/// A member that may be absent; `null` counts as absent.
fn optional<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn string<'a>(v: &'a Value, field: &str) -> Result<&'a str, EventError> {
    v.as_str()
        .ok_or_else(|| EventError::new(field, "expected a string"))
}

/// A string field under the identifier-text rules (see the module docs).
fn identifier(v: &Value, field: &str, max_bytes: usize) -> Result<String, EventError> {
    let s = string(v, field)?;
    if s.trim().is_empty() {
        return Err(EventError::new(field, "must not be empty or blank"));
    }
    if s.len() > max_bytes {
        return Err(EventError::new(
            field,
            format!("longer than {max_bytes} bytes"),
        ));
    }
    if s.trim() != s {
        return Err(EventError::new(
            field,
            "must not start or end with whitespace",
        ));
    }
    if s.chars().any(is_forbidden_char) {
        return Err(EventError::new(
            field,
            "must not contain control or bidirectional formatting characters",
        ));
    }
    Ok(s.to_owned())
}

/// Control characters (Unicode Cc) and the bidirectional formatting
/// characters, which can make text display as something else.
fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}
