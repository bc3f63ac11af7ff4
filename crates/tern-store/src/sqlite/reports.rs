//! [`Reports`] for SQLite.

use super::SqliteStore;
use crate::{DmarcReportRow, Reports, Result};
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
}
