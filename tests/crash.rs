//! Kill -9 at random moments under load, 20 times: every acknowledged event
//! is still there, at its index, with the same leaf; every checkpoint ever
//! published is consistent with the final tree.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{
    Server, committed_size, create_key, event, get_bytes, get_json, hashes, http, log_verifiers,
    verify_checkpoint,
};
use serde_json::{Value, json};
use veritrail::merkle;
use veritrail::tiles;

const ROUNDS: usize = 20;
const WRITERS: usize = 8;

/// A small deterministic generator; the seed is printed so a failure can be replayed.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[derive(Default, Clone)]
struct Seen {
    /// (app, id) → (index, leaf hash) for every acknowledged event.
    acked: BTreeMap<(String, String), (u64, String)>,
    /// Every checkpoint note observed.
    checkpoints: Vec<String>,
}

async fn load(
    url: String,
    key: String,
    app: String,
    round: usize,
    w: usize,
    seen: Arc<Mutex<Seen>>,
) {
    let client = http();
    for j in 0.. {
        let n = 1 + (j % 9);
        let ids: Vec<String> = (0..n).map(|k| format!("r{round}-w{w}-{j}-{k}")).collect();
        let events: Vec<Value> = ids
            .iter()
            .enumerate()
            .map(|(k, id)| event(j * 10 + k, Some(id.clone())))
            .collect();
        let wait = if j % 4 == 0 { "?wait=checkpoint" } else { "" };
        let resp = match client
            .post(format!("{url}/v1/events{wait}"))
            .bearer_auth(&key)
            .json(&json!({ "events": events }))
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) => return, // the server died: stop
        };
        if resp.status() != 200 {
            return;
        }
        let Ok(v) = resp.json::<Value>().await else {
            return;
        };
        let mut s = seen.lock().unwrap();
        for (r, id) in v["events"].as_array().unwrap().iter().zip(ids) {
            let leaf = r["leaf_hash"].as_str().unwrap().to_string();
            s.acked
                .insert((app.clone(), id), (r["index"].as_u64().unwrap(), leaf));
        }
        if let Some(cp) = v["checkpoint"].as_str() {
            s.checkpoints.push(cp.to_string());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_events_survive_kill_9() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("crash test seed {seed}");
    let mut rng = XorShift(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let first = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let admin = first.admin_key();
    let mut keys = Vec::new();
    for w in 0..WRITERS {
        keys.push((
            format!("app-{w}"),
            create_key(&first.url, &admin, &format!("app-{w}"), "writer").await,
        ));
    }
    let verifiers = log_verifiers(&get_json(&format!("{}/v1/log", first.url)).await);
    drop(first);

    let seen = Arc::new(Mutex::new(Seen::default()));
    for round in 0..ROUNDS {
        let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
        let url = server.url.clone();
        // Every event acknowledged before the last kill is still there.
        check_acked(&url, &seen, round).await;
        let mut tasks = Vec::new();
        for (w, (app, key)) in keys.iter().enumerate() {
            tasks.push(tokio::spawn(load(
                url.clone(),
                key.clone(),
                app.clone(),
                round,
                w,
                seen.clone(),
            )));
        }
        let poller = {
            let (url, seen) = (url.clone(), seen.clone());
            tokio::spawn(async move {
                let client = http();
                loop {
                    let Ok(r) = client.get(format!("{url}/checkpoint")).send().await else {
                        return;
                    };
                    let Ok(t) = r.text().await else { return };
                    seen.lock().unwrap().checkpoints.push(t);
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            })
        };
        let delay = Duration::from_millis(50 + rng.next() % 400);
        let started = Instant::now();
        tokio::time::sleep(delay).await;
        server.kill();
        for t in tasks {
            t.await.unwrap();
        }
        poller.abort();
        let _ = poller.await;
        println!(
            "round {round}: killed after {:?}, {} events acknowledged so far",
            started.elapsed(),
            seen.lock().unwrap().acked.len()
        );
    }

    // The final tree: everything acknowledged, every checkpoint consistent.
    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let url = server.url.clone();
    check_acked(&url, &seen, ROUNDS).await;
    // Wait until a checkpoint covers everything committed.
    let mut final_cp = verify_checkpoint(
        &String::from_utf8(get_bytes(&format!("{url}/checkpoint")).await).unwrap(),
        &verifiers,
    );
    for _ in 0..100 {
        let committed = committed_size(&url).await;
        if final_cp.size == committed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        final_cp = verify_checkpoint(
            &String::from_utf8(get_bytes(&format!("{url}/checkpoint")).await).unwrap(),
            &verifiers,
        );
    }
    let (acked, checkpoints) = {
        let s = seen.lock().unwrap();
        (s.acked.clone(), s.checkpoints.clone())
    };
    assert!(
        acked.len() > 100,
        "the load acknowledged events ({})",
        acked.len()
    );
    let mut distinct: Vec<&String> = checkpoints
        .iter()
        .filter(|c| !c.is_empty() && c.contains('\u{2014}'))
        .collect();
    distinct.sort();
    distinct.dedup();
    let client = http();
    for note in distinct {
        let cp = verify_checkpoint(note, &verifiers);
        assert!(
            cp.size <= final_cp.size,
            "a published checkpoint is beyond the final tree"
        );
        if cp.size == 0 {
            continue;
        }
        let p: Value = client
            .get(format!(
                "{url}/v1/proof/consistency?first={}&second={}",
                cp.size, final_cp.size
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        merkle::verify_consistency(
            cp.size,
            final_cp.size,
            &cp.root,
            &final_cp.root,
            &hashes(&p["consistency"]),
        )
        .unwrap_or_else(|e| {
            panic!(
                "checkpoint of size {} is not consistent with the final tree: {e}",
                cp.size
            )
        });
    }
    // Search finds every acknowledged event of an app, though no kill left
    // the server time to write its search index: each start re-derives the
    // index's newest part from the stored events.
    let auditor = create_key(&url, &server.admin_key(), "auditor", "auditor").await;
    for (app, _) in keys.iter().take(3) {
        let expected: BTreeSet<u64> = acked
            .iter()
            .filter(|((a, _), _)| a == app)
            .map(|(_, (index, _))| *index)
            .collect();
        let mut found = BTreeSet::new();
        let mut next = format!("{url}/v1/events?app={app}&limit=1000");
        loop {
            let page: Value = client
                .get(&next)
                .bearer_auth(&auditor)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            for e in page["events"].as_array().unwrap() {
                found.insert(e["index"].as_u64().unwrap());
            }
            match page["next_cursor"].as_str() {
                Some(c) => next = format!("{url}/v1/events?app={app}&limit=1000&cursor={c}"),
                None => break,
            }
        }
        let missing: Vec<&u64> = expected.difference(&found).collect();
        assert!(
            missing.is_empty(),
            "{app}: search misses {} acknowledged events, first {:?}",
            missing.len(),
            missing.first()
        );
    }
    // Replaying an acknowledged id appends nothing and returns the same index.
    let ((app, id), (index, leaf)) = acked
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    let key = &keys.iter().find(|(a, _)| *a == app).unwrap().1;
    let r: Value = client
        .post(format!("{url}/v1/events"))
        .bearer_auth(key)
        .json(&event(0, Some(id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["events"][0]["index"].as_u64(), Some(index));
    assert_eq!(r["events"][0]["leaf_hash"].as_str(), Some(leaf.as_str()));
    assert_eq!(r["events"][0]["duplicate"], json!(true));
}

/// Every acknowledged event is at its index with the same leaf hash.
async fn check_acked(url: &str, seen: &Arc<Mutex<Seen>>, round: usize) {
    let acked: Vec<(u64, String)> = seen.lock().unwrap().acked.values().cloned().collect();
    if acked.is_empty() {
        return;
    }
    let committed = committed_size(url).await;
    let mut bundles: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for (index, leaf) in acked {
        assert!(
            index < committed,
            "round {round}: acknowledged index {index} lost (tree has {committed})"
        );
        let b = index / 256;
        if let std::collections::btree_map::Entry::Vacant(slot) = bundles.entry(b) {
            let width = (committed - b * 256).min(256) as u16;
            let t = tiles::Tile {
                level: 0,
                index: b,
                width,
            };
            slot.insert(
                tiles::decode_bundle(&get_bytes(&format!("{url}/{}", t.entries_path())).await)
                    .unwrap(),
            );
        }
        let entry = &bundles[&b][(index % 256) as usize];
        assert_eq!(
            merkle::leaf_hash(entry).to_base64(),
            leaf,
            "round {round}: leaf {index} changed"
        );
    }
}
