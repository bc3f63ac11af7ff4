//! [`Folders`] for PostgreSQL: the mailbox operations IMAP needs. A write
//! locks the mailbox rows it changes (in id order when there are two), so
//! UIDs and MODSEQs stay ordered whichever node writes.

use super::mail::{Row, delete_uids, insert_message};
use super::{PgStore, bodies::blob_row, next_uidvalidity, not_found};
use crate::folder_rules::{flag_update, normalize_name, parents, split_flags, training_verdict};
use crate::intake::PreparedAppend;
use crate::{
    AccountId, Appended, BlobId, FlagMode, FlagUpdate, Folders, MailboxRow, MessageRow, Result,
    StoreError, meta,
};
use async_trait::async_trait;
use sqlx::PgConnection;
use tern_core::now_unix;

type MessageTuple = (i64, String, i64, i64, i64, i64);

const MESSAGE_COLUMNS: &str = "uid, flags, modseq, internaldate, size, blob_id";

fn message_row((uid, flags, modseq, internaldate, size, blob): MessageTuple) -> MessageRow {
    MessageRow {
        uid: uid as u32,
        flags: split_flags(&flags),
        modseq: modseq as u64,
        internaldate,
        size: size as u64,
        blob,
    }
}

/// A message's columns a copy carries over: uid, blob, size, flags,
/// INTERNALDATE, queue id, sender, parameters.
type CopiedTuple = (i64, i64, i64, String, i64, String, String, String);

type MailboxTuple = (
    i64,
    String,
    Option<String>,
    bool,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
);

fn mailbox_row(t: MailboxTuple) -> MailboxRow {
    let (id, name, special_use, subscribed, uidvalidity, uidnext, modseq, messages, unseen, size) =
        t;
    MailboxRow {
        id,
        name,
        special_use,
        subscribed,
        uidvalidity: uidvalidity as u32,
        uidnext: uidnext as u32,
        highest_modseq: modseq as u64,
        messages: messages as u32,
        unseen: unseen as u32,
        size: size as u64,
    }
}

/// The mailbox columns, with counters from `mm` when grouped over it.
const MAILBOX_COLUMNS: &str = "m.id, m.name, m.special_use,
    EXISTS(SELECT 1 FROM subscriptions s WHERE s.account_id = m.account_id AND s.name = m.name),
    m.uidvalidity, m.uidnext, m.highest_modseq";

const COUNTERS: &str = "COUNT(mm.uid),
    COALESCE(SUM(CASE WHEN strpos(mm.flags, '\\Seen') = 0 THEN 1 ELSE 0 END), 0)::BIGINT,
    COALESCE(SUM(mm.size), 0)::BIGINT";

async fn mailbox_id(tx: &mut PgConnection, account: AccountId, name: &str) -> Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2")
            .bind(account)
            .bind(name)
            .fetch_optional(tx)
            .await?,
    )
}

/// Creates one mailbox unless it exists; whether it was created. Not
/// subscribed: CREATE does not subscribe (RFC 9051 §6.3.4).
async fn create_one(tx: &mut PgConnection, account: AccountId, name: &str) -> Result<bool> {
    let uidvalidity = next_uidvalidity(tx).await?;
    let done = sqlx::query(
        "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity) VALUES ($1, $2, NULL, $3)
         ON CONFLICT (account_id, name) DO NOTHING",
    )
    .bind(account)
    .bind(name)
    .bind(uidvalidity)
    .execute(tx)
    .await?;
    Ok(done.rows_affected() > 0)
}

async fn account_of(tx: &mut PgConnection, mailbox: i64) -> Result<(AccountId, Option<String>)> {
    sqlx::query_as("SELECT account_id, special_use FROM mailboxes WHERE id = $1")
        .bind(mailbox)
        .fetch_optional(tx)
        .await?
        .ok_or_else(|| not_found(format!("mailbox {mailbox}")))
}

/// Copies messages to another mailbox of the same account (new UIDs, the
/// same bodies), removing the originals for a move; records moves into or
/// out of Junk for the spam filter. Locks both mailboxes in id order.
async fn copy_rows(
    tx: &mut PgConnection,
    from: i64,
    uids: &[u32],
    to: i64,
    remove: bool,
) -> Result<(AccountId, Vec<(u32, u32)>)> {
    sqlx::query("SELECT id FROM mailboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind([from.min(to), from.max(to)])
        .execute(&mut *tx)
        .await?;
    let (from_account, from_use) = account_of(tx, from).await?;
    let (to_account, to_use) = account_of(tx, to).await?;
    if from_account != to_account {
        return Err(StoreError::Invalid("cannot copy between accounts".into()));
    }
    let training = training_verdict(from_use.as_deref(), to_use.as_deref(), remove);
    let wanted: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
    let rows: Vec<CopiedTuple> = sqlx::query_as(
        "SELECT uid, blob_id, size, flags, internaldate, queue_id, mail_from, params
         FROM mailbox_messages WHERE mailbox_id = $1 AND uid = ANY($2)",
    )
    .bind(from)
    .bind(&wanted)
    .fetch_all(&mut *tx)
    .await?;
    let by_uid: std::collections::HashMap<i64, _> = rows.into_iter().map(|r| (r.0, r)).collect();
    if remove && !by_uid.is_empty() {
        // Before the deletes, so their tombstones carry a new MODSEQ.
        sqlx::query("UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1")
            .bind(from)
            .execute(&mut *tx)
            .await?;
    }
    let mut pairs = Vec::new();
    let mut moved = Vec::new();
    for uid in wanted {
        let Some((_, blob, size, flags, date, qid, mail_from, params)) = by_uid.get(&uid) else {
            continue;
        };
        let new_uid = insert_message(
            tx,
            to,
            Row {
                blob: *blob,
                size: *size,
                flags,
                internaldate: *date,
                queue_id: qid,
                mail_from,
                params,
            },
        )
        .await?;
        if let Some(spam) = training {
            sqlx::query(
                "INSERT INTO junk_training(account_id, blob_id, is_spam, at) VALUES ($1, $2, $3, $4)",
            )
            .bind(from_account)
            .bind(blob)
            .bind(spam)
            .bind(now_unix())
            .execute(&mut *tx)
            .await?;
        }
        moved.push(uid as u32);
        pairs.push((uid as u32, new_uid));
    }
    if remove {
        delete_uids(tx, from, &moved).await?;
    }
    Ok((from_account, pairs))
}

#[async_trait]
impl Folders for PgStore {
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxRow>> {
        let rows: Vec<MailboxTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MAILBOX_COLUMNS}, {COUNTERS}
             FROM mailboxes m LEFT JOIN mailbox_messages mm ON mm.mailbox_id = m.id
             WHERE m.account_id = $1 GROUP BY m.id ORDER BY m.name <> 'INBOX', m.name"
        )))
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(mailbox_row).collect())
    }

    async fn find_mailbox(
        &self,
        account: AccountId,
        name: &str,
        counters: bool,
    ) -> Result<MailboxRow> {
        let name = normalize_name(name)?;
        let sql = if counters {
            format!(
                "SELECT {MAILBOX_COLUMNS}, {COUNTERS}
                 FROM mailboxes m LEFT JOIN mailbox_messages mm ON mm.mailbox_id = m.id
                 WHERE m.account_id = $1 AND m.name = $2 GROUP BY m.id"
            )
        } else {
            format!(
                "SELECT {MAILBOX_COLUMNS}, 0::BIGINT, 0::BIGINT, 0::BIGINT
                 FROM mailboxes m WHERE m.account_id = $1 AND m.name = $2"
            )
        };
        let row: Option<MailboxTuple> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(&name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(mailbox_row)
            .ok_or_else(|| not_found(format!("mailbox {name}")))
    }

    async fn create_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        let name = normalize_name(name)?;
        let mut tx = self.pool.begin().await?;
        for parent in parents(&name) {
            create_one(&mut tx, account, &parent).await?;
        }
        if !create_one(&mut tx, account, &name).await? {
            return Err(StoreError::Exists(format!("mailbox {name}")));
        }
        self.commit_changed(tx, &[account]).await
    }

    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        let name = normalize_name(name)?;
        if name == "INBOX" {
            return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
        }
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2 FOR UPDATE",
        )
        .bind(account)
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(format!("mailbox {name}")))?;
        // The delete trigger releases usage and body references.
        sqlx::query("DELETE FROM mailbox_messages WHERE mailbox_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM mailboxes WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for table in ["metadata", "urlauth_keys"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE account_id = $1 AND mailbox = $2"
            )))
            .bind(account)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        }
        self.commit_changed(tx, &[account]).await
    }

    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        let (from, to) = (normalize_name(from)?, normalize_name(to)?);
        let mut tx = self.pool.begin().await?;
        let id = mailbox_id(&mut tx, account, &from)
            .await?
            .ok_or_else(|| not_found(format!("mailbox {from}")))?;
        if mailbox_id(&mut tx, account, &to).await?.is_some() {
            return Err(StoreError::Exists(format!("mailbox {to}")));
        }
        for parent in parents(&to) {
            create_one(&mut tx, account, &parent).await?;
        }
        if from == "INBOX" {
            // INBOX's messages move into a new mailbox; INBOX stays, empty.
            create_one(&mut tx, account, &to).await?;
            let to_id = mailbox_id(&mut tx, account, &to)
                .await?
                .ok_or_else(|| not_found(&to))?;
            let uids: Vec<i64> = sqlx::query_scalar(
                "SELECT uid FROM mailbox_messages WHERE mailbox_id = $1 ORDER BY uid",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let uids: Vec<u32> = uids.into_iter().map(|u| u as u32).collect();
            copy_rows(&mut tx, id, &uids, to_id, true).await?;
            return self.commit_changed(tx, &[account]).await;
        }
        // The mailbox, its children and what is kept by their names move
        // (a name taken below the target fails the rename).
        let below = format!(
            "{}/%",
            from.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let cut = from.chars().count() as i32 + 1;
        sqlx::query(
            "UPDATE mailboxes SET name = $1 || substr(name, $2)
             WHERE account_id = $3 AND (name = $4 OR name LIKE $5)",
        )
        .bind(&to)
        .bind(cut)
        .bind(account)
        .bind(&from)
        .bind(&below)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if super::is_unique_violation(&e) {
                StoreError::Exists(format!("mailbox below {to}"))
            } else {
                e.into()
            }
        })?;
        // Kept by name: two entries meeting under one name become one.
        for (table, column, key) in [
            ("subscriptions", "name", "account_id, name"),
            ("metadata", "mailbox", "account_id, mailbox, entry"),
            ("urlauth_keys", "mailbox", "account_id, mailbox"),
        ] {
            let renamed = format!("$1 || substr({column}, $2)");
            let others = key.replace(column, &renamed);
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} t WHERE account_id = $3 AND ({column} <> $4 AND {column} NOT LIKE $5)
                   AND ({key}) IN (SELECT {others} FROM {table}
                                   WHERE account_id = $3 AND ({column} = $4 OR {column} LIKE $5))"
            )))
            .bind(&to)
            .bind(cut)
            .bind(account)
            .bind(&from)
            .bind(&below)
            .execute(&mut *tx)
            .await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE {table} SET {column} = {renamed}
                 WHERE account_id = $3 AND ({column} = $4 OR {column} LIKE $5)"
            )))
            .bind(&to)
            .bind(cut)
            .bind(account)
            .bind(&from)
            .bind(&below)
            .execute(&mut *tx)
            .await?;
        }
        self.commit_changed(tx, &[account]).await
    }

    async fn subscribe(&self, account: AccountId, name: &str, on: bool) -> Result<()> {
        let name = normalize_name(name)?;
        let mut tx = self.pool.begin().await?;
        if on {
            // Only an existing mailbox can be subscribed (RFC 9051 §6.3.7
            // lets the server check).
            if mailbox_id(&mut tx, account, &name).await?.is_none() {
                return Err(not_found(format!("mailbox {name}")));
            }
            sqlx::query(
                "INSERT INTO subscriptions(account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(account)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        } else {
            let gone = sqlx::query("DELETE FROM subscriptions WHERE account_id = $1 AND name = $2")
                .bind(account)
                .bind(&name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // A name neither subscribed nor a mailbox is an error; a
            // deleted mailbox's name can be unsubscribed.
            if gone == 0 && mailbox_id(&mut tx, account, &name).await?.is_none() {
                return Err(not_found(format!("mailbox {name}")));
            }
        }
        self.commit_changed(tx, &[account]).await
    }

    async fn subscriptions(&self, account: AccountId) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT name FROM subscriptions WHERE account_id = $1 ORDER BY name <> 'INBOX', name",
        )
        .bind(account)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn claim_recent(&self, mailbox: i64, upto: u32) -> Result<u32> {
        // The old value, and the new one only if it is higher: one
        // statement, atomic across nodes.
        let first: Option<i64> = sqlx::query_scalar(
            "WITH old AS (SELECT recent_uid FROM mailboxes WHERE id = $1 FOR UPDATE)
             UPDATE mailboxes SET recent_uid = GREATEST(mailboxes.recent_uid, $2)
             FROM old WHERE id = $1 RETURNING old.recent_uid",
        )
        .bind(mailbox)
        .bind(i64::from(upto))
        .fetch_optional(&self.pool)
        .await?;
        first
            .map(|f| f as u32)
            .ok_or_else(|| not_found(format!("mailbox {mailbox}")))
    }

    async fn recent(&self, mailbox: i64) -> Result<(u32, u32)> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM mailbox_messages mm WHERE mm.mailbox_id = m.id AND mm.uid >= m.recent_uid),
                    m.recent_uid
             FROM mailboxes m WHERE m.id = $1",
        )
        .bind(mailbox)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(n, first)| (n as u32, first as u32))
            .ok_or_else(|| not_found(format!("mailbox {mailbox}")))
    }

    async fn saved_dates(
        &self,
        mailbox: i64,
        first: u32,
        last: u32,
    ) -> Result<Vec<(u32, Option<i64>)>> {
        let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT uid, saved_at FROM mailbox_messages
             WHERE mailbox_id = $1 AND uid BETWEEN $2 AND $3 ORDER BY uid",
        )
        .bind(mailbox)
        .bind(i64::from(first))
        .bind(i64::from(last))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(u, s)| (u as u32, s)).collect())
    }

    async fn urlauth_key(
        &self,
        account: AccountId,
        mailbox: &str,
        create: bool,
    ) -> Result<Option<Vec<u8>>> {
        let mailbox = normalize_name(mailbox)?;
        let read = "SELECT key FROM urlauth_keys WHERE account_id = $1 AND mailbox = $2";
        if !create {
            return Ok(sqlx::query_scalar(read)
                .bind(account)
                .bind(&mailbox)
                .fetch_optional(&self.pool)
                .await?);
        }
        let mut tx = self.pool.begin().await?;
        if mailbox_id(&mut tx, account, &mailbox).await?.is_none() {
            return Err(not_found(format!("mailbox {mailbox}")));
        }
        let fresh: [u8; 32] = rand::random();
        sqlx::query(
            "INSERT INTO urlauth_keys(account_id, mailbox, key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind(account)
        .bind(&mailbox)
        .bind(fresh.as_slice())
        .execute(&mut *tx)
        .await?;
        let key: Option<Vec<u8>> = sqlx::query_scalar(read)
            .bind(account)
            .bind(&mailbox)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn reset_urlauth_keys(&self, account: AccountId, mailbox: Option<&str>) -> Result<()> {
        let mailbox = mailbox.map(normalize_name).transpose()?;
        sqlx::query(
            "DELETE FROM urlauth_keys WHERE account_id = $1 AND ($2::TEXT IS NULL OR mailbox = $2)",
        )
        .bind(account)
        .bind(mailbox)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn metadata(&self, account: AccountId, mailbox: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mailbox = if mailbox.is_empty() {
            String::new()
        } else {
            normalize_name(mailbox)?
        };
        let mut c = self.pool.acquire().await?;
        if !mailbox.is_empty() && mailbox_id(&mut c, account, &mailbox).await?.is_none() {
            return Err(not_found(format!("mailbox {mailbox}")));
        }
        Ok(sqlx::query_as(
            "SELECT entry, value FROM metadata WHERE account_id = $1 AND mailbox = $2 ORDER BY entry",
        )
        .bind(account)
        .bind(&mailbox)
        .fetch_all(&mut *c)
        .await?)
    }

    async fn set_metadata(
        &self,
        account: AccountId,
        mailbox: &str,
        changes: Vec<(String, Option<Vec<u8>>)>,
        max_entries: usize,
    ) -> Result<()> {
        let mailbox = if mailbox.is_empty() {
            String::new()
        } else {
            normalize_name(mailbox)?
        };
        let mut tx = self.pool.begin().await?;
        if !mailbox.is_empty() && mailbox_id(&mut tx, account, &mailbox).await?.is_none() {
            return Err(not_found(format!("mailbox {mailbox}")));
        }
        for (entry, value) in &changes {
            match value {
                Some(v) => sqlx::query(
                    "INSERT INTO metadata(account_id, mailbox, entry, value) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (account_id, mailbox, entry) DO UPDATE SET value = EXCLUDED.value",
                )
                .bind(account)
                .bind(&mailbox)
                .bind(entry)
                .bind(v)
                .execute(&mut *tx)
                .await?,
                None => sqlx::query(
                    "DELETE FROM metadata WHERE account_id = $1 AND mailbox = $2 AND entry = $3",
                )
                .bind(account)
                .bind(&mailbox)
                .bind(entry)
                .execute(&mut *tx)
                .await?,
            };
        }
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM metadata WHERE account_id = $1 AND mailbox = $2",
        )
        .bind(account)
        .bind(&mailbox)
        .fetch_one(&mut *tx)
        .await?;
        if n as usize > max_entries {
            // Dropping the transaction rolls the whole change back.
            return Err(StoreError::Invalid(format!(
                "too many annotations (at most {max_entries})"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn messages(&self, mailbox: i64) -> Result<Vec<MessageRow>> {
        let rows: Vec<MessageTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM mailbox_messages WHERE mailbox_id = $1 ORDER BY uid"
        )))
        .bind(mailbox)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(message_row).collect())
    }

    async fn messages_in(&self, mailbox: i64, first: u32, last: u32) -> Result<Vec<MessageRow>> {
        let rows: Vec<MessageTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM mailbox_messages
             WHERE mailbox_id = $1 AND uid BETWEEN $2 AND $3 ORDER BY uid"
        )))
        .bind(mailbox)
        .bind(i64::from(first))
        .bind(i64::from(last))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(message_row).collect())
    }

    async fn changed_since(&self, mailbox: i64, modseq: u64) -> Result<Vec<MessageRow>> {
        let rows: Vec<MessageTuple> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {MESSAGE_COLUMNS} FROM mailbox_messages
             WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid"
        )))
        .bind(mailbox)
        .bind(modseq as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(message_row).collect())
    }

    async fn vanished_since(&self, mailbox: i64, modseq: u64) -> Result<Vec<u32>> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
        )
        .bind(mailbox)
        .bind(modseq as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|u| u as u32).collect())
    }

    async fn uids(&self, mailbox: i64) -> Result<Vec<u32>> {
        let rows: Vec<i64> = sqlx::query_scalar(
            "SELECT uid FROM mailbox_messages WHERE mailbox_id = $1 ORDER BY uid",
        )
        .bind(mailbox)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|u| u as u32).collect())
    }

    async fn mailbox_state(&self, mailbox: i64) -> Result<(u64, u32)> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT highest_modseq, (SELECT COUNT(*) FROM mailbox_messages WHERE mailbox_id = $1)
             FROM mailboxes WHERE id = $1",
        )
        .bind(mailbox)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(m, n)| (m as u64, n as u32))
            .ok_or_else(|| not_found(format!("mailbox {mailbox}")))
    }

    async fn mailbox_keywords(&self, mailbox: i64) -> Result<Vec<String>> {
        let all: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT flags FROM mailbox_messages WHERE mailbox_id = $1 AND flags <> ''",
        )
        .bind(mailbox)
        .fetch_all(&self.pool)
        .await?;
        let mut set = std::collections::BTreeSet::new();
        for f in all {
            set.extend(split_flags(&f).into_iter().filter(|k| !k.starts_with('\\')));
        }
        Ok(set.into_iter().collect())
    }

    async fn read_header(&self, blob: BlobId) -> Result<Vec<u8>> {
        let header: Option<Option<Vec<u8>>> =
            sqlx::query_scalar("SELECT header FROM blobs WHERE id = $1")
                .bind(blob)
                .fetch_optional(&self.pool)
                .await?;
        match header.ok_or_else(|| not_found(format!("message {blob}")))? {
            Some(h) => Ok(h),
            // A queue-only body: its header block from the body itself.
            None => {
                let raw = self.body(blob).await?;
                let end = meta::find_body_offset(&raw) as usize;
                Ok(raw[..end.min(raw.len())].to_vec())
            }
        }
    }

    async fn headers_in(&self, mailbox: i64, first: u32, last: u32) -> Result<Vec<(u32, Vec<u8>)>> {
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT mm.uid, COALESCE(b.header, ''::BYTEA) FROM mailbox_messages mm JOIN blobs b ON b.id = mm.blob_id
             WHERE mm.mailbox_id = $1 AND mm.uid BETWEEN $2 AND $3 ORDER BY mm.uid",
        )
        .bind(mailbox)
        .bind(i64::from(first))
        .bind(i64::from(last))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(u, h)| (u as u32, h)).collect())
    }

    async fn headers_with_field(
        &self,
        mailbox: i64,
        first: u32,
        last: u32,
        field: &str,
    ) -> Result<Vec<(u32, Vec<u8>)>> {
        let name = format!("\n{}\n", field.to_ascii_lowercase());
        let rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT mm.uid, b.header FROM mailbox_messages mm JOIN blobs b ON b.id = mm.blob_id
             WHERE mm.mailbox_id = $1 AND mm.uid BETWEEN $2 AND $3 AND strpos(b.fields, $4) > 0
             ORDER BY mm.uid",
        )
        .bind(mailbox)
        .bind(i64::from(first))
        .bind(i64::from(last))
        .bind(&name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(u, h)| (u as u32, h)).collect())
    }

    async fn read_meta(&self, blob: BlobId) -> Result<meta::MessageMeta> {
        let json: String = sqlx::query_scalar("SELECT meta FROM blobs WHERE id = $1")
            .bind(blob)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| not_found(format!("message {blob}")))?;
        meta::MessageMeta::from_stored(&json)
    }

    async fn set_flags(
        &self,
        mailbox: i64,
        uids: &[u32],
        mode: FlagMode,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<Vec<FlagUpdate>> {
        let mut tx = self.pool.begin().await?;
        let (account, modseq): (i64, i64) = sqlx::query_as(
            "SELECT account_id, highest_modseq FROM mailboxes WHERE id = $1 FOR UPDATE",
        )
        .bind(mailbox)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(format!("mailbox {mailbox}")))?;
        let wanted: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
        let current: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT uid, flags, modseq FROM mailbox_messages WHERE mailbox_id = $1 AND uid = ANY($2)",
        )
        .bind(mailbox)
        .bind(&wanted)
        .fetch_all(&mut *tx)
        .await?;
        let current: std::collections::HashMap<i64, (String, i64)> =
            current.into_iter().map(|(u, f, m)| (u, (f, m))).collect();
        let mut out = Vec::new();
        let mut changed: (Vec<i64>, Vec<String>, Vec<i64>) = Default::default();
        let mut highest = modseq as u64;
        for uid in wanted {
            let Some((stored, old_modseq)) = current.get(&uid) else {
                continue;
            };
            let (update, store) = flag_update(
                uid as u32,
                stored,
                *old_modseq as u64,
                mode,
                flags,
                unchanged_since,
                &mut highest,
            );
            if let Some(new) = store {
                changed.0.push(uid);
                changed.1.push(new);
                changed.2.push(update.modseq as i64);
            }
            out.push(update);
        }
        if changed.0.is_empty() {
            return Ok(out);
        }
        sqlx::query(
            "UPDATE mailbox_messages mm SET flags = u.f, modseq = u.m
             FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::BIGINT[]) AS u(uid, f, m)
             WHERE mm.mailbox_id = $1 AND mm.uid = u.uid",
        )
        .bind(mailbox)
        .bind(&changed.0)
        .bind(&changed.1)
        .bind(&changed.2)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE mailboxes SET highest_modseq = $2 WHERE id = $1")
            .bind(mailbox)
            .bind(highest as i64)
            .execute(&mut *tx)
            .await?;
        self.commit_changed(tx, &[account]).await?;
        Ok(out)
    }

    async fn copy(
        &self,
        from: i64,
        uids: &[u32],
        to: i64,
        remove: bool,
    ) -> Result<(u32, Vec<(u32, u32)>)> {
        let mut tx = self.pool.begin().await?;
        let (account, pairs) = copy_rows(&mut tx, from, uids, to, remove).await?;
        let uidvalidity: i64 =
            sqlx::query_scalar("SELECT uidvalidity FROM mailboxes WHERE id = $1")
                .bind(to)
                .fetch_one(&mut *tx)
                .await?;
        self.commit_changed(tx, &[account]).await?;
        Ok((uidvalidity as u32, pairs))
    }

    async fn expunge_uids(&self, mailbox: i64, uids: &[u32]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let account: i64 = sqlx::query_scalar(
            "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1 RETURNING account_id",
        )
        .bind(mailbox)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| not_found(format!("mailbox {mailbox}")))?;
        delete_uids(&mut tx, mailbox, uids).await?;
        self.commit_changed(tx, &[account]).await
    }

    async fn append(
        &self,
        account: AccountId,
        mailbox: i64,
        messages: Vec<Appended>,
        replace: Option<(i64, u32)>,
    ) -> Result<(u32, Vec<u32>)> {
        let prepared = messages
            .into_iter()
            .map(PreparedAppend::new)
            .collect::<Result<Vec<_>>>()?;
        let bodies: Vec<_> = prepared
            .iter()
            .map(|p| (p.hash.clone(), p.raw.clone()))
            .collect();
        let mut tx = self.pool.begin().await?;
        let r = async {
            self.put_bodies(&mut tx, &bodies).await?;
            let owner: Option<i64> =
                sqlx::query_scalar("SELECT account_id FROM mailboxes WHERE id = $1")
                    .bind(mailbox)
                    .fetch_optional(&mut *tx)
                    .await?;
            if owner != Some(account) {
                return Err(not_found("mailbox"));
            }
            let mut uids = Vec::with_capacity(prepared.len());
            for p in &prepared {
                let blob =
                    blob_row(&mut tx, &p.hash, &p.raw, Some(&p.analysed), self.blobs.is_none())
                        .await?;
                uids.push(
                    insert_message(
                        &mut tx,
                        mailbox,
                        Row {
                            blob,
                            size: p.raw.len() as i64,
                            flags: &p.flags,
                            internaldate: p.internaldate,
                            queue_id: "",
                            mail_from: "",
                            params: "{}",
                        },
                    )
                    .await?,
                );
            }
            if let Some((from, uid)) = replace {
                let owner: Option<i64> = sqlx::query_scalar(
                    "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = $1 RETURNING account_id",
                )
                .bind(from)
                .fetch_optional(&mut *tx)
                .await?;
                if owner != Some(account) {
                    return Err(not_found("mailbox"));
                }
                delete_uids(&mut tx, from, &[uid]).await?;
            }
            // The insert trigger has added the sizes (and holds the
            // account's row): the quota check sees every writer's.
            let (quota, used): (i64, i64) =
                sqlx::query_as("SELECT quota, used FROM accounts WHERE id = $1")
                    .bind(account)
                    .fetch_one(&mut *tx)
                    .await?;
            if quota > 0 && used > quota {
                return Err(StoreError::OverQuota);
            }
            let uidvalidity: i64 =
                sqlx::query_scalar("SELECT uidvalidity FROM mailboxes WHERE id = $1")
                    .bind(mailbox)
                    .fetch_one(&mut *tx)
                    .await?;
            Ok((uidvalidity as u32, uids))
        }
        .await;
        match r {
            Ok(out) => {
                self.commit_changed(tx, &[account]).await?;
                Ok(out)
            }
            Err(e) => {
                drop(tx);
                self.forget_bodies(bodies.into_iter().map(|(h, _)| h).collect())
                    .await;
                Err(e)
            }
        }
    }

    async fn watch_account(&self, account: AccountId) -> crate::AccountWatch {
        self.watch_changes(account).await
    }
}
