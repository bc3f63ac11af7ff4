//! [`VerifyJobs`] for PostgreSQL: bulk verification jobs, answered chunk by
//! chunk (a chunk saved twice counts once).

use super::PgStore;
use crate::{Result, VerifyItem, VerifyJob, VerifyJobs};
use async_trait::async_trait;

type JobTuple = (String, i64, Option<String>, i64, i64, Option<i64>);

impl PgStore {
    async fn job(&self, t: JobTuple) -> Result<VerifyJob> {
        let (id, created, api_key, total, done, finished) = t;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT result, COUNT(*) FROM verify_items
             WHERE job = $1 AND result IS NOT NULL GROUP BY result ORDER BY result",
        )
        .bind(&id)
        .fetch_all(&self.pool)
        .await?;
        Ok(VerifyJob {
            id,
            created,
            api_key,
            total: total as u64,
            done: done as u64,
            finished,
            counts: counts.into_iter().map(|(r, n)| (r, n as u64)).collect(),
        })
    }
}

fn item(
    (index, address, result, answer): (i64, String, Option<String>, Option<String>),
) -> VerifyItem {
    VerifyItem {
        index: index as u64,
        address,
        result,
        answer,
    }
}

#[async_trait]
impl VerifyJobs for PgStore {
    async fn add_verify_job(&self, job: VerifyJob, addresses: Vec<String>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO verify_jobs(id, created, api_key, total, done) VALUES ($1, $2, $3, $4, 0)",
        )
        .bind(&job.id)
        .bind(job.created)
        .bind(&job.api_key)
        .bind(addresses.len() as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO verify_items(job, idx, address)
             SELECT $1, n - 1, a FROM UNNEST($2::TEXT[]) WITH ORDINALITY AS u(a, n)",
        )
        .bind(&job.id)
        .bind(&addresses)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn verify_job(&self, id: &str) -> Result<Option<VerifyJob>> {
        let row: Option<JobTuple> = sqlx::query_as(
            "SELECT id, created, api_key, total, done, finished FROM verify_jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(t) => Ok(Some(self.job(t).await?)),
            None => Ok(None),
        }
    }

    async fn verify_jobs(&self, api_key: Option<&str>, limit: usize) -> Result<Vec<VerifyJob>> {
        let rows: Vec<JobTuple> = sqlx::query_as(
            "SELECT id, created, api_key, total, done, finished FROM verify_jobs
             WHERE $1::TEXT IS NULL OR api_key = $1 ORDER BY created DESC, id DESC LIMIT $2",
        )
        .bind(api_key)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for t in rows {
            out.push(self.job(t).await?);
        }
        Ok(out)
    }

    async fn unfinished_verify_jobs(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar(
                "SELECT id FROM verify_jobs WHERE done < total ORDER BY created, id",
            )
            .fetch_all(&self.pool)
            .await?,
        )
    }

    async fn pending_verify_items(&self, id: &str, limit: usize) -> Result<Vec<VerifyItem>> {
        let rows = sqlx::query_as(
            "SELECT idx, address, result, answer FROM verify_items
             WHERE job = $1 AND result IS NULL ORDER BY idx LIMIT $2",
        )
        .bind(id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(item).collect())
    }

    async fn save_verify_answers(&self, id: &str, items: Vec<VerifyItem>, now: i64) -> Result<()> {
        let idx: Vec<i64> = items.iter().map(|i| i.index as i64).collect();
        let results: Vec<Option<&str>> = items.iter().map(|i| i.result.as_deref()).collect();
        let answers: Vec<Option<&str>> = items.iter().map(|i| i.answer.as_deref()).collect();
        let mut tx = self.pool.begin().await?;
        // Only items still unanswered count: a chunk saved twice counts once.
        let n = sqlx::query(
            "UPDATE verify_items v SET result = u.r, answer = u.a
             FROM UNNEST($2::BIGINT[], $3::TEXT[], $4::TEXT[]) AS u(i, r, a)
             WHERE v.job = $1 AND v.idx = u.i AND v.result IS NULL",
        )
        .bind(id)
        .bind(&idx)
        .bind(&results)
        .bind(&answers)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        sqlx::query(
            "UPDATE verify_jobs SET done = done + $1,
                finished = CASE WHEN done + $1 >= total THEN $2 ELSE finished END
             WHERE id = $3",
        )
        .bind(n)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn verify_items(
        &self,
        id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<VerifyItem>> {
        let rows = sqlx::query_as(
            "SELECT idx, address, result, answer FROM verify_items
             WHERE job = $1 AND idx > $2 ORDER BY idx LIMIT $3",
        )
        .bind(id)
        .bind(after.map_or(-1, |a| a as i64))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(item).collect())
    }

    async fn remove_verify_job(&self, id: &str) -> Result<bool> {
        // The items go with the job (ON DELETE CASCADE).
        Ok(sqlx::query("DELETE FROM verify_jobs WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn prune_verify_jobs(&self, before: i64) -> Result<usize> {
        Ok(sqlx::query("DELETE FROM verify_jobs WHERE created < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected() as usize)
    }
}
