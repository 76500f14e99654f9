//! The remote backend: PostgreSQL for everything that changes, an
//! S3-compatible bucket for what is written once. For a deployment that
//! outgrows one machine; sled stays the zero-configuration default.
//!
//! Where each thing lives:
//! - bucket (`bucket.rs`): full hash tiles and full entry bundles at their
//!   C2SP paths; with every checkpoint also the partial tiles and bundle of
//!   its size and a copy of the checkpoint, written after its commit
//!   (`static_copy.rs`), so the bucket alone is a complete tlog-tiles copy
//!   of the log;
//! - PostgreSQL (`schema.sql`): the coordination row (tree size,
//!   checkpoint, index watermark, sequencer lease), the right edge's partial
//!   tiles and bundle, records (API keys, data keys, sealed bodies,
//!   governance, ...), the idempotency and leaf-hash indexes and the search
//!   index.
//!
//! Invariants:
//! - a commit is one PostgreSQL transaction that first locks the
//!   coordination row (`SELECT ... FOR UPDATE`) and checks the lease token
//!   ([`PgStore::fence`]); the objects it names are written to the bucket
//!   (and confirmed, `bucket.rs`) while it holds that lock, before it commits. What no
//!   committed transaction names does not exist: a full tile is read from
//!   the bucket only when the committed tree size covers it, and an object
//!   left over by a batch that never committed may be replaced; the static
//!   copy of a checkpoint (its partial objects, then `checkpoint`) is
//!   written only once it committed, so it never waits on, nor delays, an
//!   acknowledgment;
//! - the bucket is never trusted for fencing: the row lock is.
//!
//! The `Store` trait is synchronous and is called from request handlers
//! inside the server's runtime; the database and bucket clients are async.
//! Every call therefore runs on this store's own runtime, and the caller
//! waits on a channel (never `block_on` inside the caller's runtime), with
//! a time limit, so an unreachable service is an error, not a hang.

mod bucket;
mod lease;
mod static_copy;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, GenericClient, NoTls, Row, Statement, Transaction};

pub use bucket::BucketConfig;
use bucket::{Bucket, Created};
pub use lease::LeaseHolder;

use super::{
    BatchWrite, DedupeKey, IndexBlock, LeafKey, Record, RecordBatch, RecordSpace, ScanCursor,
    ScanPage, Store, StoreError, StoredCheckpoint, StoredEvent,
};
use crate::merkle::Hash;
use crate::tiles::Tile;

/// Hashes per full tile, entries per full bundle.
const WIDTH: u64 = 256;
/// Bytes of a full hash tile.
const FULL_TILE_BYTES: usize = 256 * 32;
/// How long one read may take before the caller gets an error.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one commit may take (its bucket writes included).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server lets a transaction sit idle before ending it: under
/// the default sequencer lease (3 s, renewed every second), so a leader
/// paused inside a commit has lost the coordination row's lock by the time
/// its lease expires, and the next leader's takeover does not wait for it.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(2);
/// Connections for readers; the writer has its own.
const READERS: usize = 4;
/// Statements kept prepared per connection (the store has fewer; the
/// bound keeps a mistake from growing it).
const MAX_STATEMENTS: usize = 64;
/// The bucket object holding the latest checkpoint.
const CHECKPOINT_OBJECT: &str = "checkpoint";
/// Full entry bundles kept after their read from the bucket. A search page
/// opens its hits newest first, a few hundred to a bundle: without them
/// every hit was a bucket read of its whole bundle (tens of milliseconds).
const CACHED_BUNDLES: usize = 64;

fn pg(e: tokio_postgres::Error) -> StoreError {
    let detail = match e.as_db_error() {
        Some(d) => format!("{} ({})", d.message(), d.code().code()),
        None => match std::error::Error::source(&e) {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    };
    StoreError::Backend(format!("postgresql: {detail}"))
}

fn to_i64(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend(format!("{n} is out of range")))
}

fn to_u64(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("stored index {n} is negative")))
}

fn space_code(space: RecordSpace) -> i16 {
    i16::from(space.code())
}

/// True when a tree of `size` leaves covers the first `width` hashes of
/// tile `index` at `level` (for bundles: level 0).
fn covers(size: u64, level: u8, index: u64, width: u64) -> bool {
    let hashes = size.checked_shr(8 * u32::from(level)).unwrap_or(0);
    index
        .checked_mul(WIDTH)
        .and_then(|start| start.checked_add(width))
        .is_some_and(|needed| hashes >= needed)
}

/// The statements prepared on one connection, by their text: each is
/// parsed and planned once per connection, and a query then costs one
/// round trip instead of two.
#[derive(Default)]
struct Statements(Mutex<HashMap<String, Statement>>);

impl Statements {
    async fn get(
        &self,
        c: &impl GenericClient,
        sql: &str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(st) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(sql) {
            return Ok(st.clone());
        }
        let st = c.prepare(sql).await?;
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_STATEMENTS {
            cache.clear();
        }
        cache.insert(sql.to_string(), st.clone());
        Ok(st)
    }
}

/// A client (a connection, or a transaction on one) whose queries use the
/// connection's prepared statements.
struct Prepared<'a, C> {
    client: &'a C,
    statements: &'a Statements,
}

impl<C: GenericClient + Sync> Prepared<'_, C> {
    async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let st = self.statements.get(self.client, sql).await?;
        self.client.query(&st, params).await
    }

    async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        let st = self.statements.get(self.client, sql).await?;
        self.client.query_one(&st, params).await
    }

    async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let st = self.statements.get(self.client, sql).await?;
        self.client.query_opt(&st, params).await
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let st = self.statements.get(self.client, sql).await?;
        self.client.execute(&st, params).await
    }
}

/// A transaction on the writer connection, with its prepared statements.
struct Tx<'a> {
    txn: Transaction<'a>,
    statements: &'a Statements,
}

impl Tx<'_> {
    async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        self.prepared().query_one(sql, params).await
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        self.prepared().execute(sql, params).await
    }

    async fn batch_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.txn.batch_execute(sql).await
    }

    fn prepared(&self) -> Prepared<'_, Transaction<'_>> {
        Prepared {
            client: &self.txn,
            statements: self.statements,
        }
    }
}

/// A connection and the statements prepared on it.
struct Conn {
    client: Client,
    statements: Statements,
}

impl Conn {
    fn prepared(&self) -> Prepared<'_, Client> {
        Prepared {
            client: &self.client,
            statements: &self.statements,
        }
    }

    fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}

/// The database connections: one for the writer (its transactions), a few
/// shared by readers (tokio-postgres pipelines concurrent queries on one
/// connection). A closed connection is replaced on next use, so the store
/// recovers by itself when PostgreSQL comes back.
struct Db {
    config: tokio_postgres::Config,
    writer: tokio::sync::Mutex<Option<Conn>>,
    readers: Vec<tokio::sync::Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
}

impl Db {
    async fn connect(&self) -> Result<Conn, StoreError> {
        let (client, conn) = self.config.connect(NoTls).await.map_err(pg)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "postgresql connection closed");
            }
        });
        Ok(Conn {
            client,
            statements: Statements::default(),
        })
    }

    async fn reader(&self) -> Result<Arc<Conn>, StoreError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let mut slot = self.readers[i].lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let c = Arc::new(self.connect().await?);
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs `work` in one transaction on the writer connection, committing
    /// when it returns `Ok`.
    async fn transaction<T>(
        &self,
        work: impl AsyncFnOnce(&Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = self.writer.lock().await;
        if slot.as_ref().is_none_or(|c| c.is_closed()) {
            *slot = Some(self.connect().await?);
        }
        let Some(Conn { client, statements }) = slot.as_mut() else {
            return Err(StoreError::Backend("postgresql: no connection".into()));
        };
        let tx = Tx {
            txn: client.transaction().await.map_err(pg)?,
            statements,
        };
        let out = work(&tx).await?;
        tx.txn.commit().await.map_err(pg)?;
        Ok(out)
    }
}

/// The full entry bundles read last from the bucket, at most
/// [`CACHED_BUNDLES`], the oldest read dropped first. A full bundle is
/// written once and read only once a commit covers it, so a copy kept here
/// is never stale.
#[derive(Default)]
struct FullBundles(Mutex<VecDeque<(u64, Vec<u8>)>>);

impl FullBundles {
    fn get(&self, index: u64) -> Option<Vec<u8>> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b.clone())
    }

    fn keep(&self, index: u64, data: &[u8]) {
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if kept.iter().any(|(i, _)| *i == index) {
            return;
        }
        if kept.len() >= CACHED_BUNDLES {
            kept.pop_front();
        }
        kept.push_back((index, data.to_vec()));
    }
}

/// What the store's runtime shares.
struct Inner {
    db: Db,
    bucket: Bucket,
    /// The full entry bundles read last from the bucket.
    full_bundles: FullBundles,
    /// The lease token every commit must find in the coordination row, or
    /// `None` when this store does not check it (one frontend).
    fence: Mutex<Option<i64>>,
    /// The committed checkpoints waiting for their static copy.
    static_copy: static_copy::StaticCopy,
}

/// The PostgreSQL + bucket store.
pub struct PgStore {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl PgStore {
    /// Connects to PostgreSQL at `url` (a password may also come from
    /// `PGPASSWORD`) and to the bucket, and creates the tables if missing.
    pub fn open(url: &str, bucket: &BucketConfig) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Backend(format!("postgresql URL: {e}")))?;
        if config.get_password().is_none()
            && let Ok(p) = std::env::var("PGPASSWORD")
        {
            config.password(p);
        }
        config
            .connect_timeout(Duration::from_secs(3))
            .keepalives_idle(Duration::from_secs(10))
            .application_name("veritrail")
            // A frontend stopped inside a commit (paused, or cut off) must
            // not hold the coordination row's lock past its lease: the
            // server ends such a transaction, and the next leader proceeds.
            .options(format!(
                "-c idle_in_transaction_session_timeout={}",
                IDLE_IN_TRANSACTION.as_millis()
            ));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("veritrail-remote-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend(format!("couldn't start the store runtime: {e}")))?;
        let inner = Arc::new(Inner {
            db: Db {
                config,
                writer: tokio::sync::Mutex::new(None),
                readers: (0..READERS)
                    .map(|_| tokio::sync::Mutex::new(None))
                    .collect(),
                next: AtomicUsize::new(0),
            },
            bucket: Bucket::open(bucket)?,
            full_bundles: FullBundles::default(),
            fence: Mutex::new(None),
            static_copy: static_copy::StaticCopy::new(),
        });
        runtime.spawn(static_copy::run(
            Arc::downgrade(&inner),
            inner.static_copy.subscribe(),
        ));
        let store = PgStore {
            inner,
            runtime: Some(runtime),
        };
        store.run(READ_TIMEOUT, async |s| {
            s.db.transaction(async |t| {
                t.batch_execute(include_str!("schema.sql"))
                    .await
                    .map_err(pg)
            })
            .await
        })?;
        Ok(store)
    }

    /// Makes every later commit check that the coordination row still holds
    /// lease `token` (`None`: no check).
    pub fn fence(&self, token: Option<i64>) {
        *self.inner.fence.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// Runs `work` on the store's runtime and waits for it, at most `limit`.
    fn run<T, F>(
        &self,
        limit: Duration,
        work: impl FnOnce(Arc<Inner>) -> F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| StoreError::Backend("the store is closed".into()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = work(self.inner.clone());
        runtime.spawn(async move {
            let out = match tokio::time::timeout(limit, fut).await {
                Ok(out) => out,
                Err(_) => Err(StoreError::Backend(format!(
                    "the storage service did not answer within {limit:?}"
                ))),
            };
            let _ = tx.send(out);
        });
        rx.recv()
            .map_err(|_| StoreError::Backend("the store runtime stopped".into()))?
    }

    fn read<T, F>(&self, work: impl FnOnce(Arc<Inner>) -> F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        self.run(READ_TIMEOUT, work)
    }
}

impl PgStore {
    /// A page of an index table (`key`, `idx`) after `cursor`, in key order.
    fn scan_index<K: Send + 'static>(
        &self,
        table: &'static str,
        cursor: &ScanCursor,
        limit: usize,
        key: fn(&[u8]) -> Result<K, StoreError>,
    ) -> Result<ScanPage<(K, u64)>, StoreError> {
        let after = cursor.key().map(<[u8]>::to_vec);
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let rows = c
                .query(
                    &format!(
                        "SELECT key, idx FROM {table} WHERE ($1::bytea IS NULL OR key > $1) ORDER BY key LIMIT $2"
                    ),
                    &[&after, &limit_of(limit)],
                )
                .await
                .map_err(pg)?;
            Ok(page(
                rows,
                limit,
                |r| Ok((key(r.get(0))?, to_u64(r.get(1))?)),
                |r| r.get(0),
            ))
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Callers may be inside another runtime, where a blocking shutdown panics.
        // A clean stop leaves the static copy at the last checkpoint.
        let flushed = self.run(Duration::from_secs(5), async |s| {
            s.static_copy.flushed().await;
            Ok(())
        });
        if flushed.is_err() {
            tracing::warn!("the bucket's static copy may lag the last checkpoint");
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// An object of the bucket that a commit writes: its name, its bytes, and
/// whether the committed tree already covers it (then it must be there
/// already, identical).
struct Blob {
    name: String,
    data: Vec<u8>,
    committed: bool,
}

impl Inner {
    /// Locks the coordination row, checks the lease token, and returns the
    /// committed tree size.
    async fn lock_log(&self, t: &Tx<'_>) -> Result<u64, StoreError> {
        let row = t
            .query_one(
                "SELECT tree_size, lease_token,
                     lease_expires_at IS NOT NULL AND lease_expires_at >= clock_timestamp()
                 FROM vt_log WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await
            .map_err(pg)?;
        let fence = *self.fence.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = fence {
            let current: i64 = row.get(1);
            if current != token {
                return Err(StoreError::Backend(format!(
                    "fenced: this frontend's sequencer lease (token {token}) was taken over (token {current})"
                )));
            }
            // An expired lease may be taken at any moment: commit nothing
            // under it (the database's clock decides).
            if !row.get::<_, bool>(2) {
                return Err(StoreError::Backend(format!(
                    "fenced: this frontend's sequencer lease (token {token}) expired"
                )));
            }
        }
        to_u64(row.get(0))
    }

    /// Writes `blob` create-only, confirmed (see `Bucket::create`).
    async fn put_blob(&self, blob: &Blob) -> Result<(), StoreError> {
        match self.bucket.create(&blob.name, &blob.data).await? {
            Created::Written => Ok(()),
            // Left over by a batch whose transaction never committed (this
            // store holds the row lock, so no committed batch names it).
            Created::Different if !blob.committed => {
                self.bucket.replace(&blob.name, &blob.data).await
            }
            Created::Different => Err(StoreError::Corrupt(format!(
                "bucket object {} differs from the committed one",
                blob.name
            ))),
        }
    }

    async fn put_blobs(&self, blobs: &[Blob]) -> Result<(), StoreError> {
        futures_util::future::try_join_all(blobs.iter().map(|b| self.put_blob(b))).await?;
        Ok(())
    }

    async fn commit(&self, b: BatchWrite) -> Result<(), StoreError> {
        let checkpoint = b.checkpoint.clone();
        self.db
            .transaction(async |t| {
                let committed = self.lock_log(t).await?;
                let mut blobs = Vec::new();
                for (level, index, data) in &b.tiles {
                    if data.len() == FULL_TILE_BYTES {
                        blobs.push(Blob {
                            name: Tile::full(*level, *index).hash_path(),
                            data: data.clone(),
                            committed: covers(committed, *level, *index, WIDTH),
                        });
                    }
                }
                for (index, data) in &b.bundles {
                    if covers(b.tree_size, 0, *index, WIDTH) {
                        blobs.push(Blob {
                            name: Tile::full(0, *index).entries_path(),
                            data: data.clone(),
                            committed: covers(committed, 0, *index, WIDTH),
                        });
                    }
                }
                // The bucket writes and the statements overlap; both are
                // done (the objects confirmed) before the transaction commits.
                futures_util::future::try_join(self.put_blobs(&blobs), write_batch(t, &b))
                    .await
                    .map(|_| ())
            })
            .await?;
        if let Some(cp) = checkpoint {
            let partial = |data: &Vec<u8>| data.len() < FULL_TILE_BYTES;
            self.static_copy.queue(
                b.tree_size,
                cp.note,
                b.tiles.into_iter().filter(|(_, _, d)| partial(d)).collect(),
                b.bundles
                    .into_iter()
                    .filter(|(i, _)| !covers(b.tree_size, 0, *i, WIDTH))
                    .collect(),
            );
        }
        Ok(())
    }

    async fn put_checkpoint(&self, cp: StoredCheckpoint) -> Result<(), StoreError> {
        let size = checkpoint_size(&cp.note);
        let committed = self
            .db
            .transaction(async |t| {
                let committed = self.lock_log(t).await?;
                exec(
                    t,
                    "UPDATE vt_log SET checkpoint = $1 WHERE id = 1",
                    &[&cp.encode()],
                )
                .await?;
                Ok(committed)
            })
            .await?;
        // Rare (a checkpoint without a batch, a migration): it waits for
        // its static copy, so a migrated bucket is complete when it ends. A
        // copy that fails is retried in the background; the checkpoint in
        // PostgreSQL is the one that counts.
        if let Some(size) = size.filter(|s| *s <= committed) {
            let seq = self
                .static_copy
                .queue(size, cp.note, Vec::new(), Vec::new());
            let copied = self.static_copy.copied(seq, size);
            if tokio::time::timeout(COMMIT_TIMEOUT / 2, copied)
                .await
                .is_err()
            {
                tracing::warn!(size, "the bucket's static copy lags the stored checkpoint");
            }
        }
        Ok(())
    }
}

/// The tree size of a checkpoint note, when it is one.
fn checkpoint_size(note: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(note).ok()?;
    text.split('\n').nth(1)?.parse().ok()
}

/// Writes everything of `b` that lives in PostgreSQL, in transaction `t`:
/// one statement per table, all sent at once (the connection pipelines
/// them, and the transaction commits them together).
async fn write_batch(t: &Tx<'_>, b: &BatchWrite) -> Result<(), StoreError> {
    let (mut full_level, mut full_idx) = (Vec::new(), Vec::new());
    let (mut part_level, mut part_idx, mut part_data) = (Vec::new(), Vec::new(), Vec::new());
    for (level, index, data) in &b.tiles {
        if data.len() == FULL_TILE_BYTES {
            full_level.push(i16::from(*level));
            full_idx.push(to_i64(*index)?);
        } else {
            part_level.push(i16::from(*level));
            part_idx.push(to_i64(*index)?);
            part_data.push(data.as_slice());
        }
    }
    let (mut full_bundles, mut part_bundles, mut bundle_data) =
        (Vec::new(), Vec::new(), Vec::new());
    for (index, data) in &b.bundles {
        if covers(b.tree_size, 0, *index, WIDTH) {
            full_bundles.push(to_i64(*index)?);
        } else {
            part_bundles.push(to_i64(*index)?);
            bundle_data.push(data.as_slice());
        }
    }
    let (mut event_idx, mut event_data) = (Vec::new(), Vec::new());
    for (i, e) in &b.events {
        event_idx.push(to_i64(*i)?);
        event_data.push(e.encode());
    }
    let dedupe: Vec<(Vec<u8>, u64)> = b.dedupe.iter().map(|(k, i)| (k.0.to_vec(), *i)).collect();
    let leaves: Vec<(Vec<u8>, u64)> = b
        .leaf_index
        .iter()
        .map(|(h, i)| (h.as_bytes().to_vec(), *i))
        .collect();
    let partial_tiles = async {
        if part_level.is_empty() {
            return Ok(());
        }
        exec(
            t,
            "INSERT INTO vt_partial_tile (level, idx, data)
             SELECT * FROM unnest($1::smallint[], $2::bigint[], $3::bytea[])
             ON CONFLICT (level, idx) DO UPDATE SET data = excluded.data",
            &[&part_level, &part_idx, &part_data],
        )
        .await
    };
    let full_tiles = async {
        if full_level.is_empty() {
            return Ok(());
        }
        exec(
            t,
            "DELETE FROM vt_partial_tile WHERE (level, idx) IN
             (SELECT * FROM unnest($1::smallint[], $2::bigint[]))",
            &[&full_level, &full_idx],
        )
        .await
    };
    let partial_bundles = async {
        if part_bundles.is_empty() {
            return Ok(());
        }
        exec(
            t,
            "INSERT INTO vt_partial_bundle (idx, data)
             SELECT * FROM unnest($1::bigint[], $2::bytea[])
             ON CONFLICT (idx) DO UPDATE SET data = excluded.data",
            &[&part_bundles, &bundle_data],
        )
        .await
    };
    let full_bundles = async {
        if full_bundles.is_empty() {
            return Ok(());
        }
        exec(
            t,
            "DELETE FROM vt_partial_bundle WHERE idx = ANY($1)",
            &[&full_bundles],
        )
        .await
    };
    let events = async {
        if event_idx.is_empty() {
            return Ok(());
        }
        exec(
            t,
            "INSERT INTO vt_event (idx, data) SELECT * FROM unnest($1::bigint[], $2::bytea[])
             ON CONFLICT (idx) DO UPDATE SET data = excluded.data",
            &[&event_idx, &event_data],
        )
        .await
    };
    let (size, checkpoint) = (
        to_i64(b.tree_size)?,
        b.checkpoint.as_ref().map(StoredCheckpoint::encode),
    );
    let coordination_params: [&(dyn ToSql + Sync); 2] = [&size, &checkpoint];
    let coordination = exec(
        t,
        "UPDATE vt_log SET tree_size = $1, checkpoint = COALESCE($2, checkpoint) WHERE id = 1",
        &coordination_params,
    );
    futures_util::future::try_join5(
        futures_util::future::try_join(partial_tiles, full_tiles),
        futures_util::future::try_join(partial_bundles, full_bundles),
        futures_util::future::try_join(events, insert_first(t, "vt_dedupe", &dedupe)),
        futures_util::future::try_join3(
            insert_first(t, "vt_leaf", &leaves),
            put_records(t, &b.records),
            put_index_blocks(t, &b.index_blocks, b.index_watermark),
        ),
        coordination,
    )
    .await?;
    Ok(())
}

/// Inserts `(key, index)` pairs into an index table; the first index of a
/// key wins.
async fn insert_first(
    t: &Tx<'_>,
    table: &str,
    entries: &[(Vec<u8>, u64)],
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(entries.len());
    let mut idx = Vec::with_capacity(entries.len());
    for (k, i) in entries {
        keys.push(k.as_slice());
        idx.push(to_i64(*i)?);
    }
    // Within one batch, too, the smallest index of a key wins.
    let sql = format!(
        "INSERT INTO {table} (key, idx)
         SELECT key, min(idx) FROM unnest($1::bytea[], $2::bigint[]) AS u(key, idx) GROUP BY key
         ON CONFLICT (key) DO NOTHING"
    );
    exec(t, &sql, &[&keys, &idx]).await?;
    Ok(())
}

/// Writes records; of one key written twice, the last value wins.
async fn put_records(
    t: &Tx<'_>,
    records: &[(RecordSpace, Vec<u8>, Vec<u8>)],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let last: BTreeMap<(i16, &[u8]), &[u8]> = records
        .iter()
        .map(|(s, k, v)| ((space_code(*s), k.as_slice()), v.as_slice()))
        .collect();
    let spaces: Vec<i16> = last.keys().map(|(s, _)| *s).collect();
    let keys: Vec<&[u8]> = last.keys().map(|(_, k)| *k).collect();
    let values: Vec<&[u8]> = last.values().copied().collect();
    exec(
        t,
        "INSERT INTO vt_record (space, key, value)
         SELECT * FROM unnest($1::smallint[], $2::bytea[], $3::bytea[])
         ON CONFLICT (space, key) DO UPDATE SET value = excluded.value",
        &[&spaces, &keys, &values],
    )
    .await?;
    Ok(())
}

/// Writes and deletes search index blocks (the last change of a block
/// wins) and moves the watermark.
async fn put_index_blocks(
    t: &Tx<'_>,
    blocks: &[IndexBlock],
    watermark: Option<u64>,
) -> Result<(), StoreError> {
    let mut last: BTreeMap<(&[u8], i64), Option<&[u8]>> = BTreeMap::new();
    for b in blocks {
        last.insert((b.bucket.as_slice(), to_i64(b.at)?), b.value.as_deref());
    }
    let (mut put_b, mut put_at, mut put_v, mut del_b, mut del_at) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((bucket, at), value) in last {
        match value {
            Some(v) => {
                put_b.push(bucket);
                put_at.push(at);
                put_v.push(v);
            }
            None => {
                del_b.push(bucket);
                del_at.push(at);
            }
        }
    }
    if !put_b.is_empty() {
        exec(
            t,
            "INSERT INTO vt_index_block (bucket, at, value)
             SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bytea[])
             ON CONFLICT (bucket, at) DO UPDATE SET value = excluded.value",
            &[&put_b, &put_at, &put_v],
        )
        .await?;
    }
    if !del_b.is_empty() {
        exec(
            t,
            "DELETE FROM vt_index_block WHERE (bucket, at) IN
             (SELECT * FROM unnest($1::bytea[], $2::bigint[]))",
            &[&del_b, &del_at],
        )
        .await?;
    }
    if let Some(w) = watermark {
        exec(
            t,
            "UPDATE vt_log SET index_watermark = $1 WHERE id = 1",
            &[&to_i64(w)?],
        )
        .await?;
    }
    Ok(())
}

/// Runs one statement in transaction `t`.
async fn exec(t: &Tx<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<(), StoreError> {
    t.execute(sql, params).await.map(|_| ()).map_err(pg)
}

/// One page of a scan: `rows` decoded by `item`, the cursor after the
/// last one when the page is full.
fn page<T>(
    rows: Vec<Row>,
    limit: usize,
    item: impl Fn(&Row) -> Result<T, StoreError>,
    key: impl Fn(&Row) -> Vec<u8>,
) -> ScanPage<T> {
    let next = if rows.len() < limit.max(1) {
        None
    } else {
        rows.last().map(|r| ScanCursor::after(key(r)))
    };
    ScanPage {
        items: rows.iter().map(item).collect(),
        next,
    }
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit.max(1)).unwrap_or(i64::MAX)
}

impl Store for PgStore {
    fn commit(&self, batch: &BatchWrite) -> Result<(), StoreError> {
        let b = batch.clone();
        self.run(COMMIT_TIMEOUT, async move |s| s.commit(b).await)
    }

    fn put_checkpoint(&self, checkpoint: &StoredCheckpoint) -> Result<(), StoreError> {
        let cp = checkpoint.clone();
        self.run(COMMIT_TIMEOUT, async move |s| s.put_checkpoint(cp).await)
    }

    fn tree_size(&self) -> Result<u64, StoreError> {
        self.read(async |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let row = c
                .query_one("SELECT tree_size FROM vt_log WHERE id = 1", &[])
                .await
                .map_err(pg)?;
            to_u64(row.get(0))
        })
    }

    fn checkpoint(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        self.read(async |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let row = c
                .query_one("SELECT checkpoint FROM vt_log WHERE id = 1", &[])
                .await
                .map_err(pg)?;
            row.get::<_, Option<Vec<u8>>>(0)
                .map(|b| StoredCheckpoint::decode(&b))
                .transpose()
        })
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let row = c
                .query_one(
                    "SELECT l.tree_size, t.data FROM vt_log l
                     LEFT JOIN vt_partial_tile t ON t.level = $1 AND t.idx = $2 WHERE l.id = 1",
                    &[&i16::from(level), &to_i64(index)?],
                )
                .await
                .map_err(pg)?;
            if let Some(data) = row.get::<_, Option<Vec<u8>>>(1) {
                return Ok(Some(data));
            }
            if !covers(to_u64(row.get(0))?, level, index, WIDTH) {
                return Ok(None);
            }
            let name = Tile::full(level, index).hash_path();
            let data = s.bucket.get(&name).await?;
            data.map(Some).ok_or_else(|| {
                StoreError::Corrupt(format!("committed tile {name} is missing from the bucket"))
            })
        })
    }

    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let row = c
                .query_one(
                    "SELECT l.tree_size, b.data FROM vt_log l
                     LEFT JOIN vt_partial_bundle b ON b.idx = $1 WHERE l.id = 1",
                    &[&to_i64(index)?],
                )
                .await
                .map_err(pg)?;
            if let Some(data) = row.get::<_, Option<Vec<u8>>>(1) {
                return Ok(Some(data));
            }
            if !covers(to_u64(row.get(0))?, 0, index, WIDTH) {
                return Ok(None);
            }
            if let Some(data) = s.full_bundles.get(index) {
                return Ok(Some(data));
            }
            let name = Tile::full(0, index).entries_path();
            let data = s.bucket.get(&name).await?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "committed bundle {name} is missing from the bucket"
                ))
            })?;
            s.full_bundles.keep(index, &data);
            Ok(Some(data))
        })
    }

    fn event(&self, index: u64) -> Result<Option<StoredEvent>, StoreError> {
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let row = c
                .query_opt(
                    "SELECT data FROM vt_event WHERE idx = $1",
                    &[&to_i64(index)?],
                )
                .await
                .map_err(pg)?;
            row.map(|r| StoredEvent::decode(r.get(0))).transpose()
        })
    }

    fn dedupe(&self, key: &DedupeKey) -> Result<Option<u64>, StoreError> {
        let key = key.0.to_vec();
        self.read(async move |s| index_of(&s, "vt_dedupe", key).await)
    }

    fn dedupe_many(&self, keys: &[DedupeKey]) -> Result<Vec<Option<u64>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: Vec<Vec<u8>> = keys.iter().map(|k| k.0.to_vec()).collect();
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let rows = c
                .query(
                    "SELECT key, idx FROM vt_dedupe WHERE key = ANY($1)",
                    &[&wanted],
                )
                .await
                .map_err(pg)?;
            let mut found = std::collections::HashMap::with_capacity(rows.len());
            for r in &rows {
                found.insert(r.get::<_, Vec<u8>>(0), to_u64(r.get(1))?);
            }
            Ok(wanted.iter().map(|k| found.get(k).copied()).collect())
        })
    }

    fn leaf_index(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        let key = leaf_hash.as_bytes().to_vec();
        self.read(async move |s| index_of(&s, "vt_leaf", key).await)
    }

    fn put_record(&self, space: RecordSpace, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let record = vec![(space, key.to_vec(), value.to_vec())];
        self.run(COMMIT_TIMEOUT, async move |s| {
            s.db.transaction(async |t| put_records(t, &record).await)
                .await
        })
    }

    fn record(&self, space: RecordSpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_vec();
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let row = c
                .query_opt(
                    "SELECT value FROM vt_record WHERE space = $1 AND key = $2",
                    &[&space_code(space), &key],
                )
                .await
                .map_err(pg)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn records_many(
        &self,
        space: RecordSpace,
        keys: &[Vec<u8>],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = keys.to_vec();
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let rows = c
                .query(
                    "SELECT key, value FROM vt_record WHERE space = $1 AND key = ANY($2)",
                    &[&space_code(space), &wanted],
                )
                .await
                .map_err(pg)?;
            let mut found: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(rows.len());
            for r in &rows {
                found.insert(r.get(0), r.get(1));
            }
            Ok(wanted.iter().map(|k| found.get(k).cloned()).collect())
        })
    }

    fn records(&self, space: RecordSpace) -> Result<Vec<Record>, StoreError> {
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let rows = c
                .query(
                    "SELECT key, value FROM vt_record WHERE space = $1 ORDER BY key",
                    &[&space_code(space)],
                )
                .await
                .map_err(pg)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn scan_records(
        &self,
        space: RecordSpace,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<Record>, StoreError> {
        let after = cursor.key().map(<[u8]>::to_vec);
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let rows = c
                .query(
                    "SELECT key, value FROM vt_record WHERE space = $1
                     AND ($2::bytea IS NULL OR key > $2) ORDER BY key LIMIT $3",
                    &[&space_code(space), &after, &limit_of(limit)],
                )
                .await
                .map_err(pg)?;
            Ok(page(
                rows,
                limit,
                |r| Ok((r.get(0), r.get(1))),
                |r| r.get(0),
            ))
        })
    }

    fn scan_events(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(u64, StoredEvent)>, StoreError> {
        let after = cursor_index(cursor)?;
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let rows = c
                .query(
                    "SELECT idx, data FROM vt_event WHERE idx > $1 ORDER BY idx LIMIT $2",
                    &[&after, &limit_of(limit)],
                )
                .await
                .map_err(pg)?;
            Ok(page(
                rows,
                limit,
                |r| Ok((to_u64(r.get(0))?, StoredEvent::decode(r.get(1))?)),
                |r| r.get::<_, i64>(0).to_be_bytes().to_vec(),
            ))
        })
    }

    fn scan_dedupe(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(DedupeKey, u64)>, StoreError> {
        self.scan_index("vt_dedupe", cursor, limit, |k| {
            <[u8; 16]>::try_from(k)
                .map(DedupeKey)
                .map_err(|_| StoreError::Corrupt("idempotency key is not 16 bytes".into()))
        })
    }

    fn scan_leaf_index(
        &self,
        cursor: &ScanCursor,
        limit: usize,
    ) -> Result<ScanPage<(LeafKey, u64)>, StoreError> {
        self.scan_index("vt_leaf", cursor, limit, |k| {
            Hash::from_slice(k)
                .map(|h| super::leaf_key(&h))
                .map_err(|_| StoreError::Corrupt("leaf hash is not 32 bytes".into()))
        })
    }

    fn commit_records(&self, batch: &RecordBatch) -> Result<(), StoreError> {
        let b = batch.clone();
        self.run(COMMIT_TIMEOUT, async move |s| {
            s.db.transaction(async |t| {
                put_records(t, &b.put).await?;
                for (space, key) in &b.delete {
                    exec(
                        t,
                        "DELETE FROM vt_record WHERE space = $1 AND key = $2",
                        &[&space_code(*space), key],
                    )
                    .await?;
                }
                put_index_blocks(t, &b.index_blocks, b.index_watermark).await?;
                if !b.delete_events.is_empty() {
                    let idx = b
                        .delete_events
                        .iter()
                        .map(|i| to_i64(*i))
                        .collect::<Result<Vec<_>, _>>()?;
                    exec(t, "DELETE FROM vt_event WHERE idx = ANY($1)", &[&idx]).await?;
                }
                Ok(())
            })
            .await
        })
    }

    fn index_blocks(
        &self,
        bucket: &[u8],
        below: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let bucket = bucket.to_vec();
        let below = i64::try_from(below).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(async move |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let rows = c
                .query(
                    "SELECT at, value FROM vt_index_block WHERE bucket = $1 AND at < $2
                     ORDER BY at DESC LIMIT $3",
                    &[&bucket, &below, &limit],
                )
                .await
                .map_err(pg)?;
            rows.iter()
                .map(|r| Ok((to_u64(r.get(0))?, r.get(1))))
                .collect()
        })
    }

    fn index_watermark(&self) -> Result<Option<u64>, StoreError> {
        self.read(async |s| {
            let conn = s.db.reader().await?;
            let c = conn.prepared();
            let row = c
                .query_one("SELECT index_watermark FROM vt_log WHERE id = 1", &[])
                .await
                .map_err(pg)?;
            row.get::<_, Option<i64>>(0).map(to_u64).transpose()
        })
    }

    fn clear_index(&self) -> Result<(), StoreError> {
        self.run(COMMIT_TIMEOUT, async |s| {
            s.db.transaction(async |t| {
                t.batch_execute(
                    "DELETE FROM vt_index_block; UPDATE vt_log SET index_watermark = NULL WHERE id = 1",
                )
                .await
                .map_err(pg)
            })
            .await
        })
    }
}

fn cursor_index(cursor: &ScanCursor) -> Result<i64, StoreError> {
    match cursor.key() {
        None => Ok(-1),
        Some(k) => <[u8; 8]>::try_from(k)
            .map(i64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt("bad scan cursor".into())),
    }
}

async fn index_of(s: &Inner, table: &str, key: Vec<u8>) -> Result<Option<u64>, StoreError> {
    let conn = s.db.reader().await?;
    let c = conn.prepared();
    let row = c
        .query_opt(&format!("SELECT idx FROM {table} WHERE key = $1"), &[&key])
        .await
        .map_err(pg)?;
    row.map(|r| to_u64(r.get(0))).transpose()
}

#[cfg(test)]
mod tests;
