//! The OTLP side of `bench ingest --otlp`: the generated events of
//! `write_event`, as OTLP/JSON log records for `POST /v1/logs` (the
//! attribute names of docs/otlp.md), so that the two receivers ingest the
//! same events in the same run.

use std::fmt::Write as _;

/// `occurred_at` of the generated events (2026-11-25T10:00:00.123Z) in ns.
const OCCURRED_NS: u64 = 1_795_600_800_123_000_000;

/// One generated event as an OTLP/JSON log record.
fn write_record(out: &mut String, run: &str, n: u64, with_id: bool) {
    let s = |out: &mut String, key: &str, value: &str| {
        let _ = write!(
            out,
            r#"{{"key":"{key}","value":{{"stringValue":"{value}"}}}},"#
        );
    };
    let _ = write!(out, r#"{{"timeUnixNano":"{OCCURRED_NS}","attributes":["#);
    s(out, "audit.actor.id", &format!("user-{}", n % 997));
    s(out, "audit.actor.type", "user");
    s(out, "client.address", &format!("192.0.2.{}", n % 250 + 1));
    s(out, "audit.action", "record.read");
    s(out, "audit.resource.type", "patient_record");
    s(out, "audit.resource.id", &format!("rec-{n}"));
    s(out, "audit.subject", &format!("patient-{}", n % 4093));
    s(out, "audit.purpose", "treatment");
    s(out, "audit.outcome", "success");
    if with_id {
        s(out, "audit.event.id", &format!("{run}-{n}"));
    }
    s(out, "request_id", &format!("req-{run}-{n}"));
    let _ = write!(out, r#"{{"key":"n","value":{{"intValue":"{n}"}}}}]}}"#);
}

/// An `ExportLogsServiceRequest` (OTLP/JSON) of events `first..first + count`.
pub fn request_body(run: &str, first: u64, count: u64, with_id: bool) -> String {
    let mut out = String::with_capacity(560 * count as usize + 128);
    out.push_str(r#"{"resourceLogs":[{"resource":{"attributes":[]},"scopeLogs":[{"scope":{"name":"veritrail-bench"},"logRecords":["#);
    for n in first..first + count {
        if n != first {
            out.push(',');
        }
        write_record(&mut out, run, n, with_id);
    }
    out.push_str("]}]}]}");
    out
}

/// The number of records an `ExportLogsServiceResponse` (OTLP/JSON) says
/// were rejected.
pub fn rejected(answer: &[u8]) -> Result<u64, String> {
    let v: serde_json::Value =
        serde_json::from_slice(answer).map_err(|e| format!("not an OTLP answer: {e}"))?;
    let r = &v["partialSuccess"]["rejectedLogRecords"];
    Ok(match r {
        serde_json::Value::Null => 0,
        serde_json::Value::String(s) => {
            s.parse().map_err(|_| format!("rejectedLogRecords {s:?}"))?
        }
        other => other
            .as_u64()
            .ok_or(format!("rejectedLogRecords {other}"))?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_body_is_otlp_json_with_one_record_per_event() {
        let body = super::request_body("abcd", 5, 3, true);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let records = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"];
        assert_eq!(records.as_array().unwrap().len(), 3);
        assert_eq!(records[0]["attributes"][5]["value"]["stringValue"], "rec-5");
        assert_eq!(super::rejected(br#"{}"#), Ok(0));
        assert_eq!(
            super::rejected(br#"{"partialSuccess":{"rejectedLogRecords":"2"}}"#),
            Ok(2)
        );
    }
}
