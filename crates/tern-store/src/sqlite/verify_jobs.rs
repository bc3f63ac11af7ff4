//! [`VerifyJobs`] for SQLite.

use super::SqliteStore;
use crate::{Result, VerifyItem, VerifyJob, VerifyJobs};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

fn job_row(c: &Connection, r: &rusqlite::Row<'_>) -> rusqlite::Result<VerifyJob> {
    let id: String = r.get(0)?;
    let counts = c
        .prepare_cached(
            "SELECT result, count(*) FROM verify_items
             WHERE job = ? AND result IS NOT NULL GROUP BY result ORDER BY result",
        )?
        .query_map([&id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(VerifyJob {
        id,
        created: r.get(1)?,
        api_key: r.get(2)?,
        total: r.get::<_, i64>(3)? as u64,
        done: r.get::<_, i64>(4)? as u64,
        finished: r.get(5)?,
        counts,
    })
}

fn item_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VerifyItem> {
    Ok(VerifyItem {
        index: r.get::<_, i64>(0)? as u64,
        address: r.get(1)?,
        result: r.get(2)?,
        answer: r.get(3)?,
    })
}

const JOB_COLUMNS: &str = "id, created, api_key, total, done, finished";

#[async_trait]
impl VerifyJobs for SqliteStore {
    async fn add_verify_job(&self, job: VerifyJob, addresses: Vec<String>) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO verify_jobs(id, created, api_key, total, done) VALUES (?, ?, ?, ?, 0)",
                params![job.id, job.created, job.api_key, addresses.len() as i64],
            )?;
            let mut add =
                c.prepare_cached("INSERT INTO verify_items(job, idx, address) VALUES (?, ?, ?)")?;
            for (i, a) in addresses.iter().enumerate() {
                add.execute(params![job.id, i as i64, a])?;
            }
            Ok(())
        })
        .await
    }

    async fn verify_job(&self, id: &str) -> Result<Option<VerifyJob>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM verify_jobs WHERE id = ?"
            ))?
            .query_row([id], |r| job_row(c, r))
            .optional()?)
        })
    }

    async fn verify_jobs(&self, api_key: Option<&str>, limit: usize) -> Result<Vec<VerifyJob>> {
        self.read(|c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM verify_jobs WHERE ?1 IS NULL OR api_key = ?1
                     ORDER BY created DESC, id DESC LIMIT ?2"
            ))?
            .query_map(params![api_key, limit as i64], |r| job_row(c, r))?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn unfinished_verify_jobs(&self) -> Result<Vec<String>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id FROM verify_jobs WHERE done < total ORDER BY created, id",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn pending_verify_items(&self, id: &str, limit: usize) -> Result<Vec<VerifyItem>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT idx, address, result, answer FROM verify_items
                     WHERE job = ? AND result IS NULL ORDER BY idx LIMIT ?",
            )?
            .query_map(params![id, limit as i64], item_row)?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn save_verify_answers(&self, id: &str, items: Vec<VerifyItem>, now: i64) -> Result<()> {
        let id = id.to_string();
        self.write(move |c| {
            let mut n = 0i64;
            let mut set = c.prepare_cached(
                "UPDATE verify_items SET result = ?, answer = ?
                 WHERE job = ? AND idx = ? AND result IS NULL",
            )?;
            for it in &items {
                n += set.execute(params![it.result, it.answer, id, it.index as i64])? as i64;
            }
            c.execute(
                "UPDATE verify_jobs SET done = done + ?1,
                 finished = CASE WHEN done + ?1 >= total THEN ?2 ELSE finished END
                 WHERE id = ?3",
                params![n, now, id],
            )?;
            Ok(())
        })
        .await
    }

    async fn verify_items(
        &self,
        id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<VerifyItem>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT idx, address, result, answer FROM verify_items
                     WHERE job = ? AND idx > ? ORDER BY idx LIMIT ?",
            )?
            .query_map(
                params![id, after.map_or(-1, |a| a as i64), limit as i64],
                item_row,
            )?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn remove_verify_job(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.write(move |c| {
            c.execute("DELETE FROM verify_items WHERE job = ?", [&id])?;
            Ok(c.execute("DELETE FROM verify_jobs WHERE id = ?", [&id])? > 0)
        })
        .await
    }

    async fn prune_verify_jobs(&self, before: i64) -> Result<usize> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM verify_items WHERE job IN (SELECT id FROM verify_jobs WHERE created < ?)",
                [before],
            )?;
            Ok(c.execute("DELETE FROM verify_jobs WHERE created < ?", [before])?)
        })
        .await
    }
}
