//! [`Queue`] for SQLite: claiming due recipients with a lease, recording
//! outcomes, and the admin views behind `tern queue`.

use super::SqliteStore;
use super::mail::InsertSqlite;
use crate::intake::Prepared;
use crate::{Completion, NewMessage, Queue, QueuedRcpt, RcptOutcome, Result};
use async_trait::async_trait;
use rusqlite::{Connection, params};
use std::sync::Arc;

const RCPT_COLUMNS: &str = "r.id, r.message_id, m.queue_id, m.blob_id, m.mail_from, m.params,
    m.size, r.address, r.domain, r.params, r.attempts, m.created_at, m.expires_at,
    r.next_attempt, r.last_error, r.delay_noticed, r.lease_until";

fn rcpt_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QueuedRcpt> {
    Ok(QueuedRcpt {
        id: r.get(0)?,
        message_id: r.get(1)?,
        queue_id: r.get(2)?,
        blob: r.get(3)?,
        mail_from: r.get(4)?,
        message_params: r.get(5)?,
        size: r.get::<_, i64>(6)? as u64,
        address: r.get(7)?,
        domain: r.get(8)?,
        params: r.get(9)?,
        attempts: r.get::<_, i64>(10)? as u32,
        created_at: r.get(11)?,
        expires_at: r.get(12)?,
        next_attempt: r.get(13)?,
        last_error: r.get(14)?,
        delay_noticed: r.get::<_, i64>(15)? != 0,
        leased_until: r.get(16)?,
    })
}

fn claim(
    c: &Connection,
    node: &str,
    now: i64,
    limit: usize,
    lease_until: i64,
) -> Result<Vec<QueuedRcpt>> {
    let ids: Vec<i64> = c
        .prepare_cached(
            // The lease also moves `next_attempt` to its end: leased rows
            // drop out of the due range (claims never scan past them), and
            // a lease whose worker vanished falls due again by itself.
            "UPDATE queue_rcpts SET lease_until = ?1, next_attempt = ?1, lease_owner = ?4 WHERE id IN (
                SELECT id FROM queue_rcpts WHERE next_attempt <= ?2
                ORDER BY next_attempt LIMIT ?3)
             RETURNING id",
        )?
        .query_map(params![lease_until, now, limit as i64, node], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut st = c.prepare_cached(&format!(
        "SELECT {RCPT_COLUMNS} FROM queue_rcpts r JOIN queue_messages m ON m.id = r.message_id
         WHERE r.id = ?"
    ))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(st.query_row([id], rcpt_row)?);
    }
    // Recipients of one message together, then by message age.
    out.sort_by_key(|r| (r.message_id, r.id));
    Ok(out)
}

#[async_trait]
impl Queue for SqliteStore {
    async fn enqueue(&self, message: NewMessage) -> Result<Vec<QueuedRcpt>> {
        let leased = message.lease_until > 0;
        let prepared = Prepared::new(message)?;
        let node = self.node.clone();
        let notify = prepared.notify.clone();
        let r = self
            .write_with_bodies(vec![prepared.body()], move |c, external| {
                prepared.insert(c, external, &node)
            })
            .await;
        if let Ok(q) = &r {
            notify.into_iter().for_each(|a| self.changed(a));
            if !q.is_empty() && !leased {
                self.queue_wakeup.notify_one();
            }
        }
        r
    }

    async fn claim_due(&self, now: i64, limit: usize, lease_until: i64) -> Result<Vec<QueuedRcpt>> {
        let node = self.node.clone();
        self.write(move |c| claim(c, &node, now, limit, lease_until))
            .await
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
        let queued = !prepared.is_empty();
        let notify: Vec<_> = prepared.iter().flat_map(|p| p.notify.clone()).collect();
        let events = crate::intake::encode_events(events);
        let bodies = prepared.iter().map(Prepared::body).collect();
        let node = self.node.clone();
        let r = self
            .write_with_bodies(bodies, move |c, external| {
                for p in &prepared {
                    p.insert(c, external, &node)?;
                }
                let mut done = c.prepare_cached("DELETE FROM queue_rcpts WHERE id = ?")?;
                let mut defer = c.prepare_cached(
                    "UPDATE queue_rcpts SET attempts = attempts + 1, next_attempt = ?,
                        lease_until = 0, last_error = ?, delay_noticed = delay_noticed OR ?
                     WHERE id = ?",
                )?;
                for (id, outcome) in &outcomes {
                    match outcome {
                        RcptOutcome::Delivered | RcptOutcome::Failed { .. } => {
                            done.execute([id])?;
                        }
                        RcptOutcome::Deferred {
                            next_attempt,
                            error,
                            delay_noticed,
                        } => {
                            defer.execute(params![next_attempt, error, delay_noticed, id])?;
                        }
                    }
                }
                super::platform::insert_events(c, &events)?;
                super::platform::insert_suppressions(c, &suppress)?;
                Ok(())
            })
            .await;
        if r.is_ok() {
            notify.into_iter().for_each(|a| self.changed(a));
            if queued {
                self.queue_wakeup.notify_one();
            }
        }
        r
    }

    async fn queued_message(&self, queue_id: &str) -> Result<Vec<QueuedRcpt>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {RCPT_COLUMNS} FROM queue_rcpts r JOIN queue_messages m ON m.id = r.message_id
                 WHERE m.queue_id = ? ORDER BY r.id"
            ))?;
            Ok(st
                .query_map([queue_id], rcpt_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn queue_list(&self) -> Result<Vec<QueuedRcpt>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {RCPT_COLUMNS} FROM queue_rcpts r JOIN queue_messages m ON m.id = r.message_id
                 ORDER BY m.id, r.id"
            ))?;
            Ok(st.query_map([], rcpt_row)?.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn queue_retry(&self, queue_id: Option<&str>, now: i64) -> Result<usize> {
        let queue_id = queue_id.map(str::to_string);
        let n = self
            .write(move |c| {
                Ok(match &queue_id {
                    Some(q) => c.execute(
                        "UPDATE queue_rcpts SET next_attempt = ?1 WHERE next_attempt > ?1
                         AND lease_until = 0
                         AND message_id IN (SELECT id FROM queue_messages WHERE queue_id = ?2)",
                        params![now, q],
                    )?,
                    None => c.execute(
                        "UPDATE queue_rcpts SET next_attempt = ?1 WHERE next_attempt > ?1
                         AND lease_until = 0",
                        [now],
                    )?,
                })
            })
            .await?;
        self.queue_wakeup.notify_one();
        Ok(n)
    }

    async fn queue_delete(&self, queue_id: &str) -> Result<usize> {
        let queue_id = queue_id.to_string();
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM queue_rcpts WHERE message_id IN
                    (SELECT id FROM queue_messages WHERE queue_id = ?)",
                [queue_id],
            )?)
        })
        .await
    }

    async fn release_leases(&self) -> Result<()> {
        let node = self.node.clone();
        self.write(move |c| {
            c.execute(
                "UPDATE queue_rcpts SET lease_until = 0, next_attempt = ?, lease_owner = ''
                 WHERE lease_until != 0 AND lease_owner IN (?, '')",
                params![tern_core::now_unix(), node],
            )?;
            Ok(())
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<i64>> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT MIN(next_attempt) FROM queue_rcpts")?
                    .query_row([], |r| r.get(0))?,
            )
        })
    }

    fn queue_wakeup(&self) -> Arc<tokio::sync::Notify> {
        self.queue_wakeup.clone()
    }
}
