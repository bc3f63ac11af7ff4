//! The one resolver every Tern component uses (DESIGN.md: "All DNS goes
//! through tern-dns"). Nameservers come from the configuration, so tests
//! point the whole system at the testkit's DNS server; answers are cached
//! by TTL (hickory's cache).

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// DNS failures.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The resolver could not be built (for example no usable system configuration).
    #[error("resolver setup: {0}")]
    Setup(String),
    /// The lookup failed for a reason other than "no such record".
    #[error("DNS lookup of {name}: {reason}")]
    Lookup {
        /// What was looked up.
        name: String,
        /// Why it failed.
        reason: String,
    },
}

/// A caching stub resolver.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

/// An MX record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mx {
    /// Preference (lower first).
    pub preference: u16,
    /// Exchange host, without the trailing dot.
    pub exchange: String,
}

impl Resolver {
    /// A resolver asking `nameservers` (UDP, then TCP for truncated
    /// answers); with none, the system's `/etc/resolv.conf`.
    pub fn new(nameservers: &[SocketAddr]) -> Result<Self, DnsError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        // Answers come from DNS only, never /etc/hosts: the same answers
        // on every machine, and tests see only their own zones.
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| DnsError::Setup(e.to_string()))?
        } else {
            let mut config = ResolverConfig::default();
            for ns in nameservers {
                let mut udp = ConnectionConfig::new(ProtocolConfig::Udp);
                udp.port = ns.port();
                let mut tcp = ConnectionConfig::new(ProtocolConfig::Tcp);
                tcp.port = ns.port();
                let mut server = NameServerConfig::udp_and_tcp(ns.ip());
                server.connections = vec![udp, tcp];
                config.add_name_server(server);
            }
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        };
        let inner = builder
            .with_options(opts)
            .build()
            .map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(Self { inner })
    }

    /// The underlying hickory resolver (same configuration and cache), for
    /// libraries that take one (mail-auth's `MessageAuthenticator`).
    pub fn hickory(&self) -> TokioResolver {
        self.inner.clone()
    }

    fn fqdn(name: &str) -> String {
        if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        }
    }

    /// MX records, by preference. An empty list means the domain has none
    /// (RFC 5321 §5.1 then falls back to its address records).
    pub async fn mx(&self, domain: &str) -> Result<Vec<Mx>, DnsError> {
        match self.inner.mx_lookup(Self::fqdn(domain)).await {
            Ok(l) => {
                let mut v: Vec<Mx> = l
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::MX(mx) => Some(Mx {
                            preference: mx.preference,
                            exchange: mx.exchange.to_ascii().trim_end_matches('.').to_lowercase(),
                        }),
                        _ => None,
                    })
                    .collect();
                v.sort_by_key(|m| m.preference);
                Ok(v)
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(DnsError::Lookup {
                name: domain.into(),
                reason: e.to_string(),
            }),
        }
    }

    /// TXT records, each joined from its strings.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        match self.inner.txt_lookup(Self::fqdn(name)).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    hickory_resolver::proto::rr::RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|s| String::from_utf8_lossy(s).to_string())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(DnsError::Lookup {
                name: name.into(),
                reason: e.to_string(),
            }),
        }
    }

    /// Host names of an address (PTR records), without trailing dots.
    pub async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        match self.inner.reverse_lookup(ip).await {
            Ok(l) => Ok(l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    hickory_resolver::proto::rr::RData::PTR(p) => {
                        Some(p.0.to_ascii().trim_end_matches('.').to_lowercase())
                    }
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(DnsError::Lookup {
                name: ip.to_string(),
                reason: e.to_string(),
            }),
        }
    }

    /// Forward-confirmed reverse DNS (FCrDNS): the first PTR name of `ip`
    /// whose own addresses include `ip`; `None` if there is none.
    pub async fn fcrdns(&self, ip: IpAddr) -> Option<String> {
        let names = self.ptr(ip).await.ok()?;
        for name in names.into_iter().take(3) {
            if self.ips(&name).await.is_ok_and(|ips| ips.contains(&ip)) {
                return Some(name);
            }
        }
        None
    }

    /// IPv4 and IPv6 addresses of a host.
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        match self.inner.lookup_ip(Self::fqdn(host)).await {
            Ok(l) => Ok(l.iter().collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(DnsError::Lookup {
                name: host.into(),
                reason: e.to_string(),
            }),
        }
    }
}
