//! [`Dashboard`] for PostgreSQL: web users and their sessions, valid on
//! every node.

use super::PgStore;
use crate::{Dashboard, Result, WebSession, WebUser};
use async_trait::async_trait;

fn user((email, password_hash, domains, created): (String, String, String, i64)) -> WebUser {
    WebUser {
        email,
        password_hash,
        domains: serde_json::from_str(&domains).unwrap_or_default(),
        created,
    }
}

#[async_trait]
impl Dashboard for PgStore {
    async fn put_web_user(&self, u: WebUser) -> Result<()> {
        let domains = serde_json::to_string(&u.domains).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO web_users(email, password_hash, domains, created) VALUES ($1, $2, $3, $4)
             ON CONFLICT (email) DO UPDATE SET password_hash = $2, domains = $3",
        )
        .bind(u.email.to_ascii_lowercase())
        .bind(&u.password_hash)
        .bind(domains)
        .bind(u.created)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn web_user(&self, email: &str) -> Result<Option<WebUser>> {
        let row = sqlx::query_as(
            "SELECT email, password_hash, domains, created FROM web_users WHERE email = $1",
        )
        .bind(email.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(user))
    }

    async fn web_users(&self) -> Result<Vec<WebUser>> {
        let rows = sqlx::query_as(
            "SELECT email, password_hash, domains, created FROM web_users ORDER BY email",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(user).collect())
    }

    async fn remove_web_user(&self, email: &str) -> Result<bool> {
        let email = email.to_ascii_lowercase();
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM web_sessions WHERE email = $1")
            .bind(&email)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM web_users WHERE email = $1")
            .bind(&email)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone > 0)
    }

    async fn add_web_session(&self, s: WebSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO web_sessions(id_hash, email, csrf, expires) VALUES ($1, $2, $3, $4)",
        )
        .bind(&s.id_hash)
        .bind(&s.email)
        .bind(&s.csrf)
        .bind(s.expires)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn web_session(&self, id_hash: &str, now: i64) -> Result<Option<WebSession>> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "SELECT id_hash, email, csrf, expires FROM web_sessions WHERE id_hash = $1 AND expires > $2",
        )
        .bind(id_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id_hash, email, csrf, expires)| WebSession {
            id_hash,
            email,
            csrf,
            expires,
        }))
    }

    async fn remove_web_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn prune_web_sessions(&self, now: i64) -> Result<usize> {
        Ok(sqlx::query("DELETE FROM web_sessions WHERE expires <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected() as usize)
    }
}
