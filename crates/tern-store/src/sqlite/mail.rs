//! [`MailStore`] for SQLite: delivery into INBOX, listing, reading, expunge.

use super::SqliteStore;
use crate::{AccountId, MailStore, MailboxInfo, MessageEntry, NewMessage, Result, StoreError, meta};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use sqlx::Row;

#[async_trait]
impl MailStore for SqliteStore {
    async fn deliver(&self, message: NewMessage) -> Result<()> {
        // Hash and parse in the caller's task, so the writer only writes.
        let hash = hex::encode(Sha256::digest(message.raw.as_slice()));
        let meta = serde_json::to_string(&meta::analyze(&message.raw))
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let mut recipients = message.recipients.clone();
        recipients.sort_unstable();
        recipients.dedup();
        let size = message.raw.len() as i64;
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO blobs(hash, size, refcount, meta, data) VALUES (?, ?, 0, ?, ?)
                     ON CONFLICT(hash) DO NOTHING",
                )
                .bind(&hash)
                .bind(size)
                .bind(&meta)
                .bind(message.raw.as_slice())
                .execute(&mut *c)
                .await?;
                let mut delivered = 0i64;
                for account in &recipients {
                    let row: Option<(i64, i64, i64)> = sqlx::query_as(
                        "UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1
                         WHERE account_id = ? AND name = 'INBOX'
                         RETURNING id, uidnext - 1, highest_modseq",
                    )
                    .bind(account)
                    .fetch_optional(&mut *c)
                    .await?;
                    let Some((mailbox, uid, modseq)) = row else {
                        tracing::warn!(queue_id = %message.queue_id, account, "recipient account vanished before delivery");
                        continue;
                    };
                    sqlx::query(
                        "INSERT INTO mailbox_messages(mailbox_id, uid, blob_hash, size, flags, modseq,
                            internaldate, queue_id, mail_from, params)
                         VALUES (?, ?, ?, ?, '', ?, ?, ?, ?, ?)",
                    )
                    .bind(mailbox)
                    .bind(uid)
                    .bind(&hash)
                    .bind(size)
                    .bind(modseq)
                    .bind(message.received_at)
                    .bind(&message.queue_id)
                    .bind(&message.mail_from)
                    .bind(&message.envelope_params)
                    .execute(&mut *c)
                    .await?;
                    sqlx::query("UPDATE accounts SET used = used + ? WHERE id = ?")
                        .bind(size)
                        .bind(account)
                        .execute(&mut *c)
                        .await?;
                    delivered += 1;
                }
                if delivered == 0 {
                    return Err(StoreError::NotFound("every recipient account".into()));
                }
                sqlx::query("UPDATE blobs SET refcount = refcount + ? WHERE hash = ?")
                    .bind(delivered)
                    .bind(&hash)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn mailbox(&self, account: AccountId, name: &str) -> Result<MailboxInfo> {
        let row = sqlx::query(
            "SELECT id, uidvalidity, uidnext, highest_modseq FROM mailboxes WHERE account_id = ? AND name = ?",
        )
        .bind(account)
        .bind(name)
        .fetch_optional(&self.read)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))?;
        Ok(MailboxInfo {
            id: row.get(0),
            uidvalidity: row.get::<i64, _>(1) as u32,
            uidnext: row.get::<i64, _>(2) as u32,
            highest_modseq: row.get::<i64, _>(3) as u64,
        })
    }

    async fn list(&self, account: AccountId, mailbox: &str) -> Result<Vec<MessageEntry>> {
        let rows = sqlx::query(
            "SELECT mm.uid, mm.size, mm.blob_hash FROM mailbox_messages mm
             JOIN mailboxes m ON mm.mailbox_id = m.id
             WHERE m.account_id = ? AND m.name = ? ORDER BY mm.uid",
        )
        .bind(account)
        .bind(mailbox)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| MessageEntry {
                uid: r.get::<i64, _>(0) as u32,
                size: r.get::<i64, _>(1) as u64,
                blob: r.get(2),
            })
            .collect())
    }

    async fn read_blob(&self, blob: &str) -> Result<Vec<u8>> {
        sqlx::query_scalar("SELECT data FROM blobs WHERE hash = ?")
            .bind(blob)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("message body {blob}")))
    }

    async fn expunge(&self, account: AccountId, mailbox: &str, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let mailbox = mailbox.to_string();
        let uids = uids.to_vec();
        self.write(move |c| {
            Box::pin(async move {
                let mailbox_id: i64 = sqlx::query_scalar(
                    "UPDATE mailboxes SET highest_modseq = highest_modseq + 1
                     WHERE account_id = ? AND name = ? RETURNING id",
                )
                .bind(account)
                .bind(&mailbox)
                .fetch_optional(&mut *c)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
                let mut freed = 0i64;
                for uid in uids {
                    let row: Option<(String, i64)> = sqlx::query_as(
                        "DELETE FROM mailbox_messages WHERE mailbox_id = ? AND uid = ? RETURNING blob_hash, size",
                    )
                    .bind(mailbox_id)
                    .bind(uid as i64)
                    .fetch_optional(&mut *c)
                    .await?;
                    if let Some((hash, size)) = row {
                        freed += size;
                        sqlx::query("UPDATE blobs SET refcount = refcount - 1 WHERE hash = ?")
                            .bind(&hash)
                            .execute(&mut *c)
                            .await?;
                        sqlx::query("DELETE FROM blobs WHERE hash = ? AND refcount <= 0")
                            .bind(&hash)
                            .execute(&mut *c)
                            .await?;
                    }
                }
                sqlx::query("UPDATE accounts SET used = MAX(0, used - ?) WHERE id = ?")
                    .bind(freed)
                    .bind(account)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }
}
