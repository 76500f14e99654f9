//! Serving a router on a socket, over plain HTTP or TLS (rustls), with
//! graceful shutdown. Shared by every Veritrail server (`serve`, and the
//! witness), so that each takes the same `--tls-cert`/`--tls-key` flags and
//! announces itself the same way.
//!
//! Invariant: a server announces `listening on <scheme>://<addr>` on stdout
//! only once it is bound and its TLS configuration (if any) loaded, and the
//! scheme says what a client must speak. Plain HTTP is the default only on
//! loopback: on any other address it is served, but with a warning on
//! stderr, because API keys and audit events would cross the network in
//! the clear.
//!
//! The HTTP layer answers a request target over 64 KiB (414) or an
//! oversize head (431) itself, before any route, and without a body;
//! [`JsonRefusals`] gives those answers the API's JSON error body.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::http::{Request, StatusCode};
use axum_server::Handle;
use axum_server::accept::Accept;
use axum_server::service::SendService;
use axum_server::tls_rustls::RustlsConfig;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// How long in-flight requests may take to finish after a TLS server was
/// told to stop (plain HTTP waits for them without a limit, as axum does).
pub const TLS_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// A certificate chain and its private key, both PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (leaf first), PEM.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Pairs the two flags: both or neither.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<TlsFiles>, String> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
            (None, None) => Ok(None),
            (Some(_), None) => {
                Err("--tls-cert needs --tls-key (the certificate's private key, PEM)".into())
            }
            (None, Some(_)) => {
                Err("--tls-key needs --tls-cert (the certificate chain, PEM)".into())
            }
        }
    }
}

/// Why a server could not listen or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address could not be bound.
    #[error("couldn't listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate or key could not be loaded.
    #[error(
        "couldn't load the TLS certificate {} and key {}: {source} (both must be PEM files; the key PKCS#8, PKCS#1 or SEC1)",
        files.cert.display(),
        files.key.display()
    )]
    Tls {
        /// The files given.
        files: TlsFiles,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// The URL scheme a server on these settings speaks.
pub fn scheme(tls: Option<&TlsFiles>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

/// Binds `addr`, prints `<label>: listening on <scheme>://<bound addr>` on
/// stdout, and serves `app` until `shutdown` completes; then lets in-flight
/// requests finish. A client that has not sent a request's whole head
/// within `header_timeout` is answered 408 and disconnected, so trickled
/// headers cannot hold connections open forever. `bound_to` is told the
/// bound address (a port 0 resolved) before the first request is taken.
pub async fn serve(
    app: Router,
    addr: SocketAddr,
    tls: Option<&TlsFiles>,
    label: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
    header_timeout: Duration,
    bound_to: impl FnOnce(SocketAddr),
) -> Result<(), ListenError> {
    // Load the TLS configuration before binding, so a bad file is reported
    // before anything listens.
    let rustls = match tls {
        Some(files) => Some(
            RustlsConfig::from_pem_file(&files.cert, &files.key)
                .await
                .map_err(|source| ListenError::Tls {
                    files: files.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ListenError::Bind { addr, source })?;
    if rustls.is_none() && !bound.ip().is_loopback() {
        warn_plain_http(label, bound);
    }
    bound_to(bound);
    println!("{label}: listening on {}://{bound}", scheme(tls));
    let std_listener = listener.into_std().map_err(ListenError::Serve)?;
    let handle: Handle<SocketAddr> = Handle::new();
    let stopper = handle.clone();
    // Plain HTTP waits for in-flight requests without a limit.
    let grace = rustls.as_ref().map(|_| TLS_SHUTDOWN_GRACE);
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(grace);
    });
    match rustls {
        // HTTP/1 only: detecting the version waits for a first byte without
        // a deadline, so a client that connects and sends nothing would hold
        // its connection for ever. (Plain-HTTP clients speak HTTP/1.1;
        // HTTP/2 is negotiated over TLS.)
        None => {
            let server = axum_server::from_tcp(std_listener).map_err(ListenError::Serve)?;
            serve_accepted(server.http1_only(), handle, app, header_timeout).await
        }
        Some(config) => {
            let server = axum_server::tls_rustls::from_tcp_rustls(std_listener, config)
                .map_err(ListenError::Serve)?;
            serve_accepted(server, handle, app, header_timeout).await
        }
    }
}

/// Serves `app` on a bound server, whichever acceptor (plain or TLS) it
/// has: the shutdown `handle`, the API's JSON refusals and the head
/// deadline are the same for both.
async fn serve_accepted<Acc>(
    server: axum_server::Server<SocketAddr, Acc>,
    handle: Handle<SocketAddr>,
    app: Router,
    header_timeout: Duration,
) -> Result<(), ListenError>
where
    Acc: Accept<TcpStream, Router> + Clone + Send + Sync + 'static,
    Acc::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Acc::Service: SendService<Request<Incoming>> + Send + 'static,
    Acc::Future: Send + 'static,
{
    let mut server = server.handle(handle).map(JsonRefusals);
    server
        .http_builder()
        .http1()
        .header_read_timeout(header_timeout);
    server
        .serve(app.into_make_service())
        .await
        .map_err(ListenError::Serve)
}

/// An acceptor whose connections answer the HTTP layer's own refusals of
/// an oversize request head with the API's JSON error (see the module
/// comment).
#[derive(Clone)]
struct JsonRefusals<A>(A);

impl<I, S, A> Accept<I, S> for JsonRefusals<A>
where
    A: Accept<I, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = RefusalBodies<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.0.accept(stream, service);
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            Ok((
                RefusalBodies {
                    inner: stream,
                    pending: Vec::new(),
                    sent: 0,
                },
                service,
            ))
        })
    }
}

/// A connection that replaces a bodiless 414 or 431 head, which only the
/// HTTP layer writes (every answer of the API has a content type), by the
/// same answer with a JSON error body.
struct RefusalBodies<S> {
    inner: S,
    /// A replacement answer still to write, and how much of it was.
    pending: Vec<u8>,
    sent: usize,
}

impl<S: AsyncWrite + Unpin> RefusalBodies<S> {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.pending.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

/// The status of a bodiless refusal the HTTP layer wrote, if `buf` is one.
fn refused_head(buf: &[u8]) -> Option<StatusCode> {
    let status = if buf.starts_with(b"HTTP/1.1 414 ") {
        StatusCode::URI_TOO_LONG
    } else if buf.starts_with(b"HTTP/1.1 431 ") {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    } else {
        return None;
    };
    let head = String::from_utf8_lossy(buf).to_ascii_lowercase();
    (head.ends_with("\r\n\r\n") && !head.contains("content-type:")).then_some(status)
}

impl<S: AsyncRead + Unpin> AsyncRead for RefusalBodies<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RefusalBodies<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(status) = refused_head(buf) {
            self.pending = crate::api::refused_head_answer(status);
            // Written now or at the flush that follows.
            if let Poll::Ready(Err(e)) = self.drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    /// Vectored, so that the HTTP layer writes a response's head and its
    /// body (a cached tile's bytes) in one `writev` instead of copying the
    /// body into its own buffer first. A refusal is a head alone: the first
    /// non-empty slice.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && refused_head(first).is_some()
        {
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn warn_plain_http(label: &str, addr: SocketAddr) {
    tracing::warn!(%addr, "serving plain HTTP on a non-loopback address");
    eprintln!(
        "{label}: WARNING: serving plain HTTP on {addr}, which is not a loopback address: \
         API keys and audit events cross the network unencrypted. \
         Pass --tls-cert and --tls-key, or put a TLS-terminating proxy in front."
    );
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this
/// is called, not when the future is first polled, so a signal that
/// arrives right after the server announced itself is not fatal. Call it
/// inside the runtime, before `serve`.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                // Without handlers the default actions stop the process.
                std::future::pending::<()>().await;
            }
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_flags_come_in_pairs() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(TlsFiles::from_flags(None, None), Ok(None));
        assert!(TlsFiles::from_flags(p("c.pem"), None).is_err());
        assert!(TlsFiles::from_flags(None, p("k.pem")).is_err());
        let both = TlsFiles::from_flags(p("c.pem"), p("k.pem"))
            .unwrap()
            .unwrap();
        assert_eq!(scheme(Some(&both)), "https");
        assert_eq!(scheme(None), "http");
    }
}
