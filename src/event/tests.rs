//! Schema accept/reject table, normalisation, known answers for the canonical
//! bytes, the commitment and the leaf, batch errors, and properties.

use super::*;
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn limits() -> EventLimits {
    EventLimits::default()
}

/// A valid event touching every field, spelled non-canonically.
fn full_event() -> Value {
    json!({
        "actor": {"id": "alice@example.com", "type": "user", "ip": "2001:DB8:0:0:0:0:0:1"},
        "action": "record.read",
        "resource": {"type": "patient_record", "id": "pr-1234"},
        "subject": "patient-42",
        "purpose": "treatment",
        "outcome": "success",
        "occurred_at": "2026-11-25T10:34:52.123456+01:00",
        "id": "req-7f3a",
        "context": {
            "z": 1.50,
            "a": {"b": [true, null, "x"]},
            "\u{e9}": 1e2,
            "\u{20ac}": -0.0,
            "\u{1f600}": "smile",
            "\u{fb33}": "hebrew",
            "s": "line\nbreak\u{1f}",
            "count": 3
        }
    })
}

/// The smallest valid event: required fields only.
fn minimal_event() -> Value {
    json!({
        "actor": {"id": "svc-batch", "type": "service"},
        "action": "record.export",
        "resource": {"type": "invoice", "id": "inv-9"},
        "purpose": "billing",
        "outcome": "denied",
        "occurred_at": "2026-01-02T03:04:05Z"
    })
}

/// Hand-written RFC 8785 form of `full_event()`: members sorted by UTF-16 code
/// units (so U+1F600, a surrogate pair starting 0xD83D, sorts before U+FB33),
/// 1.50 -> 1.5, 1e2 -> 100, -0.0 -> 0, only `\n` and U+001F escaped, time in
/// UTC milliseconds, IPv6 in RFC 5952 form.
const FULL_EVENT_JCS: &str = concat!(
    r#"{"action":"record.read","#,
    r#""actor":{"id":"alice@example.com","ip":"2001:db8::1","type":"user"},"#,
    r#""context":{"a":{"b":[true,null,"x"]},"count":3,"s":"line\nbreak\u001f","z":1.5,"#,
    "\"\u{e9}\":100,\"\u{20ac}\":0,\"\u{1f600}\":\"smile\",\"\u{fb33}\":\"hebrew\"},",
    r#""id":"req-7f3a","occurred_at":"2026-11-25T09:34:52.123Z","outcome":"success","#,
    r#""purpose":"treatment","resource":{"id":"pr-1234","type":"patient_record"},"#,
    r#""subject":"patient-42"}"#
);

/// SHA-256("veritrail/event/v1" || 0x00 || 00 01 .. 1f || FULL_EVENT_JCS),
/// computed outside this crate (Python hashlib).
const FULL_EVENT_COMMITMENT_HEX: &str =
    "eb66db277cb102256c9081656c9e2df6cff682a1153c860e25549efbdf441419";

fn salt() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

/// Sets (`Some`) or removes (`None`) the member at a dotted path.
fn with(mut event: Value, path: &str, value: Option<Value>) -> Value {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap();
    let mut cursor = &mut event;
    for p in parts {
        cursor = cursor.get_mut(p).unwrap();
    }
    let obj = cursor.as_object_mut().unwrap();
    match value {
        Some(v) => {
            obj.insert(last.to_owned(), v);
        }
        None => {
            obj.remove(last);
        }
    }
    event
}

fn nested(depth: usize) -> Value {
    // depth 1 = a scalar-only context object.
    let mut v = json!(1);
    for _ in 1..depth {
        v = json!({ "a": v });
    }
    json!({ "a": v })
}

#[test]
fn accepts_full_and_minimal_events() {
    let e = parse_event(&full_event(), &limits()).unwrap();
    assert_eq!(e.actor.ip, Some("2001:db8::1".parse().unwrap()));
    assert_eq!(e.occurred_at, "2026-11-25T09:34:52.123Z");
    assert_eq!(e.outcome, Outcome::Success);
    assert_eq!(e.subject.as_deref(), Some("patient-42"));

    let m = parse_event(&minimal_event(), &limits()).unwrap();
    assert_eq!(m.actor.ip, None);
    assert_eq!((m.subject, m.id, m.context), (None, None, None));
    assert_eq!(m.occurred_at, "2026-01-02T03:04:05.000Z");
    assert_eq!(m.outcome, Outcome::Denied);
}

#[test]
fn rejects_bad_fields_naming_them() {
    let long = |n: usize| Some(json!("x".repeat(n)));
    // (field to change, new value or None to remove, expected error field, message fragment)
    let table: Vec<(&str, Option<Value>, &str, &str)> = vec![
        // Missing required members, and null for them.
        ("actor", None, "actor", "is required"),
        ("actor.id", None, "actor.id", "is required"),
        ("actor.type", None, "actor.type", "is required"),
        ("action", None, "action", "is required"),
        ("resource", None, "resource", "is required"),
        ("resource.type", None, "resource.type", "is required"),
        ("resource.id", None, "resource.id", "is required"),
        ("purpose", None, "purpose", "is required"),
        ("outcome", None, "outcome", "is required"),
        ("occurred_at", None, "occurred_at", "is required"),
        ("actor.id", Some(Value::Null), "actor.id", "is required"),
        ("purpose", Some(Value::Null), "purpose", "is required"),
        // Wrong JSON types.
        ("actor", Some(json!("alice")), "actor", "expected an object"),
        ("actor.id", Some(json!(5)), "actor.id", "expected a string"),
        (
            "actor.type",
            Some(json!(true)),
            "actor.type",
            "expected a string",
        ),
        (
            "actor.ip",
            Some(json!(16909060)),
            "actor.ip",
            "expected a string",
        ),
        (
            "action",
            Some(json!(["record.read"])),
            "action",
            "expected a string",
        ),
        (
            "resource",
            Some(json!([])),
            "resource",
            "expected an object",
        ),
        (
            "resource.type",
            Some(json!(1)),
            "resource.type",
            "expected a string",
        ),
        (
            "resource.id",
            Some(json!({})),
            "resource.id",
            "expected a string",
        ),
        ("subject", Some(json!(42)), "subject", "expected a string"),
        ("purpose", Some(json!(1.5)), "purpose", "expected a string"),
        ("outcome", Some(json!(true)), "outcome", "expected a string"),
        (
            "occurred_at",
            Some(json!(1_795_599_292)),
            "occurred_at",
            "expected a string",
        ),
        ("id", Some(json!(7)), "id", "expected a string"),
        (
            "context",
            Some(json!([1, 2])),
            "context",
            "expected an object",
        ),
        (
            "context",
            Some(json!("{}")),
            "context",
            "expected an object",
        ),
        // Too long (limits are bytes: 129 two-byte characters exceed 256).
        ("actor.id", long(257), "actor.id", "longer than 256 bytes"),
        (
            "actor.id",
            Some(json!("\u{e9}".repeat(129))),
            "actor.id",
            "longer than 256 bytes",
        ),
        ("actor.type", long(65), "actor.type", "longer than 64 bytes"),
        ("action", long(129), "action", "longer than 128 bytes"),
        (
            "resource.type",
            long(65),
            "resource.type",
            "longer than 64 bytes",
        ),
        (
            "resource.id",
            long(257),
            "resource.id",
            "longer than 256 bytes",
        ),
        ("subject", long(257), "subject", "longer than 256 bytes"),
        ("purpose", long(513), "purpose", "longer than 512 bytes"),
        ("id", long(257), "id", "longer than 256 bytes"),
        // Unknown members at every level.
        ("severity", Some(json!("high")), "severity", "unknown field"),
        (
            "actor.name",
            Some(json!("Alice")),
            "actor.name",
            "unknown field",
        ),
        (
            "resource.owner",
            Some(json!("bob")),
            "resource.owner",
            "unknown field",
        ),
        (
            "actor.odd key",
            Some(json!(1)),
            "actor[\"odd key\"]",
            "unknown field",
        ),
        // Blank, padded, control and bidi characters.
        (
            "actor.id",
            Some(json!("")),
            "actor.id",
            "must not be empty or blank",
        ),
        (
            "purpose",
            Some(json!(" \t ")),
            "purpose",
            "must not be empty or blank",
        ),
        (
            "subject",
            Some(json!(" patient-42")),
            "subject",
            "start or end with whitespace",
        ),
        (
            "resource.id",
            Some(json!("pr-1 ")),
            "resource.id",
            "start or end with whitespace",
        ),
        ("actor.id", Some(json!("al\u{0}ice")), "actor.id", "control"),
        ("purpose", Some(json!("line\nbreak")), "purpose", "control"),
        ("id", Some(json!("a\u{7f}b")), "id", "control"),
        (
            "actor.id",
            Some(json!("alice\u{202e}moc.evil")),
            "actor.id",
            "bidirectional",
        ),
        // Action format.
        (
            "action",
            Some(json!("Record.Read")),
            "action",
            "lowercase dotted name",
        ),
        (
            "action",
            Some(json!("record..read")),
            "action",
            "lowercase dotted name",
        ),
        (
            "action",
            Some(json!(".record")),
            "action",
            "lowercase dotted name",
        ),
        (
            "action",
            Some(json!("record.")),
            "action",
            "lowercase dotted name",
        ),
        (
            "action",
            Some(json!("record read")),
            "action",
            "lowercase dotted name",
        ),
        (
            "action",
            Some(json!("re-cord.read")),
            "action",
            "lowercase dotted name",
        ),
        (
            "action",
            Some(json!("record.r\u{e9}ad")),
            "action",
            "lowercase dotted name",
        ),
        // Outcome.
        (
            "outcome",
            Some(json!("SUCCESS")),
            "outcome",
            "one of success, failure, denied",
        ),
        (
            "outcome",
            Some(json!("ok")),
            "outcome",
            "one of success, failure, denied",
        ),
        // Time.
        (
            "occurred_at",
            Some(json!("2027-03-04")),
            "occurred_at",
            "RFC 3339",
        ),
        (
            "occurred_at",
            Some(json!("yesterday")),
            "occurred_at",
            "RFC 3339",
        ),
        (
            "occurred_at",
            Some(json!("2027-03-04 05:06:07Z")),
            "occurred_at",
            "RFC 3339",
        ),
        (
            "occurred_at",
            Some(json!("2027-03-04T05:06:07")),
            "occurred_at",
            "RFC 3339",
        ),
        (
            "occurred_at",
            Some(json!("2026-02-30T00:00:00Z")),
            "occurred_at",
            "day out of range",
        ),
        (
            "occurred_at",
            Some(json!("1969-12-31T23:59:59Z")),
            "occurred_at",
            "supported range",
        ),
        (
            "occurred_at",
            Some(json!("1970-01-01T00:30:00+01:00")),
            "occurred_at",
            "supported range",
        ),
        (
            "occurred_at",
            Some(json!("10000-01-01T00:00:00Z")),
            "occurred_at",
            "RFC 3339",
        ),
        (
            "occurred_at",
            Some(json!("0000-01-01T00:00:00Z")),
            "occurred_at",
            "supported range",
        ),
        // IP addresses.
        (
            "actor.ip",
            Some(json!("1.2.3")),
            "actor.ip",
            "not an IP address",
        ),
        (
            "actor.ip",
            Some(json!("300.1.1.1")),
            "actor.ip",
            "not an IP address",
        ),
        (
            "actor.ip",
            Some(json!("01.2.3.4")),
            "actor.ip",
            "not an IP address",
        ),
        (
            "actor.ip",
            Some(json!("fe80::1%eth0")),
            "actor.ip",
            "not an IP address",
        ),
        (
            "actor.ip",
            Some(json!("[::1]")),
            "actor.ip",
            "not an IP address",
        ),
        (
            "actor.ip",
            Some(json!("192.0.2.1:443")),
            "actor.ip",
            "not an IP address",
        ),
        (
            "actor.ip",
            Some(json!(" 192.0.2.1")),
            "actor.ip",
            "not an IP address",
        ),
        ("actor.ip", Some(json!("")), "actor.ip", "not an IP address"),
        (
            "actor.ip",
            Some(json!("localhost")),
            "actor.ip",
            "not an IP address",
        ),
        // Context depth, size and numbers.
        (
            "context",
            Some(nested(9)),
            "context.a.a.a.a.a.a.a.a",
            "deeper than 8 levels",
        ),
        (
            "context",
            Some(json!({"l": [[[[[[[[1]]]]]]]]})),
            "context.l[0][0][0][0][0][0][0]",
            "deeper",
        ),
        (
            "context",
            Some(json!({"k": "x".repeat(8185)})),
            "context",
            "larger than 8192 bytes",
        ),
        (
            "context",
            Some(json!({"n": 9_007_199_254_740_992u64})),
            "context.n",
            "2^53",
        ),
        (
            "context",
            Some(json!({"n": -9_007_199_254_740_992i64})),
            "context.n",
            "2^53",
        ),
        ("context", Some(json!({"n": u64::MAX})), "context.n", "2^53"),
        (
            "context",
            Some(json!({"a": [0, i64::MIN]})),
            "context.a[1]",
            "2^53",
        ),
        ("context", Some(json!({"n": 1e300})), "context.n", "2^53"),
        (
            "context",
            Some(json!({"weird key!": {"n": 1e16}})),
            "context[\"weird key!\"].n",
            "2^53",
        ),
    ];
    for (path, value, want_field, want_msg) in table {
        let raw = with(full_event(), path, value.clone());
        let err = match parse_event(&raw, &limits()) {
            Ok(_) => panic!("{path} = {value:?} accepted"),
            Err(e) => e,
        };
        assert_eq!(err.field, want_field, "{path} = {value:?}: {err}");
        assert!(
            err.message.contains(want_msg),
            "{path} = {value:?}: got {err}"
        );
        // Messages never echo what was submitted.
        if let Some(Value::String(s)) = &value
            && s.len() > 8
        {
            assert!(
                !err.message.contains(s.as_str()),
                "{path}: message echoes input: {err}"
            );
        }
    }
}

#[test]
fn huge_integer_literals_are_rejected_even_beyond_64_bits() {
    // serde_json reads this as a double; it must not slip through rounded.
    let raw: Value = serde_json::from_str(
        r#"{"actor":{"id":"a","type":"user"},"action":"x","resource":{"type":"t","id":"i"},
            "purpose":"p","outcome":"success","occurred_at":"2026-01-01T00:00:00Z",
            "context":{"n":123456789012345678901234567890}}"#,
    )
    .unwrap();
    let err = parse_event(&raw, &limits()).unwrap_err();
    assert_eq!(err.field, "context.n");
}

#[test]
fn accepts_values_at_the_limits() {
    let at_limit: Vec<(&str, Value)> = vec![
        ("actor.id", json!("x".repeat(256))),
        ("actor.id", json!("\u{e9}".repeat(128))),
        ("actor.type", json!("x".repeat(64))),
        ("action", json!("a".repeat(128))),
        ("resource.id", json!("x".repeat(256))),
        ("purpose", json!("x".repeat(512))),
        ("purpose", json!("Treatment, per HIPAA \u{a7}164.506 (c)")),
        ("actor.id", json!("Al\u{ee}ce M\u{fc}ller")),
        ("action", json!("record.read-all")),
        ("action", json!("login")),
        ("action", json!("a_b.c-d.e_f-9")),
        ("occurred_at", json!("9999-12-31T23:59:59.999999999Z")),
        ("occurred_at", json!("1970-01-01T00:00:00Z")),
        ("actor.ip", json!("0.0.0.0")),
        ("actor.ip", json!("::")),
        ("context", json!({})),
        ("context", nested(8)),
        ("context", json!({"l": [[[[[[[1]]]]]]]})),
        ("context", json!({"k": "x".repeat(8184)})),
        (
            "context",
            json!({"max": 9_007_199_254_740_991u64, "min": -9_007_199_254_740_991i64}),
        ),
        (
            "context",
            json!({"f": 0.1, "g": -1.5e-10, "h": 9.007199254740991e15}),
        ),
        ("subject", Value::Null),
        ("id", Value::Null),
        ("context", Value::Null),
        ("actor.ip", Value::Null),
    ];
    for (path, value) in at_limit {
        let raw = with(full_event(), path, Some(value.clone()));
        if let Err(e) = parse_event(&raw, &limits()) {
            panic!("{path} = {value:?} rejected: {e}");
        }
    }
}

#[test]
fn limits_are_configurable() {
    let tight = EventLimits {
        max_id_bytes: 4,
        max_context_depth: 1,
        ..EventLimits::default()
    };
    let err = parse_event(&minimal_event(), &tight).unwrap_err();
    assert_eq!(err.to_string(), "actor.id: longer than 4 bytes");
    let raw = with(
        with(minimal_event(), "actor.id", Some(json!("bob"))),
        "resource.id",
        Some(json!("r1")),
    );
    assert!(parse_event(&with(raw.clone(), "context", Some(json!({"a": 1}))), &tight).is_ok());
    let err = parse_event(&with(raw, "context", Some(json!({"a": []}))), &tight).unwrap_err();
    assert_eq!(err.field, "context.a");
}

#[test]
fn normalises_time_ip_and_nulls() {
    let times = [
        ("2026-11-25T09:34:52Z", "2026-11-25T09:34:52.000Z"),
        ("2026-11-25T09:34:52.1Z", "2026-11-25T09:34:52.100Z"),
        ("2026-11-25T09:34:52.999999999Z", "2026-11-25T09:34:52.999Z"),
        ("2026-11-25T11:34:52.123+02:00", "2026-11-25T09:34:52.123Z"),
        ("2026-11-24T22:04:52.123-11:30", "2026-11-25T09:34:52.123Z"),
        ("2026-11-25t09:34:52.123z", "2026-11-25T09:34:52.123Z"),
        ("2027-01-01T00:59:59.9999+01:00", "2026-12-31T23:59:59.999Z"),
    ];
    for (input, want) in times {
        let e = parse_event(
            &with(minimal_event(), "occurred_at", Some(json!(input))),
            &limits(),
        )
        .unwrap();
        assert_eq!(e.occurred_at, want, "{input}");
    }
    let ips = [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        (
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
            "2001:db8::ff00:42:8329",
        ),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("::FFFF:C000:0201", "192.0.2.1"),
        ("0:0:0:0:0:0:0:1", "::1"),
    ];
    for (input, want) in ips {
        let e = parse_event(
            &with(minimal_event(), "actor.ip", Some(json!(input))),
            &limits(),
        )
        .unwrap();
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["actor"]["ip"], json!(want), "{input}");
    }
    let with_nulls = with(
        with(
            with(minimal_event(), "subject", Some(Value::Null)),
            "id",
            Some(Value::Null),
        ),
        "actor.ip",
        Some(Value::Null),
    );
    assert_eq!(
        parse_event(&with_nulls, &limits()).unwrap(),
        parse_event(&minimal_event(), &limits()).unwrap()
    );
}

#[test]
fn canonical_bytes_known_answer() {
    let e = parse_event(&full_event(), &limits()).unwrap();
    let bytes = e.canonical_bytes();
    assert_eq!(String::from_utf8(bytes).unwrap(), FULL_EVENT_JCS);

    let m = parse_event(&minimal_event(), &limits()).unwrap();
    assert_eq!(
        String::from_utf8(m.canonical_bytes()).unwrap(),
        concat!(
            r#"{"action":"record.export","actor":{"id":"svc-batch","type":"service"},"#,
            r#""occurred_at":"2026-01-02T03:04:05.000Z","outcome":"denied","purpose":"billing","#,
            r#""resource":{"id":"inv-9","type":"invoice"}}"#
        ),
        "absent optional fields are omitted, not null"
    );
}

#[test]
fn commitment_known_answer() {
    let canonical = FULL_EVENT_JCS.as_bytes();
    let got = commitment(&salt(), canonical);
    assert_eq!(got.to_hex(), FULL_EVENT_COMMITMENT_HEX);

    // The same construction spelled out with sha2 directly.
    let mut preimage = b"veritrail/event/v1\x00".to_vec();
    preimage.extend_from_slice(&salt());
    preimage.extend_from_slice(canonical);
    let independent: [u8; 32] = Sha256::digest(&preimage).into();
    assert_eq!(got.as_bytes(), &independent);

    let e = parse_event(&full_event(), &limits()).unwrap();
    assert_eq!(e.commitment(&salt()), got);
    let mut other_salt = salt();
    other_salt[31] ^= 1;
    assert_ne!(commitment(&other_salt, canonical), got);
    assert_ne!(commitment(&salt(), &canonical[1..]), got);
}

fn known_leaf() -> LeafRecord {
    let mut c = [0u8; 32];
    hex::decode_to_slice(FULL_EVENT_COMMITMENT_HEX, &mut c).unwrap();
    LeafRecord::new(
        "billing-svc",
        1_795_599_292_123,
        crate::merkle::Hash::from_bytes(c),
    )
    .unwrap()
}

const KNOWN_LEAF: &str = concat!(
    r#"{"app":"billing-svc","#,
    r#""commitment":"eb66db277cb102256c9081656c9e2df6cff682a1153c860e25549efbdf441419","#,
    r#""received":"2026-11-25T09:34:52.123Z","v":1}"#
);

#[test]
fn leaf_known_answer_and_round_trip() {
    let leaf = known_leaf();
    assert_eq!(String::from_utf8(leaf.to_bytes()).unwrap(), KNOWN_LEAF);
    assert_eq!(LeafRecord::parse(KNOWN_LEAF.as_bytes()).unwrap(), leaf);
    assert_eq!(leaf.received(), "2026-11-25T09:34:52.123Z");

    // The longest leaf fits MAX_LEAF_BYTES.
    let longest = LeafRecord::new("a".repeat(64), MAX_UNIX_MS, leaf.commitment).unwrap();
    assert_eq!(longest.to_bytes().len(), 198);
    assert!(longest.to_bytes().len() <= MAX_LEAF_BYTES);
    assert_eq!(LeafRecord::parse(&longest.to_bytes()).unwrap(), longest);
    let earliest = LeafRecord::new("0", 0, leaf.commitment).unwrap();
    assert_eq!(LeafRecord::parse(&earliest.to_bytes()).unwrap(), earliest);
}

#[test]
fn leaf_rejects_anything_but_the_canonical_encoding() {
    let hex = FULL_EVENT_COMMITMENT_HEX;
    let cases: Vec<(String, &str)> = vec![
        (format!("{KNOWN_LEAF}\n"), "leaf"),
        (KNOWN_LEAF.replace(",", ", "), "leaf"),
        (
            format!(
                r#"{{"v":1,"app":"billing-svc","commitment":"{hex}","received":"2026-11-25T09:34:52.123Z"}}"#
            ),
            "leaf",
        ),
        (
            KNOWN_LEAF.replace("billing-svc", "\\u0062illing-svc"),
            "leaf",
        ),
        (KNOWN_LEAF.replace(r#""v":1"#, r#""v":1.0"#), "leaf.v"),
        (KNOWN_LEAF.replace(r#""v":1"#, r#""v":2"#), "leaf.v"),
        (KNOWN_LEAF.replace(r#""v":1"#, r#""v":"1""#), "leaf.v"),
        (KNOWN_LEAF.replace(r#","v":1"#, ""), "leaf.v"),
        (KNOWN_LEAF.replace(r#""v":1"#, r#""v":1,"x":0"#), "leaf.x"),
        (KNOWN_LEAF.replace("billing-svc", "Billing"), "leaf.app"),
        (KNOWN_LEAF.replace(r#""billing-svc""#, "7"), "leaf.app"),
        (
            KNOWN_LEAF.replace(hex, &hex.to_uppercase()),
            "leaf.commitment",
        ),
        (KNOWN_LEAF.replace(hex, &hex[1..]), "leaf.commitment"),
        (
            KNOWN_LEAF.replace(hex, &format!("{}g", &hex[1..])),
            "leaf.commitment",
        ),
        (KNOWN_LEAF.replace(".123Z", "Z"), "leaf"),
        (KNOWN_LEAF.replace(".123Z", ".1230Z"), "leaf"),
        (
            KNOWN_LEAF.replace("09:34:52.123Z", "10:34:52.123+01:00"),
            "leaf",
        ),
        (
            KNOWN_LEAF.replace("2026-11-25", "1969-11-25"),
            "leaf.received",
        ),
        (
            KNOWN_LEAF.replace("2026-11-25T", "2026-11-25 "),
            "leaf.received",
        ),
        (
            KNOWN_LEAF.replace(
                r#""app":"billing-svc","#,
                r#""app":"billing-svc","app":"billing-svc","#,
            ),
            "leaf",
        ),
        ("[]".to_owned(), "leaf"),
        ("not json".to_owned(), "leaf"),
        (String::new(), "leaf"),
        (format!("{}{}", KNOWN_LEAF, " ".repeat(200)), "leaf"),
    ];
    for (input, want_field) in cases {
        let Err(err) = LeafRecord::parse(input.as_bytes()) else {
            panic!("accepted: {input}");
        };
        assert_eq!(err.field, want_field, "{input}: {err}");
    }
}

#[test]
fn leaf_new_checks_app_and_time() {
    let c = known_leaf().commitment;
    assert_eq!(LeafRecord::new("Bad App", 0, c).unwrap_err().field, "app");
    assert_eq!(LeafRecord::new("ok", -1, c).unwrap_err().field, "received");
    assert_eq!(
        LeafRecord::new("ok", MAX_UNIX_MS + 1, c).unwrap_err().field,
        "received"
    );
}

#[test]
fn app_id_rules() {
    for ok in ["a", "0", "billing-svc", "app.v2_x", "a-", &"a".repeat(64)] {
        assert_eq!(validate_app_id(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "-a",
        ".a",
        "_a",
        "A",
        "a b",
        "a/b",
        "caf\u{e9}",
        &"a".repeat(65),
    ] {
        let err = validate_app_id(bad).unwrap_err();
        assert_eq!(err.field, "app", "{bad}");
    }
}

fn event_with_actor_id(id: Value) -> Value {
    with(minimal_event(), "actor.id", Some(id))
}

#[test]
fn batch_accepts_one_event_or_a_list() {
    let one = parse_event_batch(&minimal_event(), &limits()).unwrap();
    assert_eq!(one.len(), 1);
    let list = json!({"events": [minimal_event(), full_event(), minimal_event()]});
    let events = parse_event_batch(&list, &limits()).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[1], parse_event(&full_event(), &limits()).unwrap());
    let max = json!({"events": vec![minimal_event(); 1000]});
    assert_eq!(parse_event_batch(&max, &limits()).unwrap().len(), 1000);
}

#[test]
fn batch_errors_name_position_and_field() {
    let mut list = vec![minimal_event(); 5];
    list[3] = event_with_actor_id(json!(17));
    let err = parse_event_batch(&json!({"events": list.clone()}), &limits()).unwrap_err();
    assert_eq!(err.to_string(), "events[3].actor.id: expected a string");
    assert_eq!(err.field_path(), "events[3].actor.id");
    assert_eq!(err.position(), Some(3));

    // The first bad event is reported.
    list[1] = json!("not an event");
    let err = parse_event_batch(&json!({"events": list}), &limits()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "events[1]: expected a JSON object (an audit event)"
    );
    assert_eq!(err.position(), Some(1));

    // A single-event body has no position.
    let err = parse_event_batch(&event_with_actor_id(json!("")), &limits()).unwrap_err();
    assert_eq!(err.to_string(), "actor.id: must not be empty or blank");
    assert_eq!(err.position(), None);
    let err = parse_event_batch(&with(minimal_event(), "events2", Some(json!(1))), &limits())
        .unwrap_err();
    assert_eq!(err.field_path(), "events2");
}

#[test]
fn batch_envelope_errors() {
    let cases = [
        (json!([minimal_event()]), ""),
        (json!("x"), ""),
        (json!({"events": []}), "events"),
        (json!({"events": {"0": minimal_event()}}), "events"),
        (json!({"events": null}), "events"),
        (json!({"events": [minimal_event()], "app": "x"}), "app"),
    ];
    for (raw, field) in cases {
        match parse_event_batch(&raw, &limits()) {
            Err(err @ BatchError::Envelope(_)) => assert_eq!(err.field_path(), field, "{raw}"),
            other => panic!("{raw}: {other:?}"),
        }
    }
    let too_many = json!({"events": vec![minimal_event(); 1001]});
    assert_eq!(
        parse_event_batch(&too_many, &limits()),
        Err(BatchError::TooMany {
            max: 1000,
            got: 1001
        })
    );
    let small = EventLimits {
        max_batch_events: 2,
        ..EventLimits::default()
    };
    let err = parse_event_batch(&json!({"events": vec![minimal_event(); 3]}), &small).unwrap_err();
    assert_eq!(
        err.to_string(),
        "events: a batch holds at most 2 events, this one has 3"
    );
}

#[test]
fn deserialize_reads_back_what_serialize_wrote() {
    let e = parse_event(&full_event(), &limits()).unwrap();
    let back: AuditEvent = serde_json::from_slice(&e.canonical_bytes()).unwrap();
    assert_eq!(back, e);
    let mut v = serde_json::to_value(&e).unwrap();
    v["actor"]["extra"] = json!(1);
    assert!(serde_json::from_value::<AuditEvent>(v).is_err());
}

#[test]
fn limits_config_defaults_and_strictness() {
    let parsed: EventLimits = serde_json::from_value(json!({"max_batch_events": 10})).unwrap();
    assert_eq!(
        parsed,
        EventLimits {
            max_batch_events: 10,
            ..EventLimits::default()
        }
    );
    assert!(serde_json::from_value::<EventLimits>(json!({"max_batches": 10})).is_err());
}

// ---- properties ----

fn safe_number() -> impl Strategy<Value = Value> {
    let max = MAX_SAFE_INTEGER as i64;
    prop_oneof![
        (-max..=max).prop_map(|i| json!(i)),
        (-1e15f64..1e15).prop_map(|f| json!(f)),
        any::<u8>().prop_map(|u| json!(u)),
    ]
}

fn context_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        safe_number(),
        "\\PC{0,12}".prop_map(Value::String),
        "[\\x00-\\x1f\"\\\\]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

prop_compose! {
    fn valid_event()(
        actor_id in "[A-Za-z0-9@._:-]{1,24}",
        actor_type in "[a-z]{1,10}",
        ip in prop::option::of(any::<std::net::IpAddr>()),
        action in "[a-z0-9_]{1,8}(\\.[a-z0-9_-]{1,8}){0,3}",
        resource_type in "[a-z_]{1,12}",
        resource_id in "[A-Za-z0-9\u{e9}\u{20ac}/-]{1,24}",
        subject in prop::option::of("[a-z0-9-]{1,20}"),
        purpose in "[A-Za-z]{1,10}( [A-Za-z,]{1,10}){0,4}",
        outcome in prop::sample::select(vec!["success", "failure", "denied"]),
        ms in 86_400_000i64..(MAX_UNIX_MS - 86_400_000),
        id in prop::option::of("[a-f0-9-]{8,36}"),
        context in prop::option::of(prop::collection::btree_map("\\PC{0,8}", context_value(), 0..6)),
    ) -> Value {
        let mut actor = json!({"id": actor_id, "type": actor_type});
        if let Some(ip) = ip {
            actor["ip"] = json!(ip.to_string());
        }
        let mut v = json!({
            "actor": actor,
            "action": action,
            "resource": {"type": resource_type, "id": resource_id},
            "purpose": purpose,
            "outcome": outcome,
            "occurred_at": format_rfc3339_ms(ms),
        });
        if let Some(s) = subject { v["subject"] = json!(s); }
        if let Some(i) = id { v["id"] = json!(i); }
        if let Some(c) = context { v["context"] = Value::Object(c.into_iter().collect()); }
        v
    }
}

/// Writes `v` as JSON text with every object's members in an order derived
/// from `seed`, and optional whitespace between tokens.
fn render_shuffled(v: &Value, seed: u64, spaced: bool, out: &mut String) {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let gap = if spaced { " \n\t" } else { "" };
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by_key(|(k, _)| {
                let mut h = DefaultHasher::new();
                (seed, k.as_str()).hash(&mut h);
                h.finish()
            });
            out.push('{');
            for (i, (k, child)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(gap);
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push_str(gap);
                out.push(':');
                render_shuffled(child, seed, spaced, out);
            }
            out.push_str(gap);
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, child) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(gap);
                render_shuffled(child, seed, spaced, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar).unwrap()),
    }
}

/// The same instant as a canonical UTC timestamp, written with another offset.
fn with_offset(canonical: &str, offset_minutes: i32) -> String {
    use time::format_description::well_known::Rfc3339;
    let ms = parse_rfc3339_ms(canonical).unwrap();
    let offset = time::UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap();
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .to_offset(offset)
        .format(&Rfc3339)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Canonical bytes depend on the event, not on member order, whitespace
    /// or the time zone the writer used.
    #[test]
    fn canonical_bytes_stable_under_key_reordering(
        raw in valid_event(),
        seed in any::<u64>(),
        spaced in any::<bool>(),
        offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59i32),
    ) {
        let reference = parse_event(&raw, &limits()).unwrap().canonical_bytes();

        let mut respelled = raw.clone();
        respelled["occurred_at"] = json!(with_offset(raw["occurred_at"].as_str().unwrap(), offset_minutes));
        let mut text = String::new();
        render_shuffled(&respelled, seed, spaced, &mut text);
        let reparsed: Value = serde_json::from_str(&text).unwrap();
        let event = parse_event(&reparsed, &limits()).unwrap();
        prop_assert_eq!(event.canonical_bytes(), reference);
    }

    /// Normalisation is idempotent and the canonical bytes are the event.
    #[test]
    fn normalisation_is_idempotent(raw in valid_event()) {
        let event = parse_event(&raw, &limits()).unwrap();
        let again = parse_event(&serde_json::to_value(&event).unwrap(), &limits()).unwrap();
        prop_assert_eq!(&again, &event);
        let from_canonical: Value = serde_json::from_slice(&event.canonical_bytes()).unwrap();
        prop_assert_eq!(parse_event(&from_canonical, &limits()).unwrap(), event);
    }

    /// Arbitrary JSON never panics the event parser; whatever it accepts is
    /// stable.
    #[test]
    fn parse_event_total_on_arbitrary_json(v in context_value()) {
        if let Ok(e) = parse_event(&v, &limits()) {
            let again = parse_event(&serde_json::to_value(&e).unwrap(), &limits()).unwrap();
            prop_assert_eq!(again, e);
        }
        let _ = parse_event_batch(&json!({"events": [v]}), &limits());
    }

    /// Leaf parsing never panics, and accepts only bytes it would write.
    #[test]
    fn leaf_parse_accepts_only_its_own_encoding(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        app in "[a-z0-9][a-z0-9._-]{0,63}",
        ms in MIN_UNIX_MS..=MAX_UNIX_MS,
        c in any::<[u8; 32]>(),
    ) {
        if let Ok(leaf) = LeafRecord::parse(&bytes) {
            prop_assert_eq!(leaf.to_bytes(), bytes);
        }
        let leaf = LeafRecord::new(app, ms, crate::merkle::Hash::from_bytes(c)).unwrap();
        prop_assert_eq!(LeafRecord::parse(&leaf.to_bytes()).unwrap(), leaf);
    }
}
