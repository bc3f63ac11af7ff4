//! `tern reports …`: reports other servers sent about our domains.

use anyhow::Result;
use clap::Subcommand;

/// Report subcommands.
#[derive(Subcommand)]
pub enum ReportsCmd {
    /// DMARC aggregate reports received for our domains (newest first): who
    /// reported, the period, how many messages, how many failed DMARC.
    #[command(after_help = "Example:\n  tern reports dmarc --limit 20 --data /var/lib/tern")]
    Dmarc {
        /// How many reports to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        data: crate::DataArg,
    },
    /// TLS reports (RFC 8460) received for our domains (newest first): who
    /// reported, the period, sessions that negotiated TLS as our policy
    /// (MTA-STS, DANE) requires and sessions that failed to.
    #[command(after_help = "Example:\n  tern reports tls --limit 20 --data /var/lib/tern")]
    Tls {
        /// How many reports to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        data: crate::DataArg,
    },
}

/// Runs a reports subcommand.
pub async fn run(cmd: ReportsCmd) -> Result<()> {
    match cmd {
        ReportsCmd::Dmarc { limit, data } => {
            let config = crate::load(&data)?;
            let store = tern::server::open_store(&config).await?;
            let rows = tern_store::Reports::dmarc_reports(store.as_ref(), limit).await?;
            if rows.is_empty() {
                println!("No DMARC reports received yet.");
                return Ok(());
            }
            println!(
                "{:<24} {:<28} {:<16} {:>8} {:>7}  REPORT ID",
                "DOMAIN", "FROM", "PERIOD END", "MESSAGES", "FAILED"
            );
            for r in rows {
                let end = chrono::DateTime::from_timestamp(r.end, 0)
                    .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                println!(
                    "{:<24} {:<28} {:<16} {:>8} {:>7}  {}",
                    r.domain, r.org, end, r.messages, r.failed, r.report_id
                );
            }
        }
        ReportsCmd::Tls { limit, data } => {
            let config = crate::load(&data)?;
            let store = tern::server::open_store(&config).await?;
            let rows = tern_store::Reports::tls_reports(store.as_ref(), limit).await?;
            if rows.is_empty() {
                println!("No TLS reports received yet.");
                return Ok(());
            }
            println!(
                "{:<24} {:<28} {:<16} {:>9} {:>8}  REPORT ID",
                "DOMAIN", "FROM", "PERIOD END", "SUCCESSES", "FAILURES"
            );
            for r in rows {
                let end = chrono::DateTime::from_timestamp(r.end, 0)
                    .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default();
                println!(
                    "{:<24} {:<28} {:<16} {:>9} {:>8}  {}",
                    r.domain, r.org, end, r.successes, r.failures, r.report_id
                );
            }
        }
    }
    Ok(())
}
