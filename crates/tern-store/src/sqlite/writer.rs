//! Group commit: one task owns the write connection. Writes from every
//! session queue up while the previous commit is being fsynced, and the next
//! batch takes all of them into one transaction: one fsync for many
//! messages. Each write runs inside its own SAVEPOINT, so one failing write
//! (an account deleted meanwhile, say) does not undo the others. A caller
//! hears back only after the COMMIT, i.e. after the WAL fsync.

use crate::{Result, StoreError};
use sqlx::SqliteConnection;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// The future a write operation returns, borrowing the connection.
pub type OpFuture<'c, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'c>>;

type Completion = Box<dyn FnOnce(Option<&str>) + Send>;
type RunFn = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection) -> Pin<Box<dyn Future<Output = (bool, Completion)> + Send + 'c>>
        + Send,
>;

/// A queued write.
pub struct Job {
    run: RunFn,
    /// Reports a failure without running the operation.
    fail: Box<dyn FnOnce(&str) + Send>,
}

/// Queues `op` and waits until its transaction is committed.
pub async fn submit<T, F>(tx: &mpsc::Sender<Job>, op: F) -> Result<T>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> OpFuture<'c, T> + Send + 'static,
{
    let (done_tx, done_rx) = oneshot::channel::<Result<T>>();
    let done_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(done_tx)));
    let fail_tx = done_tx.clone();
    let fail = Box::new(move |e: &str| {
        if let Some(tx) = fail_tx.lock().ok().and_then(|mut t| t.take()) {
            let _ = tx.send(Err(StoreError::Invalid(format!("transaction failed: {e}"))));
        }
    });
    let run: RunFn = Box::new(move |conn| {
        Box::pin(async move {
            let result = op(conn).await;
            let ok = result.is_ok();
            let completion: Completion = Box::new(move |commit_error: Option<&str>| {
                let result = match commit_error {
                    None => result,
                    Some(e) if ok => Err(StoreError::Invalid(format!("commit failed: {e}"))),
                    Some(_) => result,
                };
                if let Some(tx) = done_tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(result);
                }
            });
            (ok, completion)
        })
    });
    tx.send(Job { run, fail }).await.map_err(|_| StoreError::WriterGone)?;
    done_rx.await.map_err(|_| StoreError::WriterGone)?
}

/// Starts the writer task on its own connection.
pub fn spawn(mut conn: SqliteConnection, max_batch: usize) -> mpsc::Sender<Job> {
    let (tx, mut rx) = mpsc::channel::<Job>(max_batch * 4);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(max_batch);
        while rx.recv_many(&mut batch, max_batch).await > 0 {
            run_batch(&mut conn, &mut batch).await;
            batch.clear();
        }
    });
    tx
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> std::result::Result<(), sqlx::Error> {
    sqlx::raw_sql(sql).execute(&mut *conn).await.map(|_| ())
}

async fn run_batch(conn: &mut SqliteConnection, batch: &mut Vec<Job>) {
    let started = Instant::now();
    let n = batch.len();
    let mut completions = Vec::with_capacity(n);
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE").await {
        let msg = e.to_string();
        tracing::error!(error = %msg, "store: cannot begin transaction");
        for job in batch.drain(..) {
            (job.fail)(&msg);
        }
        return;
    }
    for job in batch.drain(..) {
        if let Err(e) = exec(conn, "SAVEPOINT job").await {
            tracing::error!(error = %e, "store: savepoint failed");
        }
        let (ok, completion) = (job.run)(conn).await;
        let end = if ok {
            "RELEASE job"
        } else {
            "ROLLBACK TO job; RELEASE job"
        };
        if let Err(e) = exec(conn, end).await {
            tracing::error!(error = %e, "store: savepoint release failed");
        }
        completions.push(completion);
    }
    let commit = exec(conn, "COMMIT").await;
    let elapsed = started.elapsed();
    metrics::histogram!("tern_store_commit_seconds").record(elapsed.as_secs_f64());
    metrics::histogram!("tern_store_commit_batch_size").record(n as f64);
    match commit {
        Ok(()) => completions.into_iter().for_each(|c| c(None)),
        Err(e) => {
            let msg = e.to_string();
            tracing::error!(error = %msg, "store: commit failed");
            let _ = exec(conn, "ROLLBACK").await;
            completions.into_iter().for_each(|c| c(Some(&msg)));
        }
    }
}
