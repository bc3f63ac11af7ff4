//! DMARC aggregate reports (RFC 7489 §7.2; XML per DMARCbis, gzip):
//! every DMARC evaluation of a domain that asks for reports (`rua`) is
//! counted here, and once per interval one report per domain is built
//! with mail-auth's report model and handed back for sending.
//!
//! The counts live in memory: a restart loses at most one interval of
//! statistics, which the receivers' aggregate view tolerates (reports are
//! statistics, not mail).

use mail_auth::report::{ActionDisposition, Alignment, Disposition, Record, Report};
use mail_auth::{ArcOutput, DkimOutput, DmarcOutput, SpfOutput};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// One report ready to send.
#[derive(Debug, Clone)]
pub struct OutgoingReport {
    /// The domain the report is about.
    pub domain: String,
    /// The addresses from its `rua` tag (`mailto:` URIs).
    pub recipients: Vec<String>,
    /// The whole message (RFC 5322, the XML gzipped as an attachment).
    pub message: Vec<u8>,
    /// Rows (distinct source/result combinations) and messages covered.
    pub rows: usize,
    /// Messages counted.
    pub messages: u32,
}

struct Pending {
    recipients: Vec<String>,
    policy: (Disposition, Disposition, Alignment, Alignment, bool),
    /// Records by their content (without the count), with their count.
    rows: HashMap<String, (Record, u32)>,
    begin: i64,
}

/// The counters, shared by all sessions.
#[derive(Default)]
pub struct DmarcReports {
    pending: Mutex<HashMap<String, Pending>>,
}

fn disposition(p: &mail_auth::dmarc::Policy) -> Disposition {
    match p {
        mail_auth::dmarc::Policy::None => Disposition::None,
        mail_auth::dmarc::Policy::Quarantine => Disposition::Quarantine,
        mail_auth::dmarc::Policy::Reject => Disposition::Reject,
        mail_auth::dmarc::Policy::Unspecified => Disposition::Unspecified,
    }
}

fn alignment(a: &mail_auth::dmarc::Alignment) -> Alignment {
    match a {
        mail_auth::dmarc::Alignment::Relaxed => Alignment::Relaxed,
        mail_auth::dmarc::Alignment::Strict => Alignment::Strict,
    }
}

impl DmarcReports {
    /// Counts one evaluation. Nothing is kept for domains without `rua`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &self,
        dmarc: &DmarcOutput,
        dkim: &[DkimOutput],
        spf: &SpfOutput,
        arc: &ArcOutput,
        ip: IpAddr,
        header_from: &str,
        envelope_from: &str,
        applied: ActionDisposition,
        now: i64,
    ) {
        let Some(rec) = dmarc.dmarc_record() else {
            return;
        };
        let recipients: Vec<String> = rec
            .rua
            .iter()
            // mail-auth keeps only mailto: URIs, without the scheme.
            .map(|u| u.uri().trim_start_matches("mailto:"))
            .map(|a| a.split('!').next().unwrap_or(a).trim().to_string())
            .filter(|a| a.contains('@'))
            .collect();
        if recipients.is_empty() {
            return;
        }
        let mut row = Record::new()
            .with_source_ip(ip)
            .with_header_from(header_from)
            .with_envelope_from(envelope_from)
            .with_dkim_output(dkim)
            .with_spf_output(spf, mail_auth::report::SPFDomainScope::MailFrom)
            .with_dmarc_output(dmarc)
            .with_arc_output(arc);
        row.row.policy_evaluated.disposition = applied;
        let key = serde_json::to_string(&row).unwrap_or_default();
        let domain = dmarc.domain().to_ascii_lowercase();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() > 100_000 && !pending.contains_key(&domain) {
            return;
        }
        let p = pending.entry(domain).or_insert_with(|| Pending {
            recipients: recipients.clone(),
            policy: (
                disposition(&rec.p),
                disposition(&rec.sp),
                alignment(&rec.adkim),
                alignment(&rec.aspf),
                rec.t,
            ),
            rows: HashMap::new(),
            begin: now,
        });
        p.recipients = recipients;
        if p.rows.len() < 10_000 || p.rows.contains_key(&key) {
            p.rows.entry(key).or_insert((row, 0)).1 += 1;
        }
    }

    /// Builds the reports counted so far and starts counting afresh.
    /// `org` is the reporting organisation (this host name), `from` the
    /// address the reports come from.
    pub fn take(&self, org: &str, from: &str, now: i64) -> Vec<OutgoingReport> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = Vec::new();
        for (domain, p) in pending {
            let (pol, sp, adkim, aspf, testing) = p.policy;
            let mut report = Report::new()
                .with_version(1.0)
                .with_org_name(org)
                .with_email(from)
                .with_report_id(format!("{}.{}.{domain}", p.begin, now))
                .with_date_range_begin(p.begin.max(0) as u64)
                .with_date_range_end(now.max(0) as u64)
                .with_domain(&domain)
                .with_p(pol)
                .with_sp(sp)
                .with_adkim(adkim)
                .with_aspf(aspf)
                .with_testing(testing)
                .with_generator("Tern");
            let mut messages = 0;
            let rows = p.rows.len();
            for (_, (row, count)) in p.rows {
                messages += count;
                report.add_record(row.with_count(count));
            }
            let rcpts: Vec<&str> = p.recipients.iter().map(String::as_str).collect();
            match report.to_rfc5322(org, ("DMARC reports", from), rcpts.into_iter()) {
                Ok(message) => out.push(OutgoingReport {
                    domain,
                    recipients: p.recipients.clone(),
                    message: message.into_bytes(),
                    rows,
                    messages,
                }),
                Err(e) => tracing::warn!(domain, error = %e, "dmarc: cannot build the report"),
            }
        }
        out
    }
}

/// A DMARC aggregate report found in an incoming message.
#[derive(Debug, Clone)]
pub struct ReceivedReport {
    /// The domain reported on.
    pub domain: String,
    /// The reporting organisation.
    pub org: String,
    /// Its report id.
    pub report_id: String,
    /// Period covered (Unix seconds).
    pub begin: i64,
    /// End of the period.
    pub end: i64,
    /// Messages counted.
    pub messages: u64,
    /// Of which neither DKIM nor SPF passed DMARC.
    pub failed: u64,
    /// The whole parsed report, JSON.
    pub json: String,
}

/// Reads a DMARC aggregate report out of a message (gzip, zip or plain XML
/// attachment, RFC 7489 §7.2.1), if it carries one. Cheap for other mail:
/// only messages that look like reports are parsed.
pub fn received_report(raw: &[u8]) -> Option<ReceivedReport> {
    let head = &raw[..raw.len().min(64 * 1024)];
    let looks = |needle: &[u8]| {
        head.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    };
    if !(looks(b"Report Domain:") || looks(b"application/gzip") || looks(b"application/zip")) {
        return None;
    }
    let report = Report::parse_rfc5322(raw, 10 * 1024 * 1024).ok()?;
    let mut messages = 0u64;
    let mut failed = 0u64;
    for r in report.records() {
        let n = u64::from(r.count());
        messages += n;
        let pass = |x: mail_auth::report::DmarcResult| x == mail_auth::report::DmarcResult::Pass;
        if !pass(r.dmarc_dkim_result()) && !pass(r.dmarc_spf_result()) {
            failed += n;
        }
    }
    Some(ReceivedReport {
        domain: report.domain().to_ascii_lowercase(),
        org: report.org_name().to_string(),
        report_id: report.report_id().to_string(),
        begin: report.date_range_begin() as i64,
        end: report.date_range_end() as i64,
        messages,
        failed,
        json: serde_json::to_string(&report).unwrap_or_default(),
    })
}
