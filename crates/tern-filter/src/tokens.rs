//! Message → tokens for the classifier: words of the subject and text
//! parts (HTML converted to text by mail-parser), the hosts of links, the
//! sender's domain, and a few header facts. Tokens are hashed to 64 bits
//! so the store keeps integers, not text.

use mail_parser::{HeaderName, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// Most distinct tokens taken from one message.
pub const MAX_TOKENS: usize = 3000;

/// The distinct tokens of `raw`, hashed.
pub fn tokens(raw: &[u8]) -> Vec<i64> {
    match parser().parse(raw) {
        Some(msg) => tokens_of(&msg),
        None => Vec::new(),
    }
}

/// The parser for everything the filter reads: the MIME headers (for the
/// parts and attachment names), Date, Subject, From and Message-ID; every
/// other header is skipped (Received and DKIM-Signature fields are the
/// costly ones, and neither the rules nor the classifier look at them).
/// Training and scoring use the same one, so they see the same tokens.
pub fn parser() -> &'static MessageParser {
    static PARSER: std::sync::LazyLock<MessageParser> = std::sync::LazyLock::new(|| {
        MessageParser::new()
            .with_mime_headers()
            .header_date(HeaderName::Date)
            .header_text(HeaderName::Subject)
            .header_address(HeaderName::From)
            .header_id(HeaderName::MessageId)
            .default_header_ignore()
    });
    &PARSER
}

/// The distinct tokens of a parsed message, hashed.
pub fn tokens_of(msg: &mail_parser::Message<'_>) -> Vec<i64> {
    let mut set: HashSet<String> = HashSet::new();
    if let Some(subject) = msg.subject() {
        for w in words(subject) {
            set.insert(format!("subj:{w}"));
        }
    }
    if let Some(domain) = msg
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| d)
    {
        set.insert(format!("from:{}", domain.to_ascii_lowercase()));
    }
    for part in &msg.parts {
        if let Some(name) = part.attachment_name() {
            let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
            set.insert(format!("attach:{ext}"));
        }
    }
    let mut n = 0;
    while let Some(text) = msg.body_text(n) {
        for w in words(&text) {
            if set.len() >= MAX_TOKENS {
                break;
            }
            set.insert(w.to_string());
        }
        for host in link_hosts(&text) {
            set.insert(format!("url:{host}"));
        }
        n += 1;
        if n > 8 {
            break;
        }
    }
    set.iter().map(|t| hash(t)).collect()
}

/// Lower-cased words of 3–24 letters/digits (plus `'$-`), without pure numbers.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '$' || c == '-'))
        .map(|w| w.trim_matches(|c| c == '\'' || c == '-'))
        .filter(|w| (3..=24).contains(&w.chars().count()))
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
        .map(|w| w.to_lowercase())
}

fn link_hosts(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for scheme in ["http://", "https://"] {
        let mut rest = text;
        while let Some(i) = rest.find(scheme) {
            rest = &rest[i + scheme.len()..];
            let host: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            if !host.is_empty() {
                out.push(host.to_ascii_lowercase());
            }
        }
    }
    out
}

/// A stable 64-bit hash of a token (first 8 bytes of SHA-256).
pub fn hash(token: &str) -> i64 {
    let d = Sha256::digest(token.as_bytes());
    i64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_links() {
        let t = tokens(b"From: a@Example.com\r\nSubject: Cheap pills\r\n\r\nBuy now at http://pills.example.net/x 12345 ok\r\n");
        for w in [
            "subj:cheap",
            "subj:pills",
            "buy",
            "now",
            "url:pills.example.net",
            "from:example.com",
        ] {
            assert!(t.contains(&hash(w)), "{w}");
        }
        assert!(!t.contains(&hash("12345")) && !t.contains(&hash("ok")));
    }
}
