//! Connection limits: in total and per client IP address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Counts open connections; [`ConnLimiter::acquire`] hands out a guard that
/// releases its slot when dropped.
#[derive(Clone)]
pub struct ConnLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// The server-wide limit.
    Total,
    /// The per-IP limit.
    PerIp,
}

impl LimitExceeded {
    /// A metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::PerIp => "per_ip",
        }
    }
}

/// Holds one connection slot.
pub struct ConnGuard {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl ConnLimiter {
    /// A limiter allowing `max_total` connections, `max_per_ip` from one address.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_total,
                max_per_ip,
                state: Mutex::default(),
            }),
        }
    }

    /// Takes a slot for `ip`, or says which limit is reached.
    pub fn acquire(&self, ip: IpAddr) -> Result<ConnGuard, LimitExceeded> {
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.total >= self.inner.max_total {
            return Err(LimitExceeded::Total);
        }
        let n = s.per_ip.entry(ip).or_insert(0);
        if *n >= self.inner.max_per_ip {
            return Err(LimitExceeded::PerIp);
        }
        *n += 1;
        s.total += 1;
        Ok(ConnGuard {
            inner: self.inner.clone(),
            ip,
        })
    }

    /// Takes a slot for a new connection of `service`, or refuses it: logs,
    /// counts (`tern_connections_refused_total`) and, on a plaintext port,
    /// sends `refusal` (a protocol line saying why) without waiting.
    pub fn admit(
        &self,
        service: &'static str,
        tcp: &tokio::net::TcpStream,
        ip: IpAddr,
        refusal: Option<&[u8]>,
    ) -> Option<ConnGuard> {
        match self.acquire(ip) {
            Ok(slot) => Some(slot),
            Err(limit) => {
                tracing::info!(client = %ip, ?limit, service, "too many connections");
                metrics::counter!("tern_connections_refused_total", "service" => service, "limit" => limit.label())
                    .increment(1);
                if let Some(line) = refusal {
                    let _ = tcp.try_write(line);
                }
                None
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner.state.lock().map(|s| s.total).unwrap_or(0)
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        s.total -= 1;
        if let Some(n) = s.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let g1 = l.acquire(a).unwrap();
        let _g2 = l.acquire(a).unwrap();
        assert_eq!(l.acquire(a).err(), Some(LimitExceeded::PerIp));
        let _g3 = l.acquire(b).unwrap();
        assert_eq!(l.acquire(b).err(), Some(LimitExceeded::Total));
        drop(g1);
        assert!(l.acquire(a).is_ok());
    }
}
