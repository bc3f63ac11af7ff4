//! DKIM signing of outgoing mail (RFC 6376, RFC 8463) with `mail-auth`.
//!
//! Every message is signed once per active key of the sender's domain —
//! normally an RSA-2048 and an Ed25519 key, so receivers that do not know
//! Ed25519 still find a signature they can check (RFC 8463 §5). Both use
//! relaxed/relaxed canonicalization (RFC 6376 §3.4.2, §3.4.4), which survives
//! the header refolding and trailing-whitespace changes relays commonly make.

use crate::dkim_keys::{DkimAlgorithm, DkimKey};
use mail_auth::common::crypto::{
    Algorithm, DkimKey as AuthKey, Ed25519Key, RsaKey, Sha256, SigningKey,
};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

/// Signing failures.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The stored key could not be loaded.
    #[error("DKIM key {selector}: {reason}")]
    Key {
        /// Selector of the bad key.
        selector: String,
        /// What went wrong.
        reason: String,
    },
    /// mail-auth refused to sign (for example: no header to sign).
    #[error("DKIM signing: {0}")]
    Sign(String),
}

/// Headers signed when present (RFC 6376 §5.4.1). The first five are also
/// *oversigned*: listed once more than they occur, so nobody can add a second
/// `From:` or `Subject:` later without breaking the signature (§8.15).
const OVERSIGNED: &[&str] = &["From", "To", "Subject", "Date", "Cc"];
const SIGNED: &[&str] = &[
    "Reply-To",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "Sender",
];

/// A parsed key shared by every signature made with it: parsing (and for
/// RSA, validating) a private key costs far more than one signature, and
/// `DkimSigner` takes its key by value.
#[derive(Clone)]
struct SharedKey(Arc<AuthKey>);

impl SigningKey for SharedKey {
    type Hasher = Sha256;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

/// The loaded signing keys of one domain.
pub struct DomainSigner {
    domain: String,
    keys: Vec<(String, SharedKey)>,
}

impl DomainSigner {
    /// Loads the given keys (already filtered to the ones that should sign).
    pub fn new(domain: &str, keys: &[DkimKey]) -> Result<Self, SignError> {
        let mut loaded = Vec::with_capacity(keys.len());
        for k in keys {
            let bad = |reason: String| SignError::Key {
                selector: k.selector.clone(),
                reason,
            };
            let der = PrivatePkcs8KeyDer::from_pem_slice(k.private_pem.as_bytes())
                .map_err(|e| bad(e.to_string()))?;
            let key = match k.algorithm {
                DkimAlgorithm::Rsa2048 => AuthKey::Rsa(
                    RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(der))
                        .map_err(|e| bad(e.to_string()))?,
                ),
                DkimAlgorithm::Ed25519 => AuthKey::Ed25519(
                    Ed25519Key::from_pkcs8_maybe_unchecked_der(der.secret_pkcs8_der())
                        .map_err(|e| bad(e.to_string()))?,
                ),
            };
            loaded.push((k.selector.clone(), SharedKey(Arc::new(key))));
        }
        Ok(Self {
            domain: domain.to_ascii_lowercase(),
            keys: loaded,
        })
    }

    /// The domain (`d=`) this signer signs for.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Whether there is any key to sign with.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Signs `message` (headers and body, CRLF line endings) with every key
    /// and returns the `DKIM-Signature` header fields to prepend, CRLF-ended.
    pub fn sign(&self, message: &[u8]) -> Result<String, SignError> {
        let mut headers: Vec<&str> = Vec::with_capacity(OVERSIGNED.len() * 2 + SIGNED.len());
        let present = present_headers(message);
        // mail-auth signs every instance of a listed name, then appends
        // each listed name it found no instance for: listing a present name
        // twice signs all its instances plus one empty one; an absent name
        // listed once is signed empty (nobody can add it later).
        for h in OVERSIGNED {
            headers.push(h);
            if present.iter().any(|p| p.eq_ignore_ascii_case(h)) {
                headers.push(h);
            }
        }
        for h in SIGNED {
            if present.iter().any(|p| p.eq_ignore_ascii_case(h)) {
                headers.push(h);
            }
        }
        let mut out = String::new();
        for (selector, key) in &self.keys {
            out.push_str(&self.sign_with(key, selector, &headers, message)?);
        }
        Ok(out)
    }

    fn sign_with(
        &self,
        key: &SharedKey,
        selector: &str,
        headers: &[&str],
        message: &[u8],
    ) -> Result<String, SignError> {
        let signature = DkimSigner::from_key(key.clone())
            .domain(&self.domain)
            .selector(selector)
            .headers(headers.iter().copied())
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .sign(message)
            .map_err(|e| SignError::Sign(e.to_string()))?;
        let mut h = signature.to_header();
        if !h.ends_with("\r\n") {
            h.push_str("\r\n");
        }
        Ok(h)
    }
}

impl DomainSigner {
    /// Seals a message this domain forwards (RFC 8617 §5.1): an ARC set —
    /// `ARC-Seal`, `ARC-Message-Signature` and `ARC-Authentication-Results`
    /// carrying `results` — at the next instance of the chain `arc`
    /// verified, signed with the domain's RSA key (ARC knows only
    /// rsa-sha256). `None` when there is no RSA key or the chain has
    /// already failed (a failed chain is not sealed further).
    pub fn arc_seal(
        &self,
        message: &mail_auth::AuthenticatedMessage<'_>,
        results: &mail_auth::AuthenticationResults,
        arc: &mail_auth::ArcOutput,
    ) -> Result<Option<String>, SignError> {
        let Some((selector, key)) = self
            .keys
            .iter()
            .find(|(_, k)| matches!(*k.0, AuthKey::Rsa(_)))
        else {
            return Ok(None);
        };
        if !arc.can_be_sealed() {
            return Ok(None);
        }
        let present = present_headers(message.raw_message());
        let headers: Vec<&str> = OVERSIGNED
            .iter()
            .chain(SIGNED)
            .copied()
            .chain(["DKIM-Signature"])
            .filter(|h| present.iter().any(|p| p.eq_ignore_ascii_case(h)))
            .collect();
        let set = mail_auth::arc::ArcSealer::from_key(key.clone())
            .domain(&self.domain)
            .selector(selector)
            .headers(headers)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed)
            .seal(message, results, arc)
            .map_err(|e| SignError::Sign(e.to_string()))?;
        let mut h = set.to_header();
        if !h.ends_with("\r\n") {
            h.push_str("\r\n");
        }
        Ok(Some(h))
    }
}

/// Names of the header fields in the message's header block.
fn present_headers(message: &[u8]) -> Vec<&str> {
    let mut names = Vec::new();
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            continue;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':')
            && let Ok(name) = std::str::from_utf8(&line[..colon])
        {
            names.push(name.trim_end());
        }
    }
    names
}

/// Loaded signers per domain, reloaded after `ttl` so key rotations
/// (`tern dkim activate`) reach a running server without a restart.
pub struct SignerCache {
    ttl: std::time::Duration,
    map: std::sync::Mutex<std::collections::HashMap<String, CachedSigner>>,
}

/// When a signer was loaded, and the signer (`None`: the domain has no key).
type CachedSigner = (std::time::Instant, Option<Arc<DomainSigner>>);

impl SignerCache {
    /// An empty cache whose entries live for `ttl`.
    pub fn new(ttl: std::time::Duration) -> Self {
        Self {
            ttl,
            map: Default::default(),
        }
    }

    /// The cached signer of `domain`: `None` when absent or stale;
    /// `Some(None)` when the domain is known to have no active key.
    pub fn get(&self, domain: &str) -> Option<Option<Arc<DomainSigner>>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(domain)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, s)| s.clone())
    }

    /// Remembers the signer (or its absence) for `domain`.
    pub fn put(&self, domain: &str, signer: Option<Arc<DomainSigner>>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(domain.to_string(), (std::time::Instant::now(), signer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of tag `name` in the first signature of `sig`, unfolded.
    fn tag(sig: &str, name: &str) -> String {
        let value = sig
            .split(';')
            .map(|t| t.split_whitespace().collect::<String>())
            .find_map(|t| t.strip_prefix(&format!("{name}=")).map(str::to_string));
        value.unwrap_or_else(|| panic!("no {name}= in {sig}"))
    }

    const MSG: &[u8] = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nbody\r\n";

    #[test]
    fn signs_with_every_key_and_oversigns() {
        let keys = [
            DkimKey::generate("r1", DkimAlgorithm::Rsa2048).unwrap(),
            DkimKey::generate("e1", DkimAlgorithm::Ed25519).unwrap(),
        ];
        let signer = DomainSigner::new("Example.com", &keys).unwrap();
        let out = signer.sign(MSG).unwrap();
        assert_eq!(out.matches("DKIM-Signature:").count(), 2, "{out}");
        assert!(out.contains("a=rsa-sha256") && out.contains("a=ed25519-sha256"));
        assert!(out.contains("d=example.com") && out.contains("c=relaxed/relaxed"));
        let h = tag(&out, "h");
        let names: Vec<String> = h.split(':').map(|s| s.to_ascii_lowercase()).collect();
        assert_eq!(names.iter().filter(|n| *n == "from").count(), 2, "{h}");
        assert!(names.contains(&"message-id".to_string()));
        assert!(
            !names.contains(&"list-id".to_string()),
            "absent optional headers not signed"
        );
        assert!(out.ends_with("\r\n"));
    }

    /// RFC 6376 §3.4.4, written from the RFC's text: WSP runs become one
    /// space, WSP at line ends goes, empty lines at the end go, and a
    /// non-empty body ends with CRLF.
    fn relaxed_body(body: &[u8]) -> Vec<u8> {
        let text = body.strip_suffix(b"\r\n").unwrap_or(body);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut out = Vec::new();
            let mut in_wsp = false;
            for &b in line {
                if b == b' ' || b == b'\t' {
                    in_wsp = true;
                } else {
                    if in_wsp {
                        out.push(b' ');
                    }
                    in_wsp = false;
                    out.push(b);
                }
            }
            lines.push(out);
        }
        while lines.last().is_some_and(|l| l.is_empty()) {
            lines.pop();
        }
        let mut out = Vec::new();
        for l in lines {
            out.extend_from_slice(&l);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    /// The body hash mail-auth computes (through the vendored, patched
    /// canonicalizer) equals the RFC's relaxed canonicalization on random
    /// bodies built from the bytes that matter: spaces, tabs, line ends,
    /// other control characters, 8-bit bytes and text.
    #[test]
    fn relaxed_body_hash_follows_rfc6376() {
        use base64::Engine;
        use rand::{Rng, SeedableRng};
        use sha2::Digest;
        let keys = [DkimKey::generate("e1", DkimAlgorithm::Ed25519).unwrap()];
        let signer = DomainSigner::new("example.com", &keys).unwrap();
        let pieces: [&[u8]; 13] = [
            b" ",
            b"  ",
            b"\t",
            b"\r\n",
            b"a",
            b"word",
            b"\x01",
            b"\xc3\xa9",
            b" \t ",
            b"x.y",
            b"abcdefghijklm",
            b"    ",
            b" \r\n",
        ];
        let mut rng = rand::rngs::StdRng::seed_from_u64(6376);
        for round in 0..5000 {
            let mut body = Vec::new();
            for _ in 0..rng.random_range(0..60) {
                body.extend_from_slice(pieces[rng.random_range(0..pieces.len())]);
            }
            if round % 2 == 0 && !body.ends_with(b"\r\n") {
                body.extend_from_slice(b"\r\n");
            }
            let mut msg = b"From: a@example.com\r\nSubject: t\r\n\r\n".to_vec();
            msg.extend_from_slice(&body);
            let sig = signer.sign(&msg).unwrap();
            let bh = tag(&sig, "bh");
            let want = base64::engine::general_purpose::STANDARD
                .encode(sha2::Sha256::digest(relaxed_body(&body)));
            assert_eq!(bh, want, "body {:?}", String::from_utf8_lossy(&body));
        }
    }
}
