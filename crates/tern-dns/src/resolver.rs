//! The one resolver every Tern component uses (DESIGN.md: "All DNS goes
//! through tern-dns"). Nameservers come from the configuration, so tests
//! point the whole system at the testkit's DNS server; answers are cached
//! by TTL (hickory's cache).
//!
//! A second, validating resolver answers the few questions whose DNSSEC
//! status matters (DANE, RFC 7672 §2.1): the MX RRset, the MX hosts'
//! addresses and their TLSA records, each with its proof (secure,
//! insecure or bogus). Everything else stays on the plain resolver, so a
//! path that strips signatures weakens DANE only, never ordinary delivery.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError as HickoryDnsError, NetError};
use hickory_resolver::proto::dnssec::{Proof, TrustAnchors};
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
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
    /// Validates DNSSEC itself (hickory's validator, from the trust anchors).
    secure: Option<TokioResolver>,
}

/// The DNSSEC status of an answer (RFC 4035 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Signed, and the signatures chain up to a trust anchor.
    Secure,
    /// Provably unsigned (or no validation configured).
    Insecure,
    /// Should be signed but does not validate: possibly forged.
    Bogus,
}

/// An answer with its DNSSEC status. An empty `data` with `Secure` is an
/// authenticated denial of existence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated<T> {
    /// The records.
    pub data: T,
    /// Their DNSSEC status.
    pub security: Security,
}

/// A TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// Certificate usage: 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// Selector: 0 full certificate, 1 SubjectPublicKeyInfo.
    pub selector: u8,
    /// Matching type: 0 exact, 1 SHA-256, 2 SHA-512.
    pub matching: u8,
    /// Certificate association data.
    pub data: Vec<u8>,
}

/// An MX record's data, the exchange without its trailing dot.
fn mx_of(data: &RData) -> Option<Mx> {
    match data {
        RData::MX(mx) => Some(Mx {
            preference: mx.preference,
            exchange: mx.exchange.to_ascii().trim_end_matches('.').to_lowercase(),
        }),
        _ => None,
    }
}

/// "No such record" and "no such name" are empty answers; anything else
/// is a lookup failure.
fn absent_is_empty<T>(e: NetError, name: &str) -> Result<Vec<T>, DnsError> {
    if e.is_no_records_found() || e.is_nx_domain() {
        Ok(Vec::new())
    } else {
        Err(DnsError::Lookup {
            name: name.into(),
            reason: e.to_string(),
        })
    }
}

fn proof_of(records: &[Record]) -> Security {
    // The weakest proof of the RRset's records decides.
    let mut security = Security::Secure;
    for r in records {
        match r.proof {
            Proof::Secure => {}
            Proof::Bogus => return Security::Bogus,
            _ => security = Security::Insecure,
        }
    }
    security
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
        Ok(Self {
            inner: Self::build(nameservers, Self::options(), None)?,
            secure: None,
        })
    }

    /// A resolver like [`Resolver::new`] that waits `timeout` for each
    /// answer and asks `attempts` times before a lookup fails (the default
    /// is 5 s × 2).
    pub fn with_limits(
        nameservers: &[SocketAddr],
        timeout: Duration,
        attempts: usize,
    ) -> Result<Self, DnsError> {
        let mut opts = Self::options();
        opts.timeout = timeout;
        opts.attempts = attempts;
        Ok(Self {
            inner: Self::build(nameservers, opts, None)?,
            secure: None,
        })
    }

    fn options() -> ResolverOpts {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(5);
        opts.attempts = 2;
        // Answers come from DNS only, never /etc/hosts: the same answers
        // on every machine, and tests see only their own zones.
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        opts
    }

    fn build(
        nameservers: &[SocketAddr],
        opts: ResolverOpts,
        trust_anchor: Option<TrustAnchors>,
    ) -> Result<TokioResolver, DnsError> {
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
        let builder = match trust_anchor {
            Some(t) => builder.with_trust_anchor(Arc::new(t)),
            None => builder,
        };
        builder
            .with_options(opts)
            .build()
            .map_err(|e| DnsError::Setup(e.to_string()))
    }

    /// The same resolver, plus a validating one for DNSSEC-dependent
    /// questions ([`Resolver::secure_mx`], [`Resolver::tlsa`]), trusting the
    /// DNSKEYs in `trust_anchor` (zone-file syntax), or the IANA root keys
    /// when it is `None`.
    pub fn with_dnssec(
        mut self,
        nameservers: &[SocketAddr],
        trust_anchor: Option<&Path>,
    ) -> Result<Self, DnsError> {
        let mut opts = Self::options();
        opts.validate = true;
        let anchors =
            match trust_anchor {
                Some(path) => Some(TrustAnchors::from_file(path).map_err(|e| {
                    DnsError::Setup(format!("trust anchor {}: {e}", path.display()))
                })?),
                None => None,
            };
        self.secure = Some(Self::build(nameservers, opts, anchors)?);
        Ok(self)
    }

    /// Whether DNSSEC answers are available.
    pub fn validates(&self) -> bool {
        self.secure.is_some()
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
                let mut v: Vec<Mx> = l.answers().iter().filter_map(|r| mx_of(&r.data)).collect();
                v.sort_by_key(|m| m.preference);
                Ok(v)
            }
            Err(e) => absent_is_empty(e, domain),
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
            Err(e) => absent_is_empty(e, name),
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
            Err(e) => absent_is_empty(e, &ip.to_string()),
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
            Err(e) => absent_is_empty(e, host),
        }
    }

    /// A validated lookup: the records of `rtype` at `name` and their
    /// DNSSEC status. Without validation configured everything is
    /// `Insecure`.
    async fn validated(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> Result<Validated<Vec<RData>>, DnsError> {
        let Some(secure) = &self.secure else {
            return Ok(Validated {
                data: Vec::new(),
                security: Security::Insecure,
            });
        };
        match secure.lookup(Self::fqdn(name), rtype).await {
            Ok(l) => {
                let records: Vec<Record> = l
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .cloned()
                    .collect();
                Ok(Validated {
                    security: proof_of(&records),
                    data: records.into_iter().map(|r| r.data).collect(),
                })
            }
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => {
                // A denial is as good as its SOA's proof.
                let security = match &e {
                    NetError::Dns(HickoryDnsError::NoRecordsFound(nr)) => match &nr.soa {
                        Some(soa) => match soa.proof {
                            Proof::Secure => Security::Secure,
                            Proof::Bogus => Security::Bogus,
                            _ => Security::Insecure,
                        },
                        None => Security::Insecure,
                    },
                    _ => Security::Insecure,
                };
                Ok(Validated {
                    data: Vec::new(),
                    security,
                })
            }
            Err(e) if e.to_string().contains("DNSSEC") || e.to_string().contains("proof") => {
                Ok(Validated {
                    data: Vec::new(),
                    security: Security::Bogus,
                })
            }
            Err(e) => Err(DnsError::Lookup {
                name: name.into(),
                reason: e.to_string(),
            }),
        }
    }

    /// Whether DNSSEC works through the configured resolvers: the root's
    /// DNSKEY RRset validates against the trust anchors. Resolvers that
    /// strip signatures (or a trust anchor that does not match the root)
    /// make every answer look bogus; callers then do without DNSSEC rather
    /// than treat all of DNS as forged (as Postfix's `dnssec_probe`).
    pub async fn dnssec_works(&self) -> bool {
        matches!(
            self.validated(".", RecordType::DNSKEY).await,
            Ok(Validated {
                security: Security::Secure,
                ..
            })
        )
    }

    /// The MX RRset of `domain` with its DNSSEC status (RFC 7672 §2.2.1).
    pub async fn secure_mx(&self, domain: &str) -> Result<Validated<Vec<Mx>>, DnsError> {
        let v = self.validated(domain, RecordType::MX).await?;
        Ok(Validated {
            security: v.security,
            data: v.data.into_iter().filter_map(|d| mx_of(&d)).collect(),
        })
    }

    /// Whether the address records of `host` are signed (RFC 7672 §2.2.2:
    /// TLSA records are only looked up for hosts whose addresses are).
    pub async fn secure_addresses(&self, host: &str) -> Result<Security, DnsError> {
        let a = self.validated(host, RecordType::A).await?;
        let aaaa = self.validated(host, RecordType::AAAA).await?;
        Ok(match (a.security, aaaa.security) {
            (Security::Bogus, _) | (_, Security::Bogus) => Security::Bogus,
            (Security::Secure, Security::Secure) => Security::Secure,
            _ => Security::Insecure,
        })
    }

    /// The TLSA records of `_port._tcp.host` (RFC 7672 §2.2.3), validated.
    pub async fn tlsa(&self, host: &str, port: u16) -> Result<Validated<Vec<Tlsa>>, DnsError> {
        let v = self
            .validated(&format!("_{port}._tcp.{host}"), RecordType::TLSA)
            .await?;
        Ok(Validated {
            security: v.security,
            data: v
                .data
                .into_iter()
                .filter_map(|d| match d {
                    RData::TLSA(t) => Some(Tlsa {
                        usage: t.cert_usage.into(),
                        selector: t.selector.into(),
                        matching: t.matching.into(),
                        data: t.cert_data,
                    }),
                    _ => None,
                })
                .collect(),
        })
    }
}
