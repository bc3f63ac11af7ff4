//! [`Nodes`] for PostgreSQL: a row per node, kept fresh by its heartbeats.

use super::PgStore;
use crate::{NodeInfo, Nodes, Result};
use async_trait::async_trait;

#[async_trait]
impl Nodes for PgStore {
    fn node(&self) -> &str {
        &self.node
    }

    async fn heartbeat(&self, started_at: i64, pid: u32, version: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO nodes(name, started_at, heartbeat, pid, version) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT(name) DO UPDATE SET started_at = $2, heartbeat = $3, pid = $4, version = $5",
        )
        .bind(&*self.node)
        .bind(started_at)
        .bind(tern_core::now_unix())
        .bind(i64::from(pid))
        .bind(version)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        // Queue leases are not on PostgreSQL yet: no node holds any here.
        let rows: Vec<(String, i64, i64, i64, String)> = sqlx::query_as(
            "SELECT name, started_at, heartbeat, pid, version FROM nodes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(name, started_at, heartbeat, pid, version)| NodeInfo {
                name,
                started_at,
                heartbeat,
                pid: pid as u32,
                version,
                leases: 0,
            })
            .collect())
    }
}
