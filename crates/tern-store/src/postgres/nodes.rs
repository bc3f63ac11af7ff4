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
        let rows: Vec<(String, i64, i64, i64, String, i64)> = sqlx::query_as(
            "SELECT n.name, n.started_at, n.heartbeat, n.pid, n.version,
                    (SELECT COUNT(*) FROM queue_rcpts r
                     WHERE r.lease_owner = n.name AND r.lease_until <> 0 AND r.lease_until > $1)
             FROM nodes n ORDER BY n.name",
        )
        .bind(tern_core::now_unix())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(name, started_at, heartbeat, pid, version, leases)| NodeInfo {
                    name,
                    started_at,
                    heartbeat,
                    pid: pid as u32,
                    version,
                    leases: leases as u64,
                },
            )
            .collect())
    }

    async fn take_over_silent(&self, now: i64, silent_since: i64) -> Result<Vec<(String, u64)>> {
        // Rows locked by a transaction in progress are skipped; the next
        // beat frees them.
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "WITH victims AS (
                SELECT r.id, r.lease_owner AS owner FROM queue_rcpts r
                JOIN nodes n ON n.name = r.lease_owner
                WHERE r.lease_until <> 0 AND n.heartbeat < $2 AND n.name <> $3
                FOR UPDATE OF r SKIP LOCKED),
             freed AS (
                UPDATE queue_rcpts q SET lease_until = 0, next_attempt = $1, lease_owner = ''
                FROM victims v WHERE q.id = v.id RETURNING v.owner)
             SELECT owner, COUNT(*) FROM freed GROUP BY owner ORDER BY owner",
        )
        .bind(now)
        .bind(silent_since)
        .bind(&*self.node)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(o, n)| (o, n as u64)).collect())
    }

    async fn shared_secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>> {
        sqlx::query("INSERT INTO secrets(name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(&fresh)
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

#[async_trait]
impl crate::Allowances for PgStore {
    async fn take_allowance(&self, key: &str, limit: u32, period: i64, now: i64) -> Result<bool> {
        let (window, weight) = crate::allowances::window_of(now, period);
        // One statement, under the window row's lock: the check and the
        // count are one step for every node. Windows before the previous
        // one go.
        let taken: Option<i64> = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM allowances WHERE key = $1 AND win < $2 - 1),
                  prev AS (SELECT COALESCE((SELECT n FROM allowances WHERE key = $1 AND win = $2 - 1), 0) AS p)
             INSERT INTO allowances(key, win, n, until)
             SELECT $1, $2, 1, ($2 + 2) * $5 FROM prev WHERE 1 + prev.p * $4 <= $3
             ON CONFLICT (key, win) DO UPDATE SET n = allowances.n + 1
                 WHERE allowances.n + 1 + (SELECT p FROM prev) * $4 <= $3
             RETURNING n",
        )
        .bind(key)
        .bind(window)
        .bind(f64::from(limit))
        .bind(weight)
        .bind(period.max(1))
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken.is_some())
    }

    async fn take_rate(
        &self,
        key: &str,
        interval_ms: i64,
        burst: u32,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        // `allowances::gcra` in one statement, under the key's row lock.
        let horizon = interval_ms.saturating_mul(i64::from(burst));
        let taken: Option<i64> = sqlx::query_scalar(
            "INSERT INTO rates(key, tat) SELECT $1, $2 + $3 WHERE $3 <= $4
             ON CONFLICT (key) DO UPDATE SET tat = GREATEST(rates.tat, $2) + $3
                 WHERE GREATEST(rates.tat, $2) + $3 - $2 <= $4
             RETURNING tat",
        )
        .bind(key)
        .bind(now_ms)
        .bind(interval_ms)
        .bind(horizon)
        .fetch_optional(&self.pool)
        .await?;
        if taken.is_some() {
            return Ok(None);
        }
        let tat: Option<i64> = sqlx::query_scalar("SELECT tat FROM rates WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(crate::allowances::gcra(tat, now_ms, interval_ms, burst)
            .err()
            .or(Some(1)))
    }

    async fn sweep_counters(&self, now: i64) -> Result<u64> {
        let mut n = sqlx::query("DELETE FROM rates WHERE tat <= $1")
            .bind(now.saturating_mul(1000))
            .execute(&self.pool)
            .await?
            .rows_affected();
        for statement in [
            "DELETE FROM allowances WHERE until <= $1",
            "DELETE FROM tallies WHERE until <= $1",
            "DELETE FROM cache WHERE until <= $1",
        ] {
            n += sqlx::query(statement)
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }
}

/// Tallies in one table, each change one statement under the rows' locks.
#[async_trait]
impl tern_core::tally::Tallies for PgStore {
    async fn tally(
        &self,
        keys: &[String],
        change: i64,
        window: i64,
        now: i64,
    ) -> std::result::Result<Vec<u64>, tern_core::tally::TallyError> {
        let error = |e: sqlx::Error| tern_core::tally::TallyError(e.to_string());
        // Keys in a fixed order, so two callers lock the same rows alike.
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort();
        sorted.dedup();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "INSERT INTO tallies(key, n, until)
             SELECT k, GREATEST($2, 0), $4 + $3 FROM unnest($1::text[]) AS k
             ON CONFLICT (key) DO UPDATE SET
                 n = GREATEST(CASE WHEN tallies.until <= $4 THEN 0 ELSE tallies.n END + $2, 0),
                 until = CASE WHEN $2 > 0 THEN $4 + $3 ELSE tallies.until END
             RETURNING key, n",
        )
        .bind(&sorted)
        .bind(change)
        .bind(window)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(error)?;
        let counts: std::collections::HashMap<String, i64> = rows.into_iter().collect();
        Ok(keys
            .iter()
            .map(|k| counts.get(k).map_or(0, |n| u64::try_from(*n).unwrap_or(0)))
            .collect())
    }

    async fn clear_tally(
        &self,
        key: &str,
    ) -> std::result::Result<(), tern_core::tally::TallyError> {
        sqlx::query("DELETE FROM tallies WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(|e| tern_core::tally::TallyError(e.to_string()))?;
        Ok(())
    }
}

#[async_trait]
impl crate::SharedCache for PgStore {
    async fn cached(&self, name: &str, now: i64) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM cache WHERE name = $1 AND until > $2")
                .bind(name)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn cache(&self, name: &str, value: &str, until: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO cache(name, value, until) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = $2, until = $3",
        )
        .bind(name)
        .bind(value)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
