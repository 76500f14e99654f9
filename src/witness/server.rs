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
//! - `GET /healthz`, `GET /metrics` (Prometheus: cosigned and refused
//!   requests by status).
//!
//! Data directory: `witness-ed25519.pem` (PKCS#8, mode 0600, created on
//! first start together with `db/`, never overwritten) and `db/` (sled). An
//! existing state without its key is refused rather than re-keyed.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, KeypairBytes};

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
    crate::durable::create_new(&key_path, pem.as_bytes(), crate::durable::Secrecy::Secret)
        .map_err(|e| format!("couldn't write {}: {e}", key_path.display()))?;
    Ok((key, true))
}

/// A request (its head, and its handling) taking longer than this is
/// answered 408: a witness answers in milliseconds.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything `veritrail witness` needs.
pub struct WitnessServeConfig {
    /// Data directory.
    pub data: PathBuf,
    /// Listen address.
    pub listen: SocketAddr,
    /// The validated configuration file.
    pub config: WitnessConfig,
    /// Serve HTTPS with these files; plain HTTP when `None` (meant for
    /// loopback: elsewhere it warns).
    pub tls: Option<crate::listen::TlsFiles>,
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
    let mut app = router(witness);
    if let Some(handle) = crate::server::install_metrics() {
        app = app.route(
            "/metrics",
            get(move || {
                let h = handle.clone();
                async move {
                    h.run_upkeep();
                    text(
                        StatusCode::OK,
                        "text/plain; version=0.0.4; charset=utf-8",
                        h.render(),
                    )
                }
            }),
        );
    }
    crate::listen::serve(
        app,
        cfg.listen,
        cfg.tls.as_ref(),
        "veritrail",
        crate::listen::shutdown_signal(),
        REQUEST_TIMEOUT,
        |_| {},
    )
    .await
    .map_err(|e| e.to_string())
}

/// The witness's HTTP routes.
pub fn router(witness: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(latest_checkpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
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
        Err(e) => {
            metrics::counter!("veritrail_witness_refused_total", "status" => e.status().to_string())
                .increment(1);
            error_response(&e)
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, MemoryTree};
    use crate::note::keys::LogKeys;
    use crate::note::{Checkpoint, NoteSigner, parse_verifier_key};
    use crate::witness::store::MemoryWitnessStore;
    use crate::witness::{AddCheckpoint, WitnessedLog, origin_hash};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    const ORIGIN: &str = "example.com/log";

    fn app() -> (Router, LogKeys) {
        let keys = LogKeys::from_secret_bytes(&[7; 32], &[8; 32]).unwrap();
        let v = keys.verifier_keys(ORIGIN).unwrap();
        let signer = CosignatureSigner::new(
            "w.example/1",
            ed25519_dalek::SigningKey::from_bytes(&[9; 32]),
            || 1_700_000_000u64,
        )
        .unwrap();
        let witness = Witness::new(
            vec![WitnessedLog {
                origin: ORIGIN.into(),
                verifiers: vec![parse_verifier_key(&v.ecdsa).unwrap()],
            }],
            signer,
            Arc::new(MemoryWitnessStore::new()),
        );
        (router(Arc::new(witness)), keys)
    }

    fn request(keys: &LogKeys, old: u64, size: u64, branch: u8) -> Vec<u8> {
        let mut t = MemoryTree::new();
        for i in 0..size {
            t.push(merkle::leaf_hash(&[i as u8, branch]));
        }
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size,
            root: t.root(),
            extensions: vec![],
        };
        let mut note = cp.to_note().unwrap();
        note.sign(&keys.signers(ORIGIN).unwrap().ecdsa as &dyn NoteSigner)
            .unwrap();
        let proof = if old == 0 || old >= size {
            vec![]
        } else {
            merkle::consistency_proof(old, size, &t).unwrap()
        };
        AddCheckpoint::format(old, &proof, &note.to_bytes())
    }

    async fn call(app: &Router, method: &str, path: &str, body: Vec<u8>) -> (u16, String, String) {
        let resp = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ct, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn every_status_over_http() {
        let (app, keys) = app();
        let hash = origin_hash(ORIGIN);
        let (s, _, _) = call(&app, "GET", &format!("/{hash}/checkpoint"), vec![]).await;
        assert_eq!(s, 404, "nothing cosigned yet");

        let (s, ct, body) = call(&app, "POST", "/add-checkpoint", request(&keys, 0, 5, 0)).await;
        assert_eq!((s, ct.as_str()), (200, "text/plain; charset=utf-8"));
        assert!(body.starts_with("\u{2014} w.example/1 ") && body.ends_with('\n'));
        assert_eq!(body.lines().count(), 1);

        let (s, ct, body) = call(&app, "POST", "/add-checkpoint", request(&keys, 0, 8, 0)).await;
        assert_eq!(
            (s, ct.as_str(), body.as_str()),
            (409, TLOG_SIZE_CONTENT_TYPE, "5\n")
        );
        let (s, _, _) = call(&app, "POST", "/add-checkpoint", request(&keys, 5, 8, 0)).await;
        assert_eq!(s, 200);
        // Same size, other root: 422 (this witness follows tlog-witness HEAD).
        let (s, ct, _) = call(&app, "POST", "/add-checkpoint", request(&keys, 8, 8, 1)).await;
        assert_eq!((s, ct.as_str()), (422, "text/plain; charset=utf-8"));
        let (s, _, _) = call(&app, "POST", "/add-checkpoint", request(&keys, 9, 8, 0)).await;
        assert_eq!(s, 400);
        let (s, _, _) = call(&app, "POST", "/add-checkpoint", b"old 1\n".to_vec()).await;
        assert_eq!(s, 400);
        let other = LogKeys::from_secret_bytes(&[1; 32], &[2; 32]).unwrap();
        let (s, _, _) = call(&app, "POST", "/add-checkpoint", request(&other, 8, 9, 0)).await;
        assert_eq!(s, 403);
        let mut unknown = request(&keys, 0, 1, 0);
        let text = String::from_utf8(unknown.clone()).unwrap();
        unknown = text.replacen(ORIGIN, "other.example/log", 1).into_bytes();
        let (s, _, _) = call(&app, "POST", "/add-checkpoint", unknown).await;
        assert_eq!(s, 404, "the origin is looked up before any signature");
        let (s, _, _) = call(
            &app,
            "POST",
            "/add-checkpoint",
            vec![b'a'; MAX_REQUEST_BODY + 1],
        )
        .await;
        assert_eq!(s, 413);
        let (s, _, _) = call(&app, "GET", "/add-checkpoint", vec![]).await;
        assert_eq!(s, 405);

        let (s, _, note) = call(&app, "GET", &format!("/{hash}/checkpoint"), vec![]).await;
        assert_eq!(s, 200);
        assert!(note.starts_with("example.com/log\n8\n"));
        let (s, _, _) = call(
            &app,
            "GET",
            &format!("/{}/checkpoint", hash.to_uppercase()),
            vec![],
        )
        .await;
        assert_eq!(s, 404);
        let (s, _, _) = call(
            &app,
            "GET",
            &format!("/{}/checkpoint", origin_hash("x")),
            vec![],
        )
        .await;
        assert_eq!(s, 404);
    }

    #[test]
    fn the_key_is_created_once_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("w");
        let (k1, created) = open_or_create_key(&data).unwrap();
        assert!(created);
        let (k2, created) = open_or_create_key(&data).unwrap();
        assert!(!created);
        assert_eq!(k1.to_bytes(), k2.to_bytes());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(data.join(WITNESS_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // State without its key: refuse instead of re-keying.
        fs::remove_file(data.join(WITNESS_KEY_FILE)).unwrap();
        fs::create_dir(data.join("db")).unwrap();
        assert!(open_or_create_key(&data).is_err());
    }
}
