//! [`MailStore`] for PostgreSQL: delivery (mailbox rows, queue rows, events
//! and logs in one transaction, the body in the blob store before the
//! commit), listing, reading, expunge.

use super::{PgStore, not_found};
use crate::intake::Prepared;
use crate::{
    AccountId, BlobId, MailStore, MailboxInfo, MessageEntry, NewMessage, QueuedRcpt, Result,
    StoreError,
};
use async_trait::async_trait;
use sqlx::PgConnection;
use std::collections::HashMap;

#[async_trait]
impl MailStore for PgStore {
    async fn deliver_all(&self, messages: Vec<NewMessage>) -> Result<()> {
        let prepared = messages
            .into_iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>>>()?;
        self.submit(prepared, None).await.map(|_| ())
    }

    async fn mailbox(&self, account: AccountId, name: &str) -> Result<MailboxInfo> {
        let row: Option<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT id, uidvalidity, uidnext, highest_modseq FROM mailboxes WHERE account_id = $1 AND name = $2",
        )
        .bind(account)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        let (id, uidvalidity, uidnext, modseq) =
            row.ok_or_else(|| not_found(format!("mailbox {name}")))?;
        Ok(MailboxInfo {
            id,
            uidvalidity: uidvalidity as u32,
            uidnext: uidnext as u32,
            highest_modseq: modseq as u64,
        })
    }

    async fn list(&self, account: AccountId, mailbox: &str) -> Result<Vec<MessageEntry>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT mm.uid, mm.size, mm.blob_id FROM mailbox_messages mm
             JOIN mailboxes m ON mm.mailbox_id = m.id
             WHERE m.account_id = $1 AND m.name = $2 ORDER BY mm.uid",
        )
        .bind(account)
        .bind(mailbox)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(uid, size, blob)| MessageEntry {
                uid: uid as u32,
                size: size as u64,
                blob,
            })
            .collect())
    }

    async fn read_blob(&self, blob: BlobId) -> Result<Vec<u8>> {
        self.body(blob).await
    }

    async fn expunge(&self, account: AccountId, mailbox: &str, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "UPDATE mailboxes SET highest_modseq = highest_modseq + 1
             WHERE account_id = $1 AND name = $2 RETURNING id",
        )
        .bind(account)
        .bind(mailbox)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(format!("mailbox {mailbox}")))?;
        delete_uids(&mut tx, id, uids).await?;
        self.commit_changed(tx, &[account]).await
    }
}

/// Deletes messages by UID (the triggers release usage and references and
/// leave tombstones); the caller has locked the mailbox and advanced its
/// MODSEQ.
pub(super) async fn delete_uids(tx: &mut PgConnection, mailbox: i64, uids: &[u32]) -> Result<()> {
    let uids: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
    sqlx::query("DELETE FROM mailbox_messages WHERE mailbox_id = $1 AND uid = ANY($2)")
        .bind(mailbox)
        .bind(&uids)
        .execute(tx)
        .await?;
    Ok(())
}

/// The columns a message copy carries over.
pub(super) struct Row<'a> {
    pub blob: i64,
    pub size: i64,
    pub flags: &'a str,
    pub internaldate: i64,
    pub queue_id: &'a str,
    pub mail_from: &'a str,
    pub params: &'a str,
}

/// Adds a message to a mailbox with the next UID and MODSEQ (the mailbox
/// row is locked until the commit), counting its body's reference and its
/// account's bytes (migration 0007: an insert counts itself); returns its UID.
pub(super) async fn insert_message(tx: &mut PgConnection, mailbox: i64, r: Row<'_>) -> Result<u32> {
    let uid: Option<i64> = sqlx::query_scalar(
        "WITH m AS (
            UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1
            WHERE id = $1 RETURNING id, account_id, uidnext - 1 AS uid, highest_modseq),
         used AS (UPDATE accounts SET used = used + $3 WHERE id = (SELECT account_id FROM m)),
         referred AS (UPDATE blobs SET refcount = refcount + 1 WHERE id = $2 AND EXISTS (SELECT 1 FROM m))
         INSERT INTO mailbox_messages(mailbox_id, uid, blob_id, size, flags, modseq,
            internaldate, queue_id, mail_from, params, saved_at)
         SELECT id, uid, $2, $3, $4, highest_modseq, $5, $6, $7, $8, EXTRACT(EPOCH FROM now())::BIGINT
         FROM m RETURNING uid",
    )
    .bind(mailbox)
    .bind(r.blob)
    .bind(r.size)
    .bind(r.flags)
    .bind(r.internaldate)
    .bind(r.queue_id)
    .bind(r.mail_from)
    .bind(r.params)
    .fetch_optional(tx)
    .await?;
    uid.map(|u| u as u32)
        .ok_or_else(|| not_found(format!("mailbox {mailbox}")))
}

/// The folders copies filed as each `(account, role)` go to (see the
/// SQLite backend's rule: by special use, then by name, then INBOX), in
/// one statement; `None` for an account that is gone.
pub(super) async fn target_folders(
    tx: &mut PgConnection,
    pairs: &[(AccountId, &'static str)],
) -> Result<HashMap<(AccountId, &'static str), Option<i64>>> {
    if pairs.is_empty() {
        return Ok(HashMap::new());
    }
    let accounts: Vec<i64> = pairs.iter().map(|(a, _)| *a).collect();
    let specials: Vec<Option<&str>> = pairs
        .iter()
        .map(|(_, r)| crate::folder_rules::special_use_of(r))
        .collect();
    let names: Vec<&str> = pairs
        .iter()
        .zip(&specials)
        .map(|((_, r), s)| if s.is_some() { "INBOX" } else { *r })
        .collect();
    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT u.n, (SELECT id FROM mailboxes WHERE account_id = u.a
                          AND ((special_use = u.s) OR name = u.b OR name = 'INBOX')
                      ORDER BY special_use = u.s IS NOT TRUE, name <> u.b, id LIMIT 1)
         FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[]) WITH ORDINALITY AS u(a, s, b, n)",
    )
    .bind(&accounts)
    .bind(&specials)
    .bind(&names)
    .fetch_all(tx)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(n, f)| Some((*pairs.get(usize::try_from(n - 1).ok()?)?, f)))
        .collect())
}

impl PgStore {
    /// Stores prepared messages, all or none, with the other writes of the
    /// moment ([`super::writer`]): bodies put first (under their locks),
    /// then mailbox rows, queue rows, events, logs and idempotent
    /// responses, then `after` (a delivery attempt's outcomes); returns the
    /// queued recipients once committed.
    pub(super) async fn submit(
        &self,
        prepared: Vec<Prepared>,
        after: Option<super::writer::Completed>,
    ) -> Result<Vec<QueuedRcpt>> {
        let blobs = self.blobs.clone();
        let writer = self.writer.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(4 * super::writer::MAX_BATCH);
            super::writer::start(
                &self.pool,
                blobs,
                self.node.clone(),
                self.queue_wakeup.clone(),
                self.lookups.clone(),
                rx,
            );
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        writer
            .send(super::writer::Job {
                prepared,
                after,
                reply,
            })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        answer.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Commits `tx` after telling every node (NOTIFY, delivered at commit)
    /// that these accounts' mail changed.
    pub(super) async fn commit_changed(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        accounts: &[AccountId],
    ) -> Result<()> {
        if !accounts.is_empty() {
            let mut channels: Vec<String> = accounts
                .iter()
                .map(|a| super::changes::channel(*a))
                .collect();
            channels.sort();
            channels.dedup();
            sqlx::query("SELECT pg_notify(c, '') FROM UNNEST($1::TEXT[]) AS c")
                .bind(&channels)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Queues the remote recipients of the batch's messages (each with its
/// body's row id) in one statement: the messages' rows, then their
/// recipients' (migration 0007: the body references were counted with the
/// body rows). Returns each message's queued recipients, in order.
pub(super) async fn insert_queued(
    tx: &mut PgConnection,
    messages: &[(&Prepared, i64)],
    node: &str,
) -> Result<Vec<Vec<QueuedRcpt>>> {
    let mut out = vec![Vec::new(); messages.len()];
    let queued: Vec<usize> = (0..messages.len())
        .filter(|i| !messages[*i].0.message.outbound.is_empty())
        .collect();
    if queued.is_empty() {
        return Ok(out);
    }
    #[derive(Default)]
    struct Columns<'a> {
        queue_id: Vec<&'a str>,
        blob: Vec<i64>,
        from: Vec<&'a str>,
        params: Vec<&'a str>,
        size: Vec<i64>,
        created: Vec<i64>,
        expires: Vec<i64>,
        // One per recipient: its message (1-based, in `queued` order).
        of: Vec<i64>,
        address: Vec<&'a str>,
        domain: Vec<&'a str>,
        rcpt_params: Vec<&'a str>,
        next_attempt: Vec<i64>,
        lease: Vec<i64>,
        owner: Vec<&'a str>,
    }
    let mut c = Columns::default();
    for (n, i) in queued.iter().enumerate() {
        let (p, blob) = messages[*i];
        let m = &p.message;
        c.queue_id.push(&m.queue_id);
        c.blob.push(blob);
        c.from.push(&m.mail_from);
        c.params.push(&m.envelope_params);
        c.size.push(m.raw.len() as i64);
        c.created.push(m.received_at);
        c.expires.push(m.expires_at);
        let (next_attempt, lease, owner) = p.queue_schedule(node);
        for r in &m.outbound {
            c.of.push(n as i64 + 1);
            c.address.push(&r.address);
            c.domain.push(&r.domain);
            c.rcpt_params.push(&r.params);
            c.next_attempt.push(next_attempt);
            c.lease.push(lease);
            c.owner.push(owner);
        }
    }
    // Ids are drawn in insertion order (`ORDER BY n`, `ORDER BY k`): the
    // messages' rank by id is their place in the arrays, and so is the
    // recipients'. The recipients' foreign key is checked at the end of the
    // statement, when the messages' rows are there.
    let mut rows: Vec<(i64, i64)> = sqlx::query_as(
        "WITH m AS (
             INSERT INTO queue_messages(queue_id, blob_id, mail_from, params, size, created_at, expires_at)
             SELECT q, b, f, p, s, c, e
             FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[],
                         $7::BIGINT[]) WITH ORDINALITY AS u(q, b, f, p, s, c, e, n)
             ORDER BY n RETURNING id),
         ranked AS (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM m)
         INSERT INTO queue_rcpts(message_id, address, domain, params, next_attempt, lease_until, lease_owner)
         SELECT ranked.id, r.a, r.d, r.p, r.t, r.l, r.o
         FROM UNNEST($8::BIGINT[], $9::TEXT[], $10::TEXT[], $11::TEXT[], $12::BIGINT[], $13::BIGINT[],
                     $14::TEXT[]) WITH ORDINALITY AS r(m, a, d, p, t, l, o, k)
         JOIN ranked ON ranked.n = r.m
         ORDER BY r.k RETURNING id, message_id",
    )
    .bind(&c.queue_id)
    .bind(&c.blob)
    .bind(&c.from)
    .bind(&c.params)
    .bind(&c.size)
    .bind(&c.created)
    .bind(&c.expires)
    .bind(&c.of)
    .bind(&c.address)
    .bind(&c.domain)
    .bind(&c.rcpt_params)
    .bind(&c.next_attempt)
    .bind(&c.lease)
    .bind(&c.owner)
    .fetch_all(&mut *tx)
    .await?;
    rows.sort_unstable();
    let mut rows = rows.into_iter();
    for i in queued {
        let (p, blob) = messages[i];
        for r in &p.message.outbound {
            let (id, message_id) = rows
                .next()
                .ok_or_else(|| StoreError::Db("a queued recipient's row is missing".into()))?;
            out[i].push(p.queued(r, id, message_id, blob, node));
        }
    }
    Ok(out)
}
