//! `POST /v1/admin/backup`: streams a consistent snapshot of the log (see
//! [`crate::backup`]) to an admin, without pausing the sequencer.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::auth::Role;
use crate::backup::{self, BackupError, SnapshotPoint};

/// Pieces of the stream in flight between the reading thread and the socket.
const IN_FLIGHT: usize = 8;

#[utoipa::path(post, path = "/v1/admin/backup", tag = "admin",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "A consistent snapshot of the log, streamed (see the operations guide)",
        body = Vec<u8>, content_type = "application/octet-stream")))]
pub(super) async fn backup(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let admin = st.keys.authorize(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
        Role::Admin,
    )?;
    super::write::no_options(query.as_deref(), &headers, b)?;
    // The checkpoint first, then the durable size: both are published by
    // the sequencer only after their batch committed, so the size is a
    // batch boundary at or beyond the checkpoint.
    let checkpoint = st.view.checkpoint();
    let point = SnapshotPoint {
        tree_size: st.view.durable_size(),
        checkpoint,
    };
    tracing::info!(by = %admin.name, tree_size = point.tree_size, "backup started");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(IN_FLIGHT);
    let store = st.store.clone();
    let origin = st.origin.clone();
    let vkeys = st.verifier_keys.clone();
    tokio::task::spawn_blocking(move || {
        let mut sink = |piece: Vec<u8>| {
            tx.blocking_send(Ok(piece))
                .map_err(|_| BackupError::Client("the client went away".into()))
        };
        match backup::write_snapshot(store.as_ref(), &origin, &vkeys, &point, &mut sink) {
            Ok(()) => tracing::info!(tree_size = point.tree_size, "backup streamed"),
            Err(e) => {
                tracing::error!(error = %e, "backup failed");
                // Cuts the stream: the client sees no end frame.
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
