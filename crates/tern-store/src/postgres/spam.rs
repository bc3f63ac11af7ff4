//! [`SpamData`] for PostgreSQL: the Bayes tokens and totals every node
//! learns into and scores from, pending verdicts, thresholds and the
//! greylist, shared by all nodes.

use super::PgStore;
use crate::{FilterPolicy, GreylistRow, Result, SpamData, TrainingRecord};
use async_trait::async_trait;
use std::collections::HashMap;

#[async_trait]
impl SpamData for PgStore {
    async fn bayes_counts(&self, scope: i64, tokens: &[i64]) -> Result<HashMap<i64, (u32, u32)>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT token, spam, ham FROM bayes_tokens WHERE scope = $1 AND token = ANY($2)",
        )
        .bind(scope)
        .bind(tokens)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(t, s, h)| (t, (s as u32, h as u32)))
            .collect())
    }

    async fn bayes_totals(&self, scope: i64) -> Result<(u32, u32)> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT spam, ham FROM bayes_totals WHERE scope = $1")
                .bind(scope)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map_or((0, 0), |(s, h)| (s as u32, h as u32)))
    }

    async fn bayes_learn(&self, scopes: &[i64], tokens: &[i64], spam: bool) -> Result<()> {
        let (ds, dh) = if spam { (1i64, 0i64) } else { (0, 1) };
        // Sorted and once each: concurrent learners lock rows in one order.
        let mut tokens = tokens.to_vec();
        tokens.sort_unstable();
        tokens.dedup();
        let mut scopes = scopes.to_vec();
        scopes.sort_unstable();
        scopes.dedup();
        let mut tx = self.pool.begin().await?;
        for scope in &scopes {
            sqlx::query(
                "INSERT INTO bayes_tokens(scope, token, spam, ham)
                 SELECT $1, t, $3, $4 FROM UNNEST($2::BIGINT[]) AS t
                 ON CONFLICT (scope, token) DO UPDATE SET spam = bayes_tokens.spam + $3,
                    ham = bayes_tokens.ham + $4",
            )
            .bind(scope)
            .bind(&tokens)
            .bind(ds)
            .bind(dh)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO bayes_totals(scope, spam, ham) VALUES ($1, $2, $3)
                 ON CONFLICT (scope) DO UPDATE SET spam = bayes_totals.spam + $2,
                    ham = bayes_totals.ham + $3",
            )
            .bind(scope)
            .bind(ds)
            .bind(dh)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn training_pending(&self, limit: usize) -> Result<Vec<TrainingRecord>> {
        let rows: Vec<(i64, i64, i64, bool)> = sqlx::query_as(
            "SELECT id, account_id, blob_id, is_spam FROM junk_training ORDER BY id LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, account, blob, is_spam)| TrainingRecord {
                id,
                account,
                blob,
                is_spam,
            })
            .collect())
    }

    async fn training_done(&self, ids: &[i64]) -> Result<()> {
        sqlx::query("DELETE FROM junk_training WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn set_filter_policy(&self, p: FilterPolicy) -> Result<()> {
        if p.junk_score.is_none() && p.reject_score.is_none() {
            sqlx::query("DELETE FROM filter_policies WHERE target = $1")
                .bind(&p.target)
                .execute(&self.pool)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO filter_policies(target, junk_score, reject_score) VALUES ($1, $2, $3)
                 ON CONFLICT (target) DO UPDATE SET junk_score = EXCLUDED.junk_score,
                    reject_score = EXCLUDED.reject_score",
            )
            .bind(&p.target)
            .bind(p.junk_score)
            .bind(p.reject_score)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn filter_policies(&self) -> Result<Vec<FilterPolicy>> {
        let rows: Vec<(String, Option<f64>, Option<f64>)> = sqlx::query_as(
            "SELECT target, junk_score, reject_score FROM filter_policies ORDER BY target",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(target, junk_score, reject_score)| FilterPolicy {
                target,
                junk_score,
                reject_score,
            })
            .collect())
    }

    async fn save_greylist(&self, entries: Vec<GreylistRow>, stale_before: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        if !entries.is_empty() {
            let mut entries = entries;
            entries.sort_by(|a, b| {
                (&a.network, &a.sender, &a.rcpt).cmp(&(&b.network, &b.sender, &b.rcpt))
            });
            entries.dedup_by(|a, b| {
                (&a.network, &a.sender, &a.rcpt) == (&b.network, &b.sender, &b.rcpt)
            });
            let col =
                |f: fn(&GreylistRow) -> &str| -> Vec<&str> { entries.iter().map(f).collect() };
            let (networks, senders, rcpts) =
                (col(|e| &e.network), col(|e| &e.sender), col(|e| &e.rcpt));
            let first: Vec<i64> = entries.iter().map(|e| e.first_seen).collect();
            let passed: Vec<i64> = entries.iter().map(|e| e.passed_until).collect();
            // A triplet another node has seen earlier keeps its first
            // sighting; the later pass wins.
            sqlx::query(
                "INSERT INTO greylist(network, sender, rcpt, first_seen, passed_until)
                 SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[])
                 ON CONFLICT (network, sender, rcpt) DO UPDATE SET
                    first_seen = LEAST(greylist.first_seen, EXCLUDED.first_seen),
                    passed_until = GREATEST(greylist.passed_until, EXCLUDED.passed_until)",
            )
            .bind(&networks)
            .bind(&senders)
            .bind(&rcpts)
            .bind(&first)
            .bind(&passed)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM greylist WHERE passed_until < $1 AND first_seen < $1")
            .bind(stale_before)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn load_greylist(&self) -> Result<Vec<GreylistRow>> {
        let rows: Vec<(String, String, String, i64, i64)> =
            sqlx::query_as("SELECT network, sender, rcpt, first_seen, passed_until FROM greylist")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(
                |(network, sender, rcpt, first_seen, passed_until)| GreylistRow {
                    network,
                    sender,
                    rcpt,
                    first_seen,
                    passed_until,
                },
            )
            .collect())
    }
}
