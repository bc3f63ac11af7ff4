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
use crate::tally::{Tallies, TallyError};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// Failure and in-flight counts shared by every protocol (and, through
/// the store's [`Tallies`], by every node).
pub struct AuthGuard {
    cfg: AuthConfig,
    tallies: Arc<dyn Tallies>,
}

/// The network an address belongs to for throttling: its /24 (IPv4) or /64
/// (IPv6), as the network's first address.
fn network(ip: IpAddr) -> IpAddr {
    crate::config::IpNet::containing(ip, 24, 64).addr
}

/// An attempt that has started: its address, network and account counts
/// include it until it ends. One that ends without an outcome (the session
/// went away during verification) is taken back.
struct Attempt {
    tallies: Arc<dyn Tallies>,
    /// The address's, the network's and the account's keys.
    keys: [String; 3],
    window: i64,
    settled: bool,
}

impl Attempt {
    /// Takes the attempt back from the counts of `keys[..n]`.
    async fn take_back(&mut self, n: usize) {
        self.settled = true;
        let window = self.window;
        if let Err(e) = self
            .tallies
            .tally(&self.keys[..n], -1, window, crate::now_unix())
            .await
        {
            tracing::warn!(error = %e, "login throttling: cannot update the counts");
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (tallies, keys, window) = (self.tallies.clone(), self.keys.clone(), self.window);
            rt.spawn(async move {
                let _ = tallies.tally(&keys, -1, window, crate::now_unix()).await;
            });
        }
    }
}

impl AuthGuard {
    /// A guard with the configured thresholds, counting in `tallies`.
    pub fn new(cfg: AuthConfig, tallies: Arc<dyn Tallies>) -> Self {
        Self { cfg, tallies }
    }

    fn window(&self) -> i64 {
        i64::try_from(self.cfg.window).unwrap_or(i64::MAX)
    }

    /// Starts an attempt from `ip` for `user`: refused (`None`) when the
    /// address or its network is over its limit, else counted (from now,
    /// so parallel attempts see each other), with the tarpit delay to wait
    /// before verifying.
    async fn begin(
        &self,
        ip: IpAddr,
        user: &str,
    ) -> Result<Option<(Attempt, Duration)>, TallyError> {
        let window = self.window();
        let keys = [
            format!("auth-ip:{ip}"),
            format!("auth-net:{}", network(ip)),
            format!("auth-user:{user}"),
        ];
        let now = crate::now_unix();
        let mut attempt = Attempt {
            tallies: self.tallies.clone(),
            keys,
            window,
            settled: true,
        };
        let source = self
            .tallies
            .tally(&attempt.keys[..2], 1, window, now)
            .await?;
        let (by_ip, by_net) = (source[0], source[1]);
        attempt.settled = false;
        if by_ip > u64::from(self.cfg.block_after)
            || by_net > u64::from(self.cfg.network_block_after)
        {
            attempt.take_back(2).await;
            return Ok(None);
        }
        let by_user = match self.tallies.tally(&attempt.keys[2..], 1, window, now).await {
            Ok(n) => n[0],
            Err(e) => {
                attempt.take_back(2).await;
                return Err(e);
            }
        };
        // The failures and attempts before this one.
        let n = by_ip.max(by_user).saturating_sub(1);
        // 1 s for the first slowed attempt, a second more each time, at most 5 s.
        let slow_after = u64::from(self.cfg.slow_after);
        let delay = if n >= slow_after {
            Duration::from_secs((n - slow_after + 1).min(5))
        } else {
            Duration::ZERO
        };
        Ok(Some((attempt, delay)))
    }

    /// Runs one login attempt by `user` (lower-cased by the caller) from
    /// `ip` for `service`: refusal or tarpit, then `verify` (`Ok(None)` for
    /// wrong credentials), bookkeeping, a log line and metrics. When the
    /// counts cannot be read (the shared store is down), the attempt is
    /// verified unthrottled: a store that cannot count cannot verify
    /// either, and an outage must not lock every user out.
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
        let mut attempt = match self.begin(ip, user).await {
            Ok(Some((attempt, delay))) => {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some(attempt)
            }
            Ok(None) => {
                tracing::warn!(client = %ip, user, service, "login refused: too many failures from this address");
                metrics::counter!("tern_auth_failures_total", "service" => service, "reason" => "blocked")
                    .increment(1);
                return Login::Refused;
            }
            Err(e) => {
                tracing::warn!(error = %e, service, "login throttling: cannot read the counts; verifying unthrottled");
                None
            }
        };
        match verify().await {
            Ok(Some(t)) => {
                if let Some(a) = &mut attempt {
                    // The owner is in: the account's slow-down ends (the
                    // address's and network's earlier failures stay).
                    a.take_back(2).await;
                    if let Err(e) = self.tallies.clear_tally(&a.keys[2]).await {
                        tracing::warn!(error = %e, "login throttling: cannot update the counts");
                    }
                }
                Login::Success(t)
            }
            Ok(None) => {
                if let Some(a) = &mut attempt {
                    a.settled = true;
                }
                tracing::warn!(client = %ip, user, service, "authentication failed");
                metrics::counter!("tern_auth_failures_total", "service" => service, "reason" => "bad_credentials")
                    .increment(1);
                Login::Invalid
            }
            Err(e) => {
                if let Some(a) = &mut attempt {
                    a.take_back(3).await;
                }
                tracing::error!(error = %e, service, "authentication lookup failed");
                Login::Error(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::MemoryTallies;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn guard(slow_after: u32, block_after: u32) -> AuthGuard {
        AuthGuard::new(
            AuthConfig {
                slow_after,
                block_after,
                network_block_after: 1000,
                ..AuthConfig::default()
            },
            Arc::new(MemoryTallies::default()),
        )
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
        let g = AuthGuard::new(
            AuthConfig {
                slow_after: 100,
                block_after: 100,
                network_block_after: 5,
                ..AuthConfig::default()
            },
            Arc::new(MemoryTallies::default()),
        );
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
