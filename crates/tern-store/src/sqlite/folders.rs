//! [`Folders`] for SQLite: the mailbox operations IMAP needs.

use super::SqliteStore;
use crate::folder_rules::{flag_update, normalize_name, parents, split_flags, training_verdict};
use crate::intake::PreparedAppend;
use crate::{
    AccountId, Appended, BlobId, FlagMode, FlagUpdate, Folders, MailboxRow, MessageRow, Result,
    StoreError, meta,
};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tern_core::now_unix;

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<MessageRow> {
    Ok(MessageRow {
        uid: r.get::<_, i64>(0)? as u32,
        flags: split_flags(&r.get::<_, String>(1)?),
        modseq: r.get::<_, i64>(2)? as u64,
        internaldate: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        blob: r.get(5)?,
    })
}

/// A mailbox row from `id, name, special_use, subscribed, uidvalidity,
/// uidnext, highest_modseq` and, with `counters`, `messages, unseen, size`.
fn mailbox_row(r: &rusqlite::Row<'_>, counters: bool) -> rusqlite::Result<MailboxRow> {
    let counter = |i: usize| -> rusqlite::Result<i64> { if counters { r.get(i) } else { Ok(0) } };
    Ok(MailboxRow {
        id: r.get(0)?,
        name: r.get(1)?,
        special_use: r.get(2)?,
        subscribed: r.get(3)?,
        uidvalidity: r.get::<_, i64>(4)? as u32,
        uidnext: r.get::<_, i64>(5)? as u32,
        highest_modseq: r.get::<_, i64>(6)? as u64,
        messages: counter(7)? as u32,
        unseen: counter(8)? as u32,
        size: counter(9)? as u64,
    })
}

fn mailbox_id(
    c: &Connection,
    account: AccountId,
    name: &str,
) -> Result<Option<(i64, Option<String>)>> {
    Ok(
        c.prepare_cached(
            "SELECT id, special_use FROM mailboxes WHERE account_id = ? AND name = ?",
        )?
        .query_row(params![account, name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?,
    )
}

fn create_one(c: &Connection, account: AccountId, name: &str) -> Result<bool> {
    let n = c.execute(
        "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity)
         VALUES (?, ?, NULL, ?) ON CONFLICT(account_id, name) DO NOTHING",
        params![account, name, super::next_uidvalidity(c)?],
    )?;
    // Not subscribed: CREATE does not subscribe (RFC 9051 §6.3.4); clients
    // that want it SUBSCRIBE.
    Ok(n > 0)
}

/// Creates the missing ancestors of `a/b/c` (`a`, `a/b`).
fn create_parents(c: &Connection, account: AccountId, name: &str) -> Result<()> {
    for parent in parents(name) {
        create_one(c, account, &parent)?;
    }
    Ok(())
}

#[async_trait]
impl Folders for SqliteStore {
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT m.id, m.name, m.special_use, EXISTS(SELECT 1 FROM subscriptions s WHERE s.account_id = m.account_id AND s.name = m.name), m.uidvalidity, m.uidnext, m.highest_modseq,
                        COUNT(mm.uid), COALESCE(SUM(instr(mm.flags, '\\Seen') = 0), 0), COALESCE(SUM(mm.size), 0)
                 FROM mailboxes m LEFT JOIN mailbox_messages mm ON mm.mailbox_id = m.id
                 WHERE m.account_id = ? GROUP BY m.id ORDER BY m.name <> 'INBOX', m.name",
            )?;
            let rows = st.query_map([account], |r| mailbox_row(r, true))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn find_mailbox(
        &self,
        account: AccountId,
        name: &str,
        counters: bool,
    ) -> Result<MailboxRow> {
        let name = normalize_name(name)?;
        self.read(|c| {
            let mut m = c
                .prepare_cached(
                    "SELECT m.id, m.name, m.special_use, EXISTS(SELECT 1 FROM subscriptions s WHERE s.account_id = m.account_id AND s.name = m.name),
                            m.uidvalidity, m.uidnext, m.highest_modseq
                     FROM mailboxes m WHERE m.account_id = ? AND m.name = ?",
                )?
                .query_row(params![account, name], |r| mailbox_row(r, false))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))?;
            if counters {
                let (n, unseen, size): (i64, i64, i64) = c
                    .prepare_cached(
                        "SELECT COUNT(*), COALESCE(SUM(instr(flags, '\\Seen') = 0), 0), COALESCE(SUM(size), 0)
                         FROM mailbox_messages WHERE mailbox_id = ?",
                    )?
                    .query_row([m.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                m.messages = n as u32;
                m.unseen = unseen as u32;
                m.size = size as u64;
            }
            Ok(m)
        })
    }

    async fn create_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        let name = normalize_name(name)?;
        let r = self
            .write(move |c| {
                // Create missing parents too (RFC 9051 §6.3.4).
                create_parents(c, account, &name)?;
                if !create_one(c, account, &name)? {
                    return Err(StoreError::Exists(format!("mailbox {name}")));
                }
                Ok(())
            })
            .await;
        if r.is_ok() {
            self.changed(account);
        }
        r
    }

    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()> {
        let name = normalize_name(name)?;
        if name == "INBOX" {
            return Err(StoreError::Invalid("INBOX cannot be deleted".into()));
        }
        let r = self
            .write(move |c| {
                let (id, _) = mailbox_id(c, account, &name)?
                    .ok_or_else(|| StoreError::NotFound(format!("mailbox {name}")))?;
                // The delete trigger releases usage and blob references.
                c.execute("DELETE FROM mailbox_messages WHERE mailbox_id = ?", [id])?;
                c.execute("DELETE FROM mailboxes WHERE id = ?", [id])?;
                for table in ["metadata", "urlauth_keys"] {
                    c.execute(
                        &format!("DELETE FROM {table} WHERE account_id = ? AND mailbox = ?"),
                        params![account, name],
                    )?;
                }
                Ok(())
            })
            .await;
        if r.is_ok() {
            self.changed(account);
        }
        r
    }

    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()> {
        let (from, to) = (normalize_name(from)?, normalize_name(to)?);
        let r = self
            .write(move |c| {
                let (id, _) = mailbox_id(c, account, &from)?
                    .ok_or_else(|| StoreError::NotFound(format!("mailbox {from}")))?;
                if mailbox_id(c, account, &to)?.is_some() {
                    return Err(StoreError::Exists(format!("mailbox {to}")));
                }
                create_parents(c, account, &to)?;
                if from == "INBOX" {
                    // Move INBOX's messages into a new mailbox; INBOX stays, empty.
                    create_one(c, account, &to)?;
                    let (to_id, _) = mailbox_id(c, account, &to)?
                        .ok_or_else(|| StoreError::NotFound(to.clone()))?;
                    let uids: Vec<i64> = c
                        .prepare(
                            "SELECT uid FROM mailbox_messages WHERE mailbox_id = ? ORDER BY uid",
                        )?
                        .query_map([id], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    copy_rows(
                        c,
                        id,
                        &uids.iter().map(|&u| u as u32).collect::<Vec<_>>(),
                        to_id,
                        true,
                    )?;
                    return Ok(());
                }
                // The mailbox, its children and their subscriptions move.
                let below = format!(
                    "{}/%",
                    from.replace('\\', "\\\\")
                        .replace('%', "\\%")
                        .replace('_', "\\_")
                );
                // (A name taken below the target fails the rename; two
                // subscriptions to one name become one.)
                for (table, column, or) in [
                    ("mailboxes", "name", ""),
                    ("subscriptions", "name", "OR REPLACE"),
                    ("metadata", "mailbox", "OR REPLACE"),
                    ("urlauth_keys", "mailbox", "OR REPLACE"),
                ] {
                    c.execute(
                        &format!(
                            "UPDATE {or} {table} SET {column} = ? || substr({column}, ?)
                             WHERE account_id = ? AND ({column} = ? OR {column} LIKE ? ESCAPE '\\')"
                        ),
                        params![to, from.len() as i64 + 1, account, from, below],
                    )?;
                }
                Ok(())
            })
            .await;
        if r.is_ok() {
            self.changed(account);
        }
        r
    }

    async fn subscribe(&self, account: AccountId, name: &str, on: bool) -> Result<()> {
        let name = normalize_name(name)?;
        self.write(move |c| {
            if on {
                // Only an existing mailbox can be subscribed (RFC 9051
                // §6.3.7 lets the server check).
                if mailbox_id(c, account, &name)?.is_none() {
                    return Err(StoreError::NotFound(format!("mailbox {name}")));
                }
                c.execute(
                    "INSERT OR IGNORE INTO subscriptions(account_id, name) VALUES (?, ?)",
                    params![account, name],
                )?;
            } else if c.execute(
                "DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                params![account, name],
            )? == 0
                && mailbox_id(c, account, &name)?.is_none()
            {
                // Unsubscribing a name that is neither subscribed nor a
                // mailbox is an error; a deleted one can be unsubscribed.
                return Err(StoreError::NotFound(format!("mailbox {name}")));
            }
            Ok(())
        })
        .await
        .inspect(|_| self.changed(account))
    }

    async fn claim_recent(&self, mailbox: i64, upto: u32) -> Result<u32> {
        self.write(move |c| {
            let first: i64 = c
                .prepare_cached("SELECT recent_uid FROM mailboxes WHERE id = ?")?
                .query_row([mailbox], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))?;
            if i64::from(upto) > first {
                c.prepare_cached("UPDATE mailboxes SET recent_uid = ? WHERE id = ?")?
                    .execute(params![upto, mailbox])?;
            }
            Ok(first as u32)
        })
        .await
    }

    async fn recent(&self, mailbox: i64) -> Result<(u32, u32)> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT (SELECT COUNT(*) FROM mailbox_messages mm WHERE mm.mailbox_id = m.id AND mm.uid >= m.recent_uid),
                        m.recent_uid
                 FROM mailboxes m WHERE m.id = ?",
            )?
            .query_row([mailbox], |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u32)))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
        })
    }

    async fn saved_dates(
        &self,
        mailbox: i64,
        first: u32,
        last: u32,
    ) -> Result<Vec<(u32, Option<i64>)>> {
        self.read_bulk(|c| {
            let mut st = c.prepare_cached(
                "SELECT uid, saved_at FROM mailbox_messages
                 WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid",
            )?;
            let rows = st.query_map(params![mailbox, first as i64, last as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u32, r.get(1)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn urlauth_key(
        &self,
        account: AccountId,
        mailbox: &str,
        create: bool,
    ) -> Result<Option<Vec<u8>>> {
        let mailbox = normalize_name(mailbox)?;
        let fresh: [u8; 32] = rand::random();
        let read = move |c: &Connection, mailbox: &str| -> Result<Option<Vec<u8>>> {
            Ok(c.prepare_cached(
                "SELECT key FROM urlauth_keys WHERE account_id = ? AND mailbox = ?",
            )?
            .query_row(params![account, mailbox], |r| r.get(0))
            .optional()?)
        };
        if !create {
            return self.read(move |c| read(c, &mailbox));
        }
        self.write(move |c| {
            if mailbox_id(c, account, &mailbox)?.is_none() {
                return Err(StoreError::NotFound(format!("mailbox {mailbox}")));
            }
            c.execute(
                "INSERT OR IGNORE INTO urlauth_keys(account_id, mailbox, key) VALUES (?, ?, ?)",
                params![account, mailbox, fresh.to_vec()],
            )?;
            read(c, &mailbox)
        })
        .await
    }

    async fn reset_urlauth_keys(&self, account: AccountId, mailbox: Option<&str>) -> Result<()> {
        let mailbox = mailbox.map(normalize_name).transpose()?;
        self.write(move |c| {
            match &mailbox {
                Some(m) => c.execute(
                    "DELETE FROM urlauth_keys WHERE account_id = ? AND mailbox = ?",
                    params![account, m],
                )?,
                None => c.execute("DELETE FROM urlauth_keys WHERE account_id = ?", [account])?,
            };
            Ok(())
        })
        .await
    }

    async fn metadata(&self, account: AccountId, mailbox: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let mailbox = if mailbox.is_empty() {
            String::new()
        } else {
            normalize_name(mailbox)?
        };
        self.read(move |c| {
            if !mailbox.is_empty() && mailbox_id(c, account, &mailbox)?.is_none() {
                return Err(StoreError::NotFound(format!("mailbox {mailbox}")));
            }
            let mut st = c.prepare_cached(
                "SELECT entry, value FROM metadata WHERE account_id = ? AND mailbox = ? ORDER BY entry",
            )?;
            let rows = st.query_map(params![account, mailbox], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
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
        self.write(move |c| {
            if !mailbox.is_empty() && mailbox_id(c, account, &mailbox)?.is_none() {
                return Err(StoreError::NotFound(format!("mailbox {mailbox}")));
            }
            for (entry, value) in &changes {
                match value {
                    Some(v) => c.execute(
                        "INSERT INTO metadata(account_id, mailbox, entry, value) VALUES (?, ?, ?, ?)
                         ON CONFLICT(account_id, mailbox, entry) DO UPDATE SET value = excluded.value",
                        params![account, mailbox, entry, v],
                    )?,
                    None => c.execute(
                        "DELETE FROM metadata WHERE account_id = ? AND mailbox = ? AND entry = ?",
                        params![account, mailbox, entry],
                    )?,
                };
            }
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM metadata WHERE account_id = ? AND mailbox = ?",
                params![account, mailbox],
                |r| r.get(0),
            )?;
            if n as usize > max_entries {
                // The writer rolls the whole change back.
                return Err(StoreError::Invalid(format!(
                    "too many annotations (at most {max_entries})"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn subscriptions(&self, account: AccountId) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name <> 'INBOX', name",
            )?;
            let rows = st.query_map([account], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn messages(&self, mailbox: i64) -> Result<Vec<MessageRow>> {
        self.read_bulk(|c| {
            let mut st = c.prepare_cached(
                "SELECT uid, flags, modseq, internaldate, size, blob_id FROM mailbox_messages
                 WHERE mailbox_id = ? ORDER BY uid",
            )?;
            let rows = st.query_map([mailbox], row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn messages_in(&self, mailbox: i64, first: u32, last: u32) -> Result<Vec<MessageRow>> {
        self.read_bulk(|c| {
            let mut st = c.prepare_cached(
                "SELECT uid, flags, modseq, internaldate, size, blob_id FROM mailbox_messages
                 WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid",
            )?;
            let rows = st.query_map(params![mailbox, first as i64, last as i64], row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn changed_since(&self, mailbox: i64, modseq: u64) -> Result<Vec<MessageRow>> {
        self.read_bulk(|c| {
            let mut st = c.prepare_cached(
                "SELECT uid, flags, modseq, internaldate, size, blob_id FROM mailbox_messages
                 WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            )?;
            let rows = st.query_map(params![mailbox, modseq as i64], row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn vanished_since(&self, mailbox: i64, modseq: u64) -> Result<Vec<u32>> {
        self.read_bulk(|c| {
            let mut st = c.prepare_cached(
                "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            )?;
            let rows = st.query_map(params![mailbox, modseq as i64], |r| {
                Ok(r.get::<_, i64>(0)? as u32)
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn uids(&self, mailbox: i64) -> Result<Vec<u32>> {
        self.read_bulk(|c| {
            let mut st = c.prepare_cached(
                "SELECT uid FROM mailbox_messages WHERE mailbox_id = ? ORDER BY uid",
            )?;
            let rows = st.query_map([mailbox], |r| Ok(r.get::<_, i64>(0)? as u32))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn mailbox_state(&self, mailbox: i64) -> Result<(u64, u32)> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT highest_modseq, (SELECT COUNT(*) FROM mailbox_messages WHERE mailbox_id = ?1)
                 FROM mailboxes WHERE id = ?1",
            )?
            .query_row([mailbox], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u32)))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("mailbox {mailbox}")))
        })
    }

    async fn mailbox_keywords(&self, mailbox: i64) -> Result<Vec<String>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT DISTINCT flags FROM mailbox_messages WHERE mailbox_id = ? AND flags <> ''",
            )?;
            let mut set = std::collections::BTreeSet::new();
            for f in st.query_map([mailbox], |r| r.get::<_, String>(0))? {
                set.extend(
                    split_flags(&f?)
                        .into_iter()
                        .filter(|k| !k.starts_with('\\')),
                );
            }
            Ok(set.into_iter().collect())
        })
    }

    async fn read_header(&self, blob: BlobId) -> Result<Vec<u8>> {
        self.read_bulk(|c| {
            c.prepare_cached(
                "SELECT COALESCE((SELECT header FROM blob_headers WHERE blob_id = b.id),
                        CASE WHEN instr(data, X'0D0A0D0A') > 0
                        THEN substr(data, 1, instr(data, X'0D0A0D0A') + 3) ELSE data END)
                 FROM blobs b WHERE id = ?",
            )?
            .query_row([blob], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("message {blob}")))
        })
    }

    async fn headers_in(&self, mailbox: i64, first: u32, last: u32) -> Result<Vec<(u32, Vec<u8>)>> {
        self.read_bulk(|c| {
            let mut st = c.prepare_cached(
                "SELECT mm.uid, COALESCE(h.header, (SELECT CASE WHEN instr(b.data, X'0D0A0D0A') > 0
                        THEN substr(b.data, 1, instr(b.data, X'0D0A0D0A') + 3) ELSE b.data END
                        FROM blobs b WHERE b.id = mm.blob_id))
                 FROM mailbox_messages mm LEFT JOIN blob_headers h ON h.blob_id = mm.blob_id
                 WHERE mm.mailbox_id = ? AND mm.uid BETWEEN ? AND ? ORDER BY mm.uid",
            )?;
            let rows = st.query_map(params![mailbox, first as i64, last as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u32, r.get::<_, Vec<u8>>(1)?))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn headers_with_field(
        &self,
        mailbox: i64,
        first: u32,
        last: u32,
        field: &str,
    ) -> Result<Vec<(u32, Vec<u8>)>> {
        let name = format!("\n{}\n", field.to_ascii_lowercase());
        // Bodies stored before the field index: the header block itself.
        let pattern = format!(
            "%{}:%",
            field
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        self.read_bulk(|c| {
            let mut st = c.prepare_cached(
                "SELECT mm.uid, h.header
                 FROM mailbox_messages mm JOIN blob_fields f ON f.blob_id = mm.blob_id
                      JOIN blob_headers h ON h.blob_id = mm.blob_id
                 WHERE mm.mailbox_id = ?1 AND mm.uid BETWEEN ?2 AND ?3 AND instr(f.names, ?5) > 0
                 UNION ALL
                 SELECT mm.uid, h.header
                 FROM mailbox_messages mm JOIN blob_headers h ON h.blob_id = mm.blob_id
                 WHERE mm.mailbox_id = ?1 AND mm.uid BETWEEN ?2 AND ?3
                   AND NOT EXISTS (SELECT 1 FROM blob_fields f WHERE f.blob_id = mm.blob_id)
                   AND CAST(h.header AS TEXT) LIKE ?4 ESCAPE '\\'
                 UNION ALL
                 SELECT mm.uid, b.data
                 FROM mailbox_messages mm JOIN blobs b ON b.id = mm.blob_id
                 WHERE mm.mailbox_id = ?1 AND mm.uid BETWEEN ?2 AND ?3
                   AND NOT EXISTS (SELECT 1 FROM blob_headers h WHERE h.blob_id = mm.blob_id)
                 ORDER BY 1",
            )?;
            let rows = st.query_map(
                params![mailbox, first as i64, last as i64, pattern, name],
                |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, Vec<u8>>(1)?)),
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn read_meta(&self, blob: BlobId) -> Result<meta::MessageMeta> {
        let json: String = self.read(|c| {
            c.prepare_cached("SELECT meta FROM blobs WHERE id = ?")?
                .query_row([blob], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("message {blob}")))
        })?;
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
        let (uids, flags) = (uids.to_vec(), flags.to_vec());
        let r = self
            .write(move |c| {
                let account: i64 = c.query_row("SELECT account_id FROM mailboxes WHERE id = ?", [mailbox], |r| r.get(0))?;
                let mut get = c.prepare_cached("SELECT flags, modseq FROM mailbox_messages WHERE mailbox_id = ? AND uid = ?")?;
                let mut set = c.prepare_cached(
                    "UPDATE mailbox_messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
                )?;
                let highest: i64 =
                    c.query_row("SELECT highest_modseq FROM mailboxes WHERE id = ?", [mailbox], |r| r.get(0))?;
                let mut modseq = highest as u64;
                let mut out = Vec::new();
                for uid in uids {
                    let Some((stored, old_modseq)) = get
                        .query_row(params![mailbox, uid as i64], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                        .optional()?
                    else {
                        continue;
                    };
                    let (update, store) =
                        flag_update(uid, &stored, old_modseq as u64, mode, &flags, unchanged_since, &mut modseq);
                    if let Some(new) = store {
                        set.execute(params![new, update.modseq as i64, mailbox, uid as i64])?;
                    }
                    out.push(update);
                }
                c.execute("UPDATE mailboxes SET highest_modseq = ? WHERE id = ?", params![modseq as i64, mailbox])?;
                Ok((account, out))
            })
            .await;
        r.map(|(account, out)| {
            self.changed(account);
            out
        })
    }

    async fn copy(
        &self,
        from: i64,
        uids: &[u32],
        to: i64,
        remove: bool,
    ) -> Result<(u32, Vec<(u32, u32)>)> {
        let uids = uids.to_vec();
        let r = self
            .write(move |c| {
                let account: i64 = c.query_row(
                    "SELECT account_id FROM mailboxes WHERE id = ?",
                    [from],
                    |r| r.get(0),
                )?;
                let pairs = copy_rows(c, from, &uids, to, remove)?;
                let uidvalidity: i64 = c.query_row(
                    "SELECT uidvalidity FROM mailboxes WHERE id = ?",
                    [to],
                    |r| r.get(0),
                )?;
                Ok((account, (uidvalidity as u32, pairs)))
            })
            .await;
        r.map(|(account, out)| {
            self.changed(account);
            out
        })
    }

    async fn expunge_uids(&self, mailbox: i64, uids: &[u32]) -> Result<()> {
        let uids = uids.to_vec();
        let r = self
            .write(move |c| {
                let account: i64 = c.query_row(
                    "SELECT account_id FROM mailboxes WHERE id = ?",
                    [mailbox],
                    |r| r.get(0),
                )?;
                c.execute(
                    "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ?",
                    [mailbox],
                )?;
                let mut del = c.prepare_cached(
                    "DELETE FROM mailbox_messages WHERE mailbox_id = ? AND uid = ?",
                )?;
                for uid in uids {
                    del.execute(params![mailbox, uid as i64])?;
                }
                Ok(account)
            })
            .await;
        r.map(|account| self.changed(account))
    }

    async fn append(
        &self,
        account: AccountId,
        mailbox: i64,
        messages: Vec<Appended>,
        replace: Option<(i64, u32)>,
    ) -> Result<(u32, Vec<u32>)> {
        // Hashing and MIME analysis happen before the write lock.
        let prepared = messages
            .into_iter()
            .map(PreparedAppend::new)
            .collect::<Result<Vec<_>>>()?;
        let bodies = prepared
            .iter()
            .map(|p| (p.hash.clone(), p.raw.clone()))
            .collect();
        let r = self
            .write_with_bodies(bodies, move |c, external| {
                let (quota, used): (i64, i64) =
                    c.query_row("SELECT quota, used FROM accounts WHERE id = ?", [account], |r| Ok((r.get(0)?, r.get(1)?)))?;
                let total: i64 = prepared.iter().map(|p| p.raw.len() as i64).sum();
                if quota > 0 && used + total > quota {
                    return Err(StoreError::OverQuota);
                }
                let mut uids = Vec::with_capacity(prepared.len());
                for p in &prepared {
                    let size = p.raw.len() as i64;
                    let data: &[u8] = if external { &[] } else { &p.raw };
                    c.prepare_cached(
                        "INSERT INTO blobs(hash, size, refcount, meta, data, external)
                         VALUES (?, ?, 0, ?, ?, ?)",
                    )?
                    .execute(params![p.hash, size, p.analysed.meta, data, external])?;
                    let blob = c.last_insert_rowid();
                    c.prepare_cached("INSERT INTO blob_headers(blob_id, header) VALUES (?, ?)")?
                        .execute(params![blob, p.header()])?;
                    c.prepare_cached("INSERT INTO blob_fields(blob_id, names) VALUES (?, ?)")?
                        .execute(params![blob, p.analysed.field_names])?;
                    let uid: i64 = c
                        .prepare_cached(
                            "INSERT INTO mailbox_messages(mailbox_id, uid, blob_id, size, flags, modseq,
                                internaldate, queue_id, mail_from, params, saved_at)
                             SELECT id, uidnext, ?, ?, ?, highest_modseq + 1, ?, '', '', '{}',
                                    CAST(strftime('%s', 'now') AS INTEGER)
                             FROM mailboxes WHERE id = ? AND account_id = ?
                             RETURNING uid",
                        )?
                        .query_row(params![blob, size, p.flags, p.internaldate, mailbox, account], |r| r.get(0))
                        .optional()?
                        .ok_or_else(|| StoreError::NotFound("mailbox".into()))?;
                    uids.push(uid as u32);
                }
                if let Some((from, uid)) = replace {
                    let owner: Option<i64> = c
                        .query_row("SELECT account_id FROM mailboxes WHERE id = ?", [from], |r| r.get(0))
                        .optional()?;
                    if owner != Some(account) {
                        return Err(StoreError::NotFound("mailbox".into()));
                    }
                    c.execute(
                        "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ?",
                        [from],
                    )?;
                    c.execute(
                        "DELETE FROM mailbox_messages WHERE mailbox_id = ? AND uid = ?",
                        params![from, uid as i64],
                    )?;
                }
                let uidvalidity: i64 =
                    c.query_row("SELECT uidvalidity FROM mailboxes WHERE id = ?", [mailbox], |r| r.get(0))?;
                Ok((uidvalidity as u32, uids))
            })
            .await;
        if r.is_ok() {
            self.changed(account);
        }
        r
    }

    async fn watch_account(&self, account: AccountId) -> crate::AccountWatch {
        crate::AccountWatch::new(account, self.changes.subscribe(), None)
    }
}

/// Copies rows to another mailbox (new UIDs, same blob), optionally removing
/// the originals; records moves into or out of Junk.
fn copy_rows(
    c: &Connection,
    from: i64,
    uids: &[u32],
    to: i64,
    remove: bool,
) -> Result<Vec<(u32, u32)>> {
    let info = |id: i64| -> Result<(i64, Option<String>)> {
        Ok(c.query_row(
            "SELECT account_id, special_use FROM mailboxes WHERE id = ?",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    };
    let (from_account, from_use) = info(from)?;
    let (to_account, to_use) = info(to)?;
    if from_account != to_account {
        return Err(StoreError::Invalid("cannot copy between accounts".into()));
    }
    let training = training_verdict(from_use.as_deref(), to_use.as_deref(), remove);
    let mut get = c.prepare_cached(
        "SELECT blob_id, size, flags, internaldate, queue_id, mail_from, params FROM mailbox_messages
         WHERE mailbox_id = ? AND uid = ?",
    )?;
    let mut insert = c.prepare_cached(
        "INSERT INTO mailbox_messages(mailbox_id, uid, blob_id, size, flags, modseq, internaldate, queue_id, mail_from, params, saved_at)
         SELECT id, uidnext, ?, ?, ?, highest_modseq + 1, ?, ?, ?, ?, CAST(strftime('%s', 'now') AS INTEGER)
         FROM mailboxes WHERE id = ? RETURNING uid",
    )?;
    let mut del =
        c.prepare_cached("DELETE FROM mailbox_messages WHERE mailbox_id = ? AND uid = ?")?;
    if remove && !uids.is_empty() {
        // Before the deletes, so their tombstones carry a new MODSEQ.
        c.execute(
            "UPDATE mailboxes SET highest_modseq = highest_modseq + 1 WHERE id = ?",
            [from],
        )?;
    }
    let mut pairs = Vec::new();
    for &uid in uids {
        let row = get
            .query_row(params![from, uid as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .optional()?;
        let Some((blob, size, flags, date, qid, from_addr, p)) = row else {
            continue;
        };
        let new_uid: i64 = insert.query_row(
            params![blob, size, flags, date, qid, from_addr, p, to],
            |r| r.get(0),
        )?;
        if remove {
            del.execute(params![from, uid as i64])?;
        }
        if let Some(spam) = training {
            c.execute(
                "INSERT INTO junk_training(account_id, blob_id, is_spam, at) VALUES (?, ?, ?, ?)",
                params![from_account, blob, spam, now_unix()],
            )?;
        }
        pairs.push((uid, new_uid as u32));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use crate::sqlite::SqliteStore;
    use crate::{Directory, Folders};

    /// RFC 9051 §2.3.1.1, as a property: whatever sequence of CREATE,
    /// DELETE and RENAME (with another account's mailboxes in between, and
    /// restarts of the store) runs, a mailbox keeps its UIDVALIDITY and a
    /// value that appears was never held before — so no name ever sees an
    /// old value with other messages behind it. 16 random sequences of 50
    /// steps over 4 names, seeded (a failure names its seed).
    #[tokio::test]
    async fn delete_create_and_rename_never_reuse_a_uidvalidity() {
        use rand::{Rng, SeedableRng};
        for seed in 0..16u64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            let mut s = SqliteStore::open(&path, 16).await.unwrap();
            s.add_domain("example.test", None).await.unwrap();
            let a = tern_core::Address::parse("ann@example.test").unwrap();
            let account = s.add_account(&a, "pw", 0).await.unwrap();
            let b = tern_core::Address::parse("bob@example.test").unwrap();
            let other = s.add_account(&b, "pw", 0).await.unwrap();
            let names = ["A", "B", "A/C", "D"];
            // Every value ever held, and those held after the last step.
            let mut ever = std::collections::HashSet::new();
            let mut live_before = std::collections::HashSet::new();
            for step in 0..50 {
                let name = names[rng.random_range(0..names.len())];
                match rng.random_range(0..10) {
                    0..=3 => {
                        let _ = s.create_mailbox(account, name).await;
                    }
                    4..=6 => {
                        let _ = s.delete_mailbox(account, name).await;
                    }
                    7 => {
                        let to = names[rng.random_range(0..names.len())];
                        let _ = s.rename_mailbox(account, name, to).await;
                    }
                    8 => {
                        // Another account's mailboxes draw from the same sequence.
                        let _ = s.create_mailbox(other, &format!("M{step}")).await;
                    }
                    _ => {
                        drop(s);
                        s = SqliteStore::open(&path, 16).await.unwrap();
                    }
                }
                // A mailbox keeps its value through RENAME and restarts; a
                // value that appears is one no mailbox has ever held.
                let live: Vec<u32> = s
                    .mailboxes(account)
                    .await
                    .unwrap()
                    .iter()
                    .map(|m| m.uidvalidity)
                    .collect();
                let live_set: std::collections::HashSet<u32> = live.iter().copied().collect();
                assert_eq!(
                    live.len(),
                    live_set.len(),
                    "seed {seed} step {step}: shared value"
                );
                for v in &live_set {
                    if !live_before.contains(v) {
                        assert!(
                            ever.insert(*v),
                            "seed {seed} step {step}: UIDVALIDITY {v} given again"
                        );
                    }
                }
                ever.extend(live_set.iter().copied());
                live_before = live_set;
            }
        }
    }

    /// A header search's prefilter finds the messages that have the field,
    /// whatever its case, by the field-name index, and by the header block
    /// for bodies stored before the index existed.
    #[tokio::test]
    async fn header_field_prefilter() {
        use crate::{MailStore, NewMessage};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let s = SqliteStore::open(&path, 16).await.unwrap();
        s.add_domain("example.test", None).await.unwrap();
        let a = tern_core::Address::parse("ann@example.test").unwrap();
        let ann = s.add_account(&a, "pw", 0).await.unwrap();
        for (i, header) in [
            "Subject: one\r\n",
            "x-bench-TAG: needle\r\nSubject: two\r\n",
            "Subject: three\r\n  X-Bench-Tag: only in a continuation\r\n",
        ]
        .iter()
        .enumerate()
        {
            let raw = format!("{header}\r\nbody {i}\r\n").into_bytes();
            let m = NewMessage::local(
                format!("q{i}"),
                raw,
                String::new(),
                vec![ann],
                0,
                "{}".into(),
            );
            s.deliver(m).await.unwrap();
        }
        let mb = s.find_mailbox(ann, "INBOX", false).await.unwrap().id;
        let found = s.headers_with_field(mb, 1, 3, "X-Bench-Tag").await.unwrap();
        assert_eq!(found.iter().map(|f| f.0).collect::<Vec<_>>(), vec![2]);
        // Rows from before the index: the header block is searched (a
        // superset; the caller checks the field itself).
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute("DELETE FROM blob_fields", [])
            .unwrap();
        let found = s.headers_with_field(mb, 1, 3, "X-Bench-Tag").await.unwrap();
        assert_eq!(found.iter().map(|f| f.0).collect::<Vec<_>>(), vec![2, 3]);
    }
}
