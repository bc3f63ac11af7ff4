//! The embedded backend: one SQLite database (WAL) holding metadata and
//! message bodies, with group commit through a single writer thread.
//!
//! Bodies live inline in the `blobs` table by default, written in the same
//! transaction as the mailbox rows that reference them, so one WAL fsync
//! covers both and nothing half-written is ever visible. With a blob store
//! ([`SqliteStore::with_blobs`]) a body is put there first, durably, and the
//! row keeps its hash ([`external`] also removes bodies nothing refers to any
//! more). Concurrent deliveries are batched by [`writer`] into one
//! transaction per fsync.
//!
//! This backend uses `rusqlite` directly rather than `sqlx`: sqlx's SQLite
//! driver hands every statement to a worker thread over channels, and a
//! profile of 20 concurrent SMTP sessions showed about half the server's CPU
//! in the resulting futex wake-ups. Here the writer thread calls SQLite
//! directly, and reads (short, never blocked by the writer in WAL mode) run
//! on the calling thread with a pooled connection.

mod external;

pub use crate::blobs::{BodyCounts, Collected, Swept};
mod dashboard;
mod directory;
mod folders;
mod mail;
mod nodes;
mod platform;
mod queue;
mod reports;
mod spam;
mod verify_jobs;
mod writer;

use crate::{Result, StoreError};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

const SCHEMA: &str = include_str!("schema.sql");
const SCHEMA_V2: &str = include_str!("schema_v2.sql");
const SCHEMA_V3: &str = include_str!("schema_v3.sql");
const SCHEMA_V4: &str = include_str!("schema_v4.sql");
const SCHEMA_V5: &str = include_str!("schema_v5.sql");
const SCHEMA_V6: &str = include_str!("schema_v6.sql");
const SCHEMA_V7: &str = include_str!("schema_v7.sql");
const SCHEMA_V8: &str = include_str!("schema_v8.sql");
const SCHEMA_V9: &str = include_str!("schema_v9.sql");
const SCHEMA_V10: &str = include_str!("schema_v10.sql");
const SCHEMA_V11: &str = include_str!("schema_v11.sql");
const SCHEMA_V12: &str = include_str!("schema_v12.sql");
const SCHEMA_V13: &str = include_str!("schema_v13.sql");
const SCHEMA_V14: &str = include_str!("schema_v14.sql");
const SCHEMA_V15: &str = include_str!("schema_v15.sql");
const SCHEMA_V16: &str = include_str!("schema_v16.sql");
const SCHEMA_V17: &str = include_str!("schema_v17.sql");
const SCHEMA_V18: &str = include_str!("schema_v18.sql");
const SCHEMA_V19: &str = include_str!("schema_v19.sql");
const SCHEMA_V20: &str = include_str!("schema_v20.sql");
const SCHEMA_V21: &str = include_str!("schema_v21.sql");
const SCHEMA_V22: &str = include_str!("schema_v22.sql");
const SCHEMA_VERSION: i64 = 22;
const MAX_IDLE_READERS: usize = 16;
/// WAL size (in 4 KiB frames) past which the writer forces a RESTART
/// checkpoint so the log starts over (about 64 MiB).
const WAL_RESTART_FRAMES: i64 = 16_384;

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    /// Bytes of the file bulk-read connections map (`[store] read_mmap_size`).
    mmap_size: u64,
    readers: Mutex<Vec<Connection>>,
    bulk_readers: Mutex<Vec<Connection>>,
    writer: writer::Writer,
    changes: tokio::sync::broadcast::Sender<crate::AccountId>,
    queue_wakeup: Arc<tokio::sync::Notify>,
    auth_cache: crate::password::AuthCache,
    /// Learnt-message totals per Bayes scope, with when they were read:
    /// every message scored asks. Cleared by this process's own learning;
    /// learning by another process (`tern spam train`) shows within
    /// [`spam::TOTALS_TTL`].
    bayes_totals: Mutex<std::collections::HashMap<i64, CachedTotals>>,
    /// Where new bodies go when not inline ([`SqliteStore::with_blobs`]).
    blobs: Option<Arc<dyn crate::Blobs>>,
    /// Gates by hash (see [`external`]): held shared from a body's put to
    /// the commit that refers to it, and exclusively by the collector while
    /// it decides on and deletes a body, so it never deletes one a delivery
    /// is about to commit.
    blob_gates: Box<[tokio::sync::RwLock<()>]>,
    /// This node's name: the owner of the queue leases it takes.
    node: Arc<str>,
    /// Allowance counts by key and window: one node runs on a SQLite
    /// store, so they live in its memory.
    allowances: Mutex<std::collections::HashMap<(String, i64), u64>>,
    /// Rates' next arrival times by key (GCRA), in memory for the same reason.
    rates: Mutex<std::collections::HashMap<String, i64>>,
    /// Tallies (failed logins), in memory for the same reason.
    tallies: tern_core::tally::MemoryTallies,
    _alive: Arc<()>,
}

/// When a scope's `(spam, ham)` totals were read, and what they were.
type CachedTotals = (std::time::Instant, (u32, u32));

fn open_conn(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -16000;",
    )?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts the
    /// writer thread. `max_batch` bounds how many writes share one commit.
    /// Bulk reads map up to 256 MiB of the file ([`SqliteStore::open_with`]).
    pub async fn open(path: &Path, max_batch: usize) -> Result<Self> {
        Self::open_with(path, max_batch, 256 << 20).await
    }

    /// [`SqliteStore::open`], mapping at most `mmap_size` bytes of the
    /// database for bulk reads (0: none, every read copies).
    pub async fn open_with(path: &Path, max_batch: usize, mmap_size: u64) -> Result<Self> {
        let path = path.to_path_buf();
        let max_batch = max_batch.max(1);
        tokio::task::spawn_blocking(move || Self::open_blocking(&path, max_batch, mmap_size))
            .await
            .map_err(|e| StoreError::Invalid(format!("opening the store: {e}")))?
    }

    fn open_blocking(path: &Path, max_batch: usize, mmap_size: u64) -> Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = open_conn(path, flags)?;
        // FULL: in WAL mode every commit fsyncs the log, so a commit that
        // returned is on disk. NORMAL would only sync at checkpoints.
        // Checkpoints run on their own thread, not inside commits.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL;
             PRAGMA wal_autocheckpoint = 0;
             PRAGMA journal_size_limit = 67108864;",
        )?;
        migrate(&conn)?;
        let alive = Arc::new(());
        let wal_frames = Arc::new(AtomicI64::new(0));
        let checkpointer = open_conn(path, flags)?;
        spawn_checkpointer(checkpointer, Arc::downgrade(&alive), wal_frames.clone());
        Ok(Self {
            path: path.to_path_buf(),
            mmap_size,
            readers: Mutex::new(Vec::new()),
            bulk_readers: Mutex::new(Vec::new()),
            writer: writer::Writer::spawn(conn, max_batch, wal_frames),
            changes: tokio::sync::broadcast::channel(1024).0,
            queue_wakeup: Arc::new(tokio::sync::Notify::new()),
            auth_cache: crate::password::AuthCache::new(Duration::from_secs(15 * 60)),
            bayes_totals: Mutex::new(std::collections::HashMap::new()),
            blobs: None,
            blob_gates: (0..external::GATES)
                .map(|_| tokio::sync::RwLock::new(()))
                .collect(),
            node: Arc::from(""),
            allowances: Mutex::default(),
            tallies: Default::default(),
            rates: Mutex::default(),
            _alive: alive,
        })
    }

    /// Stores new message bodies in `blobs` instead of the database. Bodies
    /// already stored stay where they are and are read from there.
    pub fn with_blobs(mut self, blobs: Arc<dyn crate::Blobs>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// Names this store's node (`[node] name`): the owner of the queue
    /// leases it takes and the row its heartbeats keep fresh.
    pub fn with_node(mut self, name: &str) -> Self {
        self.node = Arc::from(name);
        self
    }

    /// The blob store new bodies go to, if not the database.
    pub fn blobs(&self) -> Option<&Arc<dyn crate::Blobs>> {
        self.blobs.as_ref()
    }

    /// Runs a short read (directory lookups, single rows) on a pooled
    /// read-only connection, on the calling thread. Reads in WAL mode see
    /// the last commit and never wait for the writer.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.read_with(&self.readers, false, f)
    }

    /// Runs a bulk read (message bodies, whole-mailbox scans for IMAP) on a
    /// pooled connection that maps the database file, so pages come from the
    /// page cache without a pread copy each. Only these connections map the
    /// file: measured, mapping on the lookup and write paths cost ~10–15%
    /// of inbound SMTP throughput (remapping as the file grows).
    fn read_bulk<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.read_with(&self.bulk_readers, true, f)
    }

    fn read_with<T>(
        &self,
        pool: &Mutex<Vec<Connection>>,
        mmap: bool,
        f: impl FnOnce(&Connection) -> Result<T>,
    ) -> Result<T> {
        let pooled = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = open_conn(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                if mmap && self.mmap_size > 0 {
                    c.execute_batch(&format!("PRAGMA mmap_size = {};", self.mmap_size))?;
                }
                c
            }
        };
        let r = f(&conn);
        let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < MAX_IDLE_READERS {
            pool.push(conn);
        }
        r
    }

    /// Tells IMAP sessions (IDLE, NOOP) that an account's mail changed.
    fn changed(&self, account: crate::AccountId) {
        let _ = self.changes.send(account);
    }

    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.writer.submit(op).await
    }
}

/// Copies the WAL back into the database once a second, off the commit path,
/// so a commit never pays for copying. PASSIVE never blocks the writer, but
/// under constant load it cannot let the log start over; it reports the log
/// size so the writer can force a short RESTART checkpoint between batches
/// (see [`writer`]), by which time little is left to copy. Stops when the
/// store is dropped.
fn spawn_checkpointer(conn: Connection, alive: Weak<()>, wal_frames: Arc<AtomicI64>) {
    let spawned = std::thread::Builder::new()
        .name("tern-checkpoint".into())
        .spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(Duration::from_secs(1));
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
                    Ok(frames) => wal_frames.store(frames, Ordering::Relaxed),
                    Err(e) => tracing::warn!(error = %e, "store: checkpoint failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "store: cannot start the checkpoint thread");
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Db(Box::new(e))
    }
}

/// The next UIDVALIDITY (RFC 9051 §2.3.1.1): the time in seconds, but
/// always greater than every one given before, in the caller's transaction.
pub(super) fn next_uidvalidity(c: &Connection) -> Result<i64> {
    Ok(c.query_row(
        "UPDATE sequences SET value = max(value + 1, ?) WHERE name = 'uidvalidity' RETURNING value",
        [(tern_core::now_unix() & 0xffff_ffff).max(1)],
        |r| r.get(0),
    )?)
}

/// Brings the schema to [`SCHEMA_VERSION`] in one transaction: a crash
/// mid-way leaves the database as it was (some steps rebuild tables).
fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    match migrate_steps(conn) {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn migrate_steps(conn: &Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Invalid(format!(
            "database schema version {version} is newer than this Tern ({SCHEMA_VERSION})"
        )));
    }
    if version < 1 {
        conn.execute_batch(SCHEMA)?;
    }
    if version < 2 {
        conn.execute_batch(SCHEMA_V2)?;
    }
    if version < 3 {
        conn.execute_batch(SCHEMA_V3)?;
    }
    if version < 4 {
        conn.execute_batch(SCHEMA_V4)?;
    }
    if version < 5 {
        conn.execute_batch(SCHEMA_V5)?;
    }
    if version < 6 {
        conn.execute_batch(SCHEMA_V6)?;
    }
    if version < 7 {
        conn.execute_batch(SCHEMA_V7)?;
    }
    if version < 8 {
        conn.execute_batch(SCHEMA_V8)?;
    }
    if version < 9 {
        conn.execute_batch(SCHEMA_V9)?;
    }
    if version < 10 {
        conn.execute_batch(SCHEMA_V10)?;
    }
    if version < 11 {
        conn.execute_batch(SCHEMA_V11)?;
    }
    if version < 12 {
        conn.execute_batch(SCHEMA_V12)?;
    }
    if version < 13 {
        conn.execute_batch(SCHEMA_V13)?;
    }
    if version < 14 {
        conn.execute_batch(SCHEMA_V14)?;
    }
    if version < 15 {
        conn.execute_batch(SCHEMA_V15)?;
    }
    if version < 16 {
        conn.execute_batch(SCHEMA_V16)?;
    }
    if version < 17 {
        conn.execute_batch(SCHEMA_V17)?;
    }
    if version < 18 {
        conn.execute_batch(SCHEMA_V18)?;
    }
    if version < 19 {
        conn.execute_batch(SCHEMA_V19)?;
    }
    if version < 20 {
        conn.execute_batch(SCHEMA_V20)?;
    }
    if version < 21 {
        conn.execute_batch(SCHEMA_V21)?;
    }
    if version < 22 {
        conn.execute_batch(SCHEMA_V22)?;
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    }
    Ok(())
}
