//! Inbound rate limits per client network (an IPv4 /24 or IPv6 /64 by
//! default): new connections and messages per minute, with `governor`'s
//! keyed GCRA limiters (a burst of the per-minute allowance, refilled
//! smoothly). The loopback addresses 127.0.0.1 and ::1 are exempt: local
//! software (content filters, monitoring) must never be slowed.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use tern_core::config::{IpNet, SmtpConfig};

/// The limiters of one listener.
pub struct RateLimits {
    connections: Option<DefaultKeyedRateLimiter<IpAddr>>,
    messages: Option<DefaultKeyedRateLimiter<IpAddr>>,
    v4_prefix: u8,
    v6_prefix: u8,
}

fn per_minute(n: u32) -> Option<DefaultKeyedRateLimiter<IpAddr>> {
    NonZeroU32::new(n).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

impl RateLimits {
    /// Limits from `[smtp]`.
    pub fn new(c: &SmtpConfig) -> Self {
        Self {
            connections: per_minute(c.connections_per_minute_per_network),
            messages: per_minute(c.messages_per_minute_per_network),
            v4_prefix: c.rate_limit_ipv4_prefix,
            v6_prefix: c.rate_limit_ipv6_prefix,
        }
    }

    /// The network `ip` is counted in.
    pub fn network(&self, ip: IpAddr) -> IpAddr {
        IpNet::containing(ip, self.v4_prefix, self.v6_prefix).addr
    }

    fn take(&self, limiter: &Option<DefaultKeyedRateLimiter<IpAddr>>, ip: IpAddr) -> bool {
        match limiter {
            Some(l) if !tern_core::is_local_host(ip) => l.check_key(&self.network(ip)).is_ok(),
            _ => true,
        }
    }

    /// Takes one new connection from the allowance; `false` when used up.
    pub fn connection(&self, ip: IpAddr) -> bool {
        self.take(&self.connections, ip)
    }

    /// Takes one message from the allowance; `false` when used up.
    pub fn message(&self, ip: IpAddr) -> bool {
        self.take(&self.messages, ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_allowances() {
        let c = SmtpConfig {
            connections_per_minute_per_network: 2,
            ..Default::default()
        };
        let r = RateLimits::new(&c);
        let a: IpAddr = "192.0.2.10".parse().unwrap();
        let b: IpAddr = "192.0.2.99".parse().unwrap();
        assert_eq!(r.network(a), r.network(b), "same /24");
        assert!(r.connection(a) && r.connection(b));
        assert!(!r.connection(a), "the /24 used its two");
        assert!(
            r.connection("198.51.100.1".parse().unwrap()),
            "another network"
        );
        for _ in 0..10 {
            assert!(
                r.connection("127.0.0.1".parse().unwrap()),
                "loopback exempt"
            );
        }
        let v6: IpAddr = "2001:db8:1:2:3::4".parse().unwrap();
        assert_eq!(r.network(v6), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
    }
}
