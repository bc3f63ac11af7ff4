//! [`Directory`] for PostgreSQL: domains, accounts, aliases, passwords, DKIM
//! keys. Each change is one transaction; a name taken by another node at the
//! same moment is an `Exists` error, as on one node.

use super::{PgStore, is_unique_violation, next_uidvalidity};
use crate::{
    AccountId, AccountInfo, AliasInfo, DEFAULT_MAILBOXES, Directory, DkimKeyRow, DomainInfo,
    Recipient, Result, StoreError, password,
};
use async_trait::async_trait;
use tern_core::{Address, now_unix};

/// What already uses `address`, if anything: an account, an alias or a
/// forwarding alias (an address is one of them at most).
async fn address_in_use(
    tx: &mut sqlx::PgConnection,
    address: &str,
) -> Result<Option<&'static str>> {
    const KINDS: [&str; 3] = ["account", "alias", "forwarding alias"];
    let kind: Option<i32> = sqlx::query_scalar(
        "SELECT 0 FROM accounts WHERE address = $1
         UNION ALL SELECT 1 FROM aliases WHERE address = $1
         UNION ALL SELECT 2 FROM forwards WHERE address = $1
         LIMIT 1",
    )
    .bind(address)
    .fetch_optional(tx)
    .await?;
    Ok(kind.and_then(|k| KINDS.get(k as usize).copied()))
}

async fn domain_id(tx: &mut sqlx::PgConnection, name: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT id FROM domains WHERE name = $1")
        .bind(name)
        .fetch_optional(tx)
        .await?)
}

#[async_trait]
impl Directory for PgStore {
    async fn add_domain(&self, name: &str, catch_all: Option<&Address>) -> Result<()> {
        let name = crate::new_domain_name(name, catch_all)?;
        let done = sqlx::query(
            "INSERT INTO domains(name, catch_all, created_at) VALUES ($1, $2, $3)
             ON CONFLICT(name) DO NOTHING",
        )
        .bind(&name)
        .bind(catch_all.map(|a| a.to_string()))
        .bind(now_unix())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Exists(format!("domain {name}")));
        }
        self.lookups.forget_all();
        Ok(())
    }

    async fn remove_domain(&self, name: &str) -> Result<()> {
        let name = name.to_lowercase();
        let mut tx = self.pool.begin().await?;
        let used: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM accounts a JOIN domains d ON a.domain_id = d.id WHERE d.name = $1)
                  + (SELECT COUNT(*) FROM aliases a JOIN domains d ON a.domain_id = d.id WHERE d.name = $1)
                  + (SELECT COUNT(*) FROM forwards f JOIN domains d ON f.domain_id = d.id WHERE d.name = $1)",
        )
        .bind(&name)
        .fetch_one(&mut *tx)
        .await?;
        if used > 0 {
            return Err(StoreError::Invalid(format!(
                "domain {name} still has {used} accounts or aliases; remove them first"
            )));
        }
        sqlx::query("DELETE FROM dkim_keys WHERE domain = $1")
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM domains WHERE name = $1")
            .bind(&name)
            .execute(&mut *tx)
            .await?;
        if gone.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("domain {name}")));
        }
        tx.commit().await?;
        self.lookups.forget_all();
        Ok(())
    }

    async fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT name, catch_all FROM domains ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(name, catch_all)| DomainInfo { name, catch_all })
            .collect())
    }

    async fn add_account(
        &self,
        address: &Address,
        password: &str,
        quota: u64,
    ) -> Result<AccountId> {
        let hash = password::hash_blocking(password).await?;
        let addr = address.to_string();
        let mut tx = self.pool.begin().await?;
        let domain = domain_id(&mut tx, address.domain()).await?.ok_or_else(|| {
            StoreError::Invalid(format!(
                "{} is not a local domain; add it with `tern domain add {}`",
                address.domain(),
                address.domain()
            ))
        })?;
        if let Some(kind) = address_in_use(&mut tx, &addr).await? {
            return Err(StoreError::Exists(format!("{kind} {addr}")));
        }
        let id: AccountId = sqlx::query_scalar(
            "INSERT INTO accounts(address, domain_id, password_hash, quota, created_at)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(&addr)
        .bind(domain)
        .bind(&hash)
        .bind(quota as i64)
        .bind(now_unix())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Exists(format!("account {addr}"))
            } else {
                e.into()
            }
        })?;
        for (name, special) in DEFAULT_MAILBOXES {
            let uidvalidity = next_uidvalidity(&mut tx).await?;
            sqlx::query(
                "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(name)
            .bind(special)
            .bind(uidvalidity)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO subscriptions(account_id, name) VALUES ($1, $2)")
                .bind(id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.lookups.forget_all();
        Ok(id)
    }

    async fn remove_account(&self, address: &Address) -> Result<()> {
        let addr = address.to_string();
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
            .bind(&addr)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("account {addr}")))?;
        // Mailboxes, subscriptions and aliases go with the account (ON
        // DELETE CASCADE).
        sqlx::query("UPDATE domains SET catch_all = NULL WHERE catch_all = $1")
            .bind(&addr)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.lookups.forget_all();
        Ok(())
    }

    async fn set_password(&self, address: &Address, password: &str) -> Result<()> {
        let hash = password::hash_blocking(password).await?;
        let done = sqlx::query("UPDATE accounts SET password_hash = $1 WHERE address = $2")
            .bind(&hash)
            .bind(address.to_string())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("account {address}")));
        }
        Ok(())
    }

    async fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<AccountInfo>> {
        let rows: Vec<(i64, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT a.id, a.address, a.quota, a.used,
                    (SELECT COUNT(*) FROM mailbox_messages mm JOIN mailboxes m ON m.id = mm.mailbox_id
                     WHERE m.account_id = a.id)
             FROM accounts a JOIN domains d ON a.domain_id = d.id
             WHERE $1::TEXT IS NULL OR d.name = $1 ORDER BY a.address",
        )
        .bind(domain.map(str::to_lowercase))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, address, quota, used, messages)| AccountInfo {
                id,
                address,
                quota: quota as u64,
                used: used as u64,
                messages: messages as u64,
            })
            .collect())
    }

    async fn add_alias(&self, address: &Address, target: &Address) -> Result<()> {
        let (addr, target) = (address.to_string(), target.to_string());
        let mut tx = self.pool.begin().await?;
        let domain = domain_id(&mut tx, address.domain()).await?.ok_or_else(|| {
            StoreError::Invalid(format!("{} is not a local domain", address.domain()))
        })?;
        if let Some(kind) = address_in_use(&mut tx, &addr).await? {
            return Err(StoreError::Exists(format!("{kind} {addr}")));
        }
        let target_domain = target.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let inserted = if domain_id(&mut tx, target_domain).await?.is_none() {
            // A forwarding alias (to another domain).
            sqlx::query("INSERT INTO forwards(address, domain_id, target) VALUES ($1, $2, $3)")
                .bind(&addr)
                .bind(domain)
                .bind(&target)
                .execute(&mut *tx)
                .await
        } else {
            let account: i64 = sqlx::query_scalar("SELECT id FROM accounts WHERE address = $1")
                .bind(&target)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("target account {target}")))?;
            sqlx::query("INSERT INTO aliases(address, domain_id, account_id) VALUES ($1, $2, $3)")
                .bind(&addr)
                .bind(domain)
                .bind(account)
                .execute(&mut *tx)
                .await
        };
        inserted.map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Exists(format!("alias {addr}"))
            } else {
                e.into()
            }
        })?;
        tx.commit().await?;
        self.lookups.forget_all();
        Ok(())
    }

    async fn remove_alias(&self, address: &Address) -> Result<()> {
        let addr = address.to_string();
        let mut tx = self.pool.begin().await?;
        let mut removed = 0;
        for delete in [
            "DELETE FROM aliases WHERE address = $1",
            "DELETE FROM forwards WHERE address = $1",
        ] {
            removed += sqlx::query(delete)
                .bind(&addr)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if removed == 0 {
            return Err(StoreError::NotFound(format!("alias {addr}")));
        }
        tx.commit().await?;
        self.lookups.forget_all();
        Ok(())
    }

    async fn list_aliases(&self) -> Result<Vec<AliasInfo>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT al.address, a.address FROM aliases al JOIN accounts a ON al.account_id = a.id
             UNION ALL SELECT address, target FROM forwards
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(address, target)| AliasInfo { address, target })
            .collect())
    }

    async fn resolve(&self, address: &Address, allow_catch_all: bool) -> Result<Recipient> {
        // Remembered until the directory changes (postgres/lookups.rs).
        let key = address.to_string();
        let generation = match self.lookups.get(&key, allow_catch_all) {
            Ok(known) => return Ok(known),
            Err(generation) => generation,
        };
        // One query, as on SQLite: the domain, a forwarding alias, and the
        // account reached directly, through an alias, or through the
        // domain's catch-all (which a forwarding alias comes before).
        let row: crate::LookupRow =
            sqlx::query_as(
                "WITH d AS (SELECT id, catch_all FROM domains WHERE name = $2),
                      fwd AS (SELECT target FROM forwards WHERE address = $1),
                      target AS (SELECT COALESCE(
                          (SELECT id FROM accounts WHERE address = $1),
                          (SELECT account_id FROM aliases WHERE address = $1),
                          CASE WHEN $3 AND NOT EXISTS (SELECT 1 FROM fwd)
                               THEN (SELECT a.id FROM accounts a, d WHERE a.address = d.catch_all) END
                      ) AS id)
                 SELECT a.id, a.address, a.quota, a.used, (SELECT target FROM fwd)
                 FROM d CROSS JOIN target t LEFT JOIN accounts a ON a.id = t.id",
            )
            .bind(&key)
            .bind(address.domain())
            .bind(allow_catch_all)
            .fetch_optional(&self.pool)
            .await?;
        let answer = Recipient::from_lookup(row);
        self.lookups.put(&key, allow_catch_all, &answer, generation);
        Ok(answer)
    }

    async fn authenticate(&self, login: &str, password: &str) -> Result<Option<AccountId>> {
        let login = login.trim().to_lowercase();
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT id, password_hash FROM accounts WHERE address = $1")
                .bind(&login)
                .fetch_optional(&self.pool)
                .await?;
        password::check_login(&self.auth_cache, &login, row, password).await
    }

    async fn add_dkim_key(&self, key: DkimKeyRow) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if domain_id(&mut tx, &key.domain).await?.is_none() {
            return Err(StoreError::NotFound(format!("domain {}", key.domain)));
        }
        let done = sqlx::query(
            "INSERT INTO dkim_keys(domain, selector, algorithm, private_key, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT(domain, selector) DO NOTHING",
        )
        .bind(&key.domain)
        .bind(&key.selector)
        .bind(&key.algorithm)
        .bind(&key.private_key)
        .bind(&key.status)
        .bind(now_unix())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Exists(format!(
                "DKIM selector {} for {}",
                key.selector, key.domain
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn dkim_keys(&self, domain: &str) -> Result<Vec<DkimKeyRow>> {
        let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
            "SELECT domain, selector, algorithm, private_key, status FROM dkim_keys
             WHERE domain = $1 ORDER BY id",
        )
        .bind(domain.to_lowercase())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(domain, selector, algorithm, private_key, status)| DkimKeyRow {
                    domain,
                    selector,
                    algorithm,
                    private_key,
                    status,
                },
            )
            .collect())
    }

    async fn activate_dkim_key(&self, domain: &str, selector: &str) -> Result<()> {
        let domain = domain.to_lowercase();
        let mut tx = self.pool.begin().await?;
        let algorithm: String = sqlx::query_scalar(
            "SELECT algorithm FROM dkim_keys WHERE domain = $1 AND selector = $2 FOR UPDATE",
        )
        .bind(&domain)
        .bind(selector)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("DKIM selector {selector} for {domain}")))?;
        sqlx::query(
            "UPDATE dkim_keys SET status = 'retired'
             WHERE domain = $1 AND algorithm = $2 AND status = 'active' AND selector <> $3",
        )
        .bind(&domain)
        .bind(&algorithm)
        .bind(selector)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE dkim_keys SET status = 'active' WHERE domain = $1 AND selector = $2")
            .bind(&domain)
            .bind(selector)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
