//! Sending the DMARC aggregate reports counted by the MX checks: once per
//! interval, each report goes to its domain's `rua` addresses through the
//! queue (or straight to a local mailbox). Addresses outside the reported
//! domain receive reports only if they published their consent
//! (`DOMAIN._report._dmarc.THEIRS`, RFC 7489 §7.1).

use std::sync::Arc;
use std::time::Duration;
use tern_auth::DmarcReports;
use tern_store::{NewMessage, OutboundRcpt, Recipient, SharedStore};

/// Sends the reports every `every`, forever.
pub async fn dmarc_report_loop(
    reports: Arc<DmarcReports>,
    store: SharedStore,
    authenticator: mail_auth::MessageAuthenticator,
    hostname: String,
    every: Duration,
) {
    let from = format!("noreply-dmarc@{hostname}");
    loop {
        tokio::time::sleep(every).await;
        let now = tern_core::now_unix();
        for r in reports.take(&hostname, &from, now) {
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
            let queue_id = tern_core::id::queue_id();
            let mut m = NewMessage::local(
                queue_id.clone(),
                r.message.clone(),
                from.clone(),
                Vec::new(),
                now,
                "{}".into(),
            );
            m.expires_at = now + 2 * 86400;
            for rcpt in &allowed {
                let Ok(addr) = tern_core::Address::parse(rcpt) else {
                    continue;
                };
                match store.resolve(&addr, false).await {
                    Ok(Recipient::Local(l)) => m.recipients.push(l.account),
                    Ok(Recipient::NotLocal) => m.outbound.push(OutboundRcpt {
                        address: rcpt.clone(),
                        domain: addr.domain().to_string(),
                        params: "{}".into(),
                    }),
                    _ => {}
                }
            }
            if m.recipients.is_empty() && m.outbound.is_empty() {
                continue;
            }
            match store.deliver(m).await {
                Ok(()) => {
                    tracing::info!(domain = %r.domain, queue_id = %queue_id, rows = r.rows, messages = r.messages, to = ?allowed, "dmarc: aggregate report sent")
                }
                Err(e) => {
                    tracing::error!(domain = %r.domain, error = %e, "dmarc: cannot queue the report")
                }
            }
        }
    }
}
