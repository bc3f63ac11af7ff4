//! SASL PLAIN (RFC 4616 §2): the one decoder behind SMTP AUTH, IMAP
//! AUTHENTICATE and POP3 AUTH, so the three protocols accept and refuse
//! exactly the same responses.

use base64::Engine;

/// A decoded PLAIN response whose authorization identity is empty or the
/// login itself (Tern has no proxy authorization).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain {
    /// The login (authentication identity).
    pub login: String,
    /// The password.
    pub password: String,
}

/// Why a PLAIN response was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    /// Not base64 (RFC 4648 §4).
    #[error("invalid base64")]
    Base64,
    /// Not `authzid NUL authcid NUL passwd`, an empty login, or not UTF-8.
    #[error("invalid PLAIN response")]
    Malformed,
    /// An authorization identity other than the login.
    #[error("proxy authorization not permitted")]
    Proxy,
}

/// Decodes a base64 PLAIN response (surrounding whitespace ignored).
pub fn decode_base64(b64: &str) -> Result<Plain, PlainError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| PlainError::Base64)?;
    decode(&raw)
}

/// Decodes a PLAIN response already out of base64 (IMAP's SASL-IR).
pub fn decode(raw: &[u8]) -> Result<Plain, PlainError> {
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authz), Some(authc), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(PlainError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| PlainError::Malformed);
    let (authz, login, password) = (text(authz)?, text(authc)?, text(pass)?);
    if login.is_empty() {
        return Err(PlainError::Malformed);
    }
    if !authz.is_empty() && !authz.eq_ignore_ascii_case(&login) {
        return Err(PlainError::Proxy);
    }
    Ok(Plain { login, password })
}

/// Decodes one base64 line of the (non-standard, widely used) LOGIN
/// mechanism.
pub fn decode_base64_text(b64: &str) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    String::from_utf8(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn plain() {
        let ok = Plain {
            login: "a@x".into(),
            password: "pw".into(),
        };
        assert_eq!(decode_base64(&b64(b"\0a@x\0pw")), Ok(ok.clone()));
        assert_eq!(decode_base64(&b64(b"A@X\0a@x\0pw")), Ok(ok.clone()));
        assert_eq!(decode(b"\0a@x\0pw"), Ok(ok));
        assert_eq!(decode_base64(&b64(b"b@x\0a@x\0pw")), Err(PlainError::Proxy));
        assert_eq!(decode_base64(&b64(b"\0\0pw")), Err(PlainError::Malformed));
        assert_eq!(
            decode_base64(&b64(b"\0a@x\0pw\0")),
            Err(PlainError::Malformed)
        );
        assert_eq!(decode_base64(&b64(b"\0a@x")), Err(PlainError::Malformed));
        assert_eq!(
            decode_base64(&b64(b"\0a\xff\0pw")),
            Err(PlainError::Malformed)
        );
        assert_eq!(decode_base64("!!!"), Err(PlainError::Base64));
    }
}
