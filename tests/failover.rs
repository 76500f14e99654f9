//! Several frontends of one log on one PostgreSQL and one bucket (the real
//! binary, a throwaway PostgreSQL and s3s-fs from `scripts/lib/`), under a
//! steady load of writers spread over all of them:
//! - the leader is killed with SIGKILL ten times; another frontend takes
//!   over, and the takeover time (kill to the first acknowledged write
//!   after it) is printed and loosely bounded;
//! - a leader is paused (SIGSTOP) past its lease while another takes over,
//!   then resumed: it stops sequencing and acknowledges nothing stale.
//!
//! After each run, against a checkpoint signed by both log keys: the final
//! tree, rebuilt from its level-0 tiles, has that checkpoint's root and
//! every acknowledged event's leaf at its index; every checkpoint any
//! writer or poller saw verifies, no two of one size differ, and each is
//! the root of the final tree's first leaves of its size (so consistent
//! with the final one); the server's inclusion and consistency proofs
//! for a spread of those events and sizes verify; every id, submitted
//! again, keeps the index of its first acknowledgement.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::services::{ObjectServer, Postgres, remote_flags};
use common::{Server, create_key, event, get_json, hashes, log_verifiers, verify_checkpoint};
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};
use veritrail::merkle::{self, Hash};
use veritrail::note::NoteVerifier;
use veritrail::tiles::{self, Tile};

const ORIGIN: &str = "failover.test/log";
/// Writers, each with one request in flight.
const WRITERS: usize = 4;
/// Loose bound on a takeover, for slow machines (the target is 5 s).
const TAKEOVER_LIMIT: Duration = Duration::from_secs(15);
/// Times the leader is killed (the failover test).
const KILL_ROUNDS: usize = 10;
/// Requests the final check keeps in flight.
const PROOFS_IN_FLIGHT: usize = 16;
/// Inclusion proofs, and consistency proofs, the final check asks the
/// server for: the tree itself is checked whole, from its tiles.
const PROOFS_CHECKED: usize = 500;

/// One frontend's flags and environment, and the services they name.
struct Cluster {
    pg: Postgres,
    s3: ObjectServer,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        Cluster {
            pg: Postgres::start(),
            s3: ObjectServer::start(),
            _tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn dir(&self, name: &str) -> std::path::PathBuf {
        self._tmp.path().join(name)
    }

    /// Starts a frontend on data directory `name`; one that is not the
    /// first gets a copy of the first one's key files and master key (kept
    /// beside its data directory).
    fn start(&self, name: &str) -> Server {
        let dir = self.dir(name);
        let first = self.dir("a");
        if name != "a" && !dir.exists() {
            std::fs::create_dir(&dir).unwrap();
            for f in std::fs::read_dir(&first).unwrap() {
                let f = f.unwrap();
                if f.file_type().unwrap().is_file() {
                    std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
                }
            }
            std::fs::copy(
                self.dir("a.master.key"),
                self.dir(&format!("{name}.master.key")),
            )
            .unwrap();
        }
        let mut args = vec!["--origin".to_string(), ORIGIN.into()];
        args.extend(remote_flags(&self.pg, &self.s3));
        args.extend(["--checkpoint-interval-ms".into(), "100".into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env = self.s3.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Server::try_start_env(&dir, &args, &env)
            .unwrap_or_else(|e| panic!("frontend {name} did not start: {e}"))
    }

    /// The lease row: the leader's advertised URL and the token.
    async fn lease(&self) -> (Option<String>, i64) {
        let (client, conn) = tokio_postgres::connect(&self.pg.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let row = client
            .query_one(
                "SELECT CASE WHEN lease_expires_at >= now() THEN lease_address END, lease_token FROM vt_log",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    }

    /// Waits until some frontend holds the lease; its URL and token.
    async fn leader(&self) -> (String, i64) {
        let deadline = Instant::now() + TAKEOVER_LIMIT;
        loop {
            if let (Some(url), token) = self.lease().await
                && !url.is_empty()
            {
                return (url, token);
            }
            assert!(Instant::now() < deadline, "no frontend took the lease");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// An acknowledged event.
#[derive(Clone, Debug)]
struct Ack {
    id: String,
    /// The frontend that answered.
    via: String,
    index: u64,
    leaf_hash: Hash,
    at: Instant,
}

/// What the writers and pollers saw.
#[derive(Default)]
struct Seen {
    acks: Vec<Ack>,
    notes: Vec<String>,
    refused: usize,
}

/// The load: writers and a checkpoint poller over the live frontends.
struct Load {
    urls: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(urls: Vec<String>, key: &str) -> Load {
        let urls = Arc::new(Mutex::new(urls));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (urls, seen, stop, key) =
                (urls.clone(), seen.clone(), stop.clone(), key.to_string());
            tasks.push(tokio::spawn(async move {
                write(w, &urls, &seen, &stop, &key).await
            }));
        }
        let (u, s, st) = (urls.clone(), seen.clone(), stop.clone());
        tasks.push(tokio::spawn(async move { poll(&u, &s, &st).await }));
        Load {
            urls,
            seen,
            stop,
            tasks,
        }
    }

    fn set_urls(&self, urls: Vec<String>) {
        *self.urls.lock().unwrap() = urls;
    }

    /// Waits for an acknowledgement received after `since` from a frontend
    /// other than `gone`.
    async fn first_ack_after(&self, since: Instant, gone: &str) -> Instant {
        loop {
            if let Some(a) = self
                .seen
                .lock()
                .unwrap()
                .acks
                .iter()
                .find(|a| a.at > since && a.via != gone)
            {
                return a.at;
            }
            assert!(
                since.elapsed() < TAKEOVER_LIMIT * 2,
                "no write was acknowledged after the failover"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) -> Seen {
        self.stop.store(true, Ordering::Release);
        for t in self.tasks {
            t.await.unwrap();
        }
        Arc::try_unwrap(self.seen)
            .ok()
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

fn pick(urls: &Mutex<Vec<String>>, n: usize) -> Option<String> {
    let urls = urls.lock().unwrap();
    (!urls.is_empty()).then(|| urls[n % urls.len()].clone())
}

/// One writer: events with ids, each retried (on the next frontend) until
/// acknowledged; the acknowledgement and its checkpoint are kept.
async fn write(
    w: usize,
    urls: &Mutex<Vec<String>>,
    seen: &Mutex<Seen>,
    stop: &AtomicBool,
    key: &str,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut attempt = w;
    for n in 0.. {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let id = format!("w{w}-{n}");
        loop {
            // An id not acknowledged by the end is left out of the checks.
            if stop.load(Ordering::Acquire) {
                return;
            }
            attempt += 1;
            let Some(url) = pick(urls, attempt) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let sent = client
                .post(format!("{url}/v1/events?wait=checkpoint"))
                .bearer_auth(key)
                .json(&json!({ "events": [event(w * 1_000_000 + n, Some(id.clone()))] }))
                .send()
                .await;
            let answer = match sent {
                Ok(r) if r.status() == 200 => r.json::<Value>().await.ok(),
                Ok(r) => {
                    let status = r.status().as_u16();
                    let retry_after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    assert_eq!(status, 503, "a refused write is a 503: {body}");
                    let message = body["error"]["message"].as_str();
                    assert!(message.is_some(), "a 503 has a JSON error: {body}");
                    // A failover takes seconds: a refusal because of it says
                    // so; only a batch whose commit failed (its outcome
                    // unknown) asks for more.
                    let stored = message.is_some_and(|m| m.contains("stored durably"));
                    let expected = if stored { "5" } else { "1" };
                    assert_eq!(
                        retry_after.as_deref(),
                        Some(expected),
                        "Retry-After of a refused write: {body}"
                    );
                    None
                }
                Err(_) => None,
            };
            match answer {
                Some(a) => {
                    let e = &a["events"][0];
                    let mut s = seen.lock().unwrap();
                    s.acks.push(Ack {
                        id: id.clone(),
                        via: url.clone(),
                        index: e["index"].as_u64().unwrap(),
                        leaf_hash: Hash::from_base64(e["leaf_hash"].as_str().unwrap()).unwrap(),
                        at: Instant::now(),
                    });
                    s.notes.push(a["checkpoint"].as_str().unwrap().to_string());
                    break;
                }
                None => {
                    seen.lock().unwrap().refused += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Reads `/checkpoint` from every live frontend, all the time.
async fn poll(urls: &Mutex<Vec<String>>, seen: &Mutex<Seen>, stop: &AtomicBool) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    while !stop.load(Ordering::Acquire) {
        let all = urls.lock().unwrap().clone();
        for url in all {
            if let Ok(r) = client.get(format!("{url}/checkpoint")).send().await
                && r.status() == 200
                && let Ok(text) = r.text().await
            {
                seen.lock().unwrap().notes.push(text);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The checks of the module comment, against the frontend at `url`.
async fn check_log(url: &str, key: &str, verifiers: &[Box<dyn NoteVerifier>], seen: &Seen) {
    assert!(!seen.acks.is_empty(), "some writes were acknowledged");
    let last = seen.acks.iter().map(|a| a.index).max().unwrap();
    // A checkpoint covering every acknowledged event.
    let deadline = Instant::now() + Duration::from_secs(20);
    let fin = loop {
        let note =
            String::from_utf8(common::get_bytes(&format!("{url}/checkpoint")).await).unwrap();
        let cp = verify_checkpoint(&note, verifiers);
        if cp.size > last {
            break cp;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint covers leaf {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Every index acknowledged once.
    let mut by_index: BTreeMap<u64, &Ack> = BTreeMap::new();
    for a in &seen.acks {
        if let Some(other) = by_index.insert(a.index, a) {
            assert_eq!(other.id, a.id, "two ids acknowledged at index {}", a.index);
        }
    }
    // The final tree, leaf by leaf, from its level-0 tiles: each
    // acknowledged event's leaf at its index, the root the final
    // checkpoint signs, and the root of every size a checkpoint was seen
    // at, so that each of those is consistent with the final one.
    let mut roots: BTreeMap<u64, Hash> = BTreeMap::new();
    for note in &seen.notes {
        let cp = verify_checkpoint(note, verifiers);
        assert_eq!(cp.origin, ORIGIN);
        if let Some(root) = roots.insert(cp.size, cp.root) {
            assert_eq!(root, cp.root, "two checkpoints of size {} differ", cp.size);
        }
    }
    let leaves = leaf_hashes(url, fin.size).await;
    for a in &seen.acks {
        assert_eq!(
            leaves[a.index as usize], a.leaf_hash,
            "acknowledged event {} is not at {}",
            a.id, a.index
        );
    }
    let mut tree = merkle::CompactRange::new();
    let mut sizes = roots.iter().peekable();
    while let Some(&(&size, root)) = sizes.peek() {
        if size > fin.size {
            panic!("a checkpoint of size {size} beyond the final {}", fin.size);
        }
        if tree.size() == size {
            assert_eq!(
                tree.root(),
                *root,
                "checkpoint {size} forks from the final tree"
            );
            sizes.next();
        } else {
            tree.append(leaves[tree.size() as usize]);
        }
    }
    while tree.size() < fin.size {
        tree.append(leaves[tree.size() as usize]);
    }
    assert_eq!(tree.root(), fin.root, "the tiles make the final root");
    // The server's own proofs, for a spread of the acknowledged events and
    // of the sizes seen: each verifies.
    let fin = &fin;
    stream::iter(spread(&seen.acks, PROOFS_CHECKED))
        .map(|a| async move {
            let p = get_json(&format!(
                "{url}/v1/proof/inclusion?index={}&tree_size={}",
                a.index, fin.size
            ))
            .await;
            (a, p)
        })
        .buffer_unordered(PROOFS_IN_FLIGHT)
        .for_each(|(a, p)| {
            merkle::verify_inclusion(
                a.index,
                fin.size,
                &a.leaf_hash,
                &hashes(&p["audit_path"]),
                &fin.root,
            )
            .unwrap_or_else(|e| panic!("acknowledged event {} at {}: {e}", a.id, a.index));
            async {}
        })
        .await;
    let seen_sizes: Vec<(u64, Hash)> = roots
        .iter()
        .filter(|(size, _)| **size != 0)
        .map(|(s, r)| (*s, *r))
        .collect();
    stream::iter(spread(&seen_sizes, PROOFS_CHECKED))
        .map(|(size, root)| async move {
            let p = get_json(&format!(
                "{url}/v1/proof/consistency?first={size}&second={}",
                fin.size
            ))
            .await;
            (*size, root, p)
        })
        .buffer_unordered(PROOFS_IN_FLIGHT)
        .for_each(|(size, root, p)| {
            merkle::verify_consistency(size, fin.size, root, &fin.root, &hashes(&p["consistency"]))
                .unwrap_or_else(|e| {
                    panic!("checkpoint {size} is not consistent with {}: {e}", fin.size)
                });
            async {}
        })
        .await;
    // Every id again: its first index, as a duplicate.
    for chunk in seen.acks.chunks(100) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|a| {
                let (w, n) = a.id[1..].split_once('-').unwrap();
                let n = w.parse::<usize>().unwrap() * 1_000_000 + n.parse::<usize>().unwrap();
                event(n, Some(a.id.clone()))
            })
            .collect();
        // A lease can move meanwhile on a loaded machine: a refusal says
        // to retry after a second, as the load's writers do.
        let deadline = Instant::now() + Duration::from_secs(60);
        let (status, body) = loop {
            let (status, body) = common::post_events(url, key, "", events.clone()).await;
            if status != 503 || Instant::now() > deadline {
                break (status, body);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        assert_eq!(status, 200, "{body}");
        for (a, e) in chunk.iter().zip(body["events"].as_array().unwrap()) {
            assert_eq!(e["index"].as_u64(), Some(a.index), "id {} moved", a.id);
            assert_eq!(e["duplicate"], json!(true), "id {} appended twice", a.id);
        }
    }
    println!(
        "{} events acknowledged, {} refusals retried, {} checkpoints of {} sizes checked, final size {}",
        seen.acks.len(),
        seen.refused,
        seen.notes.len(),
        roots.len(),
        fin.size
    );
}

/// Every leaf hash of the tree of `size` at `url`, from its level-0 tiles.
async fn leaf_hashes(url: &str, size: u64) -> Vec<Hash> {
    let tiles: Vec<Tile> = tiles::tiles_for_size(size)
        .into_iter()
        .filter(|t| t.level == 0)
        .collect();
    let fetched: Vec<(Tile, Vec<u8>)> = stream::iter(tiles)
        .map(|t| async move {
            (
                t,
                common::get_bytes(&format!("{url}/{}", t.hash_path())).await,
            )
        })
        .buffered(PROOFS_IN_FLIGHT)
        .collect()
        .await;
    let mut leaves = Vec::with_capacity(size as usize);
    for (t, data) in fetched {
        leaves.extend(tiles::tile_hashes(&t, &data).unwrap_or_else(|e| panic!("{t:?}: {e}")));
    }
    assert_eq!(leaves.len() as u64, size);
    leaves
}

/// At most `n` of `items`, spread evenly over them, the last one included.
fn spread<T>(items: &[T], n: usize) -> impl Iterator<Item = &T> {
    let step = items.len().div_ceil(n).max(1);
    items
        .iter()
        .enumerate()
        .filter(move |(i, _)| i % step == 0 || *i + 1 == items.len())
        .map(|(_, x)| x)
}

fn signal(server: &Server, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &server.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

fn index_of(servers: &[Option<Server>], url: &str) -> usize {
    servers
        .iter()
        .position(|s| s.as_ref().is_some_and(|s| s.url == url))
        .unwrap_or_else(|| panic!("the leader {url} is none of the frontends"))
}

fn live_urls(servers: &[Option<Server>]) -> Vec<String> {
    servers.iter().flatten().map(|s| s.url.clone()).collect()
}

async fn writer_key(first: &Server) -> String {
    create_key(&first.url, &first.admin_key(), "failover-app", "writer").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_leader_killed_ten_times_under_load() {
    let cluster = Cluster::new();
    let names = ["a", "b", "c"];
    let mut servers: Vec<Option<Server>> = vec![Some(cluster.start("a"))];
    let first_url = servers[0].as_ref().unwrap().url.clone();
    let key = writer_key(servers[0].as_ref().unwrap()).await;
    let verifiers = log_verifiers(&get_json(&format!("{first_url}/v1/log")).await);
    servers.push(Some(cluster.start("b")));
    servers.push(Some(cluster.start("c")));
    let (leader, _) = cluster.leader().await;
    assert_eq!(leader, first_url, "the first frontend found the lease free");
    let load = Load::start(live_urls(&servers), &key);
    let mut takeovers = Vec::new();
    for round in 0..KILL_ROUNDS {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (leader, token) = cluster.leader().await;
        let i = index_of(&servers, &leader);
        let killed_at = Instant::now();
        servers[i].take().unwrap().kill();
        load.set_urls(live_urls(&servers));
        // An answer the killed leader sent just before the kill may still
        // reach a writer through a follower after it: the takeover is the
        // first acknowledgement once another frontend holds the lease.
        let deadline = Instant::now() + TAKEOVER_LIMIT * 2;
        let (next, next_token) = loop {
            let l = cluster.leader().await;
            if l.0 != leader {
                break l;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no frontend took over"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let acked = load
            .first_ack_after(
                killed_at.max(Instant::now() - Duration::from_millis(50)),
                &leader,
            )
            .await;
        assert_ne!(next, leader, "round {round}: another frontend leads");
        assert!(next_token > token, "round {round}: the token grew");
        let took = acked - killed_at;
        println!("round {round}: takeover in {} ms", took.as_millis());
        assert!(
            took < TAKEOVER_LIMIT,
            "round {round}: takeover took {took:?}"
        );
        takeovers.push(took);
        // The killed frontend comes back, as a follower.
        servers[i] = Some(cluster.start(names[i]));
        load.set_urls(live_urls(&servers));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = load.stop().await;
    // Checked through a follower: its reads come from the shared store.
    let (leader, _) = cluster.leader().await;
    let follower = live_urls(&servers)
        .into_iter()
        .find(|u| *u != leader)
        .unwrap();
    check_log(&follower, &key, &verifiers, &seen).await;
    println!(
        "takeover times (kill -9 to the next acknowledged write): {:?} ms",
        takeovers
            .iter()
            .map(Duration::as_millis)
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_leader_is_fenced_and_acknowledges_nothing_stale() {
    let cluster = Cluster::new();
    let a = cluster.start("a");
    let key = writer_key(&a).await;
    let verifiers = log_verifiers(&get_json(&format!("{}/v1/log", a.url)).await);
    let b = cluster.start("b");
    let (leader, token) = cluster.leader().await;
    assert_eq!(leader, a.url);
    let load = Load::start(vec![a.url.clone(), b.url.clone()], &key);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Paused under load, past its lease: requests to it wait, and so may
    // one of its commits, holding the coordination row.
    signal(&a, "-STOP");
    let paused_at = Instant::now();
    // New requests go to the frontend that answers, as a load balancer's
    // health check would send them; those already sent to the paused one
    // wait for it, and those it was forwarded are cut off once its lease
    // expires.
    load.set_urls(vec![b.url.clone()]);
    let (next, next_token) = cluster.leader().await;
    let deadline = Instant::now() + TAKEOVER_LIMIT * 2;
    let (next, next_token) = if next == a.url {
        loop {
            let l = cluster.leader().await;
            if l.0 != a.url {
                break l;
            }
            assert!(
                Instant::now() < deadline,
                "no frontend took over from the paused one"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        (next, next_token)
    };
    assert_eq!(next, b.url);
    assert!(next_token > token);
    let acked = load.first_ack_after(paused_at, &a.url).await;
    println!(
        "takeover from a paused leader: {} ms",
        (acked - paused_at).as_millis()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Resumed: it finds its lease gone, commits nothing and follows.
    signal(&a, "-CONT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a
        .output()
        .iter()
        .any(|l| l.contains("lost the sequencer lease"))
    {
        assert!(
            Instant::now() < deadline,
            "the resumed frontend kept leading: {:?}",
            a.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its writers are forwarded to the new leader from now on.
    load.set_urls(vec![a.url.clone(), b.url.clone()]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = load.stop().await;
    assert_eq!(
        cluster.leader().await.0,
        b.url,
        "the new leader keeps the lease"
    );
    check_log(&a.url, &key, &verifiers, &seen).await;
    let (status, body) = common::post_events(&a.url, &key, "", vec![event(7, None)]).await;
    assert_eq!(status, 200, "the resumed frontend forwards writes: {body}");
}
