//! [`MailStore`] for SQLite: delivery into INBOX, listing, reading, expunge.

use super::SqliteStore;
use crate::intake::Prepared;
use crate::{
    AccountId, BlobId, MailStore, MailboxInfo, MessageEntry, NewMessage, Result, StoreError,
};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

#[async_trait]
impl MailStore for SqliteStore {
    async fn deliver_all(&self, messages: Vec<NewMessage>) -> Result<()> {
        // Hash and parse in the caller's task, so the writer only writes.
        let prepared = messages
            .into_iter()
            .map(Prepared::new)
            .collect::<Result<Vec<_>>>()?;
        let notify: Vec<AccountId> = prepared.iter().flat_map(|p| p.notify.clone()).collect();
        let queued = prepared.iter().any(|p| !p.message.outbound.is_empty());
        let bodies = prepared.iter().map(Prepared::body).collect();
        let node = self.node.clone();
        let r = self
            .write_with_bodies(bodies, move |c, external| {
                prepared
                    .iter()
                    .try_for_each(|p| p.insert(c, external, &node).map(|_| ()))
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

    async fn mailbox(&self, account: AccountId, name: &str) -> Result<MailboxInfo> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, uidvalidity, uidnext, highest_modseq FROM mailboxes WHERE account_id = ? AND name = ?",
            )?
            .query_row(params![account, name], |r| {
                Ok(MailboxInfo {
                    id: r.get(0)?,
                    uidvalidity: r.get::<_, i64>(1)? as u32,
                    uidnext: r.get::<_, i64>(2)? as u32,
                    highest_modseq: r.get::<_, i64>(3)? as u64,
                })
            })
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))
        })
    }

    async fn list(&self, account: AccountId, mailbox: &str) -> Result<Vec<MessageEntry>> {
        self.read_bulk(|c| {
            let mut st = c.prepare_cached(
                "SELECT mm.uid, mm.size, mm.blob_id FROM mailbox_messages mm
                 JOIN mailboxes m ON mm.mailbox_id = m.id
                 WHERE m.account_id = ? AND m.name = ? ORDER BY mm.uid",
            )?;
            let rows = st.query_map(params![account, mailbox], |r| {
                Ok(MessageEntry {
                    uid: r.get::<_, i64>(0)? as u32,
                    size: r.get::<_, i64>(1)? as u64,
                    blob: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn read_blob(&self, blob: BlobId) -> Result<Vec<u8>> {
        // The hash only for a body in the blob store (FETCH's hot path).
        let (data, external) = self.read_bulk(|c| {
            c.prepare_cached(
                "SELECT data, CASE WHEN external <> 0 THEN hash END FROM blobs WHERE id = ?",
            )?
            .query_row([blob], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("message body {blob}")))
        })?;
        match external {
            Some(hash) => self.external_body(blob, &hash).await,
            None => Ok(data),
        }
    }

    async fn expunge(&self, account: AccountId, mailbox: &str, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let mailbox = mailbox.to_string();
        let uids = uids.to_vec();
        let r = self
            .write(move |c| {
                let mailbox_id: i64 = c
                    .query_row(
                        "UPDATE mailboxes SET highest_modseq = highest_modseq + 1
                     WHERE account_id = ? AND name = ? RETURNING id",
                        params![account, mailbox],
                        |r| r.get(0),
                    )
                    .optional()?
                    .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
                // The delete trigger releases usage and blob references.
                let mut del = c.prepare_cached(
                    "DELETE FROM mailbox_messages WHERE mailbox_id = ? AND uid = ?",
                )?;
                for uid in uids {
                    del.execute(params![mailbox_id, uid as i64])?;
                }
                Ok(())
            })
            .await;
        if r.is_ok() {
            self.changed(account);
        }
        r
    }
}

/// The folder a copy filed as `role` ("INBOX", "Junk", "Sent") goes to in
/// `account`: Junk and Sent are found by special use (RFC 6154), whatever a
/// client renamed them to, and fall back to INBOX when the account has none,
/// so an accepted copy is never dropped or refused for a folder name.
/// `None` only when the account itself is gone.
fn target_folder(c: &rusqlite::Connection, account: AccountId, role: &str) -> Result<Option<i64>> {
    let special = crate::folder_rules::special_use_of(role);
    if let Some(special) = special
        && let Some(id) = c
            .prepare_cached(
                "SELECT id FROM mailboxes WHERE account_id = ? AND special_use = ? ORDER BY id LIMIT 1",
            )?
            .query_row(params![account, special], |r| r.get(0))
            .optional()?
    {
        return Ok(Some(id));
    }
    let by_name = if special.is_some() { "INBOX" } else { role };
    for name in [by_name, "INBOX"] {
        let found = c
            .prepare_cached("SELECT id FROM mailboxes WHERE account_id = ? AND name = ?")?
            .query_row(params![account, name], |r| r.get(0))
            .optional()?;
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Inserts a prepared message (SQLite).
pub(super) trait InsertSqlite {
    fn insert(
        &self,
        c: &rusqlite::Connection,
        external: bool,
        node: &str,
    ) -> Result<Vec<crate::QueuedRcpt>>;
}

impl InsertSqlite for Prepared {
    /// Inserts the body (or, when `external`, its hash: the body is in the
    /// blob store), the mailbox rows and the queue rows; returns the queued
    /// recipients. Runs in the writer.
    fn insert(
        &self,
        c: &rusqlite::Connection,
        external: bool,
        node: &str,
    ) -> Result<Vec<crate::QueuedRcpt>> {
        let m = &self.message;
        let size = m.raw.len() as i64;
        let data: &[u8] = if external { &[] } else { m.raw.as_slice() };
        c.prepare_cached(
            "INSERT INTO blobs(hash, size, refcount, meta, data, external) VALUES (?, ?, 0, ?, ?, ?)",
        )?
        .execute(params![self.hash, size, self.meta(), data, external])?;
        let blob_id = c.last_insert_rowid();
        if let Some(a) = &self.analysed {
            c.prepare_cached("INSERT INTO blob_headers(blob_id, header) VALUES (?, ?)")?
                .execute(params![blob_id, &m.raw[..a.header_len]])?;
            c.prepare_cached("INSERT INTO blob_fields(blob_id, names) VALUES (?, ?)")?
                .execute(params![blob_id, a.field_names])?;
        }
        let mut insert = c.prepare_cached(
            // UID and MODSEQ come from the mailbox row; the insert trigger
            // advances them, the account's usage and the blob's refcount.
            "INSERT INTO mailbox_messages(mailbox_id, uid, blob_id, size, flags, modseq,
                internaldate, queue_id, mail_from, params, saved_at)
             SELECT id, uidnext, ?, ?, ?, highest_modseq + 1, ?, ?, ?, ?, CAST(strftime('%s', 'now') AS INTEGER)
             FROM mailboxes WHERE id = ?",
        )?;
        let mut delivered = 0;
        let mut queued = Vec::new();
        for (account, mailbox) in &self.recipients {
            let Some(folder) = target_folder(c, *account, mailbox)? else {
                tracing::warn!(queue_id = %m.queue_id, account, "recipient account vanished before delivery");
                continue;
            };
            delivered += insert.execute(params![
                blob_id,
                size,
                "",
                m.received_at,
                m.queue_id,
                m.mail_from,
                m.envelope_params,
                folder
            ])?;
        }
        if let Some(account) = m.sent_copy
            && let Some(folder) = target_folder(c, account, "Sent")?
        {
            delivered += insert.execute(params![
                blob_id,
                size,
                "\\Seen",
                m.received_at,
                m.queue_id,
                m.mail_from,
                m.envelope_params,
                folder
            ])?;
        }
        if !m.outbound.is_empty() {
            c.prepare_cached(
                "INSERT INTO queue_messages(queue_id, blob_id, mail_from, params, size, created_at, expires_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                m.queue_id,
                blob_id,
                m.mail_from,
                m.envelope_params,
                size,
                m.received_at,
                m.expires_at
            ])?;
            let message_id = c.last_insert_rowid();
            let mut rcpt = c.prepare_cached(
                "INSERT INTO queue_rcpts(message_id, address, domain, params, next_attempt, lease_until, lease_owner)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )?;
            let (next_attempt, lease, owner) = self.queue_schedule(node);
            for r in &m.outbound {
                rcpt.execute(params![
                    message_id,
                    r.address,
                    r.domain,
                    r.params,
                    next_attempt,
                    lease,
                    owner
                ])?;
                delivered += 1;
                queued.push(self.queued(r, c.last_insert_rowid(), message_id, blob_id, node));
            }
        }
        super::platform::insert_events(c, &self.events)?;
        for log in &self.logs {
            super::platform::insert_log(c, log)?;
        }
        if let Some(r) = &m.idempotency {
            super::platform::insert_idempotent(c, r)?;
        }
        if delivered == 0 {
            // The savepoint rollback removes the unreferenced blob.
            return Err(StoreError::NotFound("every recipient account".into()));
        }
        Ok(queued)
    }
}
