//! [`Reports`] for SQLite.

use super::SqliteStore;
use crate::{DmarcReportRow, ReportCount, Reports, Result, TlsReportRow};
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl Reports for SqliteStore {
    async fn add_dmarc_report(&self, r: DmarcReportRow, received_at: i64) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT OR IGNORE INTO dmarc_reports(domain, org, report_id, begin_at, end_at,
                    messages, failed, report, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                r.domain,
                r.org,
                r.report_id,
                r.begin,
                r.end,
                r.messages as i64,
                r.failed as i64,
                r.report,
                received_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn dmarc_reports(&self, limit: usize) -> Result<Vec<DmarcReportRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT domain, org, report_id, begin_at, end_at, messages, failed, report
                 FROM dmarc_reports ORDER BY end_at DESC, id DESC LIMIT ?",
            )?;
            let rows = st.query_map([limit as i64], |r| {
                Ok(DmarcReportRow {
                    domain: r.get(0)?,
                    org: r.get(1)?,
                    report_id: r.get(2)?,
                    begin: r.get(3)?,
                    end: r.get(4)?,
                    messages: r.get::<_, i64>(5)? as u64,
                    failed: r.get::<_, i64>(6)? as u64,
                    report: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn add_tls_report(&self, r: TlsReportRow, received_at: i64) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT OR IGNORE INTO tls_reports(domain, org, report_id, begin_at, end_at,
                    successes, failures, report, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                r.domain,
                r.org,
                r.report_id,
                r.begin,
                r.end,
                r.successes as i64,
                r.failures as i64,
                r.report,
                received_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn tls_reports(&self, limit: usize) -> Result<Vec<TlsReportRow>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT domain, org, report_id, begin_at, end_at, successes, failures, report
                 FROM tls_reports ORDER BY end_at DESC, id DESC LIMIT ?",
            )?;
            let rows = st.query_map([limit as i64], |r| {
                Ok(TlsReportRow {
                    domain: r.get(0)?,
                    org: r.get(1)?,
                    report_id: r.get(2)?,
                    begin: r.get(3)?,
                    end: r.get(4)?,
                    successes: r.get::<_, i64>(5)? as u64,
                    failures: r.get::<_, i64>(6)? as u64,
                    report: r.get(7)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn add_report_counts(&self, kind: &str, counts: Vec<ReportCount>) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let kind = kind.to_string();
        self.write(move |c| {
            let mut st = c.prepare_cached(
                "INSERT INTO report_counts(kind, domain, key, meta, count, first_at)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT(kind, domain, key) DO UPDATE SET
                    count = count + excluded.count, meta = excluded.meta",
            )?;
            for r in &counts {
                st.execute(params![
                    kind,
                    r.domain,
                    r.key,
                    r.meta,
                    r.count as i64,
                    r.first_at
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn take_report_counts(&self, kind: &str) -> Result<Vec<ReportCount>> {
        let kind = kind.to_string();
        self.write(move |c| {
            let rows = {
                let mut st = c.prepare_cached(
                    "SELECT domain, key, meta, count, first_at FROM report_counts WHERE kind = ?",
                )?;
                st.query_map([&kind], |r| {
                    Ok(ReportCount {
                        domain: r.get(0)?,
                        key: r.get(1)?,
                        meta: r.get(2)?,
                        count: r.get::<_, i64>(3)? as u64,
                        first_at: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?
            };
            c.prepare_cached("DELETE FROM report_counts WHERE kind = ?")?
                .execute([&kind])?;
            Ok(rows)
        })
        .await
    }
}
