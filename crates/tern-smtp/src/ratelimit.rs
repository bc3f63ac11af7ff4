//! Inbound rate limits per client network (an IPv4 /24 or IPv6 /64 by
//! default): new connections and messages per minute, counted by the
//! store's rates (GCRA: a burst of the per-minute allowance, refilled
//! smoothly), so that every node of a shared store counts one allowance
//! per network. The loopback
//! addresses 127.0.0.1 and ::1 are exempt: local software (content
//! filters, monitoring) must never be slowed. When the store cannot count,
//! the client is let through (an outage of the counts is not a reason to
//! refuse mail).

use std::net::IpAddr;
use tern_core::config::{IpNet, SmtpConfig};
use tern_store::SharedStore;

/// The limits of one listener.
pub struct RateLimits {
    store: SharedStore,
    connections: u32,
    messages: u32,
    v4_prefix: u8,
    v6_prefix: u8,
}

impl RateLimits {
    /// Limits from `[smtp]` (0: no limit), counted in `store`.
    pub fn new(c: &SmtpConfig, store: SharedStore) -> Self {
        Self {
            store,
            connections: c.connections_per_minute_per_network,
            messages: c.messages_per_minute_per_network,
            v4_prefix: c.rate_limit_ipv4_prefix,
            v6_prefix: c.rate_limit_ipv6_prefix,
        }
    }

    /// The network `ip` is counted in.
    pub fn network(&self, ip: IpAddr) -> IpAddr {
        IpNet::containing(ip, self.v4_prefix, self.v6_prefix).addr
    }

    async fn take(&self, what: &str, per_minute: u32, ip: IpAddr) -> bool {
        if per_minute == 0 || tern_core::is_local_host(ip) {
            return true;
        }
        let key = format!("smtp-{what}:{}", self.network(ip));
        let interval_ms = (60_000 / i64::from(per_minute)).max(1);
        let now_ms = tern_core::now_unix_ms();
        match self
            .store
            .take_rate(&key, interval_ms, per_minute, now_ms)
            .await
        {
            Ok(wait) => wait.is_none(),
            Err(e) => {
                tracing::warn!(error = %e, key, "smtp: cannot count the rate; letting the client through");
                true
            }
        }
    }

    /// Takes one new connection from the allowance; `false` when used up.
    pub async fn connection(&self, ip: IpAddr) -> bool {
        self.take("connections", self.connections, ip).await
    }

    /// Takes one message from the allowance; `false` when used up.
    pub async fn message(&self, ip: IpAddr) -> bool {
        self.take("messages", self.messages, ip).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn networks_and_allowances() {
        let dir = tempfile::tempdir().unwrap();
        let store = tern_store::sqlite::SqliteStore::open(&dir.path().join("t.db"), 64)
            .await
            .unwrap();
        let c = SmtpConfig {
            connections_per_minute_per_network: 2,
            ..Default::default()
        };
        let r = RateLimits::new(&c, Arc::new(store));
        let a: IpAddr = "192.0.2.10".parse().unwrap();
        let b: IpAddr = "192.0.2.99".parse().unwrap();
        assert_eq!(r.network(a), r.network(b), "same /24");
        assert!(r.connection(a).await && r.connection(b).await);
        assert!(!r.connection(a).await, "the /24 used its two");
        assert!(
            r.connection("198.51.100.1".parse().unwrap()).await,
            "another network"
        );
        for _ in 0..10 {
            assert!(
                r.connection("127.0.0.1".parse().unwrap()).await,
                "loopback exempt"
            );
        }
        assert!(
            r.message(a).await,
            "messages have an allowance of their own"
        );
        let v6: IpAddr = "2001:db8:1:2:3::4".parse().unwrap();
        assert_eq!(r.network(v6), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }
}
