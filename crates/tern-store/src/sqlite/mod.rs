//! The embedded backend: one SQLite database (WAL) holding metadata and
//! message bodies, with group commit through a single writer task.
//!
//! Bodies live inline in the `blobs` table, written in the same transaction
//! as the mailbox rows that reference them, so one WAL fsync covers both and
//! nothing half-written is ever visible. Concurrent deliveries are batched by
//! [`writer`] into one transaction per fsync.

mod directory;
mod mail;
mod writer;

use crate::{Result, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;

const SCHEMA: &str = include_str!("schema.sql");
const SCHEMA_VERSION: i64 = 1;
const SET_VERSION: &str = "PRAGMA user_version = 1";

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    read: SqlitePool,
    writer: mpsc::Sender<writer::Job>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts the
    /// writer task. `max_batch` bounds how many writes share one commit.
    pub async fn open(path: &Path, max_batch: usize) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: in WAL mode every commit fsyncs the log, so a commit that
            // returned is on disk. NORMAL would only sync at checkpoints.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            .pragma("cache_size", "-16000")
            .disable_statement_logging();
        let mut conn = opts.connect().await?;
        migrate(&mut conn).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(opts.clone().read_only(true))
            .await?;
        let writer = writer::spawn(conn, max_batch.max(1));
        Ok(Self { read, writer })
    }

    async fn write<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut sqlx::SqliteConnection) -> writer::OpFuture<'_, T> + Send + 'static,
    ) -> Result<T> {
        writer::submit(&self.writer, op).await
    }
}

async fn migrate(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Invalid(format!(
            "database schema version {version} is newer than this Tern ({SCHEMA_VERSION})"
        )));
    }
    if version < SCHEMA_VERSION {
        sqlx::raw_sql(SCHEMA).execute(&mut *conn).await?;
        sqlx::raw_sql(SET_VERSION)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
