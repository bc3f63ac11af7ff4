//! The `List-Unsubscribe` header fields of broadcast mail: an HTTPS link
//! for one-click unsubscription (RFC 8058 §3.1: `List-Unsubscribe-Post:
//! List-Unsubscribe=One-Click`) and a `mailto:` address (RFC 2369 §3.2),
//! both personal to the recipient and signed ([`crate::token`]). The
//! intake adds them before DKIM signing, and Tern's signer covers both
//! fields (RFC 8058 §4 requires it).

use crate::token::Keys;

/// The two header fields, CRLF-terminated, for `recipient`'s copy of
/// message `queue_id` from `domain`. `base_url` is where Tern's HTTP
/// listener is reached (`https://mail.example.com`).
pub fn header_fields(
    keys: &Keys,
    base_url: &str,
    queue_id: &str,
    recipient: &str,
    domain: &str,
) -> String {
    let link = keys.unsubscribe_link(queue_id, recipient, domain);
    let mailto = keys.unsubscribe_address(queue_id, recipient, domain);
    format!(
        "List-Unsubscribe: <{}/unsubscribe/{link}>,\r\n <mailto:{mailto}?subject=unsubscribe>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        base_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_carry_both_ways_out() {
        let k = Keys::new(b"0123456789abcdef0123456789abcdef");
        let h = header_fields(
            &k,
            "https://mail.example.com/",
            "0K6R4G2M9Q1ZX3A",
            "ann@example.net",
            "example.com",
        );
        assert!(h.starts_with("List-Unsubscribe: <https://mail.example.com/unsubscribe/"));
        assert!(h.contains("<mailto:unsubscribe+0k6r4g2m9q1zx3a-"));
        assert!(h.ends_with("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert!(h.lines().all(|l| l.len() <= 998));
    }
}
