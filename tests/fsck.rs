//! `veritrail fsck` through the real binary: a log the server wrote is
//! clean; one flipped byte in any kind of stored object is found and named
//! (exit 1); a log held by a running server is refused (exit 2).
//!
//! Bytes are flipped with sled itself while the server is stopped, using
//! the backend's key layout (one-byte prefixes, see the sled store), or in
//! the files that hold full tiles, bundles and body chunks (`db/objects`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Server, binary, create_key, event, submit};

/// Two full tiles, a partial one, and a partial level-1 tile.
const EVENTS: usize = 600;

fn fsck(data: &Path) -> Output {
    Command::new(binary())
        .arg("fsck")
        .arg(data)
        .env_remove("VERITRAIL_MASTER_KEY")
        .env_remove("VERITRAIL_MASTER_KEY_FILE")
        .output()
        .unwrap()
}

/// fsck with the master key file of the log, to open sealed events.
fn fsck_with_key(data: &Path, master_key: &Path) -> Output {
    Command::new(binary())
        .arg("fsck")
        .arg(data)
        .arg("--master-key-file")
        .arg(master_key)
        .env_remove("VERITRAIL_MASTER_KEY")
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Writes a log of `EVENTS` events (half with ids) through the server and
/// stops it; returns its size (the events and the log's own records of
/// its keys).
async fn write_log(data: &Path) -> u64 {
    let server = Server::start(data, &["--checkpoint-interval-ms", "50"]);
    let writer = create_key(&server.url, &server.admin_key(), "app-a", "writer").await;
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(50) {
        let events: Vec<_> = chunk
            .iter()
            .map(|&i| event(i, i.is_multiple_of(2).then(|| format!("id-{i}"))))
            .collect();
        submit(&server.url, &writer, events).await;
    }
    let size = common::committed_size(&server.url).await;
    assert!(server.stop().success());
    size
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(rest);
    k
}

fn index_key(prefix: u8, index: u64) -> Vec<u8> {
    key(prefix, &index.to_be_bytes())
}

/// What a case does to the value under its key.
#[derive(Clone, Copy)]
enum Damage {
    /// Flips bit 0 of byte `at` (from the end when negative).
    Flip(isize),
    /// Flips a byte of the key store's leaf block (not a database entry).
    KeyBlock,
    /// Flips bit 0 of byte `at` (from the end when negative) of the blob
    /// file whose path below `db/objects` is the case's key.
    FlipFile(isize),
    /// Cuts the blob file to half its length, as a torn write would.
    TearFile,
    /// Removes the blob file.
    RemoveFile,
}

fn damage(data: &Path, key: &[u8], how: Damage) {
    let file = data
        .join("db/objects")
        .join(String::from_utf8_lossy(key).as_ref());
    match how {
        Damage::FlipFile(at) => {
            let mut bytes = std::fs::read(&file).unwrap();
            let at = if at < 0 {
                bytes.len() - at.unsigned_abs()
            } else {
                at as usize
            };
            bytes[at] ^= 1;
            std::fs::write(&file, bytes).unwrap();
        }
        Damage::TearFile => {
            let bytes = std::fs::read(&file).unwrap();
            std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        }
        Damage::RemoveFile => std::fs::remove_file(&file).unwrap(),
        Damage::Flip(at) => common::flip_stored_byte(data, key, at),
        Damage::KeyBlock => {
            let leaf = std::fs::read_dir(data.join("keys"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("0-"))
                .expect("a leaf block of the key store");
            let mut bytes = std::fs::read(&leaf).unwrap();
            let at = bytes.len() - 3;
            bytes[at] ^= 1;
            std::fs::write(&leaf, bytes).unwrap();
        }
    }
}

/// The first key under `prefix` (for the indexes, whose keys are hashes).
fn first_key(data: &Path, prefix: &[u8]) -> Vec<u8> {
    let db = veritrail::store::sled::sled_config(&data.join("db"))
        .open()
        .unwrap();
    let tree = db.open_tree("log").unwrap();
    tree.scan_prefix(prefix).next().unwrap().unwrap().0.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_a_flipped_byte_in_every_kind_of_stored_object() {
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    let size = write_log(&pristine).await;

    let out = fsck(&pristine);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("tree size {size}, checkpoint size {size}")),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with("clean"), "{stdout}");

    // The log's master key lies beside its data directory; fsck finds it
    // there by default, so the clean run above opened every sealed event.
    let master_key = dir.path().join("pristine.master.key");
    assert!(
        stdout.contains(&format!("sealed events: {size} opened and checked")),
        "{stdout}"
    );

    // A copy without its master key beside it: sealed events are counted,
    // not opened, and the report says so.
    let keyless = dir.path().join("keyless");
    copy_dir(&pristine, &keyless);
    let out = fsck(&keyless);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(&format!("{size} not opened")), "{stdout}");
    assert!(stdout.contains("without the master key"), "{stdout}");

    // Another log's master key is refused: nothing is checked with it.
    let wrong = dir.path().join("wrong.master.key");
    std::fs::write(&wrong, format!("{}\n", "ab".repeat(32))).unwrap();
    let out = fsck_with_key(&keyless, &wrong);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not this log's"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Full tiles, bundles and body chunks are files, named by their path.
    let tile_file = b"tile/0/001".to_vec();
    let bundle_file = b"entries/001".to_vec();
    let bodies_file = b"bodies/000".to_vec();
    // The indexes' newest entries are in pending records, one per batch.
    let leaf_key = first_key(&pristine, b"ph");
    let dedupe_key = first_key(&pristine, b"pd");
    // The search index's blocks: one segment file per flush, below
    // `db/index` (the server's stop flushed them).
    let segment_file = {
        let name = std::fs::read_dir(pristine.join("db/index"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .find(|n| n.ends_with(".seg"))
            .expect("a segment of the search index");
        format!("../index/{name}").into_bytes()
    };
    let segment_name = format!("search index segment file index/{}", {
        let s = String::from_utf8_lossy(&segment_file).into_owned();
        s.trim_start_matches("../index/").to_string()
    });
    let segment_missing =
        format!("first bad object: search index segments: {segment_name} is missing");
    let segment_torn = format!("first bad object: search index segments: {segment_name} is torn");
    let segment_flipped =
        format!("first bad object: search index segments: {segment_name}: the block of bucket");
    let api_key = first_key(&pristine, b"K");
    let cases: Vec<(&str, Vec<u8>, Damage, &str)> = vec![
        // A byte 5 into hash 17 of tile 0/001.
        (
            "tile",
            tile_file.clone(),
            Damage::FlipFile(17 * 32 + 5),
            "first bad object: tile 0/001: hash 17 is ",
        ),
        (
            "torn tile file",
            tile_file.clone(),
            Damage::TearFile,
            "first bad object: tile 0/001: tile file objects/tile/0/001 is torn",
        ),
        (
            "missing tile file",
            tile_file,
            Damage::RemoveFile,
            "first bad object: tile 0/001: tile file objects/tile/0/001 is missing",
        ),
        // A byte near the end of bundle 1: inside the record of leaf 511.
        (
            "bundle",
            bundle_file.clone(),
            Damage::FlipFile(-20),
            "first bad object: entry bundle 001: leaf 511 hashes to ",
        ),
        (
            "torn bundle file",
            bundle_file.clone(),
            Damage::TearFile,
            "first bad object: entry bundle 001: ",
        ),
        (
            "missing bundle file",
            bundle_file,
            Damage::RemoveFile,
            "first bad object: entry bundle 001: entry bundle file objects/entries/001 is missing",
        ),
        // Event bodies and salts are sealed (encrypted at rest) and packed
        // by bundle: a flipped byte fails the chunk's checksum.
        (
            "sealed event",
            bodies_file.clone(),
            Damage::FlipFile(-5),
            "first bad object: sealed event 0: ",
        ),
        (
            "torn sealed body file",
            bodies_file.clone(),
            Damage::TearFile,
            "sealed body file objects/bodies/000 is torn or altered",
        ),
        (
            "missing sealed body file",
            bodies_file,
            Damage::RemoveFile,
            "first bad object: blob files: sealed body file objects/bodies/000 is missing",
        ),
        // The open bundle's bodies are still a sled chunk.
        (
            "open bundle's sealed event",
            index_key(b'b', 512),
            Damage::Flip(-5),
            "first bad object: sealed event 512: ",
        ),
        // A block of the key store: the events whose keys it holds no
        // longer open.
        (
            "key block",
            Vec::new(),
            Damage::KeyBlock,
            "first bad object: sealed event ",
        ),
        (
            "leaf-hash index",
            leaf_key,
            Damage::Flip(-1),
            "first bad object: index runs: leaf-hash index pending record 0: ",
        ),
        (
            "idempotency entry",
            dedupe_key,
            Damage::Flip(-10),
            "first bad object: index runs: idempotency index pending record 0: ",
        ),
        // A search-index segment gone, torn or altered: search would miss
        // its events, and says so rather than answer "no match".
        (
            "search index segment",
            segment_file.clone(),
            Damage::RemoveFile,
            &segment_missing,
        ),
        (
            "torn search index segment",
            segment_file.clone(),
            Damage::TearFile,
            &segment_torn,
        ),
        (
            "search index block",
            segment_file,
            Damage::FlipFile(-6),
            &segment_flipped,
        ),
        (
            "search index watermark",
            b"Iwatermark".to_vec(),
            Damage::Flip(2),
            "first bad object: search index watermark: ",
        ),
        (
            "checkpoint note",
            b"Mcheckpoint".to_vec(),
            Damage::Flip(-10),
            "first bad object: checkpoint: ",
        ),
        (
            "tree size",
            b"Mtree_size".to_vec(),
            Damage::Flip(-1),
            "the tree size needs",
        ),
        (
            "origin",
            b"Morigin".to_vec(),
            Damage::Flip(0),
            "first bad object: origin record: record M/origin: checksum mismatch",
        ),
        // Records carry a checksum: an API key record with one changed
        // byte is found even though it may still parse.
        (
            "API key record",
            api_key,
            Damage::Flip(-8),
            "first bad object: API key records: ",
        ),
    ];
    for (what, k, how, expected) in cases {
        let damaged: PathBuf = dir.path().join(what.replace(' ', "-"));
        copy_dir(&pristine, &damaged);
        damage(&damaged, &k, how);
        let out = fsck_with_key(&damaged, &master_key);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("CORRUPT"), "{what}: {stdout}");
        assert!(
            stdout.contains(expected),
            "{what}: expected {expected:?} in {stdout}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_log_a_server_holds_and_a_directory_that_is_no_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let out = fsck(&data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("in use by another process") && stderr.contains("stop the server"),
        "{stderr}"
    );
    assert!(server.stop().success());
    assert_eq!(fsck(&data).status.code(), Some(0));

    let out = fsck(dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Veritrail data directory"));
}
