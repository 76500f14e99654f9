//! The parse-only ceiling of single-event ingest: `veritrail bench
//! parse-server` serves `POST /v1/events` through the log's own listener
//! and answers after the log's own parse step
//! ([`veritrail::api::parse_submission`]), and nothing else: no key check,
//! no sealing, no storage, no fsync. `bench ingest` against it measures what
//! axum and the JSON parsing alone allow on this machine, and
//! `scripts/bench.sh` prints the log's single-event rate beside it.
//!
//! Invariant: an answer has the shape of the log's (one entry per event,
//! each with its own index), so the load generator checks it as it checks
//! the log's, and a refused body gets the log's refusal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use veritrail::event::EventLimits;

/// What the handler shares: the next index to hand out.
struct Parser {
    next: AtomicU64,
    limits: EventLimits,
}

/// Serves on `addr` until SIGINT or SIGTERM, announcing `listening on
/// http://ADDR` as `serve` does.
pub async fn run(addr: SocketAddr) -> anyhow::Result<()> {
    let parser = Arc::new(Parser {
        next: AtomicU64::new(0),
        limits: EventLimits::default(),
    });
    let app = Router::new()
        .route("/v1/events", post(parse))
        .with_state(parser);
    let stop = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    veritrail::listen::serve(
        app,
        addr,
        None,
        "veritrail bench parse-server",
        stop,
        Duration::from_secs(10),
        |_| {},
    )
    .await?;
    Ok(())
}

async fn parse(State(parser): State<Arc<Parser>>, headers: HeaderMap, body: Bytes) -> Response {
    let events = match veritrail::api::parse_submission(&headers, &body, &parser.limits) {
        Ok(events) => events,
        Err(refused) => return *refused,
    };
    let first = parser
        .next
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    let mut out = String::with_capacity(16 + 40 * events.len());
    out.push_str("{\"events\":[");
    for i in 0..events.len() as u64 {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"index\":{},\"duplicate\":false}}", first + i));
    }
    out.push_str("]}");
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}
