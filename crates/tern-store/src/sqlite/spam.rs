//! [`SpamData`] for SQLite: Bayesian token counts and pending verdicts.

use super::SqliteStore;
use crate::{FilterPolicy, GreylistRow, Result, SpamData, TrainingRecord};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use std::collections::HashMap;

/// How long cached learnt-message totals are used (see `SqliteStore`).
pub(crate) const TOTALS_TTL: std::time::Duration = std::time::Duration::from_secs(10);

#[async_trait]
impl SpamData for SqliteStore {
    async fn bayes_counts(&self, scope: i64, tokens: &[i64]) -> Result<HashMap<i64, (u32, u32)>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT spam, ham FROM bayes_tokens WHERE scope = ? AND token = ?",
            )?;
            let mut out = HashMap::new();
            for t in tokens {
                if let Some(counts) = st
                    .query_row(params![scope, t], |r| {
                        Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u32))
                    })
                    .optional()?
                {
                    out.insert(*t, counts);
                }
            }
            Ok(out)
        })
    }

    async fn bayes_totals(&self, scope: i64) -> Result<(u32, u32)> {
        if let Some((at, t)) = self
            .bayes_totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&scope)
            && at.elapsed() < TOTALS_TTL
        {
            return Ok(*t);
        }
        let t = self.read(|c| {
            Ok(
                c.prepare_cached("SELECT spam, ham FROM bayes_totals WHERE scope = ?")?
                    .query_row([scope], |r| {
                        Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u32))
                    })
                    .optional()?
                    .unwrap_or((0, 0)),
            )
        })?;
        let mut cache = self.bayes_totals.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(scope, (std::time::Instant::now(), t));
        Ok(t)
    }

    async fn bayes_learn(&self, scopes: &[i64], tokens: &[i64], spam: bool) -> Result<()> {
        let scopes = scopes.to_vec();
        let scopes_cleared = scopes.clone();
        let tokens = tokens.to_vec();
        let (ds, dh) = if spam { (1, 0) } else { (0, 1) };
        self.write(move |c| {
            let mut tok = c.prepare_cached(
                "INSERT INTO bayes_tokens(scope, token, spam, ham) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(scope, token) DO UPDATE SET spam = spam + ?3, ham = ham + ?4",
            )?;
            let mut tot = c.prepare_cached(
                "INSERT INTO bayes_totals(scope, spam, ham) VALUES (?1, ?2, ?3)
                 ON CONFLICT(scope) DO UPDATE SET spam = spam + ?2, ham = ham + ?3",
            )?;
            for scope in &scopes {
                for t in &tokens {
                    tok.execute(params![scope, t, ds, dh])?;
                }
                tot.execute(params![scope, ds, dh])?;
            }
            Ok(())
        })
        .await?;
        let mut cache = self.bayes_totals.lock().unwrap_or_else(|e| e.into_inner());
        for scope in scopes_cleared {
            cache.remove(&scope);
        }
        Ok(())
    }

    async fn training_pending(&self, limit: usize) -> Result<Vec<TrainingRecord>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, account_id, blob_id, is_spam FROM junk_training ORDER BY id LIMIT ?",
            )?;
            let rows = st.query_map([limit as i64], |r| {
                Ok(TrainingRecord {
                    id: r.get(0)?,
                    account: r.get(1)?,
                    blob: r.get(2)?,
                    is_spam: r.get::<_, i64>(3)? != 0,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn training_done(&self, ids: &[i64]) -> Result<()> {
        let ids = ids.to_vec();
        self.write(move |c| {
            let mut st = c.prepare_cached("DELETE FROM junk_training WHERE id = ?")?;
            for id in &ids {
                st.execute([id])?;
            }
            Ok(())
        })
        .await
    }
    async fn set_filter_policy(&self, p: FilterPolicy) -> Result<()> {
        self.write(move |c| {
            if p.junk_score.is_none() && p.reject_score.is_none() {
                c.execute("DELETE FROM filter_policies WHERE target = ?", [&p.target])?;
            } else {
                c.execute(
                    "INSERT INTO filter_policies(target, junk_score, reject_score) VALUES (?, ?, ?)
                     ON CONFLICT(target) DO UPDATE SET junk_score = excluded.junk_score,
                        reject_score = excluded.reject_score",
                    rusqlite::params![p.target, p.junk_score, p.reject_score],
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn filter_policies(&self) -> Result<Vec<FilterPolicy>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT target, junk_score, reject_score FROM filter_policies ORDER BY target",
            )?;
            let rows = st.query_map([], |r| {
                Ok(FilterPolicy {
                    target: r.get(0)?,
                    junk_score: r.get(1)?,
                    reject_score: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn save_greylist(&self, entries: Vec<GreylistRow>, stale_before: i64) -> Result<()> {
        self.write(move |c| {
            let mut st = c.prepare_cached(
                "INSERT INTO greylist(network, sender, rcpt, first_seen, passed_until)
                 VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT(network, sender, rcpt) DO UPDATE SET
                    first_seen = excluded.first_seen, passed_until = excluded.passed_until",
            )?;
            for e in &entries {
                st.execute(rusqlite::params![
                    e.network,
                    e.sender,
                    e.rcpt,
                    e.first_seen,
                    e.passed_until
                ])?;
            }
            c.prepare_cached("DELETE FROM greylist WHERE passed_until < ?1 AND first_seen < ?1")?
                .execute([stale_before])?;
            Ok(())
        })
        .await
    }

    async fn load_greylist(&self) -> Result<Vec<GreylistRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT network, sender, rcpt, first_seen, passed_until FROM greylist",
            )?;
            let rows = st.query_map([], |r| {
                Ok(GreylistRow {
                    network: r.get(0)?,
                    sender: r.get(1)?,
                    rcpt: r.get(2)?,
                    first_seen: r.get(3)?,
                    passed_until: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}
