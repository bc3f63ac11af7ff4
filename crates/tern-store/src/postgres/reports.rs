//! [`Reports`] for PostgreSQL: reports received, and the counters behind
//! the reports Tern sends, added to by every node and taken by one.

use super::PgStore;
use crate::{DmarcReportRow, ReportCount, Reports, Result, TlsReportRow};
use async_trait::async_trait;

type ReportTuple = (String, String, String, i64, i64, i64, i64, String);

#[async_trait]
impl Reports for PgStore {
    async fn add_dmarc_report(&self, r: DmarcReportRow, received_at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO dmarc_reports(domain, org, report_id, begin_at, end_at, messages, failed,
                report, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (org, report_id) DO NOTHING",
        )
        .bind(&r.domain)
        .bind(&r.org)
        .bind(&r.report_id)
        .bind(r.begin)
        .bind(r.end)
        .bind(r.messages as i64)
        .bind(r.failed as i64)
        .bind(&r.report)
        .bind(received_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn dmarc_reports(&self, limit: usize) -> Result<Vec<DmarcReportRow>> {
        let rows: Vec<ReportTuple> = sqlx::query_as(
            "SELECT domain, org, report_id, begin_at, end_at, messages, failed, report
             FROM dmarc_reports ORDER BY end_at DESC, id DESC LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(domain, org, report_id, begin, end, messages, failed, report)| DmarcReportRow {
                    domain,
                    org,
                    report_id,
                    begin,
                    end,
                    messages: messages as u64,
                    failed: failed as u64,
                    report,
                },
            )
            .collect())
    }

    async fn add_tls_report(&self, r: TlsReportRow, received_at: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO tls_reports(domain, org, report_id, begin_at, end_at, successes, failures,
                report, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (org, report_id) DO NOTHING",
        )
        .bind(&r.domain)
        .bind(&r.org)
        .bind(&r.report_id)
        .bind(r.begin)
        .bind(r.end)
        .bind(r.successes as i64)
        .bind(r.failures as i64)
        .bind(&r.report)
        .bind(received_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn tls_reports(&self, limit: usize) -> Result<Vec<TlsReportRow>> {
        let rows: Vec<ReportTuple> = sqlx::query_as(
            "SELECT domain, org, report_id, begin_at, end_at, successes, failures, report
             FROM tls_reports ORDER BY end_at DESC, id DESC LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(domain, org, report_id, begin, end, successes, failures, report)| TlsReportRow {
                    domain,
                    org,
                    report_id,
                    begin,
                    end,
                    successes: successes as u64,
                    failures: failures as u64,
                    report,
                },
            )
            .collect())
    }

    async fn add_report_counts(&self, kind: &str, counts: Vec<ReportCount>) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut counts = counts;
        counts.sort_by(|a, b| (&a.domain, &a.key).cmp(&(&b.domain, &b.key)));
        let mut tx = self.pool.begin().await?;
        for r in &counts {
            sqlx::query(
                "INSERT INTO report_counts(kind, domain, key, meta, count, first_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (kind, domain, key) DO UPDATE SET
                    count = report_counts.count + EXCLUDED.count, meta = EXCLUDED.meta",
            )
            .bind(kind)
            .bind(&r.domain)
            .bind(&r.key)
            .bind(&r.meta)
            .bind(r.count as i64)
            .bind(r.first_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn take_report_counts(&self, kind: &str) -> Result<Vec<ReportCount>> {
        // One statement: what one node takes, no other node gets.
        let rows: Vec<(String, String, String, i64, i64)> = sqlx::query_as(
            "DELETE FROM report_counts WHERE kind = $1 RETURNING domain, key, meta, count, first_at",
        )
        .bind(kind)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(domain, key, meta, count, first_at)| ReportCount {
                domain,
                key,
                meta,
                count: count as u64,
                first_at,
            })
            .collect())
    }
}
