//! `veritrail ship` end to end, with real processes: the agent and the
//! server are killed with SIGKILL at random points, ten rounds, while a
//! writer appends to one file rotated by rename and another rotated by
//! truncation (once the agent delivered it). At the end every valid line is
//! in the log exactly once (the tree holds exactly that many leaves, and
//! the exported events are exactly the lines written), every refused line
//! is in the dead-letter file with the server's reason, and the agent's
//! last verified checkpoint verifies with the log's keys.
//!
//! Also the agent's durable writes failing, in process: a state file or a
//! dead-letter file that cannot be written stops the agent with the state
//! as it was, and a restart delivers everything exactly once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, binary, committed_size, create_key, create_key_for_app, get_json};
use serde_json::{Value, json};
use veritrail::api::SearchParams;
use veritrail::client::Client;
use veritrail::note::{CheckpointPolicy, parse_verifier_key};
use veritrail::ship::state::Faults;
use veritrail::ship::{self, Config};

/// A small xorshift, seeded from the clock and printed, so a failing run
/// can be repeated with `SHIP_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Line `n`: the tests' valid event `n` (resource id `rec-<n>`), or
/// (every 97th) one the server refuses.
fn line(n: u64) -> String {
    if n % 97 == 50 {
        return json!({"action": "x", "actor": {"id": "", "type": "user"}, "n": n}).to_string();
    }
    common::event(n as usize, None).to_string()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn vkeys(url: &str) -> Vec<String> {
    let log = futures_block(get_json(&format!("{url}/v1/log")));
    vec![
        log["verifier_keys"]["ecdsa"].as_str().unwrap().to_string(),
        log["verifier_keys"]["ed25519"]
            .as_str()
            .unwrap()
            .to_string(),
    ]
}

fn tree_size(url: &str) -> u64 {
    futures_block(get_json(&format!("{url}/v1/checkpoint")))["tree_size"]
        .as_u64()
        .unwrap()
}

fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

struct Agent {
    child: Child,
}

impl Agent {
    fn start(url: &str, key: &str, vkeys: &[String], logs: &Path, dir: &Path, once: bool) -> Agent {
        let mut cmd = Command::new(binary());
        cmd.args(["ship", "--url", url, "--key", key]);
        for v in vkeys {
            cmd.args(["--vkey", v]);
        }
        cmd.arg("--include").arg(logs.join("a.log*"));
        cmd.arg("--include").arg(logs.join("b.log"));
        cmd.arg("--dir").arg(dir);
        cmd.args(["--batch-lines", "50", "--in-flight", "16"]);
        if once {
            cmd.arg("--exit-at-eof");
        }
        let child = cmd
            .env("VERITRAIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Agent { child }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent's state file.
fn read_state(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap()
}

/// The delivered offset of the file last seen at `path`, from the state file.
fn delivered(dir: &Path, path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("state.json")).ok()?;
    let state: Value = serde_json::from_str(&text).ok()?;
    state["files"]
        .as_object()?
        .values()
        .filter(|f| f["path"].as_str() == path.to_str())
        .filter_map(|f| f["offset"].as_u64())
        .max()
}

#[test]
fn exactly_once_through_ten_rounds_of_kill_9() {
    let seed = std::env::var("SHIP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("SHIP_SEED={seed}");
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let logs = tmp.path().join("logs");
    let agent_dir = tmp.path().join("agent");
    std::fs::create_dir_all(&logs).unwrap();
    let flags = ["--checkpoint-interval-ms", "50"];
    let mut server = Server::start(&data, &flags);
    let url = server.url.clone();
    let addr = server.addr().to_string();
    let admin = server.admin_key();
    let writer = futures_block(create_key_for_app(
        &url, &admin, "shipper", "writer", "shipper",
    ));
    let vkeys = vkeys(&url);
    // What the log committed before (its own key records included): the
    // signed checkpoint may not cover that yet.
    let size0 = futures_block(committed_size(&url));

    let a = logs.join("a.log");
    let b = logs.join("b.log");
    let mut n = 0u64;
    let mut written: BTreeMap<String, u64> = BTreeMap::new();
    let mut refused = 0u64;
    let mut rotations = 0;
    let mut truncations = 0;
    let mut write = |path: &Path, n: &mut u64, written: &mut BTreeMap<String, u64>| {
        append(path, &format!("{}\n", line(*n)));
        if *n % 97 == 50 {
            refused += 1;
        } else {
            written.insert(format!("rec-{n}"), *n);
        }
        *n += 1;
    };
    let started = Instant::now();
    for round in 0..10 {
        let mut agent = Agent::start(&url, &writer, &vkeys, &logs, &agent_dir, false);
        let kill_after = Duration::from_millis(200 + rng.below(900));
        let round_start = Instant::now();
        while round_start.elapsed() < kill_after {
            for _ in 0..(5 + rng.below(20)) {
                let target = if rng.below(4) == 0 { &b } else { &a };
                write(target, &mut n, &mut written);
            }
            if rng.below(8) == 0 {
                rotations += 1;
                std::fs::rename(&a, logs.join(format!("a.log.{rotations}"))).unwrap();
            }
            // Truncate b.log only once the agent delivered all of it, as
            // copytruncate does after the copy.
            let len = std::fs::metadata(&b).map(|m| m.len()).unwrap_or(0);
            if len > 0 && delivered(&agent_dir, &b) == Some(len) {
                truncations += 1;
                std::fs::File::create(&b).unwrap();
            }
            std::thread::sleep(Duration::from_millis(rng.below(40)));
        }
        let restart = |server: Server| {
            server.kill();
            let data_arg = data.to_str().unwrap();
            let args = [
                "serve", "--data", data_arg, "--listen", &addr, flags[0], flags[1],
            ];
            Server::run(&args, &data)
        };
        match rng.below(3) {
            0 => {
                let _ = agent.child.kill();
            }
            1 => server = restart(server),
            _ => {
                let _ = agent.child.kill();
                server = restart(server);
            }
        }
        drop(agent);
        println!(
            "round {round}: {n} lines written, {rotations} renames, {truncations} truncations"
        );
    }

    // The writer stops; the agent delivers the rest and exits.
    let agent = Agent::start(&url, &writer, &vkeys, &logs, &agent_dir, true);
    let out = agent_output(agent, Duration::from_secs(60));
    assert!(out.0, "the last agent run failed: {}", out.1);
    println!("{} in {:?}", out.1.trim(), started.elapsed());

    // Exactly once: the tree grew by one leaf per valid line, no more (no
    // auditor read has appended an audit record yet).
    assert_eq!(tree_size(&url) - size0, written.len() as u64);
    // ... and they are exactly the lines written.
    let auditor = futures_block(create_key(&url, &admin, "auditor", "auditor"));
    let query = SearchParams {
        app: Some("shipper".into()),
        limit: Some(100_000),
        ..SearchParams::default()
    };
    let client = Client::new(&url, Some(auditor)).unwrap();
    let bundle = String::from_utf8(futures_block(client.export(&query)).unwrap()).unwrap();
    let mut found = BTreeSet::new();
    for l in bundle.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        if v["type"] == "event" {
            let id = v["event"]["resource"]["id"].as_str().unwrap().to_string();
            let n = written[&id];
            let want: Value = serde_json::from_str(&line(n)).unwrap();
            let got = &v["event"];
            assert!(got["id"].as_str().unwrap().starts_with("ship-"), "{got}");
            for field in [
                "actor", "action", "resource", "subject", "purpose", "context",
            ] {
                assert_eq!(got[field], want[field], "{field} of {got}");
            }
            assert!(found.insert(id), "{l} twice");
        }
    }
    assert_eq!(found.len(), written.len());

    // Every refused line is in the dead-letter file with the server's
    // reason (a crash between the dead letter and the state may repeat one).
    let dead = std::fs::read_to_string(agent_dir.join("dead-letter.jsonl")).unwrap();
    let mut dead_lines = BTreeSet::new();
    for l in dead.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["status"], 400, "{v}");
        assert!(!v["reason"].as_str().unwrap().is_empty(), "{v}");
        dead_lines.insert((v["identity"].to_string(), v["offset"].as_u64()));
    }
    assert_eq!(dead_lines.len() as u64, refused);

    // The agent's last verified checkpoint verifies with the log's keys.
    let state = read_state(&agent_dir);
    let note = state["checkpoint"].as_str().unwrap();
    let accepted = policy(&vkeys).check(note.as_bytes(), None).unwrap();
    assert!(accepted.checkpoint.size >= written.len() as u64);
    drop(server);
}

/// Waits for the agent to exit (at most `limit`): success and stdout.
fn agent_output(mut agent: Agent, limit: Duration) -> (bool, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            let mut out = String::new();
            let mut err = String::new();
            use std::io::Read as _;
            agent
                .child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            agent
                .child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.success(), format!("{out}{err}"));
        }
        assert!(Instant::now() < deadline, "the agent did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn policy(vkeys: &[String]) -> CheckpointPolicy<'static> {
    CheckpointPolicy::new(
        vkeys
            .iter()
            .map(|v| parse_verifier_key(v).unwrap())
            .collect(),
    )
}

/// Runs the agent in process over `logs` until it delivered everything or failed.
async fn run_once(
    url: &str,
    key: &str,
    vkeys: &[String],
    logs: &Path,
    dir: &Path,
    faults: Option<Faults>,
) -> Result<ship::Stats, ship::ShipError> {
    let mut cfg = Config::new(vec![logs.join("*.log")], dir.to_path_buf());
    cfg.batch_lines = 10;
    cfg.in_flight = 2;
    cfg.exit_at_eof = true;
    cfg.faults = faults;
    let client = Client::new(url, Some(key.to_string())).unwrap();
    ship::run(cfg, client, policy(vkeys), |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_state_and_dead_letter_writes_stop_the_agent_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &["--checkpoint-interval-ms", "20"],
    );
    let url = server.url.clone();
    let writer = create_key_for_app(&url, &server.admin_key(), "faulty", "writer", "faulty").await;
    let log = get_json(&format!("{url}/v1/log")).await;
    let vkeys = vec![
        log["verifier_keys"]["ecdsa"].as_str().unwrap().to_string(),
        log["verifier_keys"]["ed25519"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut text = String::new();
    let mut valid = 0;
    for n in 0..100 {
        text.push_str(&line(n));
        text.push('\n');
        valid += u64::from(n % 97 != 50);
    }
    std::fs::write(logs.join("app.log"), &text).unwrap();
    let dir: PathBuf = tmp.path().join("agent");
    let run = |faults| run_once(&url, &writer, &vkeys, &logs, &dir, faults);
    let size0 = committed_size(&url).await;

    // The third state write fails: the agent stops, the state stays at the second.
    let err = run(Some(Faults::after(Some(2), None))).await.unwrap_err();
    assert!(err.to_string().contains("state.json"), "{err}");
    assert!(err.to_string().contains("injected"), "{err}");
    let state = read_state(&dir);
    let offsets: Vec<u64> = state["files"]
        .as_object()
        .unwrap()
        .values()
        .map(|f| f["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets.len(), 1);
    assert!(offsets[0] < text.len() as u64);

    // The dead-letter write fails: the agent stops before moving past the
    // refused line (line 50, in the sixth batch of ten). The first run may
    // have written that dead letter already (it applies every answered
    // batch before its state write fails); the failed write adds nothing.
    let dead_before = std::fs::read_to_string(dir.join("dead-letter.jsonl")).unwrap();
    let err = run(Some(Faults::after(None, Some(0)))).await.unwrap_err();
    assert!(err.to_string().contains("dead-letter.jsonl"), "{err}");
    let state = read_state(&dir);
    let offset = state["files"].as_object().unwrap().values().next().unwrap()["offset"]
        .as_u64()
        .unwrap();
    let line_50 = text
        .lines()
        .take(50)
        .map(|l| l.len() as u64 + 1)
        .sum::<u64>();
    assert!(offset <= line_50, "{offset} > {line_50}");
    assert_eq!(
        std::fs::read_to_string(dir.join("dead-letter.jsonl")).unwrap(),
        dead_before
    );

    // Without faults everything arrives, exactly once.
    let stats = run(None).await.unwrap();
    assert_eq!(stats.dead_letters, 1);
    let size = |cp: Value| cp["tree_size"].as_u64().unwrap() - size0;
    assert_eq!(size(get_json(&format!("{url}/v1/checkpoint")).await), valid);
    // One refused line (written twice if the first run wrote it before its
    // state write failed, as a crash there would).
    let dead = std::fs::read_to_string(dir.join("dead-letter.jsonl")).unwrap();
    let refused: BTreeSet<(String, u64)> = dead
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["identity"].to_string(), v["offset"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(refused.len(), 1, "{dead}");
    // And a run with nothing new to send changes nothing.
    let again = run(None).await.unwrap();
    assert_eq!((again.appended, again.batches), (0, 0));
    assert_eq!(size(get_json(&format!("{url}/v1/checkpoint")).await), valid);
}

/// Journal export entries for lines `from..to` (one a second from a fixed
/// time), plus, after the first line, an entry with no MESSAGE and one whose
/// MESSAGE is not JSON.
fn journal_export(from: u64, to: u64) -> String {
    let mut out = String::new();
    let mut entry = |n: u64, fields: &str| {
        out.push_str(&format!(
            "__REALTIME_TIMESTAMP={}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\nSYSLOG_IDENTIFIER=audit-app\n{fields}\n",
            1_700_000_000_000_000 + n * 1_000_000,
            1_000 + n * 1_000_000,
        ));
    };
    for n in from..to {
        entry(n, &format!("MESSAGE={}\n", line(n)));
        if n == from {
            entry(n, "PRIORITY=6\n");
            entry(n, "MESSAGE=not json at all\n");
        }
    }
    out
}

/// A real journal file in `dir` named `name`, written by
/// `scripts/lib/journal-file.sh` from [`journal_export`].
fn journal_file(dir: &Path, name: &str, from: u64, to: u64) {
    let export = dir.join(format!("{name}.export"));
    std::fs::write(&export, journal_export(from, to)).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/lib/journal-file.sh"))
        .arg(&export)
        .arg(dir.join(format!("{name}.journal")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "making a journal file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(export).unwrap();
}

/// The cursors of the journal files in `dir`, in journal order, as journalctl reads them.
fn journal_cursors(dir: &Path) -> Vec<String> {
    let out = Command::new("journalctl")
        .arg(format!("--directory={}", dir.display()))
        .args(["-o", "json", "--output-fields=MESSAGE"])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["__CURSOR"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The journald source against real journal files read by a real
/// `journalctl` (no journald runs here): the first run stops when its
/// third state write fails, the restart delivers the rest exactly once,
/// a journal file added later (as journald's rotation does) is delivered
/// from the saved cursor on, entries that are not events are dead-lettered
/// with their cursor, and an event's id is the one its cursor gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journald_entries_arrive_once_from_the_saved_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &["--checkpoint-interval-ms", "20"],
    );
    let url = server.url.clone();
    let writer =
        create_key_for_app(&url, &server.admin_key(), "journal", "writer", "journal").await;
    let vkeys = {
        let log = get_json(&format!("{url}/v1/log")).await;
        vec![
            log["verifier_keys"]["ecdsa"].as_str().unwrap().to_string(),
            log["verifier_keys"]["ed25519"]
                .as_str()
                .unwrap()
                .to_string(),
        ]
    };
    let journal = tmp.path().join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    journal_file(&journal, "a", 0, 120);
    let dir = tmp.path().join("agent");
    let run = |faults: Option<Faults>| {
        let mut cfg = Config::new(Vec::new(), dir.clone());
        cfg.journal = Some(ship::journal::Config {
            args: vec![format!("--directory={}", journal.display())],
            ..Default::default()
        });
        cfg.batch_lines = 10;
        cfg.in_flight = 4;
        cfg.exit_at_eof = true;
        cfg.faults = faults;
        let client = Client::new(&url, Some(writer.clone())).unwrap();
        ship::run(cfg, client, policy(&vkeys), |_| {})
    };
    let size = || async {
        get_json(&format!("{url}/v1/checkpoint")).await["tree_size"]
            .as_u64()
            .unwrap()
    };
    let size0 = committed_size(&url).await;
    let valid = |from: u64, to: u64| (from..to).filter(|n| n % 97 != 50).count() as u64;

    let err = run(Some(Faults::after(Some(2), None))).await.unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    let cursor = read_state(&dir)["journal_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let cursors = journal_cursors(&journal);
    assert!(cursors.contains(&cursor) && cursors.last() != Some(&cursor));

    let stats = run(None).await.unwrap();
    assert!(stats.appended + stats.duplicates > 0);
    assert_eq!(size().await - size0, valid(0, 120));
    assert_eq!(
        read_state(&dir)["journal_cursor"].as_str(),
        cursors.last().map(String::as_str)
    );
    let dead = std::fs::read_to_string(dir.join("dead-letter.jsonl")).unwrap();
    let dead: BTreeMap<String, Value> = dead
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|d| (d["identity"].as_str().unwrap().to_owned(), d))
        .collect();
    assert_eq!(dead.len(), 3, "{dead:?}");
    assert!(
        dead.values()
            .any(|d| d["reason"].as_str().unwrap().contains("no MESSAGE"))
    );
    assert!(dead.values().any(|d| {
        d["reason"]
            .as_str()
            .unwrap()
            .contains("not one JSON event object")
    }));
    assert!(dead.values().any(|d| d["status"] == 400));

    // Rotation: a new file with later entries; only they are sent.
    journal_file(&journal, "b", 120, 150);
    let stats = run(None).await.unwrap();
    assert_eq!((stats.appended, stats.duplicates), (valid(120, 150), 0));
    assert_eq!(size().await - size0, valid(0, 150));

    // The event of the last entry has the id its cursor gives: sent again
    // with that id, the log answers with the original.
    let last = journal_cursors(&journal).pop().unwrap();
    let mut again = serde_json::from_str::<Value>(&line(149)).unwrap();
    again["id"] = ship::journal::event_id(&last).into();
    let client = Client::new(&url, Some(writer.clone())).unwrap();
    let verifier = veritrail::client::ReceiptVerifier::new(policy(&vkeys), None);
    let sent = client
        .submit(
            again,
            veritrail::client::Wait::Checkpoint,
            &veritrail::client::Retry::default(),
            &verifier,
        )
        .await
        .unwrap();
    assert!(sent.receipts[0].duplicate);
    assert_eq!(size().await - size0, valid(0, 150));
}
