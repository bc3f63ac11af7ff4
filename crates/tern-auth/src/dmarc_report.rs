//! DMARC aggregate reports (RFC 7489 §7.2; XML per DMARCbis, gzip):
//! every DMARC evaluation of a domain that asks for reports (`rua`) is
//! counted here, and once per interval one report per domain is built
//! with mail-auth's report model and handed back for sending.
//!
//! Counting is in memory; the server moves the counts into the store every
//! minute ([`DmarcReports::drain`]), so a restart loses at most that, and
//! the report loop builds the reports from the stored counts
//! ([`build_reports`]).

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

/// What a domain's report needs besides its rows: where it goes and the
/// published policy (the latest seen).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Meta {
    recipients: Vec<String>,
    policy: (Disposition, Disposition, Alignment, Alignment, bool),
}

struct Pending {
    meta: Meta,
    /// Records by their content (without the count), with their count.
    rows: HashMap<String, u32>,
    begin: i64,
}

/// The counters, shared by all sessions.
#[derive(Default)]
pub struct DmarcReports {
    pending: Mutex<HashMap<String, Pending>>,
}

/// The kind under which the store keeps these counts.
pub const KIND: &str = "dmarc";

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
        let meta = Meta {
            recipients,
            policy: (
                disposition(&rec.p),
                disposition(&rec.sp),
                alignment(&rec.adkim),
                alignment(&rec.aspf),
                rec.t,
            ),
        };
        let p = pending.entry(domain).or_insert_with(|| Pending {
            meta: meta.clone(),
            rows: HashMap::new(),
            begin: now,
        });
        p.meta = meta;
        if p.rows.len() < 10_000 || p.rows.contains_key(&key) {
            *p.rows.entry(key).or_insert(0) += 1;
        }
    }

    /// Takes the counts, for the store.
    pub fn drain(&self) -> Vec<tern_store::ReportCount> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out = Vec::new();
        for (domain, p) in pending {
            let meta = serde_json::to_string(&p.meta).unwrap_or_default();
            for (key, count) in p.rows {
                out.push(tern_store::ReportCount {
                    domain: domain.clone(),
                    key,
                    meta: meta.clone(),
                    count: u64::from(count),
                    first_at: p.begin,
                });
            }
        }
        out
    }
}

/// Builds one report per domain from stored counts, covering up to `now`.
/// `org` is the reporting organisation (this host name), `from` the address
/// the reports come from.
pub fn build_reports(
    counts: Vec<tern_store::ReportCount>,
    org: &str,
    from: &str,
    now: i64,
) -> Vec<OutgoingReport> {
    let mut by_domain: HashMap<String, Vec<tern_store::ReportCount>> = HashMap::new();
    for c in counts {
        by_domain.entry(c.domain.clone()).or_default().push(c);
    }
    let mut out = Vec::new();
    for (domain, rows) in by_domain {
        let Some(meta) = rows
            .iter()
            .find_map(|r| serde_json::from_str::<Meta>(&r.meta).ok())
        else {
            continue;
        };
        let begin = rows.iter().map(|r| r.first_at).min().unwrap_or(now);
        let (pol, sp, adkim, aspf, testing) = meta.policy;
        let mut report = Report::new()
            .with_version(1.0)
            .with_org_name(org)
            .with_email(from)
            .with_report_id(format!("{begin}.{now}.{domain}"))
            .with_date_range_begin(begin.max(0) as u64)
            .with_date_range_end(now.max(0) as u64)
            .with_domain(&domain)
            .with_p(pol)
            .with_sp(sp)
            .with_adkim(adkim)
            .with_aspf(aspf)
            .with_testing(testing)
            .with_generator("Tern");
        let mut messages = 0u32;
        let mut n = 0;
        for r in &rows {
            let Ok(row) = serde_json::from_str::<Record>(&r.key) else {
                continue;
            };
            let count = u32::try_from(r.count).unwrap_or(u32::MAX);
            messages = messages.saturating_add(count);
            n += 1;
            report.add_record(row.with_count(count));
        }
        let rcpts: Vec<&str> = meta.recipients.iter().map(String::as_str).collect();
        match report.to_rfc5322(org, ("DMARC reports", from), rcpts.into_iter()) {
            Ok(message) => out.push(OutgoingReport {
                domain,
                recipients: meta.recipients.clone(),
                message: message.into_bytes(),
                rows: n,
                messages,
            }),
            Err(e) => tracing::warn!(domain, error = %e, "dmarc: cannot build the report"),
        }
    }
    out
}

impl DmarcReports {}

/// A report another server sent about one of our domains, as a row for
/// the store.
#[derive(Debug, Clone)]
pub enum ReceivedReport {
    /// A DMARC aggregate report (RFC 7489 §7.2).
    Dmarc(tern_store::DmarcReportRow),
    /// A TLS report (RFC 8460).
    Tls(tern_store::TlsReportRow),
}

/// Reads a DMARC aggregate or TLS report out of a message, if it carries
/// one. Every message received passes here, so other mail costs one look
/// at its header block (lower-cased once): TLS reports say so in their
/// headers (RFC 8460 §5.3); DMARC reports say "Report Domain:" in the
/// subject (which may be encoded) or carry a gzip or zip body (a
/// top-level content type) or attachment (then the message is multipart,
/// and only then is its body searched; RFC 7489 §7.2.1; content types are
/// lower case in practice).
pub fn received_report(raw: &[u8]) -> Option<ReceivedReport> {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    static HEADER_END: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n\r\n"));
    static ARCHIVES: LazyLock<[Finder<'static>; 4]> = LazyLock::new(|| {
        [
            Finder::new(b"application/gzip"),
            Finder::new(b"application/x-gzip"),
            Finder::new(b"application/zip"),
            Finder::new(b"application/x-zip"),
        ]
    });
    let end = HEADER_END.find(raw).unwrap_or(raw.len()).min(64 * 1024);
    let head = raw[..end].to_ascii_lowercase();
    let mentions = |n: &[u8]| memchr::memmem::find(&head, n).is_some();
    if mentions(b"tls-report-domain:") || mentions(b"report-type=tlsrpt") {
        return tls_report(raw).map(ReceivedReport::Tls);
    }
    let archive_in = |hay: &[u8]| ARCHIVES.iter().any(|f| f.find(hay).is_some());
    let carries_archive = archive_in(&head)
        || (mentions(b"multipart/") && archive_in(&raw[end..raw.len().min(64 * 1024)]));
    if mentions(b"report domain:") || carries_archive {
        return dmarc_report(raw).map(ReceivedReport::Dmarc);
    }
    None
}

/// A DMARC aggregate report (gzip, zip or plain XML attachment).
fn dmarc_report(raw: &[u8]) -> Option<tern_store::DmarcReportRow> {
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
    Some(tern_store::DmarcReportRow {
        domain: report.domain().to_ascii_lowercase(),
        org: report.org_name().to_string(),
        report_id: report.report_id().to_string(),
        begin: report.date_range_begin() as i64,
        end: report.date_range_end() as i64,
        messages,
        failed,
        report: serde_json::to_string(&report).unwrap_or_default(),
    })
}

/// A TLS report (multipart/report with a gzipped JSON part).
fn tls_report(raw: &[u8]) -> Option<tern_store::TlsReportRow> {
    let report = mail_auth::report::tlsrpt::TlsReport::parse_rfc5322(raw, 10 * 1024 * 1024).ok()?;
    let successes = report
        .policies
        .iter()
        .map(|p| u64::from(p.summary.total_success))
        .sum();
    let failures = report
        .policies
        .iter()
        .map(|p| u64::from(p.summary.total_failure))
        .sum();
    Some(tern_store::TlsReportRow {
        domain: report
            .policies
            .first()
            .map(|p| p.policy.policy_domain.to_ascii_lowercase())
            .unwrap_or_default(),
        org: report.organization_name.clone().unwrap_or_default(),
        report_id: report.report_id.clone(),
        begin: report.date_range.start_datetime.to_timestamp(),
        end: report.date_range.end_datetime.to_timestamp(),
        successes,
        failures,
        report: serde_json::to_string(&report).unwrap_or_default(),
    })
}

/// What a received aggregate report says about one sending address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRow {
    /// The address that sent as the domain.
    pub ip: IpAddr,
    /// Messages from it.
    pub messages: u64,
    /// Of which passed DMARC (aligned DKIM or SPF).
    pub passed: u64,
}

/// The per-address rows of a stored aggregate report (its JSON as
/// [`tern_store::DmarcReportRow::report`] keeps it); none if unreadable.
pub fn dmarc_sources(report_json: &str) -> Vec<SourceRow> {
    let Ok(report) = serde_json::from_str::<Report>(report_json) else {
        return Vec::new();
    };
    report
        .records()
        .iter()
        .filter_map(|r| {
            let ip = r.source_ip()?;
            let n = u64::from(r.count());
            let pass =
                |x: mail_auth::report::DmarcResult| x == mail_auth::report::DmarcResult::Pass;
            let passed = if pass(r.dmarc_dkim_result()) || pass(r.dmarc_spf_result()) {
                n
            } else {
                0
            };
            Some(SourceRow {
                ip,
                messages: n,
                passed,
            })
        })
        .collect()
}
