//! `veritrail migrate`: moves a stopped log from its sled data directory
//! onto PostgreSQL and an S3-compatible bucket (the remote backend), with
//! the same origin, keys, tree and checkpoint, so `verify` with a state
//! file saved before proves the new deployment extends the old log.
//!
//! What is copied, and in which order (each step through the `Store`
//! contract, so the remote backend's own durability rules apply):
//! 1. a marker record naming the source (origin and latest checkpoint);
//! 2. every small record (API keys, governance, tombstones, subject slots,
//!    sealed bodies, ...) except the origin, page by page;
//! 3. the vault's key store (`<data>/keys/`), into the store's records, as
//!    the remote backend keeps it ([`veritrail::vault::KeyringHome::Store`]);
//! 4. the tree, [`DEFAULT_BATCH_LEAVES`] leaves per commit, in leaf order:
//!    the hash tiles and entry bundles cut to each commit's size, the
//!    leaf-hash index derived from the level-0 tiles, plaintext bodies;
//! 5. the idempotency index, then the search index blocks and watermark;
//! 6. the latest checkpoint, byte for byte;
//! 7. the checks (below), then the origin record, which is what makes the
//!    destination hold a log, in the same commit that removes the marker.
//!
//! Invariants: memory is bounded by one page or one commit, whatever the
//! log's size; nothing is written to the source; a run killed at any point
//! leaves the destination without an origin record (no server loads it),
//! and running the same command again finishes the copy: the tree resumes
//! at the destination's tree size, the scans skip what a progress record
//! says is done, and every write is an idempotent upsert of the same value.
//! A destination that holds a log, or anything but a migration of this
//! same source, is refused.
//!
//! The checks: the destination's tree root at the source's tree size
//! equals the source's, and reproduces the checkpoint's root; the stored
//! checkpoint is byte-identical; events (a sample, or all with
//! `--verify-all`) open with the master key and the copied key store and
//! equal the source's, and erased ones stay unreadable.
//!
//! What stays in files: the log's signing keys (`log-ecdsa.pem`,
//! `log-ed25519.pem`), `admin.key` and the master key are not copied
//! anywhere; the new deployment's `--data` directory needs the two key
//! files (and `admin.key` if it is used), and the server needs the same
//! master key.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use veritrail::crypto::MasterKey;
use veritrail::lifecycle::{DB_DIR, ORIGIN_RECORD};
use veritrail::merkle::{self, Hash};
use veritrail::note::keys::{ECDSA_KEY_FILE, ED25519_KEY_FILE};
use veritrail::sequencer::{Published, TileSource};
use veritrail::store::postgres::{BucketConfig, PgStore};
use veritrail::store::sled::SledStore;
use veritrail::store::{BatchWrite, IndexBlock, RecordBatch, RecordSpace, ScanCursor, Store};
use veritrail::tiles::{self, TILE_WIDTH};
use veritrail::vault::{self, KeyringHome, Vault};

/// Leaves per tree commit: sixteen full tiles and bundles.
pub const DEFAULT_BATCH_LEAVES: u64 = 16 * TILE_WIDTH;
/// The largest `--batch-leaves`: bounds one commit's memory.
const MAX_BATCH_LEAVES: u64 = 256 * TILE_WIDTH;
/// Items read per scan page, and records written per commit.
const PAGE: usize = 1024;
/// Bytes of index blocks per commit, about.
const INDEX_COMMIT_BYTES: usize = 8 << 20;
/// Events opened by the default check (spread over the log).
const SAMPLE_EVENTS: u64 = 1000;
/// Meta record naming the source of a migration under way.
const MARKER_RECORD: &[u8] = b"migrate/source";
/// Prefix of the Meta records counting what a scan already copied.
const PROGRESS_PREFIX: &str = "migrate/progress/";
/// Index buckets are three bytes, the last one's low six bits zero (see
/// `search::index`): every bucket there can be.
const BUCKET_LOW_BYTES: [u8; 4] = [0x00, 0x40, 0x80, 0xC0];

/// The record spaces copied, small ones first.
const RECORD_SPACES: [RecordSpace; 7] = [
    RecordSpace::Meta,
    RecordSpace::ApiKey,
    RecordSpace::DataKey,
    RecordSpace::Erased,
    RecordSpace::Governance,
    RecordSpace::AlertState,
    RecordSpace::Sealed,
];

/// The progress name of the scan of `space`.
fn records_scan(space: RecordSpace) -> String {
    format!("records-{}", space.code())
}

/// `veritrail migrate`.
#[derive(Args)]
pub struct MigrateArgs {
    /// The source: a stopped log's data directory (sled).
    #[arg(long)]
    from: PathBuf,
    /// The destination PostgreSQL URL, postgres://user@host/db (the
    /// password from PGPASSWORD, never on the command line).
    #[arg(long)]
    to_store: String,
    /// The destination bucket, s3://bucket/prefix (credentials from
    /// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY).
    #[arg(long)]
    objects: String,
    /// The S3 endpoint of --objects, e.g. http://127.0.0.1:9000 [default: AWS].
    #[arg(long)]
    objects_endpoint: Option<String>,
    /// The region of --objects [default: us-east-1].
    #[arg(long)]
    objects_region: Option<String>,
    /// The log's master key file [default: VERITRAIL_MASTER_KEY, else
    /// <from>.master.key].
    #[arg(long)]
    master_key_file: Option<PathBuf>,
    /// Open and compare every event at the end, not a sample of 1,000.
    #[arg(long)]
    verify_all: bool,
    /// Leaves per tree commit.
    #[arg(long, default_value_t = DEFAULT_BATCH_LEAVES, hide = true)]
    batch_leaves: u64,
}

/// `veritrail migrate`: copies, checks, and prints what the operator
/// carries over by hand.
pub fn migrate(a: MigrateArgs) -> anyhow::Result<()> {
    if !(1..=MAX_BATCH_LEAVES).contains(&a.batch_leaves) {
        bail!("--batch-leaves must be between 1 and {MAX_BATCH_LEAVES}");
    }
    if super::serve::url_has_password(&a.to_store) {
        bail!(
            "--to-store must not carry a password (command lines are visible to every user): set PGPASSWORD"
        );
    }
    if !(a.to_store.starts_with("postgres://") || a.to_store.starts_with("postgresql://")) {
        bail!("--to-store must be a postgres:// URL");
    }
    for part in [ECDSA_KEY_FILE, ED25519_KEY_FILE, DB_DIR, vault::KEYS_DIR] {
        if !a.from.join(part).exists() {
            bail!(
                "{} is not a Veritrail data directory of this version ({part} is missing)",
                a.from.display()
            );
        }
    }
    if a.from.join(vault::KEYRING_FILE).exists() {
        bail!(
            "{} still holds keys of the earlier format ({}): start the log once with this version, which converts them, stop it, then migrate",
            a.from.display(),
            vault::KEYRING_FILE
        );
    }
    let env_key = std::env::var(vault::MASTER_KEY_ENV).ok();
    let master = vault::read_master_key(&a.from, env_key.as_deref(), a.master_key_file.as_deref())
        .context("couldn't read the master key")?;
    let mut bucket = BucketConfig::from_url(&a.objects).map_err(anyhow::Error::msg)?;
    bucket.endpoint = a.objects_endpoint.clone();
    bucket.region = a.objects_region.clone();

    let source: Arc<dyn Store> = Arc::new(
        SledStore::open(&a.from.join(DB_DIR))
            .context("couldn't open the source (is its server still running? stop it first)")?,
    );
    let dest: Arc<dyn Store> =
        Arc::new(PgStore::open(&a.to_store, &bucket).context("couldn't open the destination")?);
    let m = Migration {
        from: &a.from,
        source,
        dest,
        master,
        batch_leaves: a.batch_leaves,
    };
    let origin = m.claim()?;
    let size = m.source.tree_size()?;
    println!("migrating {origin}: {size} entries");
    m.copy_records()?;
    let keys =
        vault::copy_key_store_to_store(&a.from.join(vault::KEYS_DIR), m.dest.clone(), &m.master)
            .context("couldn't copy the key store")?;
    println!("copied the key store ({keys} blocks)");
    m.copy_tree(size)?;
    m.copy_dedupe(size)?;
    m.copy_index()?;
    let cp = m.copy_checkpoint()?;
    let opened = m.check(size, &cp, a.verify_all)?;
    m.finish(&origin)?;
    println!(
        "migrated {origin}: {size} entries, root and checkpoint of size {} identical, {} events compared ({} open, the rest erased)",
        cp.checkpoint.size, opened.0, opened.1
    );
    println!(
        "carry over to the new deployment's --data directory: {ECDSA_KEY_FILE} and {ED25519_KEY_FILE} (and admin.key); the server needs the same master key"
    );
    Ok(())
}

/// One migration: the source, the destination and how to copy.
struct Migration<'a> {
    from: &'a Path,
    source: Arc<dyn Store>,
    dest: Arc<dyn Store>,
    master: MasterKey,
    batch_leaves: u64,
}

impl Migration<'_> {
    /// Checks that the destination is empty or a migration of this very
    /// source, and marks it as one. Returns the origin.
    fn claim(&self) -> anyhow::Result<String> {
        let origin = self
            .source
            .record(RecordSpace::Meta, ORIGIN_RECORD)?
            .context("the source has no origin record")?;
        let cp = self
            .source
            .checkpoint()?
            .context("the source has no checkpoint")?;
        let marker = [origin.as_slice(), b"\n", &cp.note].concat();
        if self
            .dest
            .record(RecordSpace::Meta, ORIGIN_RECORD)?
            .is_some()
        {
            bail!(
                "the destination already holds a log; migrate only into an empty database and bucket prefix"
            );
        }
        match self.dest.record(RecordSpace::Meta, MARKER_RECORD)? {
            Some(m) if m == marker => println!("resuming the migration into the destination"),
            Some(_) => bail!(
                "the destination holds an unfinished migration of another log or another state of it; use an empty database"
            ),
            None => {
                let empty = self.dest.tree_size()? == 0
                    && self.dest.checkpoint()?.is_none()
                    && self
                        .dest
                        .scan_records(RecordSpace::Meta, &ScanCursor::start(), 1)?
                        .items
                        .is_empty()
                    && self
                        .dest
                        .scan_records(RecordSpace::ApiKey, &ScanCursor::start(), 1)?
                        .items
                        .is_empty();
                if !empty {
                    bail!("the destination is not empty; migrate only into an empty database");
                }
                self.dest
                    .put_record(RecordSpace::Meta, MARKER_RECORD, &marker)?;
            }
        }
        String::from_utf8(origin).context("the source's origin is not UTF-8")
    }

    /// How many items of scan `name` earlier runs copied.
    fn progress(&self, name: &str) -> anyhow::Result<u64> {
        let key = format!("{PROGRESS_PREFIX}{name}");
        Ok(match self.dest.record(RecordSpace::Meta, key.as_bytes())? {
            Some(v) => u64::from_be_bytes(
                v.as_slice()
                    .try_into()
                    .context("a migration progress record is damaged")?,
            ),
            None => 0,
        })
    }

    fn progress_record(name: &str, done: u64) -> (RecordSpace, Vec<u8>, Vec<u8>) {
        (
            RecordSpace::Meta,
            format!("{PROGRESS_PREFIX}{name}").into_bytes(),
            done.to_be_bytes().to_vec(),
        )
    }

    /// Every record of every space but the origin, a page per commit.
    fn copy_records(&self) -> anyhow::Result<()> {
        for space in RECORD_SPACES {
            let name = records_scan(space);
            let done = self.progress(&name)?;
            let mut seen = 0u64;
            let mut cursor = Some(ScanCursor::start());
            while let Some(c) = cursor.take() {
                let page = self.source.scan_records(space, &c, PAGE)?;
                cursor = page.next;
                let mut batch = RecordBatch::default();
                for item in page.items {
                    let (key, value) = item?;
                    seen += 1;
                    let skip = seen <= done
                        || (space == RecordSpace::Meta
                            && (key == ORIGIN_RECORD || key.starts_with(b"migrate/")));
                    if !skip {
                        batch.put.push((space, key, value));
                    }
                }
                if !batch.put.is_empty() {
                    batch.put.push(Self::progress_record(&name, seen));
                    self.dest.commit_records(&batch)?;
                }
            }
            println!("copied {seen} records of space {space:?}");
        }
        Ok(())
    }

    /// The tree from the destination's size up to `size`, in commits of
    /// `batch_leaves` leaves.
    fn copy_tree(&self, size: u64) -> anyhow::Result<()> {
        let mut at = self.dest.tree_size()?;
        if at > size {
            bail!("the destination's tree ({at} entries) is larger than the source's ({size})");
        }
        while at < size {
            let end = (at + self.batch_leaves).min(size);
            let batch = self.tree_batch(at, end)?;
            self.dest.commit(&batch)?;
            println!("copied leaves {at}..{end} of {size}");
            at = end;
        }
        Ok(())
    }

    /// What grows a tree of `from` leaves to `to`, cut from the source.
    fn tree_batch(&self, from: u64, to: u64) -> anyhow::Result<BatchWrite> {
        let mut batch = BatchWrite {
            tree_size: to,
            ..BatchWrite::default()
        };
        for t in tiles::new_tiles(from, to) {
            let mut data = self
                .source
                .tile(t.level, t.index)?
                .with_context(|| format!("the source lacks hash tile {}", t.hash_path()))?;
            let len = t.hash_data_len();
            if data.len() < len {
                bail!("the source's hash tile {} is too short", t.hash_path());
            }
            data.truncate(len);
            if t.level == 0 {
                let first = t.index * TILE_WIDTH;
                for (n, h) in data.chunks_exact(32).enumerate() {
                    let leaf = first + n as u64;
                    if (from..to).contains(&leaf) {
                        batch.leaf_index.push((Hash::from_slice(h)?, leaf));
                    }
                }
            }
            batch.tiles.push((t.level, t.index, data));
        }
        for b in from / TILE_WIDTH..to.div_ceil(TILE_WIDTH) {
            let width = (to - b * TILE_WIDTH).min(TILE_WIDTH) as usize;
            let stored = self
                .source
                .bundle(b)?
                .with_context(|| format!("the source lacks entry bundle {b}"))?;
            let ends = tiles::bundle_entry_ends(&stored)
                .map_err(|e| anyhow::anyhow!("the source's entry bundle {b}: {e}"))?;
            let end = *ends
                .get(width - 1)
                .with_context(|| format!("the source's entry bundle {b} is too short"))?;
            batch.bundles.push((b, stored[..end].to_vec()));
        }
        for index in from..to {
            if let Some(event) = self.source.event(index)? {
                batch.events.push((index, event));
            }
        }
        Ok(batch)
    }

    /// The idempotency index, a page per commit.
    fn copy_dedupe(&self, size: u64) -> anyhow::Result<()> {
        let done = self.progress("dedupe")?;
        let mut seen = 0u64;
        let mut cursor = Some(ScanCursor::start());
        while let Some(c) = cursor.take() {
            let page = self.source.scan_dedupe(&c, PAGE)?;
            cursor = page.next;
            let mut batch = BatchWrite {
                tree_size: size,
                ..BatchWrite::default()
            };
            for item in page.items {
                let (key, index) = item?;
                seen += 1;
                if seen > done && index < size {
                    batch.dedupe.push((key, index));
                }
            }
            if !batch.dedupe.is_empty() {
                self.dest.commit(&batch)?;
                self.dest.commit_records(&RecordBatch {
                    put: vec![Self::progress_record("dedupe", seen)],
                    ..RecordBatch::default()
                })?;
            }
        }
        println!("copied {seen} idempotency entries");
        Ok(())
    }

    /// The search index: every block of every bucket, then the watermark
    /// (with the last blocks), so the destination's index is the source's.
    fn copy_index(&self) -> anyhow::Result<()> {
        let Some(watermark) = self.source.index_watermark()? else {
            println!("the source has no search index; the server builds it from the events");
            return Ok(());
        };
        let mut batch = RecordBatch::default();
        let mut pending = 0usize;
        let mut blocks = 0u64;
        for tag in 0..=u8::MAX {
            for second in 0..=u8::MAX {
                for low in BUCKET_LOW_BYTES {
                    let bucket = [tag, second, low];
                    let mut below = u64::MAX;
                    loop {
                        let found = self.source.index_blocks(&bucket, below, PAGE)?;
                        let full = found.len() == PAGE;
                        for (at, value) in found {
                            pending += value.len() + 16;
                            blocks += 1;
                            below = at;
                            batch.index_blocks.push(IndexBlock {
                                bucket: bucket.to_vec(),
                                at,
                                value: Some(value),
                            });
                        }
                        if pending >= INDEX_COMMIT_BYTES {
                            self.dest.commit_records(&std::mem::take(&mut batch))?;
                            pending = 0;
                        }
                        if !full {
                            break;
                        }
                    }
                }
            }
        }
        batch.index_watermark = Some(watermark);
        self.dest.commit_records(&batch)?;
        println!("copied the search index ({blocks} blocks, watermark {watermark})");
        Ok(())
    }

    /// The source's latest checkpoint, stored byte for byte.
    fn copy_checkpoint(&self) -> anyhow::Result<Published> {
        let cp = self
            .source
            .checkpoint()?
            .context("the source has no checkpoint")?;
        self.dest.put_checkpoint(&cp)?;
        Published::from_stored(&cp).map_err(anyhow::Error::msg)
    }

    /// The checks of the module comment. Returns (events compared, opened).
    fn check(&self, size: u64, cp: &Published, all: bool) -> anyhow::Result<(u64, u64)> {
        let dest_size = self.dest.tree_size()?;
        if dest_size != size {
            bail!("the destination's tree has {dest_size} entries, the source's {size}");
        }
        let root = |s: &dyn Store, n: u64| {
            merkle::tree_root(n, &TileSource::new(s))
                .map_err(|e| anyhow::anyhow!("couldn't compute the root of size {n}: {e}"))
        };
        let theirs = root(self.source.as_ref(), size)?;
        let ours = root(self.dest.as_ref(), size)?;
        if ours != theirs {
            bail!("the destination's root at size {size} is {ours}, the source's {theirs}");
        }
        if root(self.dest.as_ref(), cp.checkpoint.size)? != cp.checkpoint.root {
            bail!("the destination's tree does not reproduce the checkpoint's root");
        }
        if self.dest.checkpoint()? != self.source.checkpoint()? {
            bail!("the destination's checkpoint differs from the source's");
        }
        let source = Vault::open_for_check(
            self.source.clone(),
            &self.master,
            KeyringHome::File(self.from.join(vault::KEYRING_FILE)),
        )
        .context("the source's events do not open with this master key")?;
        let dest = Vault::open_for_check(self.dest.clone(), &self.master, KeyringHome::Store)
            .context("the destination's events do not open with the master key")?;
        let step = if all {
            1
        } else {
            size.div_ceil(SAMPLE_EVENTS).max(1)
        };
        let mut sample: HashSet<u64> = (0..size).step_by(step as usize).collect();
        if size > 0 {
            sample.insert(size - 1);
        }
        let (mut compared, mut opened) = (0u64, 0u64);
        for index in sample {
            let ours = dest.event(index)?;
            if ours != source.event(index)? {
                bail!("event {index} opens differently in the destination");
            }
            if ours.is_none() && dest.tombstone(index)?.is_none() {
                bail!("event {index} does not open in the destination and is not erased");
            }
            compared += 1;
            opened += u64::from(ours.is_some());
        }
        Ok((compared, opened))
    }

    /// Makes the destination a log: the origin record, in the commit that
    /// removes the marker and the progress records.
    fn finish(&self, origin: &str) -> anyhow::Result<()> {
        let mut delete = vec![(RecordSpace::Meta, MARKER_RECORD.to_vec())];
        let scans = RECORD_SPACES
            .iter()
            .map(|s| records_scan(*s))
            .chain(["dedupe".to_string()]);
        for name in scans {
            delete.push((
                RecordSpace::Meta,
                format!("{PROGRESS_PREFIX}{name}").into_bytes(),
            ));
        }
        self.dest.commit_records(&RecordBatch {
            put: vec![(RecordSpace::Meta, ORIGIN_RECORD.to_vec(), origin.into())],
            delete,
            ..RecordBatch::default()
        })?;
        Ok(())
    }
}
