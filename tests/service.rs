//! End to end through the real binary: many concurrent writers, then every
//! promise the log makes is checked from the outside — signatures, inclusion
//! of every event, consistency of every checkpoint seen, the root from the
//! served tiles (with our code and with an independent implementation),
//! and idempotency.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{
    Server, call, committed_size, create_key, event, get_bytes, get_json, hashes, http,
    log_verifiers, verify_checkpoint,
};
use reqwest::Method;
use serde_json::{Value, json};
use veritrail::event::LeafRecord;
use veritrail::merkle::{self, Hash, NodeId, SubtreeSource};
use veritrail::tiles;

const WRITERS: usize = 32;
const EVENTS_PER_WRITER: usize = 625; // 32 × 625 = 20,000

#[derive(Clone, Debug)]
struct Ack {
    app: String,
    id: Option<String>,
    index: u64,
    leaf_hash: String,
    commitment: String,
    duplicate: bool,
}

async fn post_events(url: &str, key: &str, events: Vec<Value>) -> Vec<Value> {
    let body = if events.len() == 1 {
        events[0].clone()
    } else {
        json!({ "events": events })
    };
    let (status, v) = call(Method::POST, &format!("{url}/v1/events"), key, Some(body)).await;
    assert_eq!(status, 200, "submit failed: {v}");
    v["events"].as_array().unwrap().clone()
}

/// One writer: sends its events in requests of 1, 7, 25 and 50 events; every
/// fifth event carries an idempotency id; then re-sends some ids.
async fn writer(url: String, key: String, app: String, w: usize) -> Vec<Ack> {
    let sizes = [1usize, 7, 25, 50];
    let mut acks = Vec::new();
    let mut sent = 0;
    let mut round = 0;
    while sent < EVENTS_PER_WRITER {
        let n = sizes[round % sizes.len()].min(EVENTS_PER_WRITER - sent);
        round += 1;
        let ids: Vec<Option<String>> = (sent..sent + n)
            .map(|i| (i % 5 == 0).then(|| format!("w{w}-e{i}")))
            .collect();
        let events = (sent..sent + n)
            .zip(&ids)
            .map(|(i, id)| event(w * 10_000 + i, id.clone()))
            .collect();
        for (r, id) in post_events(&url, &key, events).await.into_iter().zip(ids) {
            acks.push(Ack {
                app: app.clone(),
                id,
                index: r["index"].as_u64().unwrap(),
                leaf_hash: r["leaf_hash"].as_str().unwrap().to_string(),
                commitment: r["commitment"].as_str().unwrap().to_string(),
                duplicate: r["duplicate"].as_bool().unwrap(),
            });
        }
        sent += n;
    }
    // Replays: one single, and a batch holding the same id twice.
    let replay = vec![
        event(0, Some(format!("w{w}-e0"))),
        event(5, Some(format!("w{w}-e5"))),
        event(5, Some(format!("w{w}-e5"))),
    ];
    for r in post_events(&url, &key, replay.clone())
        .await
        .into_iter()
        .zip(replay)
    {
        let (r, e) = r;
        acks.push(Ack {
            app: app.clone(),
            id: e["id"].as_str().map(str::to_string),
            index: r["index"].as_u64().unwrap(),
            leaf_hash: r["leaf_hash"].as_str().unwrap().to_string(),
            commitment: r["commitment"].as_str().unwrap().to_string(),
            duplicate: r["duplicate"].as_bool().unwrap(),
        });
    }
    acks
}

/// Subtree hashes from tiles fetched over HTTP.
struct FetchedTiles(HashMap<(u8, u64), Vec<u8>>);

impl SubtreeSource for FetchedTiles {
    type Error = std::io::Error;
    fn subtree_hashes(&self, nodes: &[NodeId]) -> Result<Vec<Hash>, Self::Error> {
        nodes
            .iter()
            .map(|n| {
                let (level, index, offset, count) = tiles::node_location(*n);
                let tile = self
                    .0
                    .get(&(level, index))
                    .ok_or_else(|| std::io::Error::other(format!("no tile {level}/{index}")))?;
                let hashes: Vec<Hash> = tile[offset * 32..(offset + count) * 32]
                    .chunks(32)
                    .map(|c| Hash::from_slice(c).unwrap())
                    .collect();
                Ok(merkle::root_from_leaf_hashes(&hashes))
            })
            .collect()
    }
}

/// tlog_tiles (a port of Go's sumdb tlog) reading our C2SP tiles: it knows
/// Go's paths, which carry the tile height.
struct GoTileReader<'a>(&'a HashMap<String, Vec<u8>>);

impl tlog_tiles::tile::TileReader for GoTileReader<'_> {
    fn height(&self) -> u8 {
        8
    }
    fn read_tiles(
        &self,
        tiles: &[tlog_tiles::tile::Tile],
    ) -> Result<Vec<Vec<u8>>, tlog_tiles::tlog::Error> {
        tiles
            .iter()
            .map(|t| {
                let c2sp = format!("tile/{}", t.path().strip_prefix("tile/8/").unwrap());
                self.0
                    .get(&c2sp)
                    .cloned()
                    .ok_or(tlog_tiles::tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
    fn save_tiles(&self, _: &[tlog_tiles::tile::Tile], _: &[Vec<u8>]) {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_events_from_32_writers_all_prove() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &dir.path().join("data"),
        &["--checkpoint-interval-ms", "100"],
    );
    let url = server.url.clone();
    let admin = server.admin_key();
    let log = get_json(&format!("{url}/v1/log")).await;
    let verifiers = log_verifiers(&log);

    // Watch checkpoints while the load runs.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (url, stop) = (url.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen: Vec<String> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let note =
                    String::from_utf8(get_bytes(&format!("{url}/checkpoint")).await).unwrap();
                if seen.last() != Some(&note) {
                    seen.push(note);
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            seen
        })
    };

    // The keys first: the log records each (after its first admin key), so
    // the writers' events are the `events` leaves from `first` on.
    let mut keys = Vec::new();
    for w in 0..WRITERS {
        let app = format!("app-{w}");
        keys.push((create_key(&url, &admin, &app, "writer").await, app));
    }
    let first = committed_size(&url).await;
    let mut tasks = Vec::new();
    for (w, (key, app)) in keys.into_iter().enumerate() {
        tasks.push(tokio::spawn(writer(url.clone(), key, app, w)));
    }
    let mut acks = Vec::new();
    for t in tasks {
        acks.extend(t.await.unwrap());
    }
    let events = (WRITERS * EVENTS_PER_WRITER) as u64;
    let total = first + events;

    // Every fresh event has its own index; together they are first..total.
    let fresh: Vec<&Ack> = acks.iter().filter(|a| !a.duplicate).collect();
    assert_eq!(fresh.len() as u64, events, "every event appended once");
    let mut by_index: BTreeMap<u64, &Ack> = BTreeMap::new();
    for a in &fresh {
        assert!(
            by_index.insert(a.index, a).is_none(),
            "index {} given twice",
            a.index
        );
    }
    assert_eq!(
        by_index.keys().copied().collect::<Vec<_>>(),
        (first..total).collect::<Vec<_>>()
    );
    // Every replay points at the original leaf and appends nothing.
    let originals: HashMap<(&str, &str), &Ack> = fresh
        .iter()
        .filter_map(|a| a.id.as_deref().map(|id| ((a.app.as_str(), id), *a)))
        .collect();
    let replays: Vec<&Ack> = acks.iter().filter(|a| a.duplicate).collect();
    assert_eq!(replays.len(), WRITERS * 3);
    for r in replays {
        let o = originals[&(r.app.as_str(), r.id.as_deref().unwrap())];
        assert_eq!(
            (r.index, &r.leaf_hash, &r.commitment),
            (o.index, &o.leaf_hash, &o.commitment)
        );
    }

    // Wait for the checkpoint that covers everything.
    let mut cp_note = String::new();
    for _ in 0..200 {
        cp_note = String::from_utf8(get_bytes(&format!("{url}/checkpoint")).await).unwrap();
        if verify_checkpoint(&cp_note, &verifiers).size == total {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = watcher.await.unwrap();
    if seen.last() != Some(&cp_note) {
        seen.push(cp_note.clone());
    }
    let cp = verify_checkpoint(&cp_note, &verifiers);
    assert_eq!(cp.size, total);
    assert_eq!(
        get_json(&format!("{url}/v1/checkpoint")).await["root_hash"],
        json!(cp.root.to_base64())
    );

    // The root from the served tiles, with our code...
    let mut fetched = HashMap::new();
    let mut by_path = HashMap::new();
    for t in tiles::tiles_for_size(total) {
        let data = get_bytes(&format!("{url}/{}", t.hash_path())).await;
        assert_eq!(data.len(), usize::from(t.width) * 32, "{}", t.hash_path());
        by_path.insert(t.hash_path(), data.clone());
        fetched.insert((t.level, t.index), data);
    }
    let tiles_src = FetchedTiles(fetched);
    assert_eq!(
        merkle::tree_root(total, &tiles_src).unwrap(),
        cp.root,
        "root from tiles"
    );
    // ...and with tlog_tiles, which authenticates every tile against the root.
    let go_reader = GoTileReader(&by_path);
    let go_root = tlog_tiles::tlog::Hash(*cp.root.as_bytes());
    let thr = tlog_tiles::tile::TileHashReader::new(total, go_root, &go_reader);
    assert_eq!(tlog_tiles::tlog::tree_hash(total, &thr).unwrap(), go_root);

    // Every leaf in the entry bundles hashes to its tile hash and commits to
    // what its writer was told.
    for bundle_index in 0..total.div_ceil(256) {
        let width = (total - bundle_index * 256).min(256) as u16;
        let t = tiles::Tile {
            level: 0,
            index: bundle_index,
            width,
        };
        let entries =
            tiles::decode_bundle(&get_bytes(&format!("{url}/{}", t.entries_path())).await).unwrap();
        assert_eq!(entries.len(), usize::from(width));
        for (i, entry) in entries.iter().enumerate() {
            let index = bundle_index * 256 + i as u64;
            let leaf = merkle::leaf_hash(entry);
            let tile_hash = tiles_src
                .subtree_hashes(&[NodeId { level: 0, index }])
                .unwrap()[0];
            assert_eq!(leaf, tile_hash);
            let record = LeafRecord::parse(entry).unwrap();
            let Some(ack) = by_index.get(&index) else {
                assert!(index < first, "leaf {index} was told to no writer");
                assert_eq!(record.app, "veritrail", "the log's own record");
                continue;
            };
            assert_eq!(leaf.to_base64(), ack.leaf_hash);
            assert_eq!(record.app, ack.app);
            assert_eq!(record.commitment.to_hex(), ack.commitment);
        }
    }

    // Every served inclusion proof verifies against the checkpoint (and a
    // sample agrees with tlog_tiles' proofs).
    let client = http();
    let mut proof_tasks = tokio::task::JoinSet::new();
    let indices: Vec<u64> = (0..total).collect();
    for chunk in indices.chunks(total as usize / 16) {
        let (chunk, url, client, root) = (chunk.to_vec(), url.clone(), client.clone(), cp.root);
        proof_tasks.spawn(async move {
            for index in chunk {
                let p: Value = client
                    .get(format!(
                        "{url}/v1/proof/inclusion?index={index}&tree_size={total}"
                    ))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let leaf = Hash::from_base64(p["leaf_hash"].as_str().unwrap()).unwrap();
                let path = hashes(&p["audit_path"]);
                merkle::verify_inclusion(index, total, &leaf, &path, &root)
                    .unwrap_or_else(|e| panic!("inclusion proof of {index} fails: {e}"));
            }
        });
    }
    while let Some(r) = proof_tasks.join_next().await {
        r.unwrap();
    }
    for index in [0, 1, 255, 256, 4097, total - 1] {
        let ours = merkle::inclusion_proof(index, total, &tiles_src).unwrap();
        let theirs = tlog_tiles::tlog::prove_record(total, index, &thr).unwrap();
        assert_eq!(
            ours.iter().map(|h| h.0).collect::<Vec<_>>(),
            theirs.iter().map(|h| h.0).collect::<Vec<_>>()
        );
    }
    // Lookup by leaf hash (base64url).
    let a = by_index[&4242];
    let b64url = a
        .leaf_hash
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string();
    let p = get_json(&format!(
        "{url}/v1/proof/inclusion?hash={b64url}&tree_size={total}"
    ))
    .await;
    assert_eq!(p["leaf_index"], json!(4242));

    // Consistency between every pair of successive checkpoints seen.
    let sizes: Vec<(u64, Hash)> = seen
        .iter()
        .map(|n| {
            let c = verify_checkpoint(n, &verifiers);
            (c.size, c.root)
        })
        .collect();
    assert!(
        sizes.len() >= 3,
        "several checkpoints were published during the load ({})",
        sizes.len()
    );
    for pair in sizes.windows(2) {
        let ((a, ra), (b, rb)) = (pair[0], pair[1]);
        assert!(a <= b, "checkpoint sizes never shrink");
        let p = get_json(&format!("{url}/v1/proof/consistency?first={a}&second={b}")).await;
        let proof: Vec<Hash> = p["consistency"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| Hash::from_base64(h.as_str().unwrap()).unwrap())
            .collect();
        if a == 0 {
            assert!(proof.is_empty());
            continue;
        }
        merkle::verify_consistency(a, b, &ra, &rb, &proof)
            .unwrap_or_else(|e| panic!("consistency {a}->{b} fails: {e}"));
        if a < b {
            let theirs = tlog_tiles::tlog::prove_tree(total, a, &thr).unwrap();
            let ours = merkle::consistency_proof(a, total, &tiles_src).unwrap();
            assert_eq!(
                ours.iter().map(|h| h.0).collect::<Vec<_>>(),
                theirs.iter().map(|h| h.0).collect::<Vec<_>>()
            );
        }
    }

    // A restart keeps everything: same origin, keys, size and root.
    let data = server.data.clone();
    assert!(server.stop().success(), "graceful shutdown exits 0");
    let again = Server::start(&data, &[]);
    let cp2 = verify_checkpoint(
        &String::from_utf8(get_bytes(&format!("{}/checkpoint", again.url)).await).unwrap(),
        &verifiers,
    );
    assert_eq!((cp2.size, cp2.root), (cp.size, cp.root));
}
