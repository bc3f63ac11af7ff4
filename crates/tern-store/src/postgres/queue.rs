//! [`Queue`] for PostgreSQL: recipients leased to one node at a time
//! (`FOR UPDATE SKIP LOCKED`: nodes claiming at once never wait for each
//! other and never get the same row), outcomes recorded in one transaction
//! with the DSNs, events and suppressions that follow from them.

use super::PgStore;
use crate::intake::{Prepared, encode_events};
use crate::{Completion, NewMessage, Queue, QueuedRcpt, RcptOutcome, Result};
use async_trait::async_trait;
use sqlx::PgConnection;
use std::sync::Arc;

#[derive(sqlx::FromRow)]
struct RcptRow {
    id: i64,
    message_id: i64,
    queue_id: String,
    blob_id: i64,
    mail_from: String,
    message_params: String,
    size: i64,
    address: String,
    domain: String,
    params: String,
    attempts: i64,
    created_at: i64,
    expires_at: i64,
    next_attempt: i64,
    last_error: Option<String>,
    delay_noticed: bool,
    lease_until: i64,
}

impl From<RcptRow> for QueuedRcpt {
    fn from(r: RcptRow) -> Self {
        QueuedRcpt {
            id: r.id,
            message_id: r.message_id,
            queue_id: r.queue_id,
            blob: r.blob_id,
            mail_from: r.mail_from,
            message_params: r.message_params,
            size: r.size as u64,
            address: r.address,
            domain: r.domain,
            params: r.params,
            attempts: r.attempts as u32,
            created_at: r.created_at,
            expires_at: r.expires_at,
            next_attempt: r.next_attempt,
            last_error: r.last_error,
            delay_noticed: r.delay_noticed,
            leased_until: r.lease_until,
        }
    }
}

/// A recipient query with its message's columns, as [`RcptRow`] names them.
fn select_rcpts(rest: &str) -> String {
    let named =
        "r.id, r.message_id, m.queue_id, m.blob_id, m.mail_from, m.params AS message_params,
        m.size, r.address, r.domain, r.params, r.attempts, m.created_at, m.expires_at,
        r.next_attempt, r.last_error, r.delay_noticed, r.lease_until";
    format!("SELECT {named} FROM queue_rcpts r JOIN queue_messages m ON m.id = r.message_id {rest}")
}

#[async_trait]
impl Queue for PgStore {
    async fn enqueue(&self, message: NewMessage) -> Result<Vec<QueuedRcpt>> {
        let prepared = Prepared::new(message)?;
        self.submit(vec![prepared], None).await
    }

    async fn claim_due(&self, now: i64, limit: usize, lease_until: i64) -> Result<Vec<QueuedRcpt>> {
        // The lease also moves `next_attempt` to its end: leased rows drop
        // out of the due range, and a lease whose node died falls due again
        // by itself.
        let rows: Vec<RcptRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH claimed AS (
                UPDATE queue_rcpts SET lease_until = $1, next_attempt = $1, lease_owner = $4
                WHERE id IN (SELECT id FROM queue_rcpts WHERE next_attempt <= $2
                             ORDER BY next_attempt LIMIT $3 FOR UPDATE SKIP LOCKED)
                RETURNING *)
             {}",
            select_rcpts("").replace("FROM queue_rcpts r", "FROM claimed r")
                + " ORDER BY r.message_id, r.id"
        )))
        .bind(lease_until)
        .bind(now)
        .bind(limit as i64)
        .bind(&*self.node)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn complete(&self, completion: Completion) -> Result<()> {
        let Completion {
            outcomes,
            new,
            events,
            suppress,
        } = completion;
        let prepared = new
            .into_iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>>>()?;
        let after = super::writer::Completed {
            outcomes,
            events: encode_events(events),
            suppress,
        };
        self.submit(prepared, Some(after)).await.map(|_| ())
    }

    async fn queued_message(&self, queue_id: &str) -> Result<Vec<QueuedRcpt>> {
        let rows: Vec<RcptRow> = sqlx::query_as(sqlx::AssertSqlSafe(select_rcpts(
            "WHERE m.queue_id = $1 ORDER BY r.id",
        )))
        .bind(queue_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn queue_list(&self) -> Result<Vec<QueuedRcpt>> {
        let rows: Vec<RcptRow> =
            sqlx::query_as(sqlx::AssertSqlSafe(select_rcpts("ORDER BY m.id, r.id")))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn queue_retry(&self, queue_id: Option<&str>, now: i64) -> Result<usize> {
        let n = sqlx::query(
            "UPDATE queue_rcpts SET next_attempt = $1 WHERE next_attempt > $1 AND lease_until = 0
             AND ($2::TEXT IS NULL OR message_id IN (SELECT id FROM queue_messages WHERE queue_id = $2))",
        )
        .bind(now)
        .bind(queue_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        self.queue_wakeup.notify_one();
        Ok(n as usize)
    }

    async fn queue_delete(&self, queue_id: &str) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT r.id FROM queue_rcpts r JOIN queue_messages m ON m.id = r.message_id
             WHERE m.queue_id = $1",
        )
        .bind(queue_id)
        .fetch_all(&mut *tx)
        .await?;
        let n = remove_rcpts(&mut tx, &ids).await?;
        tx.commit().await?;
        Ok(n as usize)
    }

    async fn release_leases(&self) -> Result<()> {
        sqlx::query(
            "UPDATE queue_rcpts SET lease_until = 0, next_attempt = $1, lease_owner = ''
             WHERE lease_until <> 0 AND lease_owner IN ($2, '')",
        )
        .bind(tern_core::now_unix())
        .bind(&*self.node)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT MIN(next_attempt) FROM queue_rcpts")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    fn queue_wakeup(&self) -> Arc<tokio::sync::Notify> {
        self.queue_wakeup.clone()
    }
}

/// Records delivery outcomes in `tx`: delivered and failed recipients leave
/// the queue (a message with its last one), deferred ones wait for their
/// next attempt, free of any lease.
pub(super) async fn record_outcomes<'a>(
    tx: &mut PgConnection,
    outcomes: impl IntoIterator<Item = &'a (i64, RcptOutcome)>,
) -> Result<()> {
    let (mut done, mut deferred) = (Vec::new(), (vec![], vec![], vec![], vec![]));
    for (id, outcome) in outcomes {
        match outcome {
            RcptOutcome::Delivered | RcptOutcome::Failed { .. } => done.push(*id),
            RcptOutcome::Deferred {
                next_attempt,
                error,
                delay_noticed,
            } => {
                deferred.0.push(*id);
                deferred.1.push(*next_attempt);
                deferred.2.push(error.clone());
                deferred.3.push(*delay_noticed);
            }
        }
    }
    remove_rcpts(tx, &done).await?;
    if !deferred.0.is_empty() {
        sqlx::query(
            "UPDATE queue_rcpts r SET attempts = attempts + 1, next_attempt = u.n,
                lease_until = 0, lease_owner = '', last_error = u.e,
                delay_noticed = r.delay_noticed OR u.d
             FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BOOLEAN[]) AS u(id, n, e, d)
             WHERE r.id = u.id",
        )
        .bind(&deferred.0)
        .bind(&deferred.1)
        .bind(&deferred.2)
        .bind(&deferred.3)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Removes the recipients `ids` from the queue in `tx`, a message with its
/// last recipient, a body with its last reference; returns how many
/// recipients were removed (migration 0008: in two statements per batch
/// rather than row triggers).
pub(super) async fn remove_rcpts(tx: &mut PgConnection, ids: &[i64]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    // Their messages, then those messages' bodies, locked in id order: two
    // nodes removing a message's last two recipients at once are ordered,
    // and the second, in a statement begun after the first's commit (READ
    // COMMITTED), sees the message empty. With the bodies locked, no other
    // writer changes their reference counts before the commit. (`= ANY` of
    // an array: the writer's generic plan of `IN (SELECT …)` scans every
    // body.)
    sqlx::query(
        "WITH m AS (SELECT id, blob_id FROM queue_messages
                    WHERE id IN (SELECT message_id FROM queue_rcpts WHERE id = ANY($1))
                    ORDER BY id FOR UPDATE)
         SELECT 1 FROM blobs WHERE id = ANY(ARRAY(SELECT blob_id FROM m)) ORDER BY id FOR UPDATE",
    )
    .bind(ids)
    .execute(&mut *tx)
    .await?;
    // One snapshot for the whole statement: a message is empty when no
    // recipient outside `ids` remains. A body loses a reference per message
    // removed; the last one takes its row (and its data, by cascade), and a
    // body kept in a blob store is handed to the collector.
    let (removed,): (i64,) = sqlx::query_as(
        "WITH gone AS (DELETE FROM queue_rcpts WHERE id = ANY($1) RETURNING message_id),
              msgs AS (DELETE FROM queue_messages m
                       WHERE m.id IN (SELECT message_id FROM gone)
                         AND NOT EXISTS (SELECT 1 FROM queue_rcpts r
                                         WHERE r.message_id = m.id AND r.id <> ALL($1))
                       RETURNING m.blob_id),
              refs AS (SELECT blob_id, COUNT(*) AS n FROM msgs GROUP BY blob_id),
              kept AS (UPDATE blobs b SET refcount = b.refcount - refs.n FROM refs
                       WHERE b.id = refs.blob_id AND b.refcount > refs.n),
              dead AS (DELETE FROM blobs b USING refs
                       WHERE b.id = refs.blob_id AND b.refcount <= refs.n
                       RETURNING b.id, b.hash),
              gc AS (INSERT INTO blob_gc(hash, since)
                     SELECT hash, EXTRACT(EPOCH FROM now())::BIGINT FROM dead
                     WHERE NOT EXISTS (SELECT 1 FROM blob_data d WHERE d.blob_id = dead.id)
                     ON CONFLICT (hash) DO NOTHING)
         SELECT COUNT(*) FROM gone",
    )
    .bind(ids)
    .fetch_one(&mut *tx)
    .await?;
    Ok(removed as u64)
}
