//! SMTP TLS reporting (RFC 8460): every delivery session's TLS outcome is
//! counted per recipient domain and policy (DANE, MTA-STS or none), and
//! once per interval the counts become one JSON report per domain that
//! asks for them (`_smtp._tls.DOMAIN` TXT, `rua=mailto:` or `https:`).
//!
//! Counting is in memory ([`TlsRptCounter`]); the server moves the counts
//! into the store every minute (so a restart loses at most that), and the
//! report loop takes them from there ([`build_reports`]).

use crate::client::TlsFailure;
use crate::mta_sts;
use mail_auth::report::tlsrpt::{DateRange, FailureDetails, Policy, Summary};
pub use mail_auth::report::tlsrpt::{PolicyDetails, PolicyType, ResultType, TlsReport};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use tern_dns::Tlsa;
use tern_store::ReportCount;

/// The kind under which the store keeps these counts.
pub const KIND: &str = "tls";

/// One counted row: the policy applied and, for a failure, what failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Row {
    policy: PolicyDetails,
    failure: Option<FailureDetails>,
}

/// The policy a delivery to `domain` was held to.
pub fn no_policy(domain: &str) -> PolicyDetails {
    PolicyDetails::new(PolicyType::NoPolicyFound, domain)
}

/// An MTA-STS policy (RFC 8460 §4.4: the policy text, line by line).
pub fn sts_policy(domain: &str, p: &mta_sts::Policy) -> PolicyDetails {
    let mut d = PolicyDetails::new(PolicyType::Sts, domain);
    let mode = match p.mode {
        mta_sts::Mode::Enforce => "enforce",
        mta_sts::Mode::Testing => "testing",
        mta_sts::Mode::None => "none",
    };
    d.policy_string = vec!["version: STSv1".into(), format!("mode: {mode}")];
    d.policy_string
        .extend(p.mx.iter().map(|m| format!("mx: {m}")));
    d.policy_string.push(format!("max_age: {}", p.max_age));
    d.mx_host = p.mx.clone();
    d
}

/// A DANE policy: the TLSA records of one MX host, in presentation form.
pub fn tlsa_policy(domain: &str, host: &str, tlsa: &[Tlsa]) -> PolicyDetails {
    let mut d = PolicyDetails::new(PolicyType::Tlsa, domain);
    d.policy_string = tlsa
        .iter()
        .map(|t| {
            format!(
                "{} {} {} {}",
                t.usage,
                t.selector,
                t.matching,
                hex::encode(&t.data)
            )
        })
        .collect();
    d.mx_host = vec![host.to_string()];
    d
}

/// The RFC 8460 §4.3 result type of a failed TLS handshake.
pub fn result_type(failure: TlsFailure) -> ResultType {
    match failure {
        TlsFailure::HostMismatch => ResultType::CertificateHostMismatch,
        TlsFailure::Expired => ResultType::CertificateExpired,
        TlsFailure::NotTrusted => ResultType::CertificateNotTrusted,
        TlsFailure::Other => ResultType::ValidationFailure,
    }
}

/// TLS session outcomes counted since the last [`TlsRptCounter::drain`].
#[derive(Default)]
pub struct TlsRptCounter {
    pending: Mutex<HashMap<(String, String), (u64, i64)>>,
}

impl TlsRptCounter {
    fn count(&self, row: Row, now: i64) {
        let domain = row.policy.policy_domain.to_ascii_lowercase();
        let key = serde_json::to_string(&row).unwrap_or_default();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if p.len() > 100_000 && !p.contains_key(&(domain.clone(), key.clone())) {
            return;
        }
        p.entry((domain, key)).or_insert((0, now)).0 += 1;
    }

    /// A session that met its policy (or used TLS, with none).
    pub fn success(&self, policy: &PolicyDetails, now: i64) {
        self.count(
            Row {
                policy: policy.clone(),
                failure: None,
            },
            now,
        );
    }

    /// A session (or a policy lookup) that failed.
    pub fn failure(
        &self,
        policy: &PolicyDetails,
        result: ResultType,
        mx: Option<(&str, IpAddr)>,
        detail: &str,
        now: i64,
    ) {
        let mut f = FailureDetails::new(result);
        if let Some((host, ip)) = mx {
            f = f.with_receiving_mx_hostname(host).with_receiving_ip(ip);
        }
        f.additional_information = Some(detail.chars().take(200).collect());
        self.count(
            Row {
                policy: policy.clone(),
                failure: Some(f),
            },
            now,
        );
    }

    /// Takes the counts, for the store.
    pub fn drain(&self) -> Vec<ReportCount> {
        let p = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        p.into_iter()
            .map(|((domain, key), (count, first_at))| ReportCount {
                domain,
                key,
                meta: String::new(),
                count,
                first_at,
            })
            .collect()
    }
}

/// One report per domain from the stored counts, covering up to `now`.
/// `org` is the reporting organisation, `contact` its address.
pub fn build_reports(
    counts: Vec<ReportCount>,
    org: &str,
    contact: &str,
    now: i64,
) -> Vec<(String, TlsReport)> {
    let mut by_domain: HashMap<String, Vec<ReportCount>> = HashMap::new();
    for c in counts {
        by_domain.entry(c.domain.clone()).or_default().push(c);
    }
    let mut out = Vec::new();
    for (domain, rows) in by_domain {
        let begin = rows.iter().map(|r| r.first_at).min().unwrap_or(now);
        // Policies by their JSON: each gets its summary and failure details.
        let mut policies: HashMap<String, Policy> = HashMap::new();
        for r in rows {
            let Ok(row) = serde_json::from_str::<Row>(&r.key) else {
                continue;
            };
            let pkey = serde_json::to_string(&row.policy).unwrap_or_default();
            let p = policies.entry(pkey).or_insert_with(|| Policy {
                policy: row.policy.clone(),
                summary: Summary {
                    total_success: 0,
                    total_failure: 0,
                },
                failure_details: Vec::new(),
            });
            let n = u32::try_from(r.count).unwrap_or(u32::MAX);
            match row.failure {
                None => p.summary.total_success = p.summary.total_success.saturating_add(n),
                Some(mut f) => {
                    p.summary.total_failure = p.summary.total_failure.saturating_add(n);
                    f.failed_session_count = n;
                    p.failure_details.push(f);
                }
            }
        }
        out.push((
            domain.clone(),
            TlsReport {
                organization_name: Some(org.to_string()),
                date_range: DateRange::from_timestamps(begin, now),
                contact_info: Some(contact.to_string()),
                report_id: format!("{begin}.{now}.{domain}@{org}"),
                policies: policies.into_values().collect(),
            },
        ));
    }
    out
}

/// Where a domain wants its reports (`_smtp._tls` TXT, RFC 8460 §3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    /// `mailto:` addresses.
    pub mailto: Vec<String>,
    /// `https:` URLs.
    pub https: Vec<String>,
}

/// Parses a TLSRPT record (`v=TLSRPTv1; rua=mailto:a@b,https://c/d`) with
/// mail-auth's parser; only `mailto:` addresses and `https:` URLs count.
pub fn parse_record(txt: &str) -> Option<Destinations> {
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::mta_sts::{ReportUri, TlsRpt};
    let record = TlsRpt::parse(txt.as_bytes()).ok()?;
    let mut d = Destinations::default();
    for uri in record.rua {
        match uri {
            ReportUri::Mail(addr) if addr.contains('@') => d.mailto.push(addr),
            ReportUri::Http(url) if url.starts_with("https://") => d.https.push(url),
            _ => {}
        }
    }
    (!d.mailto.is_empty() || !d.https.is_empty()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        assert_eq!(
            parse_record("v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example.com/v1"),
            Some(Destinations {
                mailto: vec!["tls@example.com".into()],
                https: vec!["https://r.example.com/v1".into()],
            })
        );
        assert_eq!(parse_record("v=spf1 -all"), None);
        assert_eq!(parse_record("v=TLSRPTv1;"), None);
        assert_eq!(parse_record("v=TLSRPTv1; rua=http://insecure/"), None);
    }

    #[test]
    fn counts_become_one_report_per_domain() {
        let c = TlsRptCounter::default();
        let p = no_policy("a.test");
        c.success(&p, 100);
        c.success(&p, 101);
        c.failure(
            &p,
            ResultType::StartTlsNotSupported,
            Some(("mx.a.test", "192.0.2.1".parse().unwrap())),
            "no STARTTLS",
            102,
        );
        let t = tlsa_policy("b.test", "mx.b.test", &[]);
        c.failure(&t, ResultType::ValidationFailure, None, "mismatch", 103);
        let reports = build_reports(c.drain(), "mx.tern.test", "postmaster@tern.test", 200);
        assert_eq!(reports.len(), 2);
        let a = &reports.iter().find(|(d, _)| d == "a.test").unwrap().1;
        assert_eq!(a.policies.len(), 1);
        assert_eq!(a.policies[0].summary.total_success, 2);
        assert_eq!(a.policies[0].summary.total_failure, 1);
        assert_eq!(a.policies[0].failure_details[0].failed_session_count, 1);
        assert_eq!(a.date_range.start_datetime.to_timestamp(), 100);
        // The JSON other implementations read (mail-auth parses it back).
        let back = TlsReport::parse_json(a.to_json().as_bytes()).unwrap();
        assert_eq!(back.policies[0].summary.total_success, 2);
        assert!(c.drain().is_empty());
    }
}
