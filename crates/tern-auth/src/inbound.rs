//! Authentication of inbound mail over `mail-auth`: SPF (RFC 7208) for the
//! HELO and MAIL FROM identities, DKIM (RFC 6376, RFC 8463) for every
//! signature, ARC (RFC 8617) chain validation, and DMARC (RFC 7489 as
//! updated by DMARCbis: the organisational domain comes from the DNS tree
//! walk mail-auth implements, not a suffix list). The outcome is one
//! `Authentication-Results` header (RFC 8601) and a decision.
//!
//! Policy (RFC 7489 §6.6, §10.1): SPF alone never rejects; only a DMARC
//! `fail` under `p=reject` does, at the end of DATA (`550 5.7.1`), and
//! `p=quarantine` files the message as junk. Clients in the configured
//! trusted forwarders are never rejected or quarantined for DMARC.

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcResult,
    MessageAuthenticator, Parameters, ResolverCache, SpfOutput, SpfResult, Txt,
};
use std::net::IpAddr;
use tern_core::config::IpNet;

/// What to do with a message after the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Deliver to the inbox.
    Accept,
    /// Deliver to the Junk folder (DMARC `p=quarantine`).
    Junk(String),
    /// Refuse before `250` (DMARC `p=reject`); the reason for the reply.
    Reject(String),
}

/// The outcome of the checks.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `Authentication-Results: …` CRLF-terminated, to prepend.
    pub header: String,
    /// The decision.
    pub disposition: Disposition,
    /// One-line summary for the log: `spf=pass dkim=pass dmarc=pass`.
    pub summary: String,
    /// The ARC set to prepend to a copy this server forwards (when asked
    /// to seal and the chain can be sealed), CRLF-terminated.
    pub arc_seal: Option<String>,
}

/// Parsed TXT records (SPF, DKIM keys, DMARC) by name, kept until their
/// TTL runs out. hickory caches the raw answers; this saves parsing them
/// (and, for DKIM, decoding the public key) for every message. Bounded:
/// when full, it starts over.
#[derive(Default)]
pub struct TxtCache {
    map: std::sync::Mutex<std::collections::HashMap<Box<str>, (Txt, std::time::Instant)>>,
}

const TXT_CACHE_MAX: usize = 50_000;

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(name)
            .filter(|(_, until)| *until > std::time::Instant::now())
            .map(|(v, _)| v.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: Box<str>, value: Txt, valid_until: std::time::Instant) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= TXT_CACHE_MAX {
            map.clear();
        }
        map.insert(key, (value, valid_until));
    }
}

/// The checker, shared by all sessions.
pub struct InboundAuth {
    authenticator: MessageAuthenticator,
    txt: TxtCache,
    reports: Option<std::sync::Arc<crate::DmarcReports>>,
    authserv_id: String,
    trusted_forwarders: Vec<IpNet>,
}

impl InboundAuth {
    /// Checks with `authenticator` (built on Tern's resolver); `authserv_id`
    /// names this server in `Authentication-Results` (its host name).
    pub fn new(authenticator: MessageAuthenticator, authserv_id: &str) -> Self {
        Self {
            authenticator,
            authserv_id: authserv_id.to_ascii_lowercase(),
            trusted_forwarders: Vec::new(),
            txt: TxtCache::default(),
            reports: None,
        }
    }

    /// Networks exempt from DMARC rejection and quarantine: forwarders
    /// whose mail breaks SPF and DKIM legitimately.
    pub fn with_trusted_forwarders(mut self, nets: Vec<IpNet>) -> Self {
        self.trusted_forwarders = nets;
        self
    }

    /// Counts DMARC evaluations into `reports` for aggregate reporting.
    pub fn with_reports(mut self, reports: std::sync::Arc<crate::DmarcReports>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// The authserv-id.
    pub fn authserv_id(&self) -> &str {
        &self.authserv_id
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_forwarders.iter().any(|n| n.contains(ip))
    }

    /// Runs every check on a message received from `ip` after `helo`, with
    /// envelope sender `mail_from` (empty for the null sender). With `seal`,
    /// the message is to be forwarded by that domain: the verdict carries
    /// the ARC set to add (RFC 8617 §5.1).
    pub async fn check(
        &self,
        ip: IpAddr,
        helo: &str,
        mail_from: &str,
        message: &[u8],
        seal: Option<&crate::DomainSigner>,
    ) -> Verdict {
        let host = self.authserv_id.as_str();
        let spf_helo = check_spf(&self.authenticator, &self.txt, ip, helo, host, "").await;
        // RFC 7208 §2.4: with the null sender, MAIL FROM is checked as
        // postmaster@HELO, which is the HELO result.
        let spf_mail = if mail_from.is_empty() {
            spf_helo.clone()
        } else {
            check_spf(&self.authenticator, &self.txt, ip, helo, host, mail_from).await
        };
        let Some(msg) = AuthenticatedMessage::parse(message) else {
            let header = AuthenticationResults::new(host)
                .with_spf_ehlo_result(&spf_helo, ip, helo)
                .with_spf_mailfrom_result(&spf_mail, ip, mail_from, helo)
                .to_header();
            return Verdict {
                summary: format!(
                    "spf={} dkim=none dmarc=none (unparseable)",
                    spf_word(&spf_mail)
                ),
                header: crlf(header),
                disposition: Disposition::Accept,
                arc_seal: None,
            };
        };
        let dkim: Vec<DkimOutput> = self
            .authenticator
            .verify_dkim(Parameters::new(&msg).with_txt_cache(&self.txt))
            .await;
        let arc = self
            .authenticator
            .verify_arc(Parameters::new(&msg).with_txt_cache(&self.txt))
            .await;
        let mail_from_domain = mail_from.rsplit_once('@').map(|(_, d)| d).unwrap_or(helo);
        let dmarc = self
            .authenticator
            .verify_dmarc(
                Parameters::new(mail_auth::dmarc::verify::DmarcParameters::new(
                    &msg,
                    &dkim,
                    mail_from_domain,
                    &spf_mail,
                ))
                .with_txt_cache(&self.txt),
            )
            .await;
        let header_from = msg.from();
        let results = AuthenticationResults::new(host)
            .with_dkim_results(&dkim, header_from)
            .with_spf_ehlo_result(&spf_helo, ip, helo)
            .with_spf_mailfrom_result(&spf_mail, ip, mail_from, helo)
            .with_arc_result(&arc, ip)
            .with_dmarc_result(&dmarc);
        let arc_seal = match seal.map(|s| s.arc_seal(&msg, &results, &arc)) {
            Some(Ok(set)) => set,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "arc: cannot seal");
                None
            }
            None => None,
        };
        let header = results.to_header();
        // RFC 8601 §2.7.1: say "dkim=none" when there was no signature
        // (mail-auth leaves the method out).
        let header = if dkim.is_empty() {
            header.replacen(
                &format!("Authentication-Results: {host};"),
                &format!("Authentication-Results: {host};\r\n\tdkim=none;"),
                1,
            )
        } else {
            header
        };
        let dmarc_failed = matches!(dmarc.result(), DmarcResult::Fail(_));
        let disposition = match (dmarc_failed, dmarc.policy()) {
            (true, _) if self.trusted(ip) => Disposition::Accept,
            (true, Policy::Reject) => Disposition::Reject(format!(
                "DMARC policy of {} rejects unauthenticated mail",
                dmarc.domain()
            )),
            (true, Policy::Quarantine) => {
                Disposition::Junk(format!("DMARC quarantine ({})", dmarc.domain()))
            }
            _ => Disposition::Accept,
        };
        if let Some(r) = &self.reports {
            use mail_auth::report::ActionDisposition;
            let applied = match &disposition {
                Disposition::Reject(_) => ActionDisposition::Reject,
                Disposition::Junk(_) => ActionDisposition::Quarantine,
                Disposition::Accept if dmarc_failed => ActionDisposition::None,
                Disposition::Accept => ActionDisposition::Pass,
            };
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            r.record(
                &dmarc,
                &dkim,
                &spf_mail,
                &arc,
                ip,
                header_from,
                mail_from_domain,
                applied,
                now,
            );
        }
        let dkim_word = if dkim.iter().any(|d| d.result() == &DkimResult::Pass) {
            "pass"
        } else if dkim.is_empty() {
            "none"
        } else {
            "fail"
        };
        Verdict {
            summary: format!(
                "spf={} dkim={dkim_word} dmarc={} policy={:?}",
                spf_word(&spf_mail),
                dmarc_word(&dmarc.result()),
                dmarc.policy()
            ),
            header: crlf(body_hash_mismatch_is_fail(header)),
            disposition,
            arc_seal,
        }
    }
}

/// SPF for one identity, with RFC 7208 §4.3 initial processing done here:
/// a domain that is not a well-formed FQDN (a domain literal, an empty
/// label, a label over 63 bytes) gives `none` without any lookup (mail-auth
/// would report `permerror`). `mail_from` empty checks the HELO identity.
pub async fn check_spf(
    authenticator: &MessageAuthenticator,
    cache: &TxtCache,
    ip: IpAddr,
    helo: &str,
    host: &str,
    mail_from: &str,
) -> SpfOutput {
    let domain = if mail_from.is_empty() {
        helo
    } else {
        mail_from.rsplit_once('@').map(|(_, d)| d).unwrap_or(helo)
    };
    if !well_formed_domain(domain) {
        return SpfOutput::new(domain.to_string()).with_result(SpfResult::None);
    }
    let params = if mail_from.is_empty() {
        SpfParameters::verify_ehlo(ip, helo, host)
    } else {
        SpfParameters::verify_mail_from(ip, helo, host, mail_from)
    };
    authenticator
        .verify_spf(Parameters::new(params).with_txt_cache(cache))
        .await
}

/// RFC 7208 §4.3: a multi-label domain name of LDH-ish labels (1–63 bytes).
fn well_formed_domain(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && d.contains('.')
        && !d.starts_with('[')
        && d.split('.').all(|l| (1..=63).contains(&l.len()))
}

/// mail-auth reports a body-hash mismatch as `neutral`; RFC 6376 §6.3 and
/// RFC 8601 call it a failure. (Only the header says it: DMARC counts
/// passes alone, so the result itself needs no change.)
fn body_hash_mismatch_is_fail(header: String) -> String {
    header.replace(
        "dkim=neutral (body hash did not verify)",
        "dkim=fail (body hash did not verify)",
    )
}

fn spf_word(o: &SpfOutput) -> &'static str {
    spf_result_name(o.result())
}

/// The RFC 7208 §2.6 name of an SPF result.
pub fn spf_result_name(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dmarc_word(r: &DmarcResult) -> &'static str {
    match r {
        DmarcResult::Pass => "pass",
        DmarcResult::Fail(_) => "fail",
        DmarcResult::TempError(_) => "temperror",
        DmarcResult::PermError(_) => "permerror",
        DmarcResult::None => "none",
    }
}

fn crlf(mut h: String) -> String {
    if !h.ends_with("\r\n") {
        h.push_str("\r\n");
    }
    h
}

/// Removes `Authentication-Results` header fields that claim to come from
/// `authserv_id` (RFC 8601 §5: a forged result must not survive). Returns
/// the cleaned message, or `None` when there was nothing to remove.
pub fn strip_forged_results(message: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    let end = memchr::memmem::find(message, b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    // The fields to drop, found first: almost every message has none, and
    // then nothing is copied.
    let mut forged: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < end {
        // One field: its first line and any continuation lines.
        let mut j = i;
        loop {
            j = memchr::memchr(b'\n', &message[j..end]).map_or(end, |p| j + p + 1);
            if j >= end || !matches!(message[j], b' ' | b'\t') {
                break;
            }
        }
        if is_own_result(&message[i..j], authserv_id) {
            forged.push((i, j));
        }
        i = j;
    }
    if forged.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(message.len());
    let mut kept_from = 0;
    for (start, stop) in forged {
        out.extend_from_slice(&message[kept_from..start]);
        kept_from = stop;
    }
    out.extend_from_slice(&message[kept_from..]);
    Some(out)
}

fn is_own_result(field: &[u8], authserv_id: &str) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return false;
    };
    if !field[..colon]
        .trim_ascii()
        .eq_ignore_ascii_case(b"authentication-results")
    {
        return false;
    }
    // The authserv-id is the first token of the value (before ';' or space),
    // possibly after a comment.
    let value = String::from_utf8_lossy(&field[colon + 1..]);
    let mut v = value.trim_start();
    while let Some(rest) = v.strip_prefix('(') {
        v = rest
            .split_once(')')
            .map(|(_, r)| r)
            .unwrap_or("")
            .trim_start();
    }
    let id: String = v
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != ';' && *c != '(')
        .collect();
    id.eq_ignore_ascii_case(authserv_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_results_are_removed() {
        let m = b"Received: x\r\nAuthentication-Results: MX.example.com;\r\n\tdkim=pass\r\nAuthentication-Results: other.example; spf=fail\r\nSubject: s\r\n\r\nAuthentication-Results: mx.example.com; body\r\n";
        let out = strip_forged_results(m, "mx.example.com").unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(
            s,
            "Received: x\r\nAuthentication-Results: other.example; spf=fail\r\nSubject: s\r\n\r\nAuthentication-Results: mx.example.com; body\r\n"
        );
        assert!(strip_forged_results(b"Subject: s\r\n\r\nx", "mx.example.com").is_none());
        let c = b"Authentication-Results: (comment) mx.example.com; spf=pass\r\n\r\n";
        assert!(strip_forged_results(c, "mx.example.com").is_some());
    }
}
