//! Zone-file lines for a domain served by Tern.

use std::fmt::Write as _;

/// A published DKIM key.
#[derive(Debug, Clone)]
pub struct DkimRecord {
    /// Selector.
    pub selector: String,
    /// The TXT value (`v=DKIM1; k=...; p=...`).
    pub txt: String,
}

/// What the records are made from.
#[derive(Debug, Clone)]
pub struct DomainSetup {
    /// The mail domain (`example.com`).
    pub domain: String,
    /// This server's host name (`mail.example.com`), the MX target.
    pub hostname: String,
    /// DKIM keys to publish.
    pub dkim: Vec<DkimRecord>,
    /// MTA-STS policy id (changes whenever the policy changes).
    pub mta_sts_id: String,
    /// SHA-256 of the server certificate's public key (hex), for a DANE
    /// `TLSA 3 1 1` record; `None` when the certificate cannot be read.
    pub tlsa_spki_sha256: Option<String>,
}

/// Splits a TXT value into quoted strings of at most 255 bytes (RFC 1035 §3.3.14).
pub fn txt_strings(value: &str) -> String {
    let bytes = value.as_bytes();
    let parts: Vec<String> = bytes
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c).replace('"', "\\\"")))
        .collect();
    parts.join(" ")
}

/// The zone-file lines, with comments saying what each record is for, and
/// the MTA-STS policy text to serve at
/// `https://mta-sts.DOMAIN/.well-known/mta-sts.txt`.
pub fn zone(setup: &DomainSetup) -> String {
    let d = &setup.domain;
    let h = &setup.hostname;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; DNS records for {d}, served by {h}. Publish them in the {d} zone."
    );
    let _ = writeln!(
        out,
        "; Mail for {d} goes to {h} (an A/AAAA record for {h} must point at this server)."
    );
    let _ = writeln!(out, "{d}.\t3600\tIN\tMX\t10 {h}.");
    let _ = writeln!(out, "; SPF (RFC 7208): only the MX hosts send for {d}.");
    let _ = writeln!(
        out,
        "{d}.\t3600\tIN\tTXT\t{}",
        txt_strings("v=spf1 mx -all")
    );
    for k in &setup.dkim {
        let _ = writeln!(
            out,
            "; DKIM key, selector {} (RFC 6376 / RFC 8463).",
            k.selector
        );
        let _ = writeln!(
            out,
            "{}._domainkey.{d}.\t3600\tIN\tTXT\t{}",
            k.selector,
            txt_strings(&k.txt)
        );
    }
    let _ = writeln!(
        out,
        "; DMARC (RFC 7489): start with p=none and read the aggregate reports."
    );
    let _ = writeln!(
        out,
        "_dmarc.{d}.\t3600\tIN\tTXT\t{}",
        txt_strings(&format!("v=DMARC1; p=none; rua=mailto:dmarc-reports@{d}"))
    );
    let _ = writeln!(
        out,
        "; MTA-STS (RFC 8461): senders must use TLS to the MX; serve the policy below."
    );
    let _ = writeln!(
        out,
        "_mta-sts.{d}.\t3600\tIN\tTXT\t{}",
        txt_strings(&format!("v=STSv1; id={}", setup.mta_sts_id))
    );
    let _ = writeln!(out, "mta-sts.{d}.\t3600\tIN\tCNAME\t{h}.");
    let _ = writeln!(out, "; TLS reporting (RFC 8460).");
    let _ = writeln!(
        out,
        "_smtp._tls.{d}.\t3600\tIN\tTXT\t{}",
        txt_strings(&format!("v=TLSRPTv1; rua=mailto:tls-reports@{d}"))
    );
    if let Some(hash) = &setup.tlsa_spki_sha256 {
        let _ = writeln!(
            out,
            "; DANE (RFC 7672), only in a DNSSEC-signed zone: senders then require TLS with this key."
        );
        let _ = writeln!(
            out,
            "; Publish the next key's record before changing the key (rolling: both at once)."
        );
        let _ = writeln!(out, "_25._tcp.{h}.\t3600\tIN\tTLSA\t3 1 1 {hash}");
    }
    let _ = writeln!(out, ";");
    let _ = writeln!(
        out,
        "; MTA-STS policy, at https://mta-sts.{d}/.well-known/mta-sts.txt:"
    );
    for line in mta_sts_policy(setup).lines() {
        let _ = writeln!(out, ";   {line}");
    }
    out
}

/// The MTA-STS policy text (RFC 8461 §3.2), in `testing` mode to start.
pub fn mta_sts_policy(setup: &DomainSetup) -> String {
    mta_sts_policy_for(&setup.hostname)
}

/// The MTA-STS policy of a domain whose MX is `hostname`.
pub fn mta_sts_policy_for(hostname: &str) -> String {
    format!("version: STSv1\nmode: testing\nmx: {hostname}\nmax_age: 86400\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_lines() {
        let z = zone(&DomainSetup {
            domain: "example.com".into(),
            hostname: "mail.example.com".into(),
            dkim: vec![DkimRecord {
                selector: "s1".into(),
                txt: format!("v=DKIM1; k=rsa; p={}", "A".repeat(400)),
            }],
            mta_sts_id: "20261127".into(),
            tlsa_spki_sha256: Some("ab".repeat(32)),
        });
        assert!(z.contains("example.com.\t3600\tIN\tMX\t10 mail.example.com."));
        assert!(z.contains("s1._domainkey.example.com.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=AAA"));
        let dkim = z.lines().find(|l| l.starts_with("s1._domainkey")).unwrap();
        assert_eq!(
            dkim.matches("\" \"").count(),
            1,
            "split into two strings: {dkim}"
        );
        assert!(z.contains("_dmarc.example.com.\t3600\tIN\tTXT\t\"v=DMARC1; p=none; rua=mailto:dmarc-reports@example.com\""));
        assert!(z.contains(";   mode: testing"));
        assert!(z.contains(&format!(
            "_25._tcp.mail.example.com.\t3600\tIN\tTLSA\t3 1 1 {}",
            "ab".repeat(32)
        )));
    }
}
