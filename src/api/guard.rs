//! Checks on a request's head, before any handler runs: a request carrying
//! more than one `Authorization` header is refused with 400, so which
//! credential counts never depends on header order; a query string longer
//! than [`MAX_QUERY_BYTES`] is refused with 414, and one whose values are
//! not UTF-8 once percent-decoded with 400, so no route ever reads a
//! mangled value as a filter. Every refusal is the API's JSON error, and
//! so is every error answer of the layers and routes behind it
//! ([`super::error::json_errors`], applied here rather than as a layer of
//! its own).

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Longest query string any route accepts, in bytes.
pub const MAX_QUERY_BYTES: usize = 8 << 10;

/// Both checks and the JSON error bodies, as one layer (a layer costs
/// every request a boxed future and a clone of the routes behind it): an
/// over-long or non-UTF-8 query string first, then more than one
/// `Authorization` header, then the answer behind, with a JSON body if it
/// is an error without one.
pub(super) async fn request_head(req: Request, next: Next) -> Response {
    if let Some(Err(e)) = req.uri().query().map(check_query) {
        return e.into_response();
    }
    if req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return ApiError::bad_request("more than one Authorization header").into_response();
    }
    super::error::json_errors(next.run(req).await).await
}

fn check_query(q: &str) -> Result<(), ApiError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the query string is over {MAX_QUERY_BYTES} bytes"),
        ));
    }
    // `+` is a space in a query; it cannot make text invalid.
    let decoded: Vec<u8> = percent_encoding::percent_decode_str(q).collect();
    if std::str::from_utf8(&decoded).is_err() {
        return Err(ApiError::bad_request(
            "the query string is not UTF-8 text once percent-decoded",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_must_be_short_utf8_text() {
        assert!(check_query("actor=%C3%A9t%C3%A9&limit=2").is_ok());
        assert!(check_query("actor=a+b").is_ok());
        let bad = check_query("actor=%FF%FE").unwrap_err();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let long = format!("actor={}", "a".repeat(MAX_QUERY_BYTES));
        assert_eq!(
            check_query(&long).unwrap_err().status(),
            StatusCode::URI_TOO_LONG
        );
    }
}
