//! Several frontends over one remote store (PostgreSQL and a bucket): which
//! one sequences, and what the others do with the requests they get.
//!
//! Every frontend starts as a follower. A follower tries every
//! [`LeaseTimings::poll`] to take the lease in the coordination row
//! (`store::postgres::lease`); the one that gets it builds a leader engine
//! from what the store holds *now* (checkpoint, right edge, keys, search
//! index: nothing of an earlier leadership of this process survives), fences
//! the store's commits with the lease's token, and serves. It renews the
//! lease every [`LeaseTimings::renew`]; when a renewal is refused, or its
//! local deadline passes first, it stops sequencing at once and becomes a
//! follower again.
//!
//! Followers **forward** writes to the leader's advertised address (kept in
//! the lease row) instead of queuing them in PostgreSQL: the writer's
//! answer then is the leader's own, given only once its batch committed
//! (never a success that is not durable), and the idempotency, rate limits,
//! alerts and vault stay in one place. Queuing in the database would need a
//! second durable queue, its own idempotency and a way to answer the writer
//! later; forwarding costs one loopback or LAN hop. Authenticated reads
//! (event bodies, search, export, admin) are forwarded too, since the keys
//! and the search index's newest postings live in the leader's vault. The
//! public tlog reads (checkpoint, tiles, proofs, health, metrics, console)
//! are served by the follower from the shared store, with a view that its
//! follower thread brings up to the stored checkpoint
//! ([`crate::sequencer::Sequencer::follow`]). While no frontend holds the
//! lease, forwarded requests get 503 with `Retry-After` and a JSON error.
//!
//! Invariants: a frontend sequences only under a lease it holds, with every
//! commit fenced by its token in the commit's own transaction; a forwarded
//! request is never forwarded again (a header marks it), so two frontends
//! that disagree about the leader cannot bounce a request between them.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, Method, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;
use tower::ServiceExt as _;

use crate::api::ApiError;
use crate::sequencer::Lease;
use crate::store::postgres::PgStore;

/// Marks a request a follower forwarded; the receiver never forwards it on.
const FORWARDED: HeaderName = HeaderName::from_static("x-veritrail-forwarded");

/// How long a lease lives and how often it is renewed and sought.
#[derive(Clone, Copy, Debug)]
pub struct LeaseTimings {
    /// The lease's time to live, counted by the database's clock.
    pub ttl: Duration,
    /// The leader renews this often (well before `ttl` runs out).
    pub renew: Duration,
    /// A follower looks for a free or expired lease this often.
    pub poll: Duration,
    /// A follower refreshes its view of the stored checkpoint this often.
    pub refresh: Duration,
    /// The leader stops this long before the lease's expiry, at the latest.
    pub margin: Duration,
}

impl Default for LeaseTimings {
    /// A 3 s lease renewed every second: a dead leader is replaced within
    /// about ttl + poll + the new leader's start, under 5 s.
    fn default() -> LeaseTimings {
        LeaseTimings {
            ttl: Duration::from_secs(3),
            renew: Duration::from_secs(1),
            poll: Duration::from_millis(250),
            refresh: Duration::from_millis(200),
            margin: Duration::from_millis(250),
        }
    }
}

impl LeaseTimings {
    /// The default timings with the lease's time to live and renewal
    /// period set from a configuration (milliseconds; `None` keeps the
    /// default). A renewal must come before half the time to live has
    /// passed, so that one late or lost renewal does not end the lease,
    /// and the time to live must leave room for the stop margin.
    pub fn configured(ttl_ms: Option<u64>, renew_ms: Option<u64>) -> Result<LeaseTimings, String> {
        let mut t = LeaseTimings::default();
        if let Some(ms) = ttl_ms {
            if !(1_000..=60_000).contains(&ms) {
                return Err("lease_ttl_ms must be between 1000 and 60000".into());
            }
            t.ttl = Duration::from_millis(ms);
        }
        if let Some(ms) = renew_ms {
            if ms < 100 {
                return Err("lease_renew_ms must be at least 100".into());
            }
            t.renew = Duration::from_millis(ms);
        }
        if t.renew * 2 >= t.ttl {
            return Err(format!(
                "lease_renew_ms ({} ms) must be under half of lease_ttl_ms ({} ms)",
                t.renew.as_millis(),
                t.ttl.as_millis()
            ));
        }
        Ok(t)
    }
}

/// What one role serves, and how it stops.
pub struct Engine {
    /// The routes of this role.
    pub router: Router,
    /// A leader's API state, for what it must do before the first request
    /// (recording the first admin key); `None` for a follower.
    pub state: Option<crate::api::AppState>,
    /// Stops the role's background work (blocking: call off the runtime).
    pub stop: Box<dyn FnOnce(bool) + Send>,
}

/// Builds the engines of the two roles, each from the store's state at the
/// time of the call.
pub trait Engines: Send + Sync + 'static {
    /// The leader's engine, sequencing under `lease` (blocking).
    fn leader(&self, lease: Arc<Lease>) -> Result<Engine, String>;
    /// A follower's engine (blocking).
    fn follower(&self) -> Result<Engine, String>;
}

/// What this frontend is now.
struct Current {
    router: Router,
    /// The leader's base URL, as a follower last read it.
    leader: Option<String>,
    is_leader: bool,
}

/// One frontend among several: its role, and the routes that dispatch to it.
pub struct Leadership {
    store: Arc<PgStore>,
    holder: String,
    /// Where this frontend takes writes; empty until the listener is bound.
    address: RwLock<String>,
    timings: LeaseTimings,
    current: RwLock<Current>,
    /// Bumped whenever the frontend this one forwards to may have stopped
    /// sequencing (its lease expired or moved): forwards still waiting on
    /// it are cut off with a 503, instead of waiting for a frontend that
    /// was paused or cut off to answer.
    leader_changes: watch::Sender<u64>,
    client: reqwest::Client,
    max_body: usize,
}

/// The running role loop.
pub struct Running {
    leadership: Arc<Leadership>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// A frontend named `holder` (unique per process) over `store`; it
    /// starts as a follower serving `follower`'s routes and seeks the lease
    /// once [`Leadership::advertise`] said where it takes writes.
    /// Forwarded bodies are limited to `max_body` bytes.
    pub fn new(
        store: Arc<PgStore>,
        holder: String,
        timings: LeaseTimings,
        follower: Router,
        max_body: usize,
        peer_ca_pem: Option<&[u8]>,
    ) -> Result<Arc<Leadership>, String> {
        let mut client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .read_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = peer_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("peer CA certificates: {e}"))?
            {
                client = client.add_root_certificate(cert);
            }
        }
        Ok(Arc::new(Leadership {
            store,
            holder,
            address: RwLock::new(String::new()),
            timings,
            current: RwLock::new(Current {
                router: follower,
                leader: None,
                is_leader: false,
            }),
            leader_changes: watch::Sender::new(0),
            client: client
                .build()
                .map_err(|e| format!("couldn't build the forwarding client: {e}"))?,
            max_body,
        }))
    }

    /// Sets the base URL other frontends forward to while this one leads
    /// (written to the lease row at the next renewal).
    pub fn advertise(&self, url: String) {
        *self.address.write().unwrap_or_else(|p| p.into_inner()) = url;
    }

    fn address(&self) -> String {
        self.address
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The routes to serve: each request goes to the current role.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(dispatch).with_state(self.clone())
    }

    /// Starts the role loop: seeking, holding and losing the lease. The
    /// first try to take the lease is made before this returns, so a
    /// frontend that finds the lease free listens as the leader.
    pub async fn start(self: &Arc<Self>, engines: Arc<dyn Engines>, follower: Engine) -> Running {
        let (stop, stopped) = watch::channel(false);
        let (engine, lease) = match self.seek(&engines).await {
            Some((lease, leader)) => {
                Self::stop_engine(follower, false).await;
                (leader, Some(lease))
            }
            None => (follower, None),
        };
        let me = self.clone();
        let task = tokio::spawn(async move { me.run(engines, engine, lease, stopped).await });
        Running {
            leadership: self.clone(),
            stop,
            task,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, router: Router, leader: Option<String>, is_leader: bool) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Current {
            router,
            leader,
            is_leader,
        };
        self.leader_changed();
    }

    fn leader_changed(&self) {
        self.leader_changes.send_modify(|n| *n += 1);
    }

    async fn blocking<T: Send + 'static>(
        work: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| e.to_string())?
    }

    /// The loop: follower until the lease is free, then leader until it is
    /// lost, and so on, until `stopped`.
    async fn run(
        self: Arc<Self>,
        engines: Arc<dyn Engines>,
        mut engine: Engine,
        mut lease: Option<Arc<Lease>>,
        mut stopped: watch::Receiver<bool>,
    ) {
        loop {
            let pause = if lease.is_some() {
                self.timings.renew
            } else {
                self.timings.poll
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopped.changed() => break,
            }
            match lease.clone() {
                None => {
                    if let Some((l, leader)) = self.seek(&engines).await {
                        let old = std::mem::replace(&mut engine, leader);
                        Self::stop_engine(old, false).await;
                        lease = Some(l);
                    }
                }
                Some(l) => {
                    if !self.renew(&l).await {
                        l.lose("renewal refused or too late");
                        let follower = loop {
                            match Self::blocking({
                                let e = engines.clone();
                                move || e.follower()
                            })
                            .await
                            {
                                Ok(f) => break f,
                                Err(e) => {
                                    tracing::warn!(error = %e, "couldn't start the follower; retrying");
                                    tokio::time::sleep(self.timings.poll).await;
                                }
                            }
                        };
                        self.set(follower.router.clone(), None, false);
                        let old = std::mem::replace(&mut engine, follower);
                        Self::stop_engine(old, false).await;
                        lease = None;
                        metrics::counter!("veritrail_lease_lost_total").increment(1);
                        println!("veritrail: lost the sequencer lease; following");
                    }
                }
            }
        }
        // Shutting down: a leader finishes its queue and checkpoint under
        // the lease, then gives the lease up for the next frontend.
        let leading = lease.as_ref().is_some_and(|l| l.held());
        Self::stop_engine(engine, leading).await;
        if let Some(l) = lease {
            let (store, holder) = (self.store.clone(), self.holder.clone());
            let _ = Self::blocking(move || {
                store
                    .release_lease(&holder, l.token())
                    .map_err(|e| e.to_string())
            })
            .await;
        }
    }

    async fn stop_engine(engine: Engine, clean: bool) {
        let _ = tokio::task::spawn_blocking(move || (engine.stop)(clean)).await;
    }

    /// One follower round: notes who leads, or takes the lease when no one
    /// does and starts leading.
    async fn seek(&self, engines: &Arc<dyn Engines>) -> Option<(Arc<Lease>, Engine)> {
        let store = self.store.clone();
        let holder =
            match Self::blocking(move || store.lease_holder().map_err(|e| e.to_string())).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "couldn't read the sequencer lease");
                    return None;
                }
            };
        if let Some(h) = holder.filter(|h| h.holder != self.holder) {
            let leader = Some(h.address).filter(|a| !a.is_empty());
            let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
            if cur.leader != leader {
                cur.leader = leader;
                drop(cur);
                self.leader_changed();
            }
            return None;
        }
        // No live lease: the frontend forwarded to (if any) no longer
        // sequences; what waits on it is cut off now, not at its timeout,
        // and new requests get a 503 until a frontend takes over.
        self.current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .leader = None;
        self.leader_changed();
        let address = self.address();
        let sent = Instant::now();
        let (store, holder, ttl) = (self.store.clone(), self.holder.clone(), self.timings.ttl);
        let token = match Self::blocking(move || {
            store
                .acquire_lease(&holder, &address, ttl)
                .map_err(|e| e.to_string())
        })
        .await
        {
            Ok(Some(t)) => t,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "couldn't take the sequencer lease");
                return None;
            }
        };
        self.store.fence(Some(token));
        let lease = Arc::new(Lease::new(token, sent + ttl - self.timings.margin));
        let started = Instant::now();
        let built = Self::blocking({
            let (e, l) = (engines.clone(), lease.clone());
            move || e.leader(l)
        })
        .await;
        match built {
            Ok(engine) if lease.held() => {
                if let Some(st) = &engine.state
                    && let Err(e) = crate::api::record_first_keys(st).await
                {
                    tracing::warn!(error = %e.message(), "couldn't record the first admin key in the log");
                }
                self.set(engine.router.clone(), None, true);
                metrics::counter!("veritrail_lease_acquired_total").increment(1);
                println!(
                    "veritrail: sequencing under lease token {token} (took over in {} ms)",
                    started.elapsed().as_millis()
                );
                Some((lease, engine))
            }
            Ok(engine) => {
                tracing::warn!("the lease ran out while the leader started; following");
                Self::stop_engine(engine, false).await;
                None
            }
            Err(e) => {
                lease.lose("the leader could not start");
                tracing::error!(error = %e, "couldn't start sequencing; giving the lease up");
                let (store, holder) = (self.store.clone(), self.holder.clone());
                let _ = Self::blocking(move || {
                    store
                        .release_lease(&holder, token)
                        .map_err(|e| e.to_string())
                })
                .await;
                None
            }
        }
    }

    /// One renewal; `false` when the lease is gone (refused, or its local
    /// deadline passed before the database confirmed it).
    async fn renew(&self, lease: &Arc<Lease>) -> bool {
        let sent = Instant::now();
        let (store, holder, address, token, ttl) = (
            self.store.clone(),
            self.holder.clone(),
            self.address(),
            lease.token(),
            self.timings.ttl,
        );
        match Self::blocking(move || {
            store
                .renew_lease(&holder, &address, token, ttl)
                .map_err(|e| e.to_string())
        })
        .await
        {
            Ok(true) => lease.renewed(sent + ttl - self.timings.margin),
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(error = %e, "couldn't renew the sequencer lease");
                lease.held()
            }
        }
    }
}

impl Running {
    /// Stops the role loop: a leader drains its queue, signs its last
    /// checkpoint and releases the lease.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        drop(self.leadership);
    }
}

/// Reads a follower answers itself from the shared store.
fn served_locally(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && (!path.starts_with("/v1/")
            || path.starts_with("/v1/proof/")
            || matches!(
                path,
                "/v1/checkpoint" | "/v1/log" | "/v1/growth" | "/v1/openapi.json"
            ))
}

async fn dispatch(State(l): State<Arc<Leadership>>, req: Request) -> Response {
    let (router, leader, is_leader) = {
        let cur = l.read();
        (cur.router.clone(), cur.leader.clone(), cur.is_leader)
    };
    if is_leader || served_locally(req.method(), req.uri().path()) {
        return match router.oneshot(req).await {
            Ok(r) => r,
            Err(e) => match e {},
        };
    }
    forward(&l, leader, req).await
}

fn no_leader(why: &str) -> Response {
    metrics::counter!("veritrail_forward_refused_total").increment(1);
    ApiError::unavailable(
        format!(
            "{why}; a failover is under way, retry (events with an id are never appended twice)"
        ),
        1,
    )
    .into_response()
}

/// Headers that describe one connection, not the request or answer.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Sends `req` to the leader at `leader` and relays its answer.
async fn forward(l: &Leadership, leader: Option<String>, req: Request) -> Response {
    if req.headers().contains_key(&FORWARDED) {
        return no_leader("the frontend this request was forwarded to does not sequence");
    }
    let Some(base) = leader else {
        return no_leader("no frontend sequences right now");
    };
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, l.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::too_large(format!("the request body exceeds {} bytes", l.max_body))
                .into_response();
        }
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let mut headers = HeaderMap::new();
    copy_headers(&parts.headers, &mut headers);
    headers.insert(
        FORWARDED,
        l.holder
            .parse()
            .unwrap_or_else(|_| header::HeaderValue::from_static("1")),
    );
    let mut changes = l.leader_changes.subscribe();
    let request = l
        .client
        .request(
            parts.method,
            format!("{}{path}", base.trim_end_matches('/')),
        )
        .headers(headers)
        .body(body)
        .send();
    let sent = tokio::select! {
        sent = request => sent,
        _ = changes.changed() => {
            // Its outcome is unknown, as after a timeout: the writer
            // retries, and an event with an id is not appended twice.
            return no_leader("the sequencing frontend lost its lease before it answered");
        }
    };
    let answer = match sent {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, leader = %base, "couldn't forward a request to the sequencing frontend");
            return no_leader("the sequencing frontend did not answer");
        }
    };
    metrics::counter!("veritrail_forwarded_total").increment(1);
    let mut resp = Response::builder().status(answer.status());
    if let Some(h) = resp.headers_mut() {
        copy_headers(answer.headers(), h);
    }
    resp.body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|e| ApiError::internal(e).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_serve_public_reads_and_forward_the_rest() {
        for p in [
            "/checkpoint",
            "/tile/0/000",
            "/v1/proof/inclusion",
            "/v1/checkpoint",
            "/healthz",
            "/",
        ] {
            assert!(served_locally(&Method::GET, p), "{p}");
        }
        for p in ["/v1/events", "/v1/events/3", "/v1/export", "/v1/admin/keys"] {
            assert!(!served_locally(&Method::GET, p), "{p}");
        }
        assert!(!served_locally(&Method::POST, "/v1/events"));
        assert!(!served_locally(&Method::POST, "/checkpoint"));
    }

    #[test]
    fn lease_timings_are_configured_and_checked() {
        let d = LeaseTimings::configured(None, None).unwrap();
        assert_eq!(
            (d.ttl, d.renew),
            (Duration::from_secs(3), Duration::from_secs(1))
        );
        let t = LeaseTimings::configured(Some(10_000), Some(2_000)).unwrap();
        assert_eq!(
            (t.ttl, t.renew),
            (Duration::from_secs(10), Duration::from_secs(2))
        );
        for (ttl, renew) in [
            (None, Some(1_500)),
            (Some(2_000), None),
            (Some(500), Some(100)),
            (Some(100_000), None),
            (None, Some(50)),
        ] {
            assert!(
                LeaseTimings::configured(ttl, renew).is_err(),
                "{ttl:?} {renew:?}"
            );
        }
    }
}
