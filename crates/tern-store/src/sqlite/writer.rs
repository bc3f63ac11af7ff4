//! Group commit: one thread owns the write connection. Writes from every
//! session queue up while the previous commit is being fsynced, and the next
//! batch takes all of them into one transaction: one fsync for many
//! messages. Each write runs inside its own SAVEPOINT, so one failing write
//! does not undo the others. A caller hears back only after the COMMIT,
//! i.e. after the WAL fsync.

use crate::{Result, StoreError};
use rusqlite::Connection;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;
use tokio::sync::oneshot;

type Completion = Box<dyn FnOnce(Option<&str>) + Send>;
type RunFn = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;

/// A queued write: runs against the connection and returns whether it
/// succeeded and how to report the outcome once the commit is known.
struct Job {
    run: RunFn,
}

/// Handle to the writer thread.
pub struct Writer {
    tx: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread; it stops when the handle is dropped.
    /// `wal_frames` is the log size last seen by the checkpointer.
    pub fn spawn(conn: Connection, max_batch: usize, wal_frames: Arc<AtomicI64>) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("tern-writer".into())
            .spawn(move || {
                let mut batch = Vec::with_capacity(max_batch);
                while let Ok(first) = rx.recv() {
                    batch.push(first);
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    run_batch(&conn, &mut batch);
                    if wal_frames.load(Ordering::Relaxed) > super::WAL_RESTART_FRAMES {
                        restart_wal(&conn);
                        wal_frames.store(0, Ordering::Relaxed);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "store: cannot start the writer thread");
        }
        Self { tx }
    }

    /// Queues `op` and waits until its transaction is committed.
    pub async fn submit<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (done_tx, done_rx) = oneshot::channel::<Result<T>>();
        let run = Box::new(move |conn: &Connection| {
            let result = op(conn);
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |commit_error: Option<&str>| {
                let result = match commit_error {
                    Some(e) if ok => Err(StoreError::Invalid(format!("commit failed: {e}"))),
                    _ => result,
                };
                let _ = done_tx.send(result);
            });
            (ok, completion)
        });
        self.tx
            .send(Job { run })
            .map_err(|_| StoreError::WriterGone)?;
        done_rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

/// Finishes copying the WAL into the database and makes the log start over.
/// Run by the writer between batches, so it never waits for another writer.
fn restart_wal(conn: &Connection) {
    let started = Instant::now();
    match conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0)) {
        Ok(busy) => tracing::debug!(
            busy,
            ms = started.elapsed().as_millis() as u64,
            "store: WAL restarted"
        ),
        Err(e) => tracing::warn!(error = %e, "store: RESTART checkpoint failed"),
    }
}

fn run_batch(conn: &Connection, batch: &mut Vec<Job>) {
    let started = Instant::now();
    let n = batch.len();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = e.to_string();
        tracing::error!(error = %msg, "store: cannot begin a transaction");
        // Dropping the jobs drops their reply channels: callers see WriterGone.
        batch.clear();
        return;
    }
    let mut completions = Vec::with_capacity(n);
    for job in batch.drain(..) {
        if let Err(e) = conn.execute_batch("SAVEPOINT job") {
            tracing::error!(error = %e, "store: savepoint failed");
        }
        let (ok, completion) = (job.run)(conn);
        let end = if ok {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = conn.execute_batch(end) {
            tracing::error!(error = %e, "store: savepoint release failed");
        }
        completions.push(completion);
    }
    let commit = conn.execute_batch("COMMIT");
    metrics::histogram!("tern_store_commit_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("tern_store_commit_batch_size").record(n as f64);
    match commit {
        Ok(()) => completions.into_iter().for_each(|c| c(None)),
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "store: commit failed");
            let _ = conn.execute_batch("ROLLBACK");
            completions.into_iter().for_each(|c| c(Some(&msg)));
        }
    }
}
