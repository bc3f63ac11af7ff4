//! Where a domain's mail goes: a transport rule, or the domain's MX hosts
//! (RFC 5321 §5.1) — by preference, shuffled among equal preferences, the
//! domain itself when it has no MX, and nowhere when it publishes a null MX
//! (RFC 7505).

use rand::seq::SliceRandom;
use std::net::{IpAddr, SocketAddr};
use tern_core::config::{TlsPolicy, Transport};
use tern_dns::Resolver;

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
