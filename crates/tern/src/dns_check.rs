//! `tern dns check DOMAIN`: the domain's DNS as the world sees it, against
//! what this server needs — tern-dns's checks ([`tern_dns::check`]) plus
//! the two that need more than DNS: each sending address passes SPF for
//! the domain (evaluated by mail-auth as receivers do), and the MTA-STS
//! policy is served over HTTPS with a certificate that verifies and names
//! this server's MX. Printed with the fix for each failure; the exit
//! status is non-zero when something fails (for monitoring).

use anyhow::{Result, bail};
use std::net::IpAddr;
use tern_core::config::Config;
use tern_dns::check::{Check, Expected, Status};
use tern_store::SharedStore;

/// The dashboard's way to run the checks.
pub struct Checker {
    /// The configuration.
    pub config: Config,
    /// The store.
    pub store: SharedStore,
    /// The resolver.
    pub resolver: tern_dns::Resolver,
}

impl tern_web::DomainChecker for Checker {
    fn check<'a>(
        &'a self,
        domain: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Check>, String>> + Send + 'a>>
    {
        Box::pin(async move {
            checks(&self.config, &self.store, &self.resolver, domain)
                .await
                .map_err(|e| format!("{e:#}"))
        })
    }
}

/// Every check of `domain`.
pub async fn checks(
    config: &Config,
    store: &SharedStore,
    resolver: &tern_dns::Resolver,
    domain: &str,
) -> Result<Vec<Check>> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if !store.list_domains().await?.iter().any(|d| d.name == domain) {
        bail!("{domain} is not a local domain; add it with `tern domain add {domain}`");
    }
    let hostname = config.server.hostname.to_ascii_lowercase();
    let mut dkim = Vec::new();
    for k in store.dkim_keys(&domain).await? {
        if k.status != "active" {
            continue;
        }
        let key = tern_auth::DkimKey {
            selector: k.selector.clone(),
            algorithm: tern_auth::DkimAlgorithm::from_name(&k.algorithm)?,
            private_pem: k.private_key,
        };
        dkim.push((k.selector, key.txt()?));
    }
    let sending_ips: Vec<IpAddr> = if config.queue.source_ips.is_empty() {
        resolver.ips(&hostname).await.unwrap_or_default()
    } else {
        config.queue.source_ips.clone()
    };
    let expected = Expected {
        domain: domain.clone(),
        hostname: hostname.clone(),
        sending_ips: sending_ips.clone(),
        dkim,
        ip_blocklists: config.dns.check_blocklists.clone(),
        domain_blocklists: config.dns.check_domain_blocklists.clone(),
    };
    let mut out = tern_dns::check::check(resolver, &expected).await;
    // After the SPF record checks: does it let our addresses send?
    let at = out
        .iter()
        .rposition(|c| c.name.starts_with("spf"))
        .map_or(out.len(), |i| i + 1);
    let spf_ok = out
        .iter()
        .any(|c| c.name == "spf" && c.status == Status::Pass);
    let mut covers = Vec::new();
    if spf_ok {
        let auth = mail_auth::MessageAuthenticator(resolver.hickory());
        let cache = tern_auth::inbound::TxtCache::default();
        for ip in &sending_ips {
            let r = tern_auth::inbound::check_spf(
                &auth,
                &cache,
                *ip,
                &hostname,
                &hostname,
                &format!("postmaster@{domain}"),
            )
            .await;
            let result = tern_auth::inbound::spf_result_name(r.result());
            covers.push(
                Check::new(
                    format!("spf_covers:{ip}"),
                    if result == "pass" {
                        Status::Pass
                    } else {
                        Status::Fail
                    },
                    format!("SPF of {domain} for mail from {ip}: {result}"),
                )
                .fix(format!(
                    "Let {ip} send for {domain}: add ip{}:{ip} (or mx, with {hostname} as the MX) to the SPF record",
                    if ip.is_ipv4() { 4 } else { 6 }
                )),
            );
        }
    }
    out.splice(at..at, covers);
    // After the MTA-STS record: the policy itself.
    if out
        .iter()
        .any(|c| c.name == "mta_sts" && c.status == Status::Pass)
    {
        let at = out
            .iter()
            .position(|c| c.name == "mta_sts")
            .map_or(out.len(), |i| i + 1);
        out.insert(
            at,
            mta_sts_policy(config, resolver, &domain, &hostname).await,
        );
    }
    Ok(out)
}

async fn mta_sts_policy(
    config: &Config,
    resolver: &tern_dns::Resolver,
    domain: &str,
    hostname: &str,
) -> Check {
    let url = format!("https://mta-sts.{domain}/.well-known/mta-sts.txt");
    let fix = format!(
        "Point mta-sts.{domain} at this server (CNAME {hostname}.) with a certificate that covers it: Tern serves the policy at {url}"
    );
    let tls = match crate::server::extra_roots(config)
        .map_err(|e| format!("{e:#}"))
        .and_then(|roots| tern_queue::client::verified_tls_config(&roots))
    {
        Ok(t) => t,
        Err(e) => {
            return Check::new("mta_sts_policy", Status::Fail, format!("TLS setup: {e}")).fix(fix);
        }
    };
    let sts = tern_queue::mta_sts::MtaSts::new(resolver.clone(), tls, 443);
    match sts.policy(domain).await {
        Ok(Some(p)) if p.matches(hostname) => Check::new(
            "mta_sts_policy",
            Status::Pass,
            format!("{url}: mode {:?}, covers {hostname}", p.mode).to_lowercase(),
        ),
        Ok(Some(p)) => Check::new(
            "mta_sts_policy",
            Status::Fail,
            format!("{url} does not name {hostname} among its mx: {:?}", p.mx),
        )
        .fix(format!(
            "Add \"mx: {hostname}\" to the policy and change the id in _mta-sts.{domain}"
        )),
        Ok(None) => Check::new("mta_sts_policy", Status::Fail, "no policy announced").fix(fix),
        Err(e) => Check::new("mta_sts_policy", Status::Fail, format!("{url}: {e}")).fix(fix),
    }
}

/// The checks as a table, fixes under the failures.
pub fn print(domain: &str, checks: &[Check]) {
    println!("DNS of {domain}, as the world sees it:");
    for c in checks {
        let mark = match c.status {
            Status::Pass => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        println!("  {mark}  {:<34} {}", c.name, c.found);
        if let Some(fix) = &c.fix {
            println!("        fix: {fix}");
        }
    }
    let fails = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warns = checks.iter().filter(|c| c.status == Status::Warn).count();
    println!(
        "{} checks: {} ok, {warns} warnings, {fails} failing",
        checks.len(),
        checks.len() - fails - warns
    );
}
