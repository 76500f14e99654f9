//! `veritrail witness`: the HTTP face of a C2SP tlog-witness, its data
//! directory and its key.
//!
//! Routes:
//! - `POST /add-checkpoint` (c2sp.org/tlog-witness): 200 with the
//!   cosignature line(s); 400, 403, 404, 409 (`text/x.tlog.size`, body
//!   `<size>\n`), 413 (body over 16 KiB), 422, each with a one-line
//!   plain-text reason;
//! - `GET /<lowercase hex SHA-256(origin)>/checkpoint`: the latest cosigned
//!   checkpoint, 404 if none (tlog-witness HEAD monitoring prefix);
//! - `GET /healthz`.
//!
//! Data directory: `witness-ed25519.pem` (PKCS#8, mode 0600, created on
//! first start together with `db/`, never overwritten) and `db/` (sled). An
//! existing state without its key is refused rather than re-keyed.

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, KeypairBytes};
use tokio::net::TcpListener;

use super::config::WitnessConfig;
use super::core::{AddError, Witness};
use super::request::MAX_REQUEST_BODY;
use super::store::SledWitnessStore;
use crate::note::CosignatureSigner;

/// File name of the witness's Ed25519 key in its data directory.
pub const WITNESS_KEY_FILE: &str = "witness-ed25519.pem";
/// Content type of a 409's body (c2sp.org/tlog-witness).
pub const TLOG_SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Unix time in seconds, the cosignature timestamp.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
        .max(1)
}

/// Loads the witness key from `dir`, creating the directory, the key and an
/// empty database on first start. Returns the key and whether it was created.
pub fn open_or_create_key(dir: &Path) -> Result<(ed25519_dalek::SigningKey, bool), String> {
    let key_path = dir.join(WITNESS_KEY_FILE);
    if key_path.exists() {
        let pem = fs::read_to_string(&key_path)
            .map_err(|e| format!("couldn't read {}: {e}", key_path.display()))?;
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| format!("{}: not a PKCS#8 Ed25519 key: {e}", key_path.display()))?;
        return Ok((key, false));
    }
    if dir.join("db").exists() {
        return Err(format!(
            "{} holds witness state but no {WITNESS_KEY_FILE}; refusing to make a new key for old state",
            dir.display()
        ));
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| format!("couldn't create {}: {e}", dir.display()))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let pem = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(Default::default())
    .map_err(|e| format!("couldn't encode the witness key: {e}"))?;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&key_path)
        .map_err(|e| format!("couldn't create {}: {e}", key_path.display()))?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("couldn't write {}: {e}", key_path.display()))?;
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((key, true))
}

/// Everything `veritrail witness` needs.
pub struct WitnessServeConfig {
    /// Data directory.
    pub data: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// The validated configuration file.
    pub config: WitnessConfig,
}

/// Opens the witness in `data` (creating key and state on first start).
pub fn open(data: &Path, config: WitnessConfig) -> Result<(Arc<Witness>, bool), String> {
    let (key, created) = open_or_create_key(data)?;
    let signer = CosignatureSigner::new(&config.name, key, unix_seconds)
        .map_err(|e| format!("witness name {:?}: {e}", config.name))?;
    let store = SledWitnessStore::open(&data.join("db")).map_err(|e| e.to_string())?;
    Ok((
        Arc::new(Witness::new(config.logs, signer, Arc::new(store))),
        created,
    ))
}

/// Runs the witness until SIGINT or SIGTERM.
pub async fn run(cfg: WitnessServeConfig) -> Result<(), String> {
    let data = cfg.data.clone();
    let (witness, created) = tokio::task::spawn_blocking(move || open(&data, cfg.config))
        .await
        .map_err(|e| e.to_string())??;
    if created {
        println!(
            "veritrail: created a new witness in {} (key {})",
            cfg.data.display(),
            WITNESS_KEY_FILE
        );
    }
    println!("veritrail: witness verifier key {}", witness.verifier_key());
    for origin in witness.origins() {
        println!("veritrail: witnessing {origin}");
    }
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| format!("couldn't listen on {}: {e}", cfg.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("veritrail: listening on http://{addr}");
    axum::serve(listener, router(witness))
        .with_graceful_shutdown(crate::server::shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))
}

/// The witness's HTTP routes.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(latest_checkpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .with_state(witness)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

async fn add_checkpoint(
    State(witness): State<Arc<Witness>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            return text(
                e.status(),
                "text/plain; charset=utf-8",
                format!("{}\n", e.body_text()),
            );
        }
    };
    let w = witness.clone();
    let result = match tokio::task::spawn_blocking(move || w.add_checkpoint(&body)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "add-checkpoint task failed");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "internal error\n".into(),
            );
        }
    };
    match result {
        Ok(lines) => {
            metrics::counter!("veritrail_witness_cosigned_total").increment(1);
            let body: String = lines.iter().map(|s| s.to_line()).collect();
            text(StatusCode::OK, "text/plain; charset=utf-8", body)
        }
        Err(e) => error_response(&e),
    }
}

/// The response of a refused request (c2sp.org/tlog-witness status codes).
pub fn error_response(e: &AddError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match e {
        AddError::StaleOldSize { known } => {
            text(status, TLOG_SIZE_CONTENT_TYPE, format!("{known}\n"))
        }
        AddError::Store(_) | AddError::Sign(_) => {
            tracing::error!(error = %e, "witness failure");
            text(
                status,
                "text/plain; charset=utf-8",
                "internal error; the witness operator's log has details\n".into(),
            )
        }
        _ => {
            if status == StatusCode::UNPROCESSABLE_ENTITY {
                // A validly signed checkpoint the witness refused: worth a
                // line in the operator's log (c2sp.org/tlog-witness: MAY log).
                tracing::warn!(error = %e, "refused a checkpoint");
            }
            text(status, "text/plain; charset=utf-8", format!("{e}\n"))
        }
    }
}

async fn latest_checkpoint(
    State(witness): State<Arc<Witness>>,
    UrlPath(origin_hash): UrlPath<String>,
) -> Response {
    let is_hex = origin_hash.len() == 64
        && origin_hash
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_hex {
        return text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "expected /<lowercase hex SHA-256 of the origin>/checkpoint\n".into(),
        );
    }
    match witness.latest_by_origin_hash(&origin_hash) {
        Ok(Some(state)) => {
            let mut resp = text(StatusCode::OK, "text/plain; charset=utf-8", state.note);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "no checkpoint cosigned for this origin\n".into(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "witness state read failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "internal error\n".into(),
            )
        }
    }
}
