//! [`Dashboard`] for SQLite.

use super::SqliteStore;
use crate::{Dashboard, Result, WebSession, WebUser};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<WebUser> {
    let domains: String = r.get(2)?;
    Ok(WebUser {
        email: r.get(0)?,
        password_hash: r.get(1)?,
        domains: serde_json::from_str(&domains).unwrap_or_default(),
        created: r.get(3)?,
    })
}

#[async_trait]
impl Dashboard for SqliteStore {
    async fn put_web_user(&self, u: WebUser) -> Result<()> {
        let domains = serde_json::to_string(&u.domains).unwrap_or_else(|_| "[]".into());
        self.write(move |c| {
            c.execute(
                "INSERT INTO web_users(email, password_hash, domains, created) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(email) DO UPDATE SET password_hash = ?2, domains = ?3",
                params![u.email.to_ascii_lowercase(), u.password_hash, domains, u.created],
            )?;
            Ok(())
        })
        .await
    }

    async fn web_user(&self, email: &str) -> Result<Option<WebUser>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT email, password_hash, domains, created FROM web_users WHERE email = ?",
            )?
            .query_row([email.to_ascii_lowercase()], user_row)
            .optional()?)
        })
    }

    async fn web_users(&self) -> Result<Vec<WebUser>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT email, password_hash, domains, created FROM web_users ORDER BY email",
            )?
            .query_map([], user_row)?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn remove_web_user(&self, email: &str) -> Result<bool> {
        let email = email.to_ascii_lowercase();
        self.write(move |c| {
            c.execute("DELETE FROM web_sessions WHERE email = ?", [&email])?;
            Ok(c.execute("DELETE FROM web_users WHERE email = ?", [&email])? > 0)
        })
        .await
    }

    async fn add_web_session(&self, s: WebSession) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO web_sessions(id_hash, email, csrf, expires) VALUES (?, ?, ?, ?)",
                params![s.id_hash, s.email, s.csrf, s.expires],
            )?;
            Ok(())
        })
        .await
    }

    async fn web_session(&self, id_hash: &str, now: i64) -> Result<Option<WebSession>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id_hash, email, csrf, expires FROM web_sessions
                 WHERE id_hash = ? AND expires > ?",
            )?
            .query_row(params![id_hash, now], |r| {
                Ok(WebSession {
                    id_hash: r.get(0)?,
                    email: r.get(1)?,
                    csrf: r.get(2)?,
                    expires: r.get(3)?,
                })
            })
            .optional()?)
        })
    }

    async fn remove_web_session(&self, id_hash: &str) -> Result<()> {
        let id = id_hash.to_string();
        self.write(move |c| {
            c.execute("DELETE FROM web_sessions WHERE id_hash = ?", [id])?;
            Ok(())
        })
        .await
    }

    async fn prune_web_sessions(&self, now: i64) -> Result<usize> {
        self.write(move |c| Ok(c.execute("DELETE FROM web_sessions WHERE expires <= ?", [now])?))
            .await
    }
}
