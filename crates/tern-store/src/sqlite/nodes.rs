//! [`Nodes`] for SQLite: a row per node, kept fresh by its heartbeats.

use super::SqliteStore;
use crate::{NodeInfo, Nodes, Result};
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl Nodes for SqliteStore {
    fn node(&self) -> &str {
        &self.node
    }

    async fn heartbeat(&self, started_at: i64, pid: u32, version: &str) -> Result<()> {
        let (node, version) = (self.node.clone(), version.to_string());
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO nodes(name, started_at, heartbeat, pid, version) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(name) DO UPDATE SET started_at = ?2, heartbeat = ?3, pid = ?4, version = ?5",
            )?
            .execute(params![node, started_at, tern_core::now_unix(), pid, version])?;
            Ok(())
        })
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let now = tern_core::now_unix();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT n.name, n.started_at, n.heartbeat, n.pid, n.version,
                        (SELECT COUNT(*) FROM queue_rcpts r
                         WHERE r.lease_owner = n.name AND r.lease_until <> 0 AND r.lease_until > ?)
                 FROM nodes n ORDER BY n.name",
            )?;
            let rows = st.query_map([now], |r| {
                Ok(NodeInfo {
                    name: r.get(0)?,
                    started_at: r.get(1)?,
                    heartbeat: r.get(2)?,
                    pid: r.get(3)?,
                    version: r.get(4)?,
                    leases: r.get::<_, i64>(5)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn take_over_silent(&self, now: i64, silent_since: i64) -> Result<Vec<(String, u64)>> {
        let node = self.node.clone();
        self.write(move |c| {
            let owners: Vec<String> = c
                .prepare_cached(
                    "SELECT name FROM nodes WHERE heartbeat < ? AND name <> ? ORDER BY name",
                )?
                .query_map(params![silent_since, node], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::new();
            let mut free = c.prepare_cached(
                "UPDATE queue_rcpts SET lease_until = 0, next_attempt = ?, lease_owner = ''
                 WHERE lease_until <> 0 AND lease_owner = ?",
            )?;
            for owner in owners {
                let n = free.execute(params![now, owner])?;
                if n > 0 {
                    out.push((owner, n as u64));
                }
            }
            Ok(out)
        })
        .await
    }

    async fn shared_secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>> {
        let name = name.to_string();
        self.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO secrets(name, value) VALUES (?, ?)",
                params![name, fresh],
            )?;
            Ok(
                c.query_row("SELECT value FROM secrets WHERE name = ?", [&name], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }
}

#[async_trait]
impl crate::Allowances for SqliteStore {
    async fn take_allowance(&self, key: &str, limit: u32, period: i64, now: i64) -> Result<bool> {
        let (window, weight) = crate::allowances::window_of(now, period);
        let mut counts = self.allowances.lock().unwrap_or_else(|e| e.into_inner());
        let previous = counts
            .get(&(key.to_string(), window - 1))
            .copied()
            .unwrap_or(0);
        let current = counts.entry((key.to_string(), window)).or_default();
        if !crate::allowances::fits(*current, previous, weight, limit) {
            return Ok(false);
        }
        *current += 1;
        // Older windows never count again.
        if counts.len() > 10_000 {
            counts.retain(|(_, w), _| *w >= window - 1);
        }
        Ok(true)
    }

    async fn take_rate(
        &self,
        key: &str,
        interval_ms: i64,
        burst: u32,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
        if rates.len() > 100_000 {
            // A lapsed arrival time is as good as none.
            rates.retain(|_, tat| *tat > now_ms);
        }
        let tat = rates.get(key).copied();
        Ok(
            match crate::allowances::gcra(tat, now_ms, interval_ms, burst) {
                Ok(next) => {
                    rates.insert(key.to_string(), next);
                    None
                }
                Err(wait) => Some(wait),
            },
        )
    }

    async fn sweep_counters(&self, now: i64) -> Result<u64> {
        // The in-memory counts bound themselves; the cache is a table.
        self.write(move |c| {
            Ok(c.prepare_cached("DELETE FROM cache WHERE until <= ?1")?
                .execute([now])? as u64)
        })
        .await
    }
}

/// One process owns a SQLite store: its tallies are in its memory.
#[async_trait]
impl tern_core::tally::Tallies for SqliteStore {
    async fn tally(
        &self,
        keys: &[String],
        change: i64,
        window: i64,
        now: i64,
    ) -> std::result::Result<Vec<u64>, tern_core::tally::TallyError> {
        Ok(self.tallies.apply(keys, change, window, now))
    }

    async fn clear_tally(
        &self,
        key: &str,
    ) -> std::result::Result<(), tern_core::tally::TallyError> {
        self.tallies.clear(key);
        Ok(())
    }
}

#[async_trait]
impl crate::SharedCache for SqliteStore {
    async fn cached(&self, name: &str, now: i64) -> Result<Option<String>> {
        self.read(move |c| {
            use rusqlite::OptionalExtension;
            Ok(
                c.prepare_cached("SELECT value FROM cache WHERE name = ?1 AND until > ?2")?
                    .query_row(params![name, now], |r| r.get(0))
                    .optional()?,
            )
        })
    }

    async fn cache(&self, name: &str, value: &str, until: i64) -> Result<()> {
        let (name, value) = (name.to_string(), value.to_string());
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO cache(name, value, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT(name) DO UPDATE SET value = ?2, until = ?3",
            )?
            .execute(params![name, value, until])?;
            Ok(())
        })
        .await
    }
}
