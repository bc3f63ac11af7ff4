//! Slows down, then refuses, password guessing: failures are counted per
//! client IP and per account name within a sliding window.

use crate::config::AuthConfig;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to do with a login attempt before checking the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the password now.
    Allow,
    /// Check it after waiting this long (tarpit).
    Delay(Duration),
    /// Refuse without checking.
    Block,
}

#[derive(Default)]
struct Entry {
    failures: u32,
    last: Option<Instant>,
}

/// Failure counters shared by every protocol that takes passwords.
pub struct AuthGuard {
    cfg: AuthConfig,
    by_ip: Mutex<HashMap<IpAddr, Entry>>,
    by_user: Mutex<HashMap<String, Entry>>,
}

impl AuthGuard {
    /// A guard with the configured thresholds.
    pub fn new(cfg: AuthConfig) -> Self {
        Self {
            cfg,
            by_ip: Mutex::default(),
            by_user: Mutex::default(),
        }
    }

    fn failures<K: std::hash::Hash + Eq>(&self, map: &Mutex<HashMap<K, Entry>>, key: &K) -> u32 {
        let window = Duration::from_secs(self.cfg.window);
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some(e) if e.last.is_some_and(|t| t.elapsed() < window) => e.failures,
            Some(_) => {
                map.remove(key);
                0
            }
            None => 0,
        }
    }

    /// Decides about an attempt from `ip` for `user` (lower-cased by the caller).
    pub fn check(&self, ip: IpAddr, user: &str) -> Verdict {
        let n = self
            .failures(&self.by_ip, &ip)
            .max(self.failures(&self.by_user, &user.to_string()));
        if n >= self.cfg.block_after {
            Verdict::Block
        } else if n >= self.cfg.slow_after {
            // 1 s for the first slowed attempt, growing by a second each time, at most 5 s.
            Verdict::Delay(Duration::from_secs(
                u64::from(n - self.cfg.slow_after + 1).min(5),
            ))
        } else {
            Verdict::Allow
        }
    }

    /// Records a failed attempt.
    pub fn failed(&self, ip: IpAddr, user: &str) {
        let now = Instant::now();
        for_entry(&self.by_ip, ip, now);
        for_entry(&self.by_user, user.to_string(), now);
        // Keep memory bounded under a flood of distinct keys.
        prune(&self.by_ip, self.cfg.window);
        prune(&self.by_user, self.cfg.window);
    }

    /// Forgets the account's failures after a successful login (the IP's stay).
    pub fn succeeded(&self, user: &str) {
        self.by_user
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
    }
}

fn for_entry<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Entry>>, key: K, now: Instant) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    let e = map.entry(key).or_default();
    e.failures = e.failures.saturating_add(1);
    e.last = Some(now);
}

fn prune<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Entry>>, window: u64) {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() > 100_000 {
        let window = Duration::from_secs(window);
        map.retain(|_, e| e.last.is_some_and(|t| t.elapsed() < window));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slows_then_blocks() {
        let g = AuthGuard::new(AuthConfig {
            slow_after: 2,
            block_after: 4,
            ..AuthConfig::default()
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(g.check(ip, "a@x"), Verdict::Allow);
        g.failed(ip, "a@x");
        g.failed(ip, "a@x");
        assert!(matches!(g.check(ip, "b@x"), Verdict::Delay(_)));
        g.failed(ip, "a@x");
        g.failed(ip, "a@x");
        assert_eq!(g.check(ip, "b@x"), Verdict::Block);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(g.check(other, "a@x"), Verdict::Block, "per-account too");
    }
}
