//! Audit events: the fixed schema writers submit, its validation and
//! normalisation, the canonical bytes (RFC 8785), the salted commitment to
//! them, and the public leaf record that enters the Merkle tree.
//!
//! Pure: no I/O, no clock, no randomness; the receive time and the salt are
//! passed in. Invariant: an [`AuditEvent`] returned by [`parse_event`] is
//! normalised, so its [`canonical_bytes`](AuditEvent::canonical_bytes) depend on
//! what the writer said, never on how the JSON was spelled (key order,
//! whitespace, time zone, IP address notation, number notation), and parsing
//! the serialised event again yields the same event.
//!
//! # Schema
//!
//! An event is one JSON object with exactly these members (limits are the
//! [`EventLimits`] defaults; "bytes" are UTF-8 bytes):
//!
//! | field | type | required | rule |
//! |---|---|---|---|
//! | `actor.id` | string | yes | identifier text, ≤ 256 bytes |
//! | `actor.type` | string | yes | identifier text, ≤ 64 bytes (e.g. `user`, `service`) |
//! | `actor.ip` | string | no | an IPv4 or IPv6 address; stored in canonical text form (RFC 5952 for IPv6, IPv4-mapped IPv6 as IPv4) |
//! | `action` | string | yes | ≤ 128 bytes, lowercase dotted name `[a-z0-9_]+(\.[a-z0-9_-]+)*`, e.g. `record.read` |
//! | `resource.type` | string | yes | identifier text, ≤ 64 bytes |
//! | `resource.id` | string | yes | identifier text, ≤ 256 bytes |
//! | `subject` | string | no | identifier text, ≤ 256 bytes: the data subject whose personal data was touched |
//! | `purpose` | string | yes | identifier text, ≤ 512 bytes (free wording allowed) |
//! | `outcome` | string | yes | `success`, `failure` or `denied` |
//! | `occurred_at` | string | yes | RFC 3339 date-time, any offset, stored as UTC `YYYY-MM-DDTHH:MM:SS.mmmZ` (sub-millisecond digits truncated); 1970 to 9999 |
//! | `id` | string | no | identifier text, ≤ 256 bytes: the writer's idempotency key |
//! | `context` | object | no | free JSON, ≤ 8 KiB in canonical form, nested ≤ 8 deep, every number within ±(2^53−1) |
//!
//! "Identifier text": not empty, no leading or trailing whitespace, no control
//! characters (Unicode `Cc`) and no bidirectional formatting characters (which
//! could make an identifier display as a different one). Unknown members are
//! rejected at every level (top, `actor`, `resource`); `null` for an optional
//! member means absent. Errors name the field, e.g. `actor.id: expected a
//! string`, and never echo the submitted value.
//!
//! The writer's app id is not part of the event: it comes from the API key and
//! is recorded in the [`LeafRecord`].

mod leaf;
mod schema;
mod timestamp;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use leaf::{
    COMMITMENT_DOMAIN, LEAF_VERSION, LeafRecord, MAX_APP_ID_BYTES, MAX_LEAF_BYTES, commitment,
    validate_app_id,
};
pub use schema::{MAX_SAFE_INTEGER, parse_event, parse_event_batch};
pub use timestamp::{
    MAX_UNIX_MS, MIN_UNIX_MS, TimeError, check_unix_ms, format_rfc3339_ms, normalize_rfc3339,
    parse_rfc3339_ms,
};

use crate::merkle::Hash;

/// A validated, normalised audit event.
///
/// Build one from untrusted JSON with [`parse_event`] only. The serde
/// `Deserialize` impl checks the shape (unknown fields are refused) but not the
/// limits or formats; it exists to read back events this crate stored.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// Who acted.
    pub actor: Actor,
    /// What was done, as a lowercase dotted name (`record.read`).
    pub action: String,
    /// What it was done to.
    pub resource: Resource,
    /// Id of the data subject whose personal data was touched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Why (the processing purpose).
    pub purpose: String,
    /// How it ended.
    pub outcome: Outcome,
    /// When it happened: RFC 3339, UTC, milliseconds (`2026-11-25T09:34:52.123Z`).
    pub occurred_at: String,
    /// The writer's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Free, bounded extra detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The party that acted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The actor's id (user name, service account, ...).
    pub id: String,
    /// The kind of actor (`user`, `service`, ...); `type` in JSON.
    #[serde(rename = "type")]
    pub kind: String,
    /// The address the action came from, in canonical form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
}

/// The thing acted upon.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// The kind of resource (`patient_record`, `invoice`, ...); `type` in JSON.
    #[serde(rename = "type")]
    pub kind: String,
    /// The resource's id.
    pub id: String,
}

/// How the action ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It was done.
    Success,
    /// It was attempted and failed.
    Failure,
    /// It was refused (authorisation, policy).
    Denied,
}

impl Outcome {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Size limits applied by [`parse_event`] and [`parse_event_batch`]. Lengths
/// are in UTF-8 bytes. The defaults are the documented schema; an operator may
/// tighten them (loosening them lets larger events into stored history).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct EventLimits {
    /// Longest `actor.id`, `resource.id`, `subject` and `id`. Default 256.
    pub max_id_bytes: usize,
    /// Longest `actor.type` and `resource.type`. Default 64.
    pub max_type_bytes: usize,
    /// Longest `action`. Default 128.
    pub max_action_bytes: usize,
    /// Longest `purpose`. Default 512.
    pub max_purpose_bytes: usize,
    /// Largest `context`, measured as its canonical (RFC 8785) JSON. Default
    /// 8192 (8 KiB).
    pub max_context_bytes: usize,
    /// Deepest nesting of `context`: the context object itself is level 1,
    /// each object or array inside it adds one. Default 8.
    pub max_context_depth: usize,
    /// Most events in one batch (`{"events": [...]}`). Default 1000.
    pub max_batch_events: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_id_bytes: 256,
            max_type_bytes: 64,
            max_action_bytes: 128,
            max_purpose_bytes: 512,
            max_context_bytes: 8 * 1024,
            max_context_depth: 8,
            max_batch_events: 1000,
        }
    }
}

/// Why an event (or a leaf) was rejected: the field, as a dotted path such as
/// `actor.id` or `context.a[2]` (empty for the event as a whole), and what is
/// wrong with it. The message never contains the submitted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    /// Path of the offending field, e.g. `actor.id`; empty for the whole event.
    pub field: String,
    /// What is wrong, in words meant for the writer's developer.
    pub message: String,
}

impl EventError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        EventError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for EventError {}

/// Why a submission (one event or a batch) was rejected. A batch is
/// all-or-nothing: the first invalid event rejects it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The body is neither one event object nor `{"events": [...]}` with at
    /// least one event.
    #[error("{0}")]
    Envelope(EventError),
    /// More events than [`EventLimits::max_batch_events`] (HTTP 413).
    #[error("events: a batch holds at most {max} events, this one has {got}")]
    TooMany {
        /// The limit.
        max: usize,
        /// The number submitted.
        got: usize,
    },
    /// An event is invalid. `position` is its index in `events`, or `None`
    /// when the body was a single event.
    #[error("{}", event_error_text(*.position, .error))]
    Event {
        /// Index in the batch, `None` for a single-event body.
        position: Option<usize>,
        /// What is wrong with that event.
        error: EventError,
    },
}

impl BatchError {
    /// Full path of the offending field, e.g. `events[3].actor.id`.
    pub fn field_path(&self) -> String {
        match self {
            BatchError::Envelope(e) => e.field.clone(),
            BatchError::TooMany { .. } => "events".to_owned(),
            BatchError::Event { position, error } => event_path(*position, &error.field),
        }
    }

    /// Index of the offending event in the batch, if one event is at fault.
    pub fn position(&self) -> Option<usize> {
        match self {
            BatchError::Event { position, .. } => *position,
            _ => None,
        }
    }
}

fn event_path(position: Option<usize>, field: &str) -> String {
    match (position, field.is_empty()) {
        (None, _) => field.to_owned(),
        (Some(i), true) => format!("events[{i}]"),
        (Some(i), false) => format!("events[{i}].{field}"),
    }
}

fn event_error_text(position: Option<usize>, error: &EventError) -> String {
    let path = event_path(position, &error.field);
    if path.is_empty() {
        error.message.clone()
    } else {
        format!("{path}: {}", error.message)
    }
}

impl AuditEvent {
    /// The event as RFC 8785 (JCS) JSON: keys sorted by UTF-16 code units, no
    /// whitespace, numbers in ECMAScript form, absent optional fields omitted.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        jcs(self)
    }

    /// `commitment(salt, self.canonical_bytes())`.
    pub fn commitment(&self, salt: &[u8; 32]) -> Hash {
        commitment(salt, &self.canonical_bytes())
    }
}

/// RFC 8785 serialisation of this module's own types.
fn jcs<T: Serialize>(value: &T) -> Vec<u8> {
    match serde_json_canonicalizer::to_vec(value) {
        Ok(bytes) => bytes,
        // The canonicaliser fails only on non-string map keys, duplicate keys,
        // non-finite numbers or a failing writer. Our types have string keys
        // only, `serde_json::Map` cannot hold duplicates, `serde_json::Number`
        // cannot hold NaN or infinities, and a Vec never fails to grow short
        // of aborting. So no value of these types reaches this arm.
        Err(e) => unreachable!("RFC 8785 serialisation of an event type failed: {e}"),
    }
}
