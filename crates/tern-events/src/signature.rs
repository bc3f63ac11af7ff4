//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): a
//! POST carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature: v1,BASE64`, the HMAC-SHA256 of `id.timestamp.body`
//! under the endpoint's secret. Secrets are shown as `whsec_` + base64 of
//! 32 random bytes; the key is the decoded bytes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a secret as shown to users.
pub const SECRET_PREFIX: &str = "whsec_";

/// A signature problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The secret is not `whsec_` + base64.
    #[error("the webhook secret is not whsec_ followed by base64")]
    BadSecret,
    /// No signature in the header matches.
    #[error("no signature matches")]
    Mismatch,
}

/// A new random secret, `whsec_…`.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

fn key(secret: &str) -> Result<Vec<u8>, SignatureError> {
    let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    STANDARD
        .decode(b64)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or(SignatureError::BadSecret)
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(id.as_bytes());
    m.update(b".");
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `webhook-signature` header value for a POST.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, SignatureError> {
    let tag = mac(&key(secret)?, id, timestamp, body)
        .finalize()
        .into_bytes();
    Ok(format!("v1,{}", STANDARD.encode(tag)))
}

/// Checks a `webhook-signature` header (space-separated `v1,…` entries;
/// one must match), in constant time.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
) -> Result<(), SignatureError> {
    let key = key(secret)?;
    for entry in header.split_whitespace() {
        if let Some(b64) = entry.strip_prefix("v1,")
            && let Ok(tag) = STANDARD.decode(b64)
            && mac(&key, id, timestamp, body).verify_slice(&tag).is_ok()
        {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification's reference
    /// libraries (secret, id, timestamp, payload and the signature they
    /// compute), as published in its README.
    #[test]
    fn specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let ts = 1614265330;
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, id, ts, body).unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        verify(secret, id, ts, body, &format!("v1,bogus {sig}")).unwrap();
        assert_eq!(
            verify(secret, id, ts + 1, body, &sig),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn fresh_secrets_work() {
        let s = new_secret();
        assert!(s.starts_with(SECRET_PREFIX));
        let sig = sign(&s, "e1", 1, b"{}").unwrap();
        verify(&s, "e1", 1, b"{}", &sig).unwrap();
        assert_eq!(
            sign("whsec_!!", "e", 1, b""),
            Err(SignatureError::BadSecret)
        );
    }
}
