//! Checks on a request's head, before any handler runs: a request carrying
//! more than one `Authorization` header is refused with 400, so which
//! credential counts never depends on header order.

use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// Refuses a request with more than one `Authorization` header.
pub(super) async fn single_authorization(req: Request, next: Next) -> Response {
    if req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return ApiError::bad_request("more than one Authorization header").into_response();
    }
    next.run(req).await
}
