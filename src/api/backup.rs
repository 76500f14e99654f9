//! `POST /v1/admin/backup`: streams a consistent snapshot of the log (see
//! [`crate::backup`]) to an admin, without pausing the sequencer. The
//! backup is recorded in the log (`admin.backup`) before a byte is sent,
//! and a client that stops reading is cut after the stall timeout.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::audit::{Access, record_access, with_audit_header};
use super::{ApiError, AppState};
use crate::auth::Role;
use crate::backup::{self, BackupError, SnapshotPoint};
use crate::event::Outcome;

#[utoipa::path(post, path = "/v1/admin/backup", tag = "admin",
    security(("api_key" = ["admin"])),
    responses((status = 200, description = "A consistent snapshot of the log, streamed (see the operations guide)",
        body = Vec<u8>, content_type = "application/octet-stream",
        headers(("veritrail-audit-index" = u64, description = "Leaf index of the audit event recording this backup")))))]
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
    let receipt = record_access(
        &st,
        &admin,
        Access {
            action: "admin.backup",
            resource: ("backup", point.tree_size.to_string()),
            subject: None,
            outcome: Outcome::Success,
            context: serde_json::json!({ "tree_size": point.tree_size }),
        },
    )
    .await?;
    tracing::info!(by = %admin.name, tree_size = point.tree_size, "backup started");
    let (producer, body) = super::stream::channel(st.limits.stream_stall_timeout);
    let store = st.store.clone();
    let origin = st.origin.clone();
    let vkeys = st.verifier_keys.clone();
    tokio::task::spawn_blocking(move || {
        let mut sink = |piece: Vec<u8>| {
            if producer.send(piece) {
                Ok(())
            } else {
                Err(BackupError::Client(
                    "the client went away or stopped reading".into(),
                ))
            }
        };
        match backup::write_snapshot(store.as_ref(), &origin, &vkeys, &point, &mut sink) {
            Ok(()) => tracing::info!(tree_size = point.tree_size, "backup streamed"),
            Err(e) => {
                tracing::error!(error = %e, "backup failed");
                // Cuts the stream: the client sees no end frame.
                producer.fail(&e.to_string());
            }
        }
    });
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(with_audit_header(resp, &receipt))
}
