//! A real full disk: the log's data directory on a small tmpfs, filled up
//! while writers append. The batch that cannot be stored is answered 503;
//! after space is freed and the server restarted, fsck finds the store
//! consistent and every acknowledged event is there, at its index.
//!
//! Needs permission to mount a tmpfs (root in the sandbox); without it the
//! test says why on stdout and does nothing.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Server, committed_size, create_key, event, get_json, http, veritrail};
use serde_json::{Value, json};

/// Unmounts the tmpfs when the test ends, however it ends.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("couldn't run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0u64;
    while f.write_all(&chunk).is_ok() {
        written += chunk.len() as u64;
    }
    let _ = f.sync_all();
    written
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_batch_with_503_and_loses_nothing_acknowledged() {
    let base = tempfile::tempdir().unwrap();
    let mnt = base.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let _tmpfs = match Tmpfs::mount(&mnt, "32m") {
        Ok(t) => t,
        Err(why) => {
            println!("SKIPPED a_full_disk_fails_the_batch_with_503: {why}");
            return;
        }
    };
    let data = mnt.join("data");
    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    let writer = create_key(&server.url, &server.admin_key(), "app-a", "writer").await;
    // The log's own records (its keys) come before the test's events.
    let size0 = committed_size(&server.url).await;
    let client = http();

    // Some events while there is room.
    let mut acked: Vec<(u64, String)> = Vec::new();
    let mut n = 0usize;
    let post = |first: usize, count: usize, url: String, key: String| {
        let client = client.clone();
        async move {
            let events: Vec<Value> = (first..first + count)
                .map(|i| event(i, Some(format!("ev-{i}"))))
                .collect();
            let resp = client
                .post(format!("{url}/v1/events"))
                .bearer_auth(key)
                .json(&json!({ "events": events }))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            (status, retry_after, resp.json::<Value>().await.unwrap())
        }
    };
    for _ in 0..5 {
        let (status, _, v) = post(n, 20, server.url.clone(), writer.clone()).await;
        assert_eq!(status, 200, "{v}");
        for e in v["events"].as_array().unwrap() {
            acked.push((
                e["index"].as_u64().unwrap(),
                e["leaf_hash"].as_str().unwrap().to_string(),
            ));
        }
        n += 20;
    }

    // Fill the disk, then append until the store cannot take a batch.
    let filler = mnt.join("filler");
    let filled = fill(&filler);
    println!("filled the tmpfs with {filled} bytes");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refused = None;
    while Instant::now() < deadline {
        let (status, retry_after, v) = post(n, 50, server.url.clone(), writer.clone()).await;
        n += 50;
        match status {
            200 => {
                for e in v["events"].as_array().unwrap() {
                    acked.push((
                        e["index"].as_u64().unwrap(),
                        e["leaf_hash"].as_str().unwrap().to_string(),
                    ));
                }
            }
            503 => {
                assert!(retry_after, "a 503 says when to retry: {v}");
                assert_eq!(v["error"]["code"], "unavailable", "{v}");
                refused = Some(v);
                break;
            }
            other => panic!("a full disk gave {other}: {v}"),
        }
    }
    let refused = refused.expect("the store never ran out of space");
    println!(
        "after {} acknowledged events the full disk answered 503: {refused}",
        acked.len()
    );
    // The server is still up and answers reads, but takes no more writes
    // (sled refuses every write after one it could not make durable) and
    // says it needs a restart.
    let cp = get_json(&format!("{}/v1/checkpoint", server.url)).await;
    let acked_size = size0 + acked.len() as u64;
    assert!(cp["tree_size"].as_u64().unwrap() <= acked_size);
    let (status, _, v) = post(n, 1, server.url.clone(), writer.clone()).await;
    assert_eq!(status, 503, "{v}");
    let health = http()
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503);
    let health: Value = health.json().await.unwrap();
    assert!(
        health["problems"].to_string().contains("storage failure"),
        "{health}"
    );

    // Free the space, restart, check.
    std::fs::remove_file(&filler).unwrap();
    let status = server.stop();
    println!("the server stopped with {status}");
    let out = veritrail(&["fsck".as_ref(), data.as_os_str()], &[]);
    assert_eq!(out.code, 0, "fsck after a full disk: {}", out.all());
    let server = Server::start(&data, &["--checkpoint-interval-ms", "50"]);
    // The restarted log signs a checkpoint over what was committed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let size = loop {
        let size = get_json(&format!("{}/v1/checkpoint", server.url)).await["tree_size"]
            .as_u64()
            .unwrap();
        if size >= acked_size || Instant::now() > deadline {
            break size;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(size >= acked_size, "{size} < {acked_size}");
    for (index, leaf) in &acked {
        let p = get_json(&format!(
            "{}/v1/proof/inclusion?index={index}&tree_size={size}",
            server.url
        ))
        .await;
        assert_eq!(p["leaf_hash"].as_str().unwrap(), leaf, "leaf {index}");
    }
    // And it appends again.
    let (status, _, v) = post(n, 10, server.url.clone(), writer.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["events"][0]["index"].as_u64().unwrap(), size);
    assert!(server.stop().success());
}
