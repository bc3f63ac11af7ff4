//! Fixed rules: each has a name and a score, and every hit is shown in the
//! `X-Spam-Status` header and the log, so a verdict can always be explained.

use mail_parser::{Message, MimeHeaders};

/// The GTUBE test string: any filter must treat it as spam.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// File name endings that run code when opened.
const EXECUTABLE: &[&str] = &[
    "exe", "scr", "com", "pif", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta",
    "cpl", "msi", "jar", "ps1", "lnk", "iso", "img",
];
const DOCUMENT: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "jpg", "png", "txt", "zip",
];

/// What the rules look at besides the message.
pub struct Context<'a> {
    /// HELO/EHLO name.
    pub helo: &'a str,
    /// The authentication summary: `spf=… dkim=… dmarc=…`.
    pub auth: &'a str,
    /// Forward-confirmed reverse DNS of the client, if any.
    pub rdns: Option<&'a str>,
}

/// Runs the rules; returns the hits with their scores.
pub fn check(raw: &[u8], msg: Option<&Message<'_>>, ctx: &Context<'_>) -> Vec<(&'static str, f64)> {
    let mut hits = Vec::new();
    static GTUBE_FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(GTUBE));
    if GTUBE_FINDER.find(raw).is_some() {
        hits.push(("GTUBE", 1000.0));
    }
    let word = |key: &str| {
        ctx.auth
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or("")
    };
    match word("spf=") {
        "fail" => hits.push(("SPF_FAIL", 2.0)),
        "softfail" => hits.push(("SPF_SOFTFAIL", 1.0)),
        _ => {}
    }
    if word("dkim=") == "fail" {
        hits.push(("DKIM_INVALID", 1.0));
    }
    if word("dmarc=") == "fail" {
        hits.push(("DMARC_FAIL", 1.5));
    }
    if ctx.rdns.is_none() {
        hits.push(("RDNS_NONE", 1.0));
    }
    let helo = ctx.helo;
    if !helo.contains('.') && !helo.starts_with('[') {
        hits.push(("HELO_NOT_FQDN", 1.0));
    }
    let Some(msg) = msg else {
        hits.push(("UNPARSEABLE", 2.0));
        return hits;
    };
    if msg.date().is_none() {
        hits.push(("MISSING_DATE", 1.0));
    }
    if msg.message_id().is_none() {
        hits.push(("MISSING_MESSAGE_ID", 1.0));
    }
    if msg.from().is_none() {
        hits.push(("MISSING_FROM", 2.0));
    }
    if let Some(s) = msg.subject() {
        let letters: Vec<char> = s.chars().filter(|c| c.is_alphabetic()).collect();
        if letters.len() >= 10 && letters.iter().all(|c| c.is_uppercase()) {
            hits.push(("SUBJECT_ALL_CAPS", 1.0));
        }
    }
    let mut exe = false;
    let mut double = false;
    for part in &msg.parts {
        let Some(name) = part.attachment_name() else {
            continue;
        };
        let lower = name.to_ascii_lowercase();
        let mut pieces = lower.rsplit('.');
        let last = pieces.next().unwrap_or("");
        if EXECUTABLE.contains(&last) {
            exe = true;
            if pieces.next().is_some_and(|prev| DOCUMENT.contains(&prev)) {
                double = true;
            }
        }
    }
    if exe {
        hits.push(("EXECUTABLE_ATTACHMENT", 4.0));
    }
    if double {
        hits.push(("DOUBLE_EXTENSION", 3.0));
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(raw: &str, auth: &str) -> Vec<&'static str> {
        let msg = crate::tokens::parser().parse(raw.as_bytes());
        check(
            raw.as_bytes(),
            msg.as_ref(),
            &Context {
                helo: "mx.example.net",
                auth,
                rdns: Some("mx.example.net"),
            },
        )
        .into_iter()
        .map(|h| h.0)
        .collect()
    }

    #[test]
    fn rules_fire() {
        let good = "From: a@example.com\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@x>\r\nSubject: Lunch\r\n\r\nHi.\r\n";
        assert!(run(good, "spf=pass dkim=pass dmarc=pass").is_empty());
        let gtube = format!("Subject: t\r\n\r\n{GTUBE}\r\n");
        assert!(run(&gtube, "").contains(&"GTUBE"));
        let bad = "Subject: FREE MONEY FOR YOU\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n\r\nMZ\r\n--b--\r\n";
        let hits = run(bad, "spf=fail dkim=fail dmarc=fail");
        for h in [
            "SPF_FAIL",
            "DKIM_INVALID",
            "DMARC_FAIL",
            "MISSING_DATE",
            "MISSING_MESSAGE_ID",
            "MISSING_FROM",
            "SUBJECT_ALL_CAPS",
            "EXECUTABLE_ATTACHMENT",
            "DOUBLE_EXTENSION",
        ] {
            assert!(hits.contains(&h), "{h}: {hits:?}");
        }
    }
}
