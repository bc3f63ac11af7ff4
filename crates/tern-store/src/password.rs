//! Password hashing with argon2id (PHC string format).

use crate::{Result, StoreError};
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// Hashes a password with argon2id default parameters and a random salt.
pub fn hash(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Password(e.to_string()))
}

/// Checks a password against a stored PHC hash; malformed hashes never match.
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Compares against a fixed dummy hash so unknown accounts take as long as
/// wrong passwords (no account enumeration by timing).
pub fn burn(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let h = DUMMY.get_or_init(|| hash("tern-dummy-password").unwrap_or_default());
    let _ = verify(password, h);
}

/// Stored hash, salted digest of the password, time of the login.
type CacheEntry = (String, [u8; 32], std::time::Instant);

/// Remembers successful logins for a while, as Dovecot's auth cache does, so
/// a client that logs in again (mail clients reconnect often) does not pay
/// for argon2 each time. Entries hold a salted SHA-256 of the password (with
/// a per-process random key, never stored), are tied to the stored hash (a
/// password change invalidates them) and expire.
pub struct AuthCache {
    key: [u8; 32],
    ttl: std::time::Duration,
    entries: std::sync::Mutex<std::collections::HashMap<String, CacheEntry>>,
}

impl AuthCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: std::time::Duration) -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        Self {
            key,
            ttl,
            entries: Default::default(),
        }
    }

    fn digest(&self, stored: &str, password: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(stored.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether `password` is known good for `login` with this stored hash.
    pub fn check(&self, login: &str, stored: &str, password: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(login) {
            Some((s, d, at)) if s == stored && at.elapsed() < self.ttl => {
                let want = self.digest(stored, password);
                // Constant-time comparison.
                want.iter()
                    .zip(d.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
            }
            _ => false,
        }
    }

    /// Records a successful login.
    pub fn remember(&self, login: &str, stored: &str, password: &str) {
        let d = self.digest(stored, password);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 100_000 {
            let ttl = self.ttl;
            entries.retain(|_, (_, _, at)| at.elapsed() < ttl);
        }
        entries.insert(
            login.to_string(),
            (stored.to_string(), d, std::time::Instant::now()),
        );
    }
}

/// Bounds concurrent argon2 verifications (each uses ~19 MiB) to the number
/// of CPUs: a burst of logins then queues instead of multiplying memory,
/// and the CPU-bound work finishes no later.
pub fn verify_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        tokio::sync::Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    })
}

/// Hashes `password` off the async threads; an empty one is refused.
pub async fn hash_blocking(password: &str) -> Result<String> {
    if password.is_empty() {
        return Err(StoreError::Invalid("the password must not be empty".into()));
    }
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash(&password))
        .await
        .map_err(|e| StoreError::Password(e.to_string()))?
}

/// The login check every backend shares, given the account row found for
/// `login` (its id and stored hash): the cache first, then argon2id under
/// the verification permits; an unknown login costs a verification too, so
/// timing does not tell which logins exist.
pub async fn check_login(
    cache: &AuthCache,
    login: &str,
    row: Option<(crate::AccountId, String)>,
    password: &str,
) -> Result<Option<crate::AccountId>> {
    let Some((id, stored)) = row else {
        let _permit = verify_permits().acquire().await;
        let password = password.to_string();
        let _ = tokio::task::spawn_blocking(move || burn(&password)).await;
        return Ok(None);
    };
    if cache.check(login, &stored, password) {
        return Ok(Some(id));
    }
    let _permit = verify_permits().acquire().await;
    let (p, h) = (password.to_string(), stored.clone());
    let ok = tokio::task::spawn_blocking(move || verify(&p, &h))
        .await
        .map_err(|e| StoreError::Password(e.to_string()))?;
    if ok {
        cache.remember(login, &stored, password);
        Ok(Some(id))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn roundtrip() {
        let h = super::hash("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("s3cret", &h));
        assert!(!super::verify("wrong", &h));
        assert!(!super::verify("s3cret", "garbage"));
    }
}
