//! [`Directory`] for SQLite: domains, accounts, aliases, passwords.

use super::SqliteStore;
use crate::{
    AccountId, AccountInfo, AliasInfo, DEFAULT_MAILBOXES, Directory, DkimKeyRow, DomainInfo,
    Recipient, Result, StoreError, password,
};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use tern_core::{Address, now_unix};

#[async_trait]
impl Directory for SqliteStore {
    async fn add_domain(&self, name: &str, catch_all: Option<&Address>) -> Result<()> {
        let name = crate::new_domain_name(name, catch_all)?;
        let catch_all = catch_all.map(|a| a.to_string());
        self.write(move |c| {
            let n = c.execute(
                "INSERT INTO domains(name, catch_all, created_at) VALUES (?, ?, ?)
                 ON CONFLICT(name) DO NOTHING",
                params![name, catch_all, now_unix()],
            )?;
            if n == 0 {
                return Err(StoreError::Exists(format!("domain {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn remove_domain(&self, name: &str) -> Result<()> {
        let name = name.to_lowercase();
        self.write(move |c| {
            let used: i64 = c.query_row(
                "SELECT (SELECT COUNT(*) FROM accounts a JOIN domains d ON a.domain_id = d.id WHERE d.name = ?1)
                      + (SELECT COUNT(*) FROM aliases a JOIN domains d ON a.domain_id = d.id WHERE d.name = ?1)
                      + (SELECT COUNT(*) FROM forwards f JOIN domains d ON f.domain_id = d.id WHERE d.name = ?1)",
                [&name],
                |r| r.get(0),
            )?;
            if used > 0 {
                return Err(StoreError::Invalid(format!(
                    "domain {name} still has {used} accounts or aliases; remove them first"
                )));
            }
            c.execute("DELETE FROM dkim_keys WHERE domain = ?", [&name])?;
            if c.execute("DELETE FROM domains WHERE name = ?", [&name])? == 0 {
                return Err(StoreError::NotFound(format!("domain {name}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_domains(&self) -> Result<Vec<DomainInfo>> {
        self.read(|c| {
            let mut st = c.prepare_cached("SELECT name, catch_all FROM domains ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok(DomainInfo {
                    name: r.get(0)?,
                    catch_all: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn add_account(
        &self,
        address: &Address,
        password: &str,
        quota: u64,
    ) -> Result<AccountId> {
        let hash = password::hash_blocking(password).await?;
        let address = address.clone();
        self.write(move |c| {
            let domain_id: Option<i64> = c
                .query_row("SELECT id FROM domains WHERE name = ?", [address.domain()], |r| r.get(0))
                .optional()?;
            let domain_id = domain_id.ok_or_else(|| {
                StoreError::Invalid(format!(
                    "{} is not a local domain; add it with `tern domain add {}`",
                    address.domain(),
                    address.domain()
                ))
            })?;
            let addr = address.to_string();
            if let Some(kind) = address_in_use(c, &addr)? {
                return Err(StoreError::Exists(format!("{kind} {addr}")));
            }
            let id: Option<i64> = c
                .query_row(
                    "INSERT INTO accounts(address, domain_id, password_hash, quota, created_at)
                     VALUES (?, ?, ?, ?, ?) ON CONFLICT(address) DO NOTHING RETURNING id",
                    params![addr, domain_id, hash, quota as i64, now_unix()],
                    |r| r.get(0),
                )
                .optional()?;
            let id = id.ok_or_else(|| StoreError::Exists(format!("account {addr}")))?;
            for (name, special) in DEFAULT_MAILBOXES {
                c.execute(
                    "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity) VALUES (?, ?, ?, ?)",
                    params![id, name, special, super::next_uidvalidity(c)?],
                )?;
                c.execute(
                    "INSERT INTO subscriptions(account_id, name) VALUES (?, ?)",
                    params![id, name],
                )?;
            }
            Ok(id)
        })
        .await
    }

    async fn remove_account(&self, address: &Address) -> Result<()> {
        let addr = address.to_string();
        self.write(move |c| {
            let id: i64 = c
                .query_row("SELECT id FROM accounts WHERE address = ?", [&addr], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("account {addr}")))?;
            // The delete trigger releases blob references.
            c.execute(
                "DELETE FROM mailbox_messages WHERE mailbox_id IN (SELECT id FROM mailboxes WHERE account_id = ?)",
                [id],
            )?;
            c.execute("DELETE FROM mailboxes WHERE account_id = ?", [id])?;
            c.execute("DELETE FROM aliases WHERE account_id = ?", [id])?;
            c.execute("UPDATE domains SET catch_all = NULL WHERE catch_all = ?", [&addr])?;
            c.execute("DELETE FROM accounts WHERE id = ?", [id])?;
            Ok(())
        })
        .await
    }

    async fn set_password(&self, address: &Address, password: &str) -> Result<()> {
        let hash = password::hash_blocking(password).await?;
        let addr = address.to_string();
        self.write(move |c| {
            if c.execute(
                "UPDATE accounts SET password_hash = ? WHERE address = ?",
                [&hash, &addr],
            )? == 0
            {
                return Err(StoreError::NotFound(format!("account {addr}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<AccountInfo>> {
        let domain = domain.map(str::to_lowercase);
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT a.id, a.address, a.quota, a.used,
                        (SELECT COUNT(*) FROM mailbox_messages mm JOIN mailboxes m ON mm.mailbox_id = m.id
                         WHERE m.account_id = a.id)
                 FROM accounts a JOIN domains d ON a.domain_id = d.id
                 WHERE ?1 IS NULL OR d.name = ?1 ORDER BY a.address",
            )?;
            let rows = st.query_map([&domain], |r| {
                Ok(AccountInfo {
                    id: r.get(0)?,
                    address: r.get(1)?,
                    quota: r.get::<_, i64>(2)? as u64,
                    used: r.get::<_, i64>(3)? as u64,
                    messages: r.get::<_, i64>(4)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn add_alias(&self, address: &Address, target: &Address) -> Result<()> {
        let (addr, target) = (address.clone(), target.to_string());
        self.write(move |c| {
            let domain_id: i64 = c
                .query_row(
                    "SELECT id FROM domains WHERE name = ?",
                    [addr.domain()],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| {
                    StoreError::Invalid(format!("{} is not a local domain", addr.domain()))
                })?;
            let addr = addr.to_string();
            if let Some(kind) = address_in_use(c, &addr)? {
                return Err(StoreError::Exists(format!("{kind} {addr}")));
            }
            let target_domain = target.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            let target_is_local = c
                .query_row(
                    "SELECT 1 FROM domains WHERE name = ?",
                    [target_domain],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if !target_is_local {
                // A forwarding alias (to another domain).
                c.execute(
                    "INSERT INTO forwards(address, domain_id, target) VALUES (?, ?, ?)",
                    params![addr, domain_id, target],
                )?;
                return Ok(());
            }
            let account: i64 = c
                .query_row(
                    "SELECT id FROM accounts WHERE address = ?",
                    [&target],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("target account {target}")))?;
            c.execute(
                "INSERT INTO aliases(address, domain_id, account_id) VALUES (?, ?, ?)",
                params![addr, domain_id, account],
            )?;
            Ok(())
        })
        .await
    }

    async fn remove_alias(&self, address: &Address) -> Result<()> {
        let addr = address.to_string();
        self.write(move |c| {
            if c.execute("DELETE FROM aliases WHERE address = ?", [&addr])?
                + c.execute("DELETE FROM forwards WHERE address = ?", [&addr])?
                == 0
            {
                return Err(StoreError::NotFound(format!("alias {addr}")));
            }
            Ok(())
        })
        .await
    }

    async fn list_aliases(&self) -> Result<Vec<AliasInfo>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT al.address, a.address FROM aliases al JOIN accounts a ON al.account_id = a.id
                 UNION ALL SELECT address, target FROM forwards
                 ORDER BY 1",
            )?;
            let rows = st.query_map([], |r| {
                Ok(AliasInfo {
                    address: r.get(0)?,
                    target: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn resolve(&self, address: &Address, allow_catch_all: bool) -> Result<Recipient> {
        let addr = address.to_string();
        self.read(|c| {
            // One query: the domain, a forwarding alias, and the account
            // reached directly, through an alias, or through the domain's
            // catch-all (which a forwarding alias comes before).
            let mut st = c.prepare_cached(
                "WITH d AS (SELECT id, catch_all FROM domains WHERE name = ?2),
                      fwd AS (SELECT target FROM forwards WHERE address = ?1),
                      target AS (SELECT COALESCE(
                          (SELECT id FROM accounts WHERE address = ?1),
                          (SELECT account_id FROM aliases WHERE address = ?1),
                          CASE WHEN ?3 AND NOT EXISTS (SELECT 1 FROM fwd)
                               THEN (SELECT a.id FROM accounts a, d WHERE a.address = d.catch_all) END
                      ) AS id)
                 SELECT d.id, a.id, a.address, a.quota, a.used, (SELECT target FROM fwd)
                 FROM d LEFT JOIN target t LEFT JOIN accounts a ON a.id = t.id",
            )?;
            let row = st
                .query_row(params![addr, address.domain(), allow_catch_all], |r| {
                    Ok((
                        r.get::<_, Option<i64>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<i64>>(4)?,
                        r.get::<_, Option<String>>(5)?,
                    ))
                })
                .optional()?;
            Ok(Recipient::from_lookup(row))
        })
    }

    async fn add_dkim_key(&self, key: DkimKeyRow) -> Result<()> {
        self.write(move |c| {
            let known: Option<i64> = c
                .query_row("SELECT id FROM domains WHERE name = ?", [&key.domain], |r| r.get(0))
                .optional()?;
            if known.is_none() {
                return Err(StoreError::NotFound(format!("domain {}", key.domain)));
            }
            let n = c.execute(
                "INSERT INTO dkim_keys(domain, selector, algorithm, private_key, status, created_at)
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(domain, selector) DO NOTHING",
                params![key.domain, key.selector, key.algorithm, key.private_key, key.status, now_unix()],
            )?;
            if n == 0 {
                return Err(StoreError::Exists(format!("DKIM selector {} for {}", key.selector, key.domain)));
            }
            Ok(())
        })
        .await
    }

    async fn dkim_keys(&self, domain: &str) -> Result<Vec<DkimKeyRow>> {
        let domain = domain.to_lowercase();
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT domain, selector, algorithm, private_key, status FROM dkim_keys
                 WHERE domain = ? ORDER BY id",
            )?;
            let rows = st.query_map([&domain], |r| {
                Ok(DkimKeyRow {
                    domain: r.get(0)?,
                    selector: r.get(1)?,
                    algorithm: r.get(2)?,
                    private_key: r.get(3)?,
                    status: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn activate_dkim_key(&self, domain: &str, selector: &str) -> Result<()> {
        let (domain, selector) = (domain.to_lowercase(), selector.to_string());
        self.write(move |c| {
            let algorithm: String = c
                .query_row(
                    "SELECT algorithm FROM dkim_keys WHERE domain = ? AND selector = ?",
                    [&domain, &selector],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| {
                    StoreError::NotFound(format!("DKIM selector {selector} for {domain}"))
                })?;
            c.execute(
                "UPDATE dkim_keys SET status = 'retired'
                 WHERE domain = ? AND algorithm = ? AND status = 'active' AND selector <> ?",
                [&domain, &algorithm, &selector],
            )?;
            c.execute(
                "UPDATE dkim_keys SET status = 'active' WHERE domain = ? AND selector = ?",
                [&domain, &selector],
            )?;
            Ok(())
        })
        .await
    }

    async fn authenticate(&self, login: &str, password: &str) -> Result<Option<AccountId>> {
        let login = login.trim().to_lowercase();
        let row: Option<(i64, String)> = self.read(|c| {
            Ok(c.query_row(
                "SELECT id, password_hash FROM accounts WHERE address = ?",
                [&login],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })?;
        password::check_login(&self.auth_cache, &login, row, password).await
    }
}

/// What already uses `address`, if anything: an account, an alias or a
/// forwarding alias (an address is one of them at most).
fn address_in_use(c: &rusqlite::Connection, address: &str) -> Result<Option<&'static str>> {
    const KINDS: [&str; 3] = ["account", "alias", "forwarding alias"];
    let kind: Option<usize> = c
        .query_row(
            "SELECT 0 FROM accounts WHERE address = ?1
             UNION ALL SELECT 1 FROM aliases WHERE address = ?1
             UNION ALL SELECT 2 FROM forwards WHERE address = ?1",
            [address],
            |r| r.get(0),
        )
        .optional()?;
    Ok(kind.and_then(|k| KINDS.get(k).copied()))
}
