//! The one throttled login for every protocol that takes passwords (SMTP
//! AUTH, IMAP, POP3; the HTTP API and dashboard next).
//!
//! Guessing is stopped where it comes from, never by locking the account:
//! - **Per source address**: after `slow_after` failures each attempt waits
//!   (a growing tarpit); at `block_after` the address is refused until its
//!   failures are `window` seconds old. An attempt counts when it *starts*,
//!   so a burst of parallel logins is cut off at `block_after` attempts in
//!   flight instead of all being verified (count-then-verify-then-record
//!   let 150 simultaneous guesses through).
//! - **Per source network** (IPv4 /24, IPv6 /64): refused at
//!   `network_block_after` failures, against guessing spread over a block.
//! - **Per account**: failures slow attempts down, but a correct password
//!   from an address that is not itself refused is always accepted, so an
//!   attacker elsewhere cannot lock the owner out.
//!
//! [`AuthGuard::login`] runs a whole attempt (refusal, tarpit, verification,
//! bookkeeping, log line and metrics), so the protocols share one policy.

use crate::config::AuthConfig;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The outcome of a login attempt.
#[derive(Debug)]
pub enum Login<T, E> {
    /// The credentials were right.
    Success(T),
    /// Wrong credentials (counted).
    Invalid,
    /// Refused without verification: the source address or network has
    /// failed too often.
    Refused,
    /// The verification itself failed (storage error): not counted.
    Error(E),
}

#[derive(Default)]
struct Counter {
    failures: u32,
    in_flight: u32,
    last: Option<Instant>,
}

impl Counter {
    fn current(&mut self, window: Duration) -> u32 {
        if self.last.is_some_and(|t| t.elapsed() >= window) {
            self.failures = 0;
            self.last = None;
        }
        self.failures + self.in_flight
    }

    fn idle(&self, window: Duration) -> bool {
        self.in_flight == 0 && self.last.is_none_or(|t| t.elapsed() >= window)
    }
}

#[derive(Default)]
struct Counters {
    by_ip: HashMap<IpAddr, Counter>,
    by_net: HashMap<IpAddr, Counter>,
    by_user: HashMap<String, Counter>,
}

/// Failure and in-flight counters shared by every protocol.
pub struct AuthGuard {
    cfg: AuthConfig,
    counters: Mutex<Counters>,
}

/// The network an address belongs to for throttling: its /24 (IPv4) or /64
/// (IPv6), as the network's first address.
fn network(ip: IpAddr) -> IpAddr {
    crate::config::IpNet::containing(ip, 24, 64).addr
}

/// An attempt that has started: holds its in-flight slots until it ends.
struct Attempt<'a> {
    guard: &'a AuthGuard,
    ip: IpAddr,
    user: String,
    failed: bool,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let mut guard = self.guard.lock();
        let c = &mut *guard;
        let net = network(self.ip);
        for counter in [
            c.by_ip.get_mut(&self.ip),
            c.by_net.get_mut(&net),
            c.by_user.get_mut(&self.user),
        ]
        .into_iter()
        .flatten()
        {
            counter.in_flight = counter.in_flight.saturating_sub(1);
            if self.failed {
                counter.failures = counter.failures.saturating_add(1);
                counter.last = Some(now);
            }
        }
    }
}

impl AuthGuard {
    /// A guard with the configured thresholds.
    pub fn new(cfg: AuthConfig) -> Self {
        Self {
            cfg,
            counters: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counters> {
        self.counters.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.cfg.window)
    }

    /// Starts an attempt from `ip` for `user`: refused (`None`) when the
    /// address or its network is over its limit, else counted in flight,
    /// with the tarpit delay to wait before verifying.
    fn begin(&self, ip: IpAddr, user: &str) -> Option<(Attempt<'_>, Duration)> {
        let window = self.window();
        let mut guard = self.lock();
        let c = &mut *guard;
        if c.by_ip.len() + c.by_user.len() > 100_000 {
            // Bounded memory under a flood of distinct keys.
            c.by_ip.retain(|_, e| !e.idle(window));
            c.by_net.retain(|_, e| !e.idle(window));
            c.by_user.retain(|_, e| !e.idle(window));
        }
        let net = network(ip);
        let by_ip = c.by_ip.entry(ip).or_default().current(window);
        let by_net = c.by_net.entry(net).or_default().current(window);
        if by_ip >= self.cfg.block_after || by_net >= self.cfg.network_block_after {
            return None;
        }
        let by_user = c
            .by_user
            .entry(user.to_string())
            .or_default()
            .current(window);
        for counter in [
            c.by_ip.get_mut(&ip),
            c.by_net.get_mut(&net),
            c.by_user.get_mut(user),
        ]
        .into_iter()
        .flatten()
        {
            counter.in_flight += 1;
        }
        let n = by_ip.max(by_user);
        // 1 s for the first slowed attempt, a second more each time, at most 5 s.
        let delay = if n >= self.cfg.slow_after {
            Duration::from_secs(u64::from(n - self.cfg.slow_after + 1).min(5))
        } else {
            Duration::ZERO
        };
        let attempt = Attempt {
            guard: self,
            ip,
            user: user.to_string(),
            failed: false,
        };
        Some((attempt, delay))
    }

    /// Runs one login attempt by `user` (lower-cased by the caller) from
    /// `ip` for `service`: refusal or tarpit, then `verify` (`Ok(None)` for
    /// wrong credentials), bookkeeping, a log line and metrics.
    pub async fn login<T, E, F, Fut>(
        &self,
        service: &'static str,
        ip: IpAddr,
        user: &str,
        verify: F,
    ) -> Login<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
        E: std::fmt::Display,
    {
        let Some((mut attempt, delay)) = self.begin(ip, user) else {
            tracing::warn!(client = %ip, user, service, "login refused: too many failures from this address");
            metrics::counter!("tern_auth_failures_total", "service" => service, "reason" => "blocked")
                .increment(1);
            return Login::Refused;
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match verify().await {
            Ok(Some(t)) => {
                let mut c = self.lock();
                if let Some(u) = c.by_user.get_mut(user) {
                    // The owner is in: the account's slow-down ends (the
                    // addresses' counts stay).
                    u.failures = 0;
                    u.last = None;
                }
                Login::Success(t)
            }
            Ok(None) => {
                attempt.failed = true;
                tracing::warn!(client = %ip, user, service, "authentication failed");
                metrics::counter!("tern_auth_failures_total", "service" => service, "reason" => "bad_credentials")
                    .increment(1);
                Login::Invalid
            }
            Err(e) => {
                tracing::error!(error = %e, service, "authentication lookup failed");
                Login::Error(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn guard(slow_after: u32, block_after: u32) -> AuthGuard {
        AuthGuard::new(AuthConfig {
            slow_after,
            block_after,
            network_block_after: 1000,
            ..AuthConfig::default()
        })
    }

    async fn attempt(g: &AuthGuard, ip: &str, user: &str, right: bool) -> Login<(), String> {
        g.login("test", ip.parse().unwrap(), user, || async move {
            Ok::<_, String>(right.then_some(()))
        })
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_is_slowed_then_refused() {
        let g = guard(2, 4);
        for _ in 0..4 {
            assert!(matches!(
                attempt(&g, "192.0.2.1", "a@x", false).await,
                Login::Invalid
            ));
        }
        assert!(matches!(
            attempt(&g, "192.0.2.1", "b@x", true).await,
            Login::Refused
        ));
        // The owner, elsewhere, is not locked out.
        assert!(matches!(
            attempt(&g, "198.51.100.7", "a@x", true).await,
            Login::Success(())
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_guesses_count_while_in_flight() {
        let g = Arc::new(guard(3, 10));
        let verified = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for i in 0..150 {
            let (g, verified) = (g.clone(), verified.clone());
            tasks.push(tokio::spawn(async move {
                g.login("test", "192.0.2.1".parse().unwrap(), "a@x", || async move {
                    verified.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok::<_, String>((i == 140).then_some(()))
                })
                .await
            }));
        }
        let mut refused = 0;
        for t in tasks {
            match t.await.unwrap() {
                Login::Refused => refused += 1,
                Login::Success(()) => panic!("the right password late in a burst got through"),
                _ => {}
            }
        }
        assert_eq!(verified.load(Ordering::SeqCst), 10);
        assert_eq!(refused, 140);
    }

    #[test]
    fn networks() {
        assert_eq!(
            network("192.0.2.77".parse().unwrap()),
            "192.0.2.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            network("::ffff:192.0.2.77".parse().unwrap()),
            "192.0.2.0".parse::<IpAddr>().unwrap()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_network_is_refused_as_a_whole() {
        let g = AuthGuard::new(AuthConfig {
            slow_after: 100,
            block_after: 100,
            network_block_after: 5,
            ..AuthConfig::default()
        });
        for i in 1..=5 {
            attempt(&g, &format!("192.0.2.{i}"), "a@x", false).await;
        }
        assert!(matches!(
            attempt(&g, "192.0.2.99", "a@x", true).await,
            Login::Refused
        ));
        assert!(matches!(
            attempt(&g, "192.0.3.1", "a@x", true).await,
            Login::Success(())
        ));
    }
}
