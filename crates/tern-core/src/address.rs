//! Mailbox addresses as they appear in the SMTP envelope (RFC 5321 §4.1.2).
//!
//! Addresses are compared case-insensitively on the domain (RFC 5321 §2.4)
//! and, as most deployments do, on the local part too: Tern lower-cases both
//! when it stores or looks up an address.

use std::fmt;

/// Why an address could not be accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddressError {
    /// The text has no `@`, more than one unquoted `@`, or an empty side.
    #[error("address must have the form local-part@domain")]
    Shape,
    /// The local part is neither a dot-atom nor a quoted string.
    #[error("invalid local part")]
    LocalPart,
    /// The domain is not a valid host name.
    #[error("invalid domain")]
    Domain,
    /// Longer than RFC 5321 §4.5.3.1 allows (64 octets local, 255 domain).
    #[error("address too long")]
    TooLong,
}

/// A normalised (lower-cased) `local@domain` address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    local: String,
    domain: String,
}

impl Address {
    /// Parses `local@domain`. The split is at the last `@` that is outside a
    /// quoted string, so `"a@b"@example.com` has local part `"a@b"`.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let text = text.trim();
        let at = last_unquoted_at(text).ok_or(AddressError::Shape)?;
        let (local, domain) = (&text[..at], &text[at + 1..]);
        if local.is_empty() || domain.is_empty() {
            return Err(AddressError::Shape);
        }
        if local.len() > 64 || domain.len() > 255 {
            return Err(AddressError::TooLong);
        }
        if !valid_local_part(local) {
            return Err(AddressError::LocalPart);
        }
        let domain = normalize_domain(domain).ok_or(AddressError::Domain)?;
        Ok(Self {
            local: local.to_lowercase(),
            domain,
        })
    }

    /// The local part, lower-cased.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain, lower-cased, without a trailing dot.
    pub fn domain(&self) -> &str {
        &self.domain
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

fn last_unquoted_at(text: &str) -> Option<usize> {
    let mut in_quote = false;
    let mut escaped = false;
    let mut at = None;
    let mut count = 0;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '@' if !in_quote => {
                at = Some(i);
                count += 1;
            }
            _ => {}
        }
    }
    if count == 1 { at } else { None }
}

/// RFC 5321 §4.1.2 `Local-part = Dot-string / Quoted-string`, with UTF-8
/// allowed in atoms (RFC 6531 §3.3).
fn valid_local_part(local: &str) -> bool {
    if local.starts_with('"') {
        return local.len() >= 2
            && local.ends_with('"')
            && local[1..local.len() - 1]
                .chars()
                .all(|c| c != '\r' && c != '\n' && c != '\0');
    }
    local.split('.').all(|atom| {
        !atom.is_empty()
            && atom.chars().all(|c| {
                c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
            })
    })
}

/// Lower-cases a domain and checks it is a host name (LDH labels, UTF-8
/// allowed for IDNs) or an address literal such as `[192.0.2.1]`.
pub fn normalize_domain(domain: &str) -> Option<String> {
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    if domain.starts_with('[') {
        return (domain.ends_with(']') && domain.len() > 2).then(|| domain.to_ascii_lowercase());
    }
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        });
    ok.then(|| domain.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let a = Address::parse("Alice@Example.COM").unwrap();
        assert_eq!(a.to_string(), "alice@example.com");
        assert_eq!(a.domain(), "example.com");
    }

    #[test]
    fn rejects_tricks() {
        assert_eq!(Address::parse("a@b@example.com"), Err(AddressError::Shape));
        assert_eq!(Address::parse("@example.com"), Err(AddressError::Shape));
        assert_eq!(
            Address::parse("a..b@example.com"),
            Err(AddressError::LocalPart)
        );
        assert_eq!(Address::parse("a@exa mple.com"), Err(AddressError::Domain));
        // Legal syntax, but never a relay: it is just a local part with '%'.
        assert_eq!(Address::parse("a%b@example.com").unwrap().local(), "a%b");
        assert_eq!(
            Address::parse("\"a@b\"@example.com").unwrap().local(),
            "\"a@b\""
        );
    }
}
