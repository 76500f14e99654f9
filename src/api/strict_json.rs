//! JSON request bodies, parsed strictly: an object that names the same
//! member twice is an error. RFC 8259 §4 leaves such an object's meaning
//! undefined and parsers disagree on which value wins, so accepting one
//! would let what a client (or a proxy, or a verifier) reads differ from
//! what the log acts on and records; I-JSON (RFC 7493 §2.3) forbids it.
//!
//! Everything else is exactly `serde_json`'s grammar and limits (including
//! its nesting limit): for any document without duplicate members the
//! result equals `serde_json::from_slice`.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses one JSON document, refusing duplicate member names.
pub(super) fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Longest member name quoted back in an error.
const MAX_NAME_IN_ERROR: usize = 64;

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictValue)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            if members.contains_key(&name) {
                let shown: String = name.chars().take(MAX_NAME_IN_ERROR).collect();
                return Err(de::Error::custom(format!(
                    "duplicate member {shown:?} in one object"
                )));
            }
            let value = map.next_value_seed(StrictValue)?;
            members.insert(name, value);
        }
        Ok(Value::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::from_slice;

    #[test]
    fn documents_without_duplicates_parse_as_serde_json_parses_them() {
        for doc in [
            r#"{"a":1,"b":[true,null,-2,3.5,1e300,"x\u00e9"],"c":{"d":{}},"e":18446744073709551615}"#,
            r#"[]"#,
            r#""s""#,
            r#"-0"#,
            r#"  {"a":{"a":{"a":1}}}  "#,
        ] {
            let ours = from_slice(doc.as_bytes()).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(doc).unwrap();
            assert_eq!(ours, theirs, "{doc}");
        }
    }

    #[test]
    fn duplicate_members_are_errors_at_any_depth() {
        for doc in [
            r#"{"a":1,"a":1}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            r#"{"x":{"a":1,"a":2}}"#,
            r#"[{"a":1},{"b":1,"b":1}]"#,
        ] {
            let e = from_slice(doc.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("duplicate member"), "{doc}: {e}");
        }
        // The same name in different objects is fine.
        assert!(from_slice(br#"{"a":{"a":1},"b":{"a":2}}"#).is_ok());
    }

    #[test]
    fn malformed_and_too_deep_documents_are_errors() {
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        for doc in [
            &b"{\"a\":1} x"[..],
            b"{\"a\":NaN}",
            b"1e400",
            b"\"\\ud800\"",
            b"\xef\xbb\xbf{}",
            b"",
            deep.as_bytes(),
        ] {
            assert!(from_slice(doc).is_err(), "{}", String::from_utf8_lossy(doc));
        }
    }
}
