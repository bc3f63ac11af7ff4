//! Where a domain's mail goes: a transport rule, or the domain's MX hosts
//! (RFC 5321 §5.1) — by preference, shuffled among equal preferences, the
//! domain itself when it has no MX, and nowhere when it publishes a null MX
//! (RFC 7505).

use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tern_core::config::{TlsPolicy, Transport};
use tern_dns::{Resolver, Security, Tlsa};

/// At most this many addresses are tried per attempt (as Postfix's
/// `smtp_mx_address_limit`): a long MX list must not turn one attempt into
/// minutes of timeouts.
pub const MAX_ADDRESSES: usize = 5;

/// One address to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The host name (for TLS and logs).
    pub host: String,
    /// Its address and port.
    pub addr: SocketAddr,
    /// TLS policy for this hop.
    pub tls: TlsPolicy,
    /// AUTH PLAIN credentials (transport rules only).
    pub auth: Option<(String, String)>,
    /// The host's DNSSEC-validated TLSA records (RFC 7672): TLS is then
    /// mandatory and the certificate must match them.
    pub dane: Option<Arc<Vec<Tlsa>>>,
}

/// Why a domain has no usable destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// Try again later (DNS failure).
    Temporary(String),
    /// Give up: the enhanced status code and why.
    Permanent(&'static str, String),
}

/// Finds the hops for `domain`.
pub async fn hops(
    resolver: &Resolver,
    domain: &str,
    transports: &[Transport],
    mx_port: u16,
    default_tls: TlsPolicy,
) -> Result<Vec<Hop>, RouteError> {
    if let Some(t) = transports
        .iter()
        .find(|t| t.domain.eq_ignore_ascii_case(domain))
        .or_else(|| transports.iter().find(|t| t.domain == "*"))
    {
        let auth = t.username.clone().zip(t.password.clone());
        let ips = addresses(resolver, &t.host).await?;
        if ips.is_empty() {
            return Err(RouteError::Temporary(format!(
                "transport host {} has no address",
                t.host
            )));
        }
        return Ok(ips
            .into_iter()
            .take(MAX_ADDRESSES)
            .map(|ip| Hop {
                host: t.host.clone(),
                addr: SocketAddr::new(ip, t.port),
                tls: t.tls,
                auth: auth.clone(),
                dane: None,
            })
            .collect());
    }
    let mut mxs = resolver
        .mx(domain)
        .await
        .map_err(|e| RouteError::Temporary(e.to_string()))?;
    // RFC 7505 §3: a single MX with the root as exchange: no mail accepted.
    if mxs
        .iter()
        .any(|m| m.exchange.is_empty() || m.exchange == ".")
    {
        return Err(RouteError::Permanent(
            "5.1.10",
            format!("{domain} does not accept mail (null MX, RFC 7505)"),
        ));
    }
    let hosts: Vec<String> = if mxs.is_empty() {
        // RFC 5321 §5.1: no MX, the domain itself is the host.
        vec![domain.to_string()]
    } else {
        // Random order among equal preferences (RFC 5321 §5.1).
        let mut rng = rand::rng();
        let mut ordered = Vec::with_capacity(mxs.len());
        mxs.sort_by_key(|m| m.preference);
        for group in mxs.chunk_by(|a, b| a.preference == b.preference) {
            let mut g: Vec<String> = group.iter().map(|m| m.exchange.clone()).collect();
            g.shuffle(&mut rng);
            ordered.extend(g);
        }
        ordered
    };
    let mut out = Vec::new();
    let mut last_error = None;
    for host in &hosts {
        match addresses(resolver, host).await {
            Ok(ips) => out.extend(ips.into_iter().map(|ip| Hop {
                host: host.clone(),
                addr: SocketAddr::new(ip, mx_port),
                tls: default_tls,
                auth: None,
                dane: None,
            })),
            Err(e) => last_error = Some(e),
        }
        if out.len() >= MAX_ADDRESSES {
            break;
        }
    }
    out.truncate(MAX_ADDRESSES);
    if !out.is_empty() {
        return Ok(out);
    }
    match last_error {
        Some(e) => Err(e),
        None if mxs.is_empty() => Err(RouteError::Permanent(
            "5.1.2",
            format!("{domain} has no MX and no address records"),
        )),
        None => Err(RouteError::Temporary(format!(
            "no address for the MX hosts of {domain}"
        ))),
    }
}

/// DANE (RFC 7672 §2.2): when the MX RRset of `domain` is DNSSEC-secure,
/// looks up the TLSA records of each MX host whose addresses are secure
/// too, and marks its hops: TLS required, certificate checked against the
/// records. Hosts whose TLSA answer is bogus or cannot be had are dropped
/// (a forged or failed lookup must not downgrade TLS); with none left the
/// attempt is deferred. An insecure MX RRset leaves the hops as they are.
pub async fn apply_dane(
    resolver: &Resolver,
    domain: &str,
    hops: &mut Vec<Hop>,
    port: u16,
) -> Result<(), RouteError> {
    let mx = resolver
        .secure_mx(domain)
        .await
        .map_err(|e| RouteError::Temporary(format!("DNSSEC lookup of the MX records: {e}")))?;
    match mx.security {
        Security::Insecure => return Ok(()),
        Security::Bogus => {
            return Err(RouteError::Temporary(format!(
                "DNSSEC: the MX records of {domain} do not validate (bogus)"
            )));
        }
        Security::Secure => {}
    }
    let mut by_host: HashMap<String, HostTlsa> = HashMap::new();
    for hop in hops.iter() {
        if by_host.contains_key(&hop.host) {
            continue;
        }
        let verdict = host_tlsa(resolver, &hop.host, port).await;
        if let Err(e) = &verdict {
            tracing::info!(domain, host = %hop.host, error = %e, "dane: host unusable");
        }
        by_host.insert(hop.host.clone(), verdict);
    }
    let mut last = None;
    hops.retain_mut(|h| match &by_host[&h.host] {
        Ok(Some(tlsa)) => {
            h.dane = Some(tlsa.clone());
            h.tls = TlsPolicy::Required;
            true
        }
        Ok(None) => true,
        Err(e) => {
            last = Some(format!("{}: {e}", h.host));
            false
        }
    });
    if hops.is_empty() {
        return Err(RouteError::Temporary(
            last.unwrap_or_else(|| "DANE: no usable MX host".into()),
        ));
    }
    Ok(())
}

/// What DANE says of one host: its TLSA records to honour (`None`: DANE
/// does not apply), or why the host cannot be used.
type HostTlsa = Result<Option<Arc<Vec<Tlsa>>>, String>;

/// The TLSA records a host's delivery must honour: `None` when its
/// addresses or its TLSA RRset are provably unsigned, or it has none.
async fn host_tlsa(resolver: &Resolver, host: &str, port: u16) -> HostTlsa {
    // RFC 7672 §2.2.2: TLSA records only count for hosts whose addresses are signed.
    match resolver
        .secure_addresses(host)
        .await
        .map_err(|e| format!("DNSSEC lookup of the addresses: {e}"))?
    {
        Security::Insecure => return Ok(None),
        Security::Bogus => return Err("DNSSEC: the address records are bogus".into()),
        Security::Secure => {}
    }
    let tlsa = resolver
        .tlsa(host, port)
        .await
        .map_err(|e| format!("TLSA lookup failed: {e}"))?;
    match tlsa.security {
        Security::Secure if tlsa.data.is_empty() => Ok(None),
        Security::Secure => Ok(Some(Arc::new(tlsa.data))),
        Security::Insecure => Ok(None),
        Security::Bogus => Err("DNSSEC: the TLSA records are bogus".into()),
    }
}

async fn addresses(resolver: &Resolver, host: &str) -> Result<Vec<IpAddr>, RouteError> {
    if let Ok(ip) = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok(vec![ip]);
    }
    resolver
        .ips(host)
        .await
        .map_err(|e| RouteError::Temporary(e.to_string()))
}
