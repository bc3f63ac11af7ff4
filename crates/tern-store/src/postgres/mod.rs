//! The PostgreSQL backend (issue 14, in progress): metadata and
//! coordination shared by several Tern nodes, bodies in a blob store.
//!
//! What runs on PostgreSQL so far: the directory ([`Directory`]: domains,
//! accounts with their mailboxes and subscriptions, aliases, DKIM keys,
//! logins), mail ([`MailStore`], [`Folders`]: bodies in the database or in
//! a blob store by hash, mailbox rows with UIDs, MODSEQs and tombstones), the queue
//! ([`Queue`]: leases with an owner, `FOR UPDATE SKIP LOCKED`), events and
//! message logs written with the mail, the nodes ([`Nodes`]) and
//! per-account change notices across nodes ([`PgStore::changed`],
//! [`PgStore::watch_changes`]: LISTEN/NOTIFY on a channel per account), and the platform's records, spam
//! data, reports, verification jobs and dashboard users: a whole
//! [`crate::Store`], which `tern serve` runs on (`[store] backend`).
//!
//! Every write is one transaction. Deliveries that arrive together on a node
//! share one ([`writer`]: one WAL flush for many, and one lock of each
//! mailbox); PostgreSQL's own group commit batches the WAL flushes of
//! concurrent transactions, from any node. A body is put in the blob store,
//! durably, inside the transaction that refers to it and before its commit
//! (see [`bodies`]).
//!
//! Connections come from one `sqlx` pool (TLS per the URL's `sslmode`);
//! statements are prepared once per connection and cached; the schema is in
//! `migrations/postgres/`, applied in order at connect, each file in its own
//! transaction.
//!
//! [`Directory`]: crate::Directory
//! [`MailStore`]: crate::MailStore
//! [`Folders`]: crate::Folders
//! [`Queue`]: crate::Queue
//! [`Nodes`]: crate::Nodes

mod bodies;
mod changes;
mod dashboard;
mod directory;
mod events;
mod folders;
mod lookups;
mod mail;
mod nodes;
mod platform;
mod queue;
mod reports;
mod spam;
mod verify_jobs;
mod writer;

pub use platform::WEBHOOK_CLAIM_SECS;

use crate::{Result, StoreError};
use sqlx::postgres::{PgPool, PgPoolOptions};
use std::sync::Arc;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PgStore {
    pool: PgPool,
    node: Arc<str>,
    auth_cache: crate::password::AuthCache,
    changes: tokio::sync::broadcast::Sender<crate::AccountId>,
    /// The accounts this node's sessions watch ([`changes`]).
    watchers: Arc<changes::Watchers>,
    /// Where the bodies are ([`PgStore::with_blobs`]).
    blobs: Option<Arc<dyn crate::Blobs>>,
    /// Signalled when this node queues recipients or makes them due.
    queue_wakeup: Arc<tokio::sync::Notify>,
    /// The group-commit writer of deliveries ([`writer`]), started at the
    /// first one.
    writer: std::sync::OnceLock<tokio::sync::mpsc::Sender<writer::Job>>,
    /// The task listening for other nodes' changes, stopped with the store.
    listener: tokio::task::JoinHandle<()>,
    /// Recipient lookups remembered until the directory changes.
    lookups: Arc<lookups::Lookups>,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Db(Box::new(e))
    }
}

/// A message the trigger-free checks raise, as [`StoreError::NotFound`].
fn not_found(what: impl std::fmt::Display) -> StoreError {
    StoreError::NotFound(what.to_string())
}

/// Whether `e` is a unique-constraint violation (a concurrent insert of the
/// same name on another node).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

impl PgStore {
    /// Connects to `url` (`postgres://user:pass@host:port/db?sslmode=…`)
    /// with up to `max_connections` pooled connections and brings the
    /// schema up to date.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Db(Box::new(e)))?;
        let changes = tokio::sync::broadcast::channel(1024).0;
        let (ready, listening) = tokio::sync::oneshot::channel();
        let (commands, asked) = tokio::sync::mpsc::unbounded_channel();
        let lookups = Arc::new(lookups::Lookups::default());
        let listener = tokio::spawn(changes::listen(
            pool.clone(),
            changes.clone(),
            lookups.clone(),
            asked,
            ready,
        ));
        // Changes made after connect returns reach this node.
        if tokio::time::timeout(Duration::from_secs(10), listening)
            .await
            .is_err()
        {
            tracing::warn!("postgres: not yet listening for other nodes' changes");
        }
        Ok(Self {
            pool,
            node: Arc::from(""),
            auth_cache: crate::password::AuthCache::new(Duration::from_secs(15 * 60)),
            changes,
            watchers: changes::Watchers::new(commands),
            blobs: None,
            queue_wakeup: Arc::new(tokio::sync::Notify::new()),
            writer: std::sync::OnceLock::new(),
            listener,
            lookups,
        })
    }

    /// Keeps message bodies in `blobs` (files, an S3-compatible bucket)
    /// rather than in the database.
    pub fn with_blobs(mut self, blobs: Arc<dyn crate::Blobs>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// The connection pool (`tern migrate` writes through it).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The blob store, if one is configured.
    pub fn blobs(&self) -> Option<&Arc<dyn crate::Blobs>> {
        self.blobs.as_ref()
    }

    /// Names this store's node (`[node] name`).
    pub fn with_node(mut self, name: &str) -> Self {
        self.node = Arc::from(name);
        self
    }
}

/// The next UIDVALIDITY (RFC 9051 §2.3.1.1): the time in seconds, but above
/// every value given before on any node (the row lock orders them).
async fn next_uidvalidity(tx: &mut sqlx::PgConnection) -> Result<i64> {
    let now = tern_core::now_unix() & 0xffff_ffff;
    Ok(sqlx::query_scalar(
        "UPDATE sequences SET value = GREATEST(value + 1, $1) WHERE name = 'uidvalidity' RETURNING value",
    )
    .bind(now.max(1))
    .fetch_one(tx)
    .await?)
}
