//! `veritrail bench read`: read throughput of a running log, and of any
//! other HTTP server through the very same client.
//!
//! N connections (one task each, one request in flight, keep-alive on one
//! shared client) issue requests for D seconds after a warm-up. Every target
//! takes the same path: pick a URL, GET it, read the whole body, time it; so
//! the log's rates and those of a static file server (nginx) are comparable.
//! The log's targets are inclusion proofs of random leaves, consistency
//! proofs from random earlier sizes and random full hash tiles at one level,
//! all in the tree of the checkpoint read at the start; a plain target is a
//! list of URLs.
//!
//! Invariant: a wrong answer is never counted as served. Every
//! `verify_every`-th answer of a connection is checked with the crate's own
//! proof verification against the checkpoint's root: inclusion proofs
//! directly; consistency proofs and tiles against the roots and subtree
//! hashes of a few sizes and tiles established before the timed run, each
//! itself proved against the checkpoint. A wrong answer fails the run. The
//! checkpoint's signature is not checked here (`veritrail verify` does
//! that): it only fixes the tree the answers must agree with.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use veritrail::merkle::{self, Hash};
use veritrail::note::{Checkpoint, Note};
use veritrail::tiles::{TILE_WIDTH, Tile};
use veritrail::verify::{ConsistencyAnswer, InclusionAnswer};

use super::{BenchError, LatencySummary, XorShift, load_client, ms, per_second, process_cpu_time};

/// What one request reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `GET /v1/proof/inclusion?index=I&tree_size=S`, I uniform below S.
    Inclusion,
    /// `GET /v1/proof/consistency?first=A&second=S`, A uniform in 1..S.
    Consistency,
    /// `GET /tile/<L>/<N>`, a random full hash tile at level L.
    Tile(u8),
    /// One of the given URLs, uniformly.
    Url,
}

/// Hash tile levels whose full tiles a tree can have (a full tile at level
/// L covers 2^(8(L+1)) leaves, which must fit in a u64).
const MAX_TILE_LEVEL: u8 = 6;

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        match s {
            "inclusion" => Ok(Target::Inclusion),
            "consistency" => Ok(Target::Consistency),
            _ => s
                .strip_prefix("tile")
                .and_then(|l| l.parse::<u8>().ok())
                .filter(|&l| l <= MAX_TILE_LEVEL)
                .map(Target::Tile)
                .ok_or_else(|| {
                    format!("{s:?}: expected inclusion, consistency or tile0..tile{MAX_TILE_LEVEL}")
                }),
        }
    }
}

impl Target {
    /// The name in reports (and the prefix of its JSON fields).
    pub fn name(self) -> String {
        match self {
            Target::Inclusion => "inclusion".into(),
            Target::Consistency => "consistency".into(),
            Target::Tile(l) => format!("tile{l}"),
            Target::Url => "url".into(),
        }
    }
}

/// One `bench read` run.
#[derive(Clone, Debug)]
pub struct ReadOptions {
    /// The log's base URL (for every target but [`Target::Url`]).
    pub log: Option<String>,
    /// The mix: each request picks one of these uniformly (repeat one to weigh it).
    pub targets: Vec<Target>,
    /// The URLs of [`Target::Url`].
    pub urls: Vec<String>,
    /// Concurrent connections, one request in flight each.
    pub connections: usize,
    /// The measured time.
    pub duration: Duration,
    /// Time before it, not counted (connections open, caches warm).
    pub warmup: Duration,
    /// Check every n-th answer of each connection (1 checks all).
    pub verify_every: u64,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// What was measured for one target (or all together).
#[derive(Clone, Debug, Default)]
pub struct TargetReport {
    /// The target's name, or `all`.
    pub name: String,
    /// Successful answers within the measured time.
    pub requests: u64,
    /// Failed requests (transport errors, timeouts, statuses other than 2xx)
    /// during the whole run, warm-up included.
    pub errors: u64,
    /// Answers checked against the checkpoint, during the whole run.
    pub verified: u64,
    /// Answers that failed the check.
    pub wrong: u64,
    /// Body bytes of the counted answers.
    pub bytes: u64,
    /// Request → whole body, of the counted answers.
    pub latency: LatencySummary,
}

/// The outcome of a `bench read` run.
#[derive(Clone, Debug)]
pub struct ReadReport {
    /// The checkpoint's tree size, when the log was read.
    pub tree_size: Option<u64>,
    /// Each target of the mix, in the order given.
    pub targets: Vec<TargetReport>,
    /// All targets together.
    pub total: TargetReport,
    /// The measured time.
    pub elapsed: Duration,
    /// CPU time of the load generator over the whole run.
    pub client_cpu: Option<Duration>,
    /// The first wrong answer, described.
    pub first_wrong: Option<String>,
}

impl ReadReport {
    /// The report as one flat JSON object (for scripts): totals, then
    /// `<target>_requests_per_s`, `<target>_p50_ms`, … for each target.
    pub fn to_json(&self, opts: &ReadOptions) -> serde_json::Value {
        let secs = self.elapsed.as_secs_f64();
        let mut v = serde_json::json!({
            "mode": "read",
            "targets": self.targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(","),
            "connections": opts.connections,
            "tree_size": self.tree_size,
            "seconds": secs,
            "client_cpu_s": self.client_cpu.map(|c| c.as_secs_f64()),
        });
        let mut put = |prefix: &str, t: &TargetReport| {
            let fields = [
                ("requests", serde_json::json!(t.requests)),
                (
                    "requests_per_s",
                    serde_json::json!(per_second(t.requests, self.elapsed)),
                ),
                ("p50_ms", serde_json::json!(ms(t.latency.p50))),
                ("p99_ms", serde_json::json!(ms(t.latency.p99))),
                ("max_ms", serde_json::json!(ms(t.latency.max))),
                ("errors", serde_json::json!(t.errors)),
                ("verified", serde_json::json!(t.verified)),
                ("wrong_answers", serde_json::json!(t.wrong)),
                (
                    "bytes_per_answer",
                    serde_json::json!(t.bytes / t.requests.max(1)),
                ),
            ];
            for (k, val) in fields {
                v[format!("{prefix}{k}")] = val;
            }
        };
        put("", &self.total);
        for t in &self.targets {
            put(&format!("{}_", t.name), t);
        }
        v
    }

    /// A human-readable summary, one line per target.
    pub fn describe(&self, opts: &ReadOptions) -> String {
        let mut out = format!(
            "read: {} connections for {:.1} s{}\n",
            opts.connections,
            self.elapsed.as_secs_f64(),
            self.tree_size
                .map(|s| format!(", tree size {s}"))
                .unwrap_or_default(),
        );
        for t in self
            .targets
            .iter()
            .chain(std::iter::once(&self.total).filter(|_| self.targets.len() > 1))
        {
            out.push_str(&format!(
                "{:<12} {:>9.0} requests/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  {} B/answer  {} errors  {} verified, {} wrong\n",
                t.name,
                per_second(t.requests, self.elapsed),
                ms(t.latency.p50),
                ms(t.latency.p99),
                ms(t.latency.max),
                t.bytes / t.requests.max(1),
                t.errors,
                t.verified,
                t.wrong,
            ));
        }
        if let Some(w) = &self.first_wrong {
            out.push_str(&format!("WRONG ANSWER: {w}\n"));
        }
        if let Some(c) = self.client_cpu {
            out.push_str(&format!("load generator CPU: {:.2} s", c.as_secs_f64()));
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Before the timed run: the tree, and what sampled answers are checked against.

/// Sizes and tiles prepared per kind, so that a sampled answer is checked
/// without a request of its own.
const POOL: u64 = 16;

/// The tree every answer must agree with, and what the checks need.
struct Plan {
    base: String,
    size: u64,
    root: Hash,
    /// Earlier tree sizes with their proved roots (consistency checks).
    firsts: Vec<(u64, Hash)>,
    tiles: Vec<TileLevel>,
    urls: Vec<String>,
}

/// The full tiles of one level in the plan's tree.
struct TileLevel {
    level: u8,
    /// How many full tiles the level has.
    full: u64,
    /// A few of them, with the subtree hash each must make (proved).
    proved: Vec<(u64, Hash)>,
}

async fn get_typed<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, BenchError> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| BenchError::Transport(format!("{url}: {e}")))?;
    let status = resp.status();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| BenchError::Transport(format!("{url}: {e}")))?;
    if !status.is_success() {
        return Err(BenchError::Status {
            status: status.as_u16(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| BenchError::Answer(format!("{url}: {e}")))
}

fn wrong(what: impl std::fmt::Display) -> BenchError {
    BenchError::Answer(what.to_string())
}

/// The proved inclusion of leaf `index` in the tree of `size` with `root`.
async fn proved_inclusion(
    http: &reqwest::Client,
    base: &str,
    index: u64,
    size: u64,
    root: &Hash,
) -> Result<InclusionAnswer, BenchError> {
    let url = inclusion_url(base, index, size);
    let a: InclusionAnswer = get_typed(http, &url).await?;
    merkle::verify_inclusion(index, size, &a.leaf_hash, &a.audit_path, root)
        .map_err(|e| wrong(format!("{url}: {e}")))?;
    Ok(a)
}

fn inclusion_url(base: &str, index: u64, size: u64) -> String {
    format!("{base}/v1/proof/inclusion?index={index}&tree_size={size}")
}

fn consistency_url(base: &str, first: u64, second: u64) -> String {
    format!("{base}/v1/proof/consistency?first={first}&second={second}")
}

/// Leaves under one full tile at `level`: 2^(8(level+1)).
fn leaves_per_tile(level: u8) -> u32 {
    8 * (u32::from(level) + 1)
}

impl Plan {
    async fn new(http: &reqwest::Client, opts: &ReadOptions) -> Result<Plan, BenchError> {
        let mut plan = Plan {
            base: String::new(),
            size: 0,
            root: merkle::empty_root(),
            firsts: Vec::new(),
            tiles: Vec::new(),
            urls: opts.urls.clone(),
        };
        if opts.targets.iter().all(|t| *t == Target::Url) {
            return Ok(plan);
        }
        let base = opts
            .log
            .as_deref()
            .ok_or_else(|| BenchError::Options("the log's targets need --url".into()))?
            .trim_end_matches('/')
            .to_string();
        let text = http
            .get(format!("{base}/checkpoint"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| BenchError::Transport(format!("checkpoint: {e}")))?
            .bytes()
            .await
            .map_err(|e| BenchError::Transport(format!("checkpoint: {e}")))?;
        let note = Note::parse(&text).map_err(|e| wrong(format!("checkpoint: {e}")))?;
        let cp = Checkpoint::parse(note.text()).map_err(|e| wrong(format!("checkpoint: {e}")))?;
        if cp.size < 2 {
            return Err(BenchError::Options(format!(
                "the log holds {} leaves; proofs need at least 2",
                cp.size
            )));
        }
        let (size, root) = (cp.size, cp.root);
        let mut rng = XorShift::from_entropy()?;
        if opts.targets.contains(&Target::Consistency) {
            for _ in 0..POOL {
                let first = 1 + rng.below(size - 1);
                // The server's root of the earlier tree, from the inclusion
                // of its last leaf; the consistency proof then binds it to
                // the checkpoint's root (RFC 9162 §2.1.4.2).
                let url = inclusion_url(&base, first - 1, first);
                let a: InclusionAnswer = get_typed(http, &url).await?;
                let first_root = merkle::root_from_inclusion_proof(
                    first - 1,
                    first,
                    &a.leaf_hash,
                    &a.audit_path,
                )
                .map_err(|e| wrong(format!("{url}: {e}")))?;
                let url = consistency_url(&base, first, size);
                let c: ConsistencyAnswer = get_typed(http, &url).await?;
                merkle::verify_consistency(first, size, &first_root, &root, &c.consistency)
                    .map_err(|e| wrong(format!("{url}: {e}")))?;
                plan.firsts.push((first, first_root));
            }
        }
        for level in opts.targets.iter().filter_map(|t| match t {
            Target::Tile(l) => Some(*l),
            _ => None,
        }) {
            if plan.tiles.iter().any(|t| t.level == level) {
                continue;
            }
            let span = leaves_per_tile(level);
            let full = size >> span;
            if full == 0 {
                return Err(BenchError::Options(format!(
                    "a tree of {size} leaves has no full tile at level {level}"
                )));
            }
            let mut proved = Vec::new();
            for _ in 0..POOL.min(full) {
                let index = rng.below(full);
                // The subtree under a full tile is complete, so the first
                // `span` hashes of the path of its first leaf stay inside it.
                let a = proved_inclusion(http, &base, index << span, size, &root).await?;
                let inside = a.audit_path.get(..span as usize).ok_or_else(|| {
                    wrong(format!("a short inclusion path for leaf {}", index << span))
                })?;
                let node = merkle::root_from_inclusion_proof(0, 1 << span, &a.leaf_hash, inside)
                    .map_err(|e| wrong(format!("subtree of tile {level}/{index}: {e}")))?;
                proved.push((index, node));
            }
            plan.tiles.push(TileLevel {
                level,
                full,
                proved,
            });
        }
        plan.base = base;
        plan.size = size;
        plan.root = root;
        Ok(plan)
    }

    /// The URL of one request for `target`, and what its answer must be
    /// checked against when `check` (which then picks from the prepared pools).
    fn request(&self, target: Target, rng: &mut XorShift, check: bool) -> (String, Expect) {
        let pick = |rng: &mut XorShift, n: usize| rng.below(n as u64) as usize;
        match target {
            Target::Inclusion => {
                let index = rng.below(self.size);
                let url = inclusion_url(&self.base, index, self.size);
                let expect = if check {
                    Expect::Inclusion(index)
                } else {
                    Expect::Nothing
                };
                (url, expect)
            }
            Target::Consistency if check => {
                let (first, first_root) = self.firsts[pick(rng, self.firsts.len())];
                (
                    consistency_url(&self.base, first, self.size),
                    Expect::Consistency(first, first_root),
                )
            }
            Target::Consistency => {
                let first = 1 + rng.below(self.size - 1);
                let url = consistency_url(&self.base, first, self.size);
                (url, Expect::Nothing)
            }
            Target::Tile(level) => {
                let tiles = self
                    .tiles
                    .iter()
                    .find(|t| t.level == level)
                    .expect("every tile level of the mix was prepared");
                let (index, expect) = if check {
                    let (index, node) = tiles.proved[pick(rng, tiles.proved.len())];
                    (index, Expect::Tile(node))
                } else {
                    (rng.below(tiles.full), Expect::Nothing)
                };
                let path = Tile::full(level, index).hash_path();
                (format!("{}/{path}", self.base), expect)
            }
            Target::Url => (
                self.urls[pick(rng, self.urls.len())].clone(),
                Expect::Nothing,
            ),
        }
    }

    /// Checks a sampled answer; `Err` describes what is wrong with it.
    fn check(&self, expect: &Expect, body: &[u8]) -> Result<(), String> {
        match *expect {
            Expect::Nothing => Ok(()),
            Expect::Inclusion(index) => {
                let a: InclusionAnswer =
                    serde_json::from_slice(body).map_err(|e| format!("not a proof: {e}"))?;
                if (a.leaf_index, a.tree_size) != (index, self.size) {
                    return Err(format!(
                        "leaf {} in size {} answered for leaf {index} in size {}",
                        a.leaf_index, a.tree_size, self.size
                    ));
                }
                merkle::verify_inclusion(index, self.size, &a.leaf_hash, &a.audit_path, &self.root)
                    .map_err(|e| format!("inclusion of leaf {index}: {e}"))
            }
            Expect::Consistency(first, first_root) => {
                let c: ConsistencyAnswer =
                    serde_json::from_slice(body).map_err(|e| format!("not a proof: {e}"))?;
                merkle::verify_consistency(
                    first,
                    self.size,
                    &first_root,
                    &self.root,
                    &c.consistency,
                )
                .map_err(|e| format!("consistency {first} -> {}: {e}", self.size))
            }
            Expect::Tile(node) => {
                if body.len() != TILE_WIDTH as usize * 32 {
                    return Err(format!("a full tile of {} bytes", body.len()));
                }
                let hashes: Vec<Hash> = body
                    .chunks_exact(32)
                    .filter_map(|c| Hash::from_slice(c).ok())
                    .collect();
                if merkle::root_from_leaf_hashes(&hashes) != node {
                    return Err("a tile whose hashes do not make the proved subtree".into());
                }
                Ok(())
            }
        }
    }
}

/// What a sampled answer must agree with.
enum Expect {
    Nothing,
    Inclusion(u64),
    Consistency(u64, Hash),
    Tile(Hash),
}

// ---------------------------------------------------------------------------
// The timed run.

/// What one connection saw, per target of the mix.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    requests: u64,
    errors: u64,
    verified: u64,
    wrong: u64,
    bytes: u64,
    first_wrong: Option<String>,
}

impl Tally {
    fn absorb(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.requests += other.requests;
        self.errors += other.errors;
        self.verified += other.verified;
        self.wrong += other.wrong;
        self.bytes += other.bytes;
        self.first_wrong = self.first_wrong.take().or(other.first_wrong);
    }
}

struct Shared {
    http: reqwest::Client,
    plan: Plan,
    targets: Vec<Target>,
    verify_every: u64,
    measure_from: Instant,
    until: Instant,
}

/// Reads from the log (or the URLs) with `opts.connections` connections for
/// `opts.warmup + opts.duration` and reports what the measured part served.
pub async fn read(opts: &ReadOptions) -> Result<ReadReport, BenchError> {
    if opts.connections == 0 || opts.targets.is_empty() || opts.duration.is_zero() {
        return Err(BenchError::Options(
            "connections, targets and duration must not be zero".into(),
        ));
    }
    if opts.targets.contains(&Target::Url) && opts.urls.is_empty() {
        return Err(BenchError::Options("no URLs to read".into()));
    }
    let http = load_client(opts.connections, opts.timeout)?;
    let plan = Plan::new(&http, opts).await?;
    let tree_size = (plan.size > 0).then_some(plan.size);
    let cpu_before = process_cpu_time();
    let started = Instant::now();
    let shared = Arc::new(Shared {
        http,
        plan,
        targets: opts.targets.clone(),
        verify_every: opts.verify_every.max(1),
        measure_from: started + opts.warmup,
        until: started + opts.warmup + opts.duration,
    });
    let mut tasks = Vec::with_capacity(opts.connections);
    for _ in 0..opts.connections {
        let (shared, rng) = (shared.clone(), XorShift::from_entropy()?);
        tasks.push(tokio::spawn(connection(shared, rng)));
    }
    let mut per_target: Vec<Tally> = opts.targets.iter().map(|_| Tally::default()).collect();
    for t in tasks {
        let tallies = t
            .await
            .map_err(|e| BenchError::Transport(format!("connection task: {e}")))?;
        for (sum, one) in per_target.iter_mut().zip(tallies) {
            sum.absorb(one);
        }
    }
    let client_cpu = process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    Ok(summarise(opts, per_target, tree_size, client_cpu))
}

/// Folds the tallies of the mix's entries into one report per distinct
/// target (a target listed twice is one row) and a total.
fn summarise(
    opts: &ReadOptions,
    per_target: Vec<Tally>,
    tree_size: Option<u64>,
    client_cpu: Option<Duration>,
) -> ReadReport {
    let mut merged: Vec<(Target, Tally)> = Vec::new();
    for (target, tally) in opts.targets.iter().zip(per_target) {
        match merged.iter_mut().find(|(t, _)| t == target) {
            Some((_, sum)) => sum.absorb(tally),
            None => merged.push((*target, tally)),
        }
    }
    let mut total = TargetReport {
        name: "all".into(),
        ..TargetReport::default()
    };
    let mut all_latencies = Vec::new();
    let mut first_wrong = None;
    let mut targets = Vec::new();
    for (target, t) in merged {
        total.requests += t.requests;
        total.errors += t.errors;
        total.verified += t.verified;
        total.wrong += t.wrong;
        total.bytes += t.bytes;
        all_latencies.extend_from_slice(&t.latencies);
        first_wrong = first_wrong.or(t.first_wrong);
        targets.push(TargetReport {
            name: target.name(),
            requests: t.requests,
            errors: t.errors,
            verified: t.verified,
            wrong: t.wrong,
            bytes: t.bytes,
            latency: LatencySummary::from_samples(t.latencies),
        });
    }
    total.latency = LatencySummary::from_samples(all_latencies);
    ReadReport {
        tree_size,
        targets,
        total,
        elapsed: opts.duration,
        client_cpu,
        first_wrong,
    }
}

/// One connection: requests back to back until the run ends. A request
/// counts when it started after the warm-up and ended before the end.
async fn connection(sh: Arc<Shared>, mut rng: XorShift) -> Vec<Tally> {
    let mut tallies: Vec<Tally> = sh.targets.iter().map(|_| Tally::default()).collect();
    let mut n = 0u64;
    loop {
        let started = Instant::now();
        if started >= sh.until {
            return tallies;
        }
        let which = rng.below(sh.targets.len() as u64) as usize;
        let check = n.is_multiple_of(sh.verify_every);
        n += 1;
        let (url, expect) = sh.plan.request(sh.targets[which], &mut rng, check);
        let answer = match sh.http.get(&url).send().await {
            Ok(resp) if resp.status().is_success() => resp.bytes().await.ok(),
            Ok(resp) => {
                // Read the body so that the connection stays usable.
                let _ = resp.bytes().await;
                None
            }
            Err(_) => None,
        };
        let ended = Instant::now();
        let tally = &mut tallies[which];
        let Some(body) = answer else {
            tally.errors += 1;
            continue;
        };
        if !matches!(expect, Expect::Nothing) {
            tally.verified += 1;
            if let Err(why) = sh.plan.check(&expect, &body) {
                tally.wrong += 1;
                tally.first_wrong.get_or_insert(format!("{url}: {why}"));
                continue;
            }
        }
        if started >= sh.measure_from && ended <= sh.until {
            tally.requests += 1;
            tally.bytes += body.len() as u64;
            tally.latencies.push(ended - started);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_by_name() {
        assert_eq!("inclusion".parse(), Ok(Target::Inclusion));
        assert_eq!("consistency".parse(), Ok(Target::Consistency));
        assert_eq!("tile1".parse(), Ok(Target::Tile(1)));
        assert!("tile7".parse::<Target>().is_err());
        assert!("tiles".parse::<Target>().is_err());
        for t in [Target::Inclusion, Target::Consistency, Target::Tile(0)] {
            assert_eq!(t.name().parse(), Ok(t));
        }
    }

    #[test]
    fn proof_checks_accept_right_answers_only() {
        let mut tree = merkle::MemoryTree::new();
        for i in 0u32..300 {
            tree.push(merkle::leaf_hash(&i.to_be_bytes()));
        }
        let plan = Plan {
            base: String::new(),
            size: 300,
            root: tree.root(),
            firsts: Vec::new(),
            tiles: Vec::new(),
            urls: Vec::new(),
        };
        let path = merkle::inclusion_proof(7, 300, &tree).unwrap();
        let mut answer = serde_json::json!({
            "leaf_index": 7,
            "tree_size": 300,
            "leaf_hash": tree.leaves()[7],
            "audit_path": path,
        });
        let body = |v: &serde_json::Value| serde_json::to_vec(v).unwrap();
        // Only sampled requests are checked (and counted as checked).
        let mut rng = XorShift::new(1);
        let (_, unchecked) = plan.request(Target::Inclusion, &mut rng, false);
        assert!(matches!(unchecked, Expect::Nothing));
        let (_, checked) = plan.request(Target::Inclusion, &mut rng, true);
        assert!(matches!(checked, Expect::Inclusion(i) if i < 300));
        assert_eq!(plan.check(&Expect::Inclusion(7), &body(&answer)), Ok(()));
        assert!(plan.check(&Expect::Inclusion(8), &body(&answer)).is_err());
        answer["leaf_hash"] = serde_json::json!(tree.leaves()[8]);
        assert!(plan.check(&Expect::Inclusion(7), &body(&answer)).is_err());

        let mut small = merkle::MemoryTree::new();
        for &leaf in &tree.leaves()[..100] {
            small.push(leaf);
        }
        let proof = merkle::consistency_proof(100, 300, &tree).unwrap();
        let answer = serde_json::json!({ "first": 100, "second": 300, "consistency": proof });
        let right = Expect::Consistency(100, small.root());
        assert_eq!(plan.check(&right, &body(&answer)), Ok(()));
        let other = Expect::Consistency(100, tree.root());
        assert!(plan.check(&other, &body(&answer)).is_err());
        assert!(plan.check(&right, b"not json").is_err());
    }

    #[test]
    fn a_tile_check_accepts_the_proved_subtree_only() {
        let leaves: Vec<Hash> = (0u32..256)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect();
        let node = merkle::root_from_leaf_hashes(&leaves);
        let plan = Plan {
            base: String::new(),
            size: 256,
            root: node,
            firsts: Vec::new(),
            tiles: Vec::new(),
            urls: Vec::new(),
        };
        let mut body: Vec<u8> = leaves.iter().flat_map(|h| h.as_bytes().to_vec()).collect();
        assert_eq!(plan.check(&Expect::Tile(node), &body), Ok(()));
        body[100] ^= 1;
        assert!(plan.check(&Expect::Tile(node), &body).is_err());
        assert!(plan.check(&Expect::Tile(node), &body[..64]).is_err());
    }
}
