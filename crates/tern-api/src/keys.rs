//! API keys: `tern_` + a public id + `_` + a secret. The id names the key in
//! lists and logs; the store keeps only the SHA-256 of the whole key (a
//! random 160-bit secret needs no slow hash: nothing to guess from it).

use sha2::{Digest, Sha256};
use tern_store::ApiKey;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Send messages and read what it sent.
    Send,
    /// Read messages, events, suppressions, webhooks, templates, the queue.
    Read,
    /// Verify addresses (`POST /v1/verify`).
    Verify,
    /// Everything.
    Admin,
}

impl Scope {
    /// The scope named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "send" => Some(Self::Send),
            "read" => Some(Self::Read),
            "verify" => Some(Self::Verify),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Read => "read",
            Self::Verify => "verify",
            Self::Admin => "admin",
        }
    }

    /// Whether a key of this scope may do what `need` allows.
    pub fn allows(self, need: Scope) -> bool {
        self == Self::Admin || self == need
    }
}

fn random(n: usize) -> String {
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..32)] as char)
        .collect()
}

/// SHA-256 of a key, hex.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new key: the secret to show once, and the record to store.
pub fn generate(scope: Scope, domains: Vec<String>, name: String, now: i64) -> (String, ApiKey) {
    let id = random(12);
    let secret = format!("tern_{id}_{}", random(32));
    let record = ApiKey {
        id,
        hash: hash(&secret),
        scope: scope.as_str().into(),
        domains,
        name,
        created: now,
        revoked: None,
    };
    (secret, record)
}

/// The id part of a presented key, if it has the shape of one.
pub fn id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("tern_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && secret.len() == 32).then_some(id)
}

/// Whether `presented` is the key `record` stores, in constant time.
pub fn matches(record: &ApiKey, presented: &str) -> bool {
    let h = hash(presented);
    let (a, b) = (h.as_bytes(), record.hash.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let (secret, rec) = generate(Scope::Send, vec![], "shop".into(), 1);
        assert_eq!(id_of(&secret), Some(rec.id.as_str()));
        assert!(matches(&rec, &secret));
        let mut wrong = secret.clone();
        wrong.pop();
        wrong.push(if secret.ends_with('a') { 'b' } else { 'a' });
        assert!(!matches(&rec, &wrong));
        assert_eq!(id_of("Bearer x"), None);
        assert!(Scope::Admin.allows(Scope::Send) && !Scope::Read.allows(Scope::Send));
    }
}
