//! The web console: the static files of `web/`, embedded into the binary at
//! build time and served at `/` (no build step, no external assets).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

use crate::api::ApiError;

static WEB: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/web");

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str) -> Response {
    match WEB.get_file(path) {
        Some(f) => {
            let mut resp = f.contents().to_vec().into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(path)),
            );
            // Same-origin only: the console talks to this server and nothing else.
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; frame-ancestors 'none'"),
            );
            h.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        None => ApiError::not_found(format!("no such page: /{path}")).into_response(),
    }
}

/// Serves a console file for `GET /<path>`, if there is one. Only a file's
/// own path names it: the lookup would also accept spellings such as
/// `js/api.js/` or `js//api.js`, which are not the file's URL.
pub fn file(path: &str) -> Option<Response> {
    let path = if path.is_empty() { "index.html" } else { path };
    WEB.get_file(path)
        .filter(|f| f.path().to_str() == Some(path))
        .map(|_| serve(path))
}
