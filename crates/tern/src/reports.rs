//! The aggregate reports Tern sends: DMARC (RFC 7489 §7.2) about the mail
//! it received, TLS-RPT (RFC 8460) about the mail it delivered.
//!
//! Sessions count in memory; [`flush_loop`] moves the counts into the
//! store every minute (a restart loses at most that), and once per
//! interval each report loop takes the stored counts, builds one report per
//! domain and sends it: through the queue (or straight to a local mailbox)
//! for `mailto:` addresses, by HTTPS POST for `https:` ones (TLS-RPT).
//! DMARC reports to addresses outside the reported domain go only where
//! that domain consented (`DOMAIN._report._dmarc.THEIRS`, RFC 7489 §7.1).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tern_auth::DmarcReports;
use tern_queue::intake::{Envelope, Intake, Rcpt, Source};
use tern_queue::tlsrpt::{self, TlsRptCounter};
use tern_store::{Recipient, SharedStore};

/// How often in-memory counts are moved into the store.
const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// Moves counts into the store every minute, forever.
pub async fn flush_loop(
    dmarc: Option<Arc<DmarcReports>>,
    tls: Option<Arc<TlsRptCounter>>,
    store: SharedStore,
) {
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        flush(dmarc.as_deref(), tls.as_deref(), &store).await;
    }
}

/// Moves the counts into the store now.
pub async fn flush(dmarc: Option<&DmarcReports>, tls: Option<&TlsRptCounter>, store: &SharedStore) {
    if let Some(d) = dmarc
        && let Err(e) = store
            .add_report_counts(tern_auth::dmarc_report::KIND, d.drain())
            .await
    {
        tracing::warn!(error = %e, "reports: cannot store the DMARC counts");
    }
    if let Some(t) = tls
        && let Err(e) = store.add_report_counts(tlsrpt::KIND, t.drain()).await
    {
        tracing::warn!(error = %e, "reports: cannot store the TLS counts");
    }
}

/// Queues `message` from `from` to `recipients` through the intake
/// (signed when `from`'s domain has DKIM keys; local recipients delivered
/// in the same commit). Returns the queue id, or `None` if nobody was left.
async fn queue_report(
    intake: &Intake,
    from: &str,
    message: Vec<u8>,
    recipients: &[String],
    now: i64,
) -> Option<String> {
    let mut env = Envelope::new(Source::Report, from, message);
    env.received_at = now;
    for rcpt in recipients {
        let Ok(addr) = tern_core::Address::parse(rcpt) else {
            continue;
        };
        match intake.store().resolve(&addr, false).await {
            Ok(Recipient::Local(l)) => env.local.push((l.account, rcpt.clone())),
            Ok(Recipient::NotLocal) => env.recipients.push(Rcpt::new(rcpt.clone())),
            _ => {}
        }
    }
    if env.local.is_empty() && env.recipients.is_empty() {
        return None;
    }
    match intake.submit(env).await {
        Ok(d) => Some(d.queue_id),
        Err(e) => {
            tracing::error!(error = %e, "reports: cannot queue a report");
            None
        }
    }
}

/// Sends the DMARC reports every `every`, forever.
pub async fn dmarc_report_loop(
    counter: Arc<DmarcReports>,
    intake: Arc<Intake>,
    authenticator: mail_auth::MessageAuthenticator,
    hostname: String,
    every: Duration,
) {
    let from = format!("noreply-dmarc@{hostname}");
    let store = intake.store().clone();
    loop {
        tokio::time::sleep(every).await;
        flush(Some(&counter), None, &store).await;
        let now = tern_core::now_unix();
        let counts = match store
            .take_report_counts(tern_auth::dmarc_report::KIND)
            .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "dmarc: cannot read the counts");
                continue;
            }
        };
        for r in tern_auth::dmarc_report::build_reports(counts, &hostname, &from, now) {
            let allowed: Vec<String> = authenticator
                .verify_dmarc_report_address(
                    &r.domain,
                    &r.recipients,
                    None::<&tern_auth::inbound::TxtCache>,
                )
                .await
                .map(|v| v.into_iter().cloned().collect())
                .unwrap_or_default();
            if allowed.is_empty() {
                tracing::info!(domain = %r.domain, rua = ?r.recipients, "dmarc: no authorised report address; report dropped");
                continue;
            }
            if let Some(queue_id) = queue_report(&intake, &from, r.message, &allowed, now).await {
                tracing::info!(domain = %r.domain, queue_id = %queue_id, rows = r.rows, messages = r.messages, to = ?allowed, "dmarc: aggregate report sent");
            }
        }
    }
}

/// Sends the TLS reports every `every`, forever.
pub async fn tls_report_loop(
    counter: Arc<TlsRptCounter>,
    intake: Arc<Intake>,
    resolver: tern_dns::Resolver,
    hostname: String,
    every: Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        flush(None, Some(&counter), intake.store()).await;
        send_tls_reports(&intake, &resolver, &hostname).await;
    }
}

/// Builds and sends the TLS reports for the counts stored so far.
pub async fn send_tls_reports(intake: &Intake, resolver: &tern_dns::Resolver, hostname: &str) {
    let store = intake.store();
    let from = format!("noreply-tlsrpt@{hostname}");
    let now = tern_core::now_unix();
    let counts = match store.take_report_counts(tlsrpt::KIND).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "tlsrpt: cannot read the counts");
            return;
        }
    };
    for (domain, report) in tlsrpt::build_reports(counts, hostname, &from, now) {
        // RFC 8460 §3: the policy domain says where reports go.
        let dest = resolver
            .txt(&format!("_smtp._tls.{domain}"))
            .await
            .unwrap_or_default()
            .iter()
            .find_map(|t| tlsrpt::parse_record(t));
        let Some(dest) = dest else {
            continue;
        };
        if !dest.mailto.is_empty() {
            let rcpts: Vec<&str> = dest.mailto.iter().map(String::as_str).collect();
            match report.to_rfc5322(
                &domain,
                hostname,
                ("TLS reports", from.as_str()),
                rcpts.into_iter(),
            ) {
                Ok(message) => {
                    if let Some(queue_id) =
                        queue_report(intake, &from, message.into_bytes(), &dest.mailto, now).await
                    {
                        tracing::info!(domain, queue_id = %queue_id, to = ?dest.mailto, "tlsrpt: report sent");
                    }
                }
                Err(e) => tracing::warn!(domain, error = %e, "tlsrpt: cannot build the report"),
            }
        }
        for url in &dest.https {
            match post_report(url, &report.to_json()).await {
                Ok(()) => tracing::info!(domain, url, "tlsrpt: report posted"),
                Err(e) => tracing::warn!(domain, url, error = %e, "tlsrpt: report POST failed"),
            }
        }
    }
}

/// RFC 8460 §5.2: the gzipped JSON report as `application/tlsrpt+gzip`.
async fn post_report(url: &str, json: &str) -> Result<(), String> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(json.as_bytes()).map_err(|e| e.to_string())?;
    let body = gz.finish().map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .post(url)
        .header("Content-Type", "application/tlsrpt+gzip")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", resp.status()))
    }
}
