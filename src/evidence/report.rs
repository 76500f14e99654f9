//! Evidence reports: the printable HTML page the console makes from an
//! evidence bundle (docs/evidence-bundle.md) carries that bundle, byte for
//! byte, base64-encoded in one inert element:
//!
//! ```text
//! <script type="application/x-ndjson;base64" id="veritrail-evidence-bundle">…</script>
//! ```
//!
//! This module finds and decodes it, so a report verifies exactly as the
//! NDJSON it embeds (`veritrail verify-bundle report.html`). It never
//! trusts anything else in the page: the tables and sentences a reader
//! sees are a rendering, and only the embedded bundle is checked.
//!
//! Pure: takes text, returns text.

use base64::Engine as _;

/// The id of the element that holds the bundle.
pub const BUNDLE_ELEMENT_ID: &str = "veritrail-evidence-bundle";

/// Largest embedded bundle accepted (base64 characters).
const MAX_EMBEDDED: usize = 1 << 30;

/// Why an HTML report's embedded bundle cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    /// The element is there but its content is not what the console writes.
    #[error(
        "the report's embedded evidence bundle is damaged ({0}); verify the NDJSON bundle exported with it instead"
    )]
    Damaged(&'static str),
}

/// The evidence bundle embedded in an HTML evidence report, or `None` when
/// `text` is not such a report (e.g. a plain NDJSON bundle).
pub fn bundle_from_report(text: &str) -> Result<Option<String>, ReportError> {
    let marker = format!("id=\"{BUNDLE_ELEMENT_ID}\"");
    let head = text.trim_start().get(..64).unwrap_or(text.trim_start());
    if !head.to_ascii_lowercase().starts_with("<!doctype html") {
        return Ok(None);
    }
    let mut found = text.match_indices(&marker);
    let Some((at, _)) = found.next() else {
        return Ok(None);
    };
    if found.next().is_some() {
        return Err(ReportError::Damaged("it holds more than one bundle"));
    }
    let rest = &text[at + marker.len()..];
    let open_end = rest
        .find('>')
        .ok_or(ReportError::Damaged("the element is not closed"))?;
    let body = &rest[open_end + 1..];
    let close = body
        .find("</script>")
        .ok_or(ReportError::Damaged("the element is not closed"))?;
    let encoded: String = body[..close]
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if encoded.len() > MAX_EMBEDDED {
        return Err(ReportError::Damaged("it is too large"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| ReportError::Damaged("not base64"))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| ReportError::Damaged("not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(inner: &str) -> String {
        format!(
            "<!DOCTYPE html>\n<html><body><h1>Report</h1>\n<script type=\"application/x-ndjson;base64\" id=\"{BUNDLE_ELEMENT_ID}\">\n{inner}\n</script></body></html>"
        )
    }

    #[test]
    fn the_embedded_bundle_comes_back_byte_for_byte() {
        let bundle = "{\"type\":\"veritrail-evidence-bundle\"}\n{\"x\":\"</script> é\"}\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(bundle);
        let wrapped: String = b64
            .as_bytes()
            .chunks(10)
            .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
            .collect();
        assert_eq!(
            bundle_from_report(&report(&wrapped)).unwrap().as_deref(),
            Some(bundle)
        );
    }

    #[test]
    fn plain_bundles_and_other_pages_are_not_reports() {
        assert_eq!(bundle_from_report("{\"type\":\"x\"}\n").unwrap(), None);
        assert_eq!(
            bundle_from_report("<!doctype html><p>hello</p>").unwrap(),
            None
        );
        // The marker inside an NDJSON bundle does not make it a report.
        let ndjson = format!("{{\"q\":\"id=\\\"{BUNDLE_ELEMENT_ID}\\\"\"}}\n");
        assert_eq!(bundle_from_report(&ndjson).unwrap(), None);
    }

    #[test]
    fn damaged_reports_are_refused_with_a_reason() {
        for bad in [
            report("not base64 !"),
            report(&base64::engine::general_purpose::STANDARD.encode([0xff, 0xfe])),
            format!("<!doctype html><script id=\"{BUNDLE_ELEMENT_ID}\">AAAA"),
            format!("{}{}", report("AAAA"), report("AAAA")),
        ] {
            let err = bundle_from_report(&bad).unwrap_err();
            assert!(err.to_string().contains("damaged"), "{err}");
        }
    }
}
