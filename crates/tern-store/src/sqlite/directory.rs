//! [`Directory`] for SQLite: domains, accounts, aliases, passwords.

use super::SqliteStore;
use crate::{
    AccountId, AccountInfo, AliasInfo, DEFAULT_MAILBOXES, Directory, DomainInfo, LocalRecipient,
    Recipient, Result, StoreError, password,
};
use async_trait::async_trait;
use sqlx::Row;
use tern_core::{Address, address::normalize_domain, now_unix};

fn uidvalidity() -> i64 {
    // Seconds since the epoch fit in 32 bits until 2106; distinct per creation.
    (now_unix() & 0xffff_ffff).max(1)
}

#[async_trait]
impl Directory for SqliteStore {
    async fn add_domain(&self, name: &str, catch_all: Option<&Address>) -> Result<()> {
        let name = normalize_domain(name)
            .ok_or_else(|| StoreError::Invalid(format!("invalid domain name: {name}")))?;
        if let Some(c) = catch_all
            && c.domain() != name
        {
            return Err(StoreError::Invalid(
                "the catch-all account must be in the same domain".into(),
            ));
        }
        let catch_all = catch_all.map(|a| a.to_string());
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query(
                    "INSERT INTO domains(name, catch_all, created_at) VALUES (?, ?, ?)
                     ON CONFLICT(name) DO NOTHING",
                )
                .bind(&name)
                .bind(&catch_all)
                .bind(now_unix())
                .execute(&mut *c)
                .await?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::Exists(format!("domain {name}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn remove_domain(&self, name: &str) -> Result<()> {
        let name = name.to_lowercase();
        self.write(move |c| {
            Box::pin(async move {
                let used: i64 = sqlx::query_scalar(
                    "SELECT (SELECT COUNT(*) FROM accounts a JOIN domains d ON a.domain_id = d.id WHERE d.name = ?1)
                          + (SELECT COUNT(*) FROM aliases a JOIN domains d ON a.domain_id = d.id WHERE d.name = ?1)",
                )
                .bind(&name)
                .fetch_one(&mut *c)
                .await?;
                if used > 0 {
                    return Err(StoreError::Invalid(format!(
                        "domain {name} still has {used} accounts or aliases; remove them first"
                    )));
                }
                let r = sqlx::query("DELETE FROM domains WHERE name = ?")
                    .bind(&name)
                    .execute(&mut *c)
                    .await?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("domain {name}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        let rows = sqlx::query("SELECT name, catch_all FROM domains ORDER BY name")
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DomainInfo {
                name: r.get(0),
                catch_all: r.get(1),
            })
            .collect())
    }

    async fn add_account(&self, address: &Address, password: &str, quota: u64) -> Result<AccountId> {
        let hash = hash_blocking(password).await?;
        let address = address.clone();
        self.write(move |c| {
            Box::pin(async move {
                let domain_id: Option<i64> = sqlx::query_scalar("SELECT id FROM domains WHERE name = ?")
                    .bind(address.domain())
                    .fetch_optional(&mut *c)
                    .await?;
                let domain_id = domain_id.ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "{} is not a local domain; add it with `tern domain add {}`",
                        address.domain(),
                        address.domain()
                    ))
                })?;
                let addr = address.to_string();
                let alias: Option<i64> = sqlx::query_scalar("SELECT id FROM aliases WHERE address = ?")
                    .bind(&addr)
                    .fetch_optional(&mut *c)
                    .await?;
                if alias.is_some() {
                    return Err(StoreError::Exists(format!("alias {addr}")));
                }
                let id: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO accounts(address, domain_id, password_hash, quota, created_at)
                     VALUES (?, ?, ?, ?, ?) ON CONFLICT(address) DO NOTHING RETURNING id",
                )
                .bind(&addr)
                .bind(domain_id)
                .bind(&hash)
                .bind(quota as i64)
                .bind(now_unix())
                .fetch_optional(&mut *c)
                .await?;
                let id = id.ok_or_else(|| StoreError::Exists(format!("account {addr}")))?;
                for (name, special) in DEFAULT_MAILBOXES {
                    sqlx::query(
                        "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity) VALUES (?, ?, ?, ?)",
                    )
                    .bind(id)
                    .bind(name)
                    .bind(special)
                    .bind(uidvalidity())
                    .execute(&mut *c)
                    .await?;
                }
                Ok(id)
            })
        })
        .await
    }

    async fn remove_account(&self, address: &Address) -> Result<()> {
        let addr = address.to_string();
        self.write(move |c| {
            Box::pin(async move {
                let id: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE address = ?")
                    .bind(&addr)
                    .fetch_optional(&mut *c)
                    .await?;
                let id = id.ok_or_else(|| StoreError::NotFound(format!("account {addr}")))?;
                // Release blob references held by this account's messages.
                sqlx::query(
                    "UPDATE blobs SET refcount = refcount - (
                        SELECT COUNT(*) FROM mailbox_messages mm JOIN mailboxes m ON mm.mailbox_id = m.id
                        WHERE m.account_id = ?1 AND mm.blob_hash = blobs.hash)
                     WHERE hash IN (SELECT mm.blob_hash FROM mailbox_messages mm
                        JOIN mailboxes m ON mm.mailbox_id = m.id WHERE m.account_id = ?1)",
                )
                .bind(id)
                .execute(&mut *c)
                .await?;
                sqlx::query(
                    "DELETE FROM mailbox_messages WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)",
                )
                .bind(id)
                .execute(&mut *c)
                .await?;
                sqlx::query("DELETE FROM blobs WHERE refcount <= 0")
                    .execute(&mut *c)
                    .await?;
                sqlx::query("DELETE FROM mailboxes WHERE account_id = ?")
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
                sqlx::query("DELETE FROM aliases WHERE account_id = ?")
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
                sqlx::query("UPDATE domains SET catch_all = NULL WHERE catch_all = ?")
                    .bind(&addr)
                    .execute(&mut *c)
                    .await?;
                sqlx::query("DELETE FROM accounts WHERE id = ?")
                    .bind(id)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn set_password(&self, address: &Address, password: &str) -> Result<()> {
        let hash = hash_blocking(password).await?;
        let addr = address.to_string();
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query("UPDATE accounts SET password_hash = ? WHERE address = ?")
                    .bind(&hash)
                    .bind(&addr)
                    .execute(&mut *c)
                    .await?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("account {addr}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<AccountInfo>> {
        let rows = sqlx::query(
            "SELECT a.id, a.address, a.quota, a.used,
                    (SELECT COUNT(*) FROM mailbox_messages mm JOIN mailboxes m ON mm.mailbox_id = m.id
                     WHERE m.account_id = a.id)
             FROM accounts a JOIN domains d ON a.domain_id = d.id
             WHERE ?1 IS NULL OR d.name = ?1 ORDER BY a.address",
        )
        .bind(domain.map(str::to_lowercase))
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AccountInfo {
                id: r.get(0),
                address: r.get(1),
                quota: r.get::<i64, _>(2) as u64,
                used: r.get::<i64, _>(3) as u64,
                messages: r.get::<i64, _>(4) as u64,
            })
            .collect())
    }

    async fn add_alias(&self, address: &Address, target: &Address) -> Result<()> {
        let (addr, target) = (address.clone(), target.to_string());
        self.write(move |c| {
            Box::pin(async move {
                let domain_id: Option<i64> = sqlx::query_scalar("SELECT id FROM domains WHERE name = ?")
                    .bind(addr.domain())
                    .fetch_optional(&mut *c)
                    .await?;
                let domain_id = domain_id
                    .ok_or_else(|| StoreError::Invalid(format!("{} is not a local domain", addr.domain())))?;
                let account: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE address = ?")
                    .bind(&target)
                    .fetch_optional(&mut *c)
                    .await?;
                let account = account
                    .ok_or_else(|| StoreError::NotFound(format!("target account {target}")))?;
                let addr = addr.to_string();
                let taken: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE address = ?")
                    .bind(&addr)
                    .fetch_optional(&mut *c)
                    .await?;
                if taken.is_some() {
                    return Err(StoreError::Exists(format!("account {addr}")));
                }
                let r = sqlx::query(
                    "INSERT INTO aliases(address, domain_id, account_id) VALUES (?, ?, ?)
                     ON CONFLICT(address) DO NOTHING",
                )
                .bind(&addr)
                .bind(domain_id)
                .bind(account)
                .execute(&mut *c)
                .await?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::Exists(format!("alias {addr}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn remove_alias(&self, address: &Address) -> Result<()> {
        let addr = address.to_string();
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query("DELETE FROM aliases WHERE address = ?")
                    .bind(&addr)
                    .execute(&mut *c)
                    .await?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("alias {addr}")));
                }
                Ok(())
            })
        })
        .await
    }

    async fn list_aliases(&self) -> Result<Vec<AliasInfo>> {
        let rows = sqlx::query(
            "SELECT al.address, a.address FROM aliases al JOIN accounts a ON al.account_id = a.id ORDER BY al.address",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AliasInfo {
                address: r.get(0),
                target: r.get(1),
            })
            .collect())
    }

    async fn resolve(&self, address: &Address, allow_catch_all: bool) -> Result<Recipient> {
        let addr = address.to_string();
        // One round trip: the domain row, and the account reached directly,
        // through an alias, or through the domain's catch-all.
        let row = sqlx::query(
            "SELECT d.id,
               COALESCE(
                 (SELECT id FROM accounts WHERE address = ?1),
                 (SELECT account_id FROM aliases WHERE address = ?1),
                 CASE WHEN ?3 THEN (SELECT id FROM accounts WHERE address = d.catch_all) END)
             FROM domains d WHERE d.name = ?2",
        )
        .bind(&addr)
        .bind(address.domain())
        .bind(allow_catch_all)
        .fetch_optional(&self.read)
        .await?;
        let Some(row) = row else {
            return Ok(Recipient::NotLocal);
        };
        let Some(account): Option<i64> = row.get(1) else {
            return Ok(Recipient::UnknownUser);
        };
        let r = sqlx::query("SELECT address, quota, used FROM accounts WHERE id = ?")
            .bind(account)
            .fetch_optional(&self.read)
            .await?;
        Ok(match r {
            Some(r) => Recipient::Local(LocalRecipient {
                account,
                address: r.get(0),
                quota: r.get::<i64, _>(1) as u64,
                used: r.get::<i64, _>(2) as u64,
            }),
            None => Recipient::UnknownUser,
        })
    }

    async fn authenticate(&self, login: &str, password: &str) -> Result<Option<AccountId>> {
        let login = login.trim().to_lowercase();
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT id, password_hash FROM accounts WHERE address = ?")
                .bind(&login)
                .fetch_optional(&self.read)
                .await?;
        let password = password.to_string();
        tokio::task::spawn_blocking(move || match row {
            Some((id, hash)) if password::verify(&password, &hash) => Some(id),
            Some(_) => None,
            None => {
                password::burn(&password);
                None
            }
        })
        .await
        .map_err(|e| StoreError::Password(e.to_string()))
    }
}

async fn hash_blocking(password: &str) -> Result<String> {
    if password.is_empty() {
        return Err(StoreError::Invalid("the password must not be empty".into()));
    }
    let password = password.to_string();
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(|e| StoreError::Password(e.to_string()))?
}
