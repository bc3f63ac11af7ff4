//! Email-address verification: whether an address can receive mail, and
//! how sure Tern is — without sending anything.
//!
//! 1. Syntax (RFC 5321 §4.1.2, RFC 6531 for UTF-8 local parts; IDN domains
//!    as A-labels).
//! 2. DNS through tern-dns: MX hosts in preference order; no MX but an
//!    address means the domain itself (RFC 5321 §5.1); a null MX (RFC 7505)
//!    or a domain with neither is undeliverable; a failing lookup is
//!    unknown, never undeliverable.
//! 3. An SMTP probe ([`probe`]): EHLO with our own name, STARTTLS when
//!    offered, `MAIL FROM`, `RCPT TO`, a random address at the same domain
//!    to find catch-alls, `RSET`, `QUIT` — never `DATA`. Each MX in turn
//!    while they are down or fail temporarily; greylisting is waited out
//!    (bounded) and retried.
//!
//! The verdict ([`Verdict`]) is a value built from what was found, with
//! its reasons and a confidence. The replies are read with the same
//! classifier as delivery failures (`tern-feedback`): `5.1.1`-style
//! replies are undeliverable; blocks, rate limits and policy refusals of
//! the prober are unknown.

mod cache;
pub mod disposable;
pub mod jobs;
pub mod lists;
pub mod probe;

use serde::{Deserialize, Serialize};
use std::time::Duration;
use tern_dns::Resolver;
use utoipa::ToSchema;

/// The answer for one address.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Answer {
    /// The address as given.
    pub address: String,
    /// `deliverable`, `undeliverable`, `risky` or `unknown`.
    pub result: Verdict,
    /// Why (empty for a plain deliverable).
    pub reasons: Vec<Reason>,
    /// How sure, 0.0–1.0.
    pub confidence: f64,
    /// A likely intended address (a typo of a large provider's domain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// The MX hosts, in the order tried.
    pub mx: Vec<String>,
    /// The reply to `RCPT TO` that decided, if the probe got that far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpReply>,
    /// Whether the domain accepts any address (`None`: not found out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catch_all: Option<bool>,
    /// What went wrong, in a sentence, for unknown results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The mailbox exists and takes mail.
    Deliverable,
    /// Mail to it will bounce.
    Undeliverable,
    /// The mailbox likely exists, but mail to it is a risk (catch-all,
    /// role account, full mailbox).
    Risky,
    /// Tern could not find out; `reasons` says why.
    Unknown,
}

impl Verdict {
    /// The name in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deliverable => "deliverable",
            Self::Undeliverable => "undeliverable",
            Self::Risky => "risky",
            Self::Unknown => "unknown",
        }
    }
}

/// A reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not a valid address.
    InvalidSyntax,
    /// The domain has neither MX nor address records.
    NoSuchDomain,
    /// The domain publishes a null MX: it takes no mail.
    NullMx,
    /// The server says the mailbox does not exist.
    MailboxNotFound,
    /// The mailbox is disabled.
    Disabled,
    /// The mailbox is full.
    MailboxFull,
    /// The domain accepts every address.
    CatchAll,
    /// A disposable (throwaway) mail domain.
    Disposable,
    /// A role account (postmaster, info, sales…).
    Role,
    /// The domain looks like a typo of a large provider's.
    TypoSuggestion,
    /// Greylisted until the wait ran out.
    Greylisted,
    /// No server answered in time.
    Timeout,
    /// The server refused the prober (blocklist, policy).
    Blocked,
    /// The server asked the prober to slow down.
    RateLimited,
    /// DNS failed.
    DnsError,
    /// The address needs SMTPUTF8 and the server lacks it.
    #[serde(rename = "smtputf8_unsupported")]
    SmtputfUnsupported,
}

/// What a server replied.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SmtpReply {
    /// The host.
    pub host: String,
    /// The reply code.
    pub code: u16,
    /// RFC 3463 status, if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enhanced: Option<String>,
    /// The text.
    pub message: String,
}

/// `[verify]`.
#[derive(Debug, Clone)]
pub struct Settings {
    /// EHLO name (our host name; never a borrowed one).
    pub helo: String,
    /// The MAIL FROM address of probes.
    pub mail_from: String,
    /// Connect timeout per host.
    pub connect_timeout: Duration,
    /// Timeout per command.
    pub command_timeout: Duration,
    /// How long to wait before retrying a greylisted probe: what the reply
    /// asks for, at most this (and this when it does not say).
    pub greylist_wait: Duration,
    /// How many times to retry after greylisting.
    pub greylist_retries: u32,
    /// Port of MX hosts (25).
    pub port: u16,
    /// Most MX hosts tried per domain.
    pub max_hosts: usize,
    /// Most connections to one host (IP address) at once.
    pub connections_per_host: usize,
    /// Local addresses to probe from (one per address family; empty: the
    /// system's choice).
    pub source: Vec<std::net::IpAddr>,
    /// How long what was learnt about a domain (its MX hosts, whether it
    /// accepts every address) is kept.
    pub cache_ttl: Duration,
}

impl Settings {
    /// Settings for a server called `hostname`.
    pub fn new(hostname: &str) -> Self {
        Self {
            helo: hostname.to_string(),
            mail_from: format!("verify@{hostname}"),
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            greylist_wait: Duration::from_secs(60),
            greylist_retries: 1,
            port: 25,
            max_hosts: 3,
            connections_per_host: 2,
            cache_ttl: Duration::from_secs(3600),
            source: Vec::new(),
        }
    }
}

/// The verifier.
pub struct Verifier {
    resolver: Resolver,
    settings: Settings,
    classifier: tern_feedback::Classifier,
    hosts: probe::HostLimits,
    disposable: disposable::List,
    cache: cache::DomainCache,
}

/// Where an address's domain takes mail.
#[derive(Debug, Clone)]
enum Route {
    Hosts(Vec<String>),
    Final(Verdict, Reason, String),
    Unknown(String),
}

impl Verifier {
    /// A verifier asking `resolver`.
    pub fn new(resolver: Resolver, settings: Settings) -> Self {
        Self {
            resolver,
            hosts: probe::HostLimits::new(settings.connections_per_host),
            cache: cache::DomainCache::new(settings.cache_ttl),
            settings,
            classifier: tern_feedback::Classifier::default(),
            disposable: disposable::List::default(),
        }
    }

    /// The same, with this list of disposable domains instead of the one
    /// shipped with Tern.
    pub fn with_disposable(mut self, list: disposable::List) -> Self {
        self.disposable = list;
        self
    }

    /// Verifies several addresses: those of one domain share a connection
    /// and one catch-all probe; domains are verified `concurrency` at a
    /// time. Answers come in the order given.
    pub async fn verify_all(
        self: &std::sync::Arc<Self>,
        addresses: &[String],
        concurrency: usize,
        progress: impl Fn(usize) + Send + Sync + 'static,
    ) -> Vec<Answer> {
        let mut by_domain: Vec<(String, Vec<usize>)> = Vec::new();
        let mut out: Vec<Option<Answer>> = vec![None; addresses.len()];
        let mut parsed = Vec::with_capacity(addresses.len());
        for (i, a) in addresses.iter().enumerate() {
            match parse(a) {
                Ok((local, domain)) => {
                    match by_domain.iter_mut().find(|(d, _)| *d == domain) {
                        Some((_, v)) => v.push(i),
                        None => by_domain.push((domain.clone(), vec![i])),
                    }
                    parsed.push(Some((local, domain)));
                }
                Err(why) => {
                    out[i] = Some(invalid(a, &why));
                    parsed.push(None);
                }
            }
        }
        let progress = std::sync::Arc::new(progress);
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(
            out.iter().filter(|a| a.is_some()).count(),
        ));
        let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (domain, idx) in by_domain {
            let me = self.clone();
            let sem = sem.clone();
            let items: Vec<(usize, String, String)> = idx
                .iter()
                .map(|&i| {
                    (
                        i,
                        addresses[i].clone(),
                        parsed[i].clone().unwrap_or_default().0,
                    )
                })
                .collect();
            let (progress, done) = (progress.clone(), done.clone());
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let answers = me.verify_domain(&domain, &items).await;
                let n = done.fetch_add(answers.len(), std::sync::atomic::Ordering::Relaxed);
                progress(n + answers.len());
                answers
            });
        }
        while let Some(r) = tasks.join_next().await {
            if let Ok(answers) = r {
                for (i, a) in answers {
                    out[i] = Some(a);
                }
            }
        }
        out.into_iter()
            .zip(addresses)
            .map(|(a, addr)| {
                a.unwrap_or_else(|| {
                    unknown(addr, Reason::Timeout, "verification did not finish".into())
                })
            })
            .collect()
    }

    /// Verifies one address.
    pub async fn verify(&self, address: &str) -> Answer {
        match parse(address) {
            Err(why) => invalid(address, &why),
            Ok((local, domain)) => self
                .verify_domain(&domain, &[(0, address.to_string(), local)])
                .await
                .pop()
                .map(|(_, a)| a)
                .unwrap_or_else(|| unknown(address, Reason::Timeout, "no answer".into())),
        }
    }

    /// The route, from the cache while it is fresh.
    async fn route(&self, domain: &str) -> Route {
        if let Some(r) = self.cache.route(domain) {
            return r;
        }
        let r = self.lookup_route(domain).await;
        if !matches!(r, Route::Unknown(_)) {
            self.cache.set_route(domain, r.clone());
        }
        r
    }

    async fn lookup_route(&self, domain: &str) -> Route {
        let mxs = match self.resolver.mx(domain).await {
            Ok(m) => m,
            Err(e) => return Route::Unknown(e.to_string()),
        };
        if mxs
            .iter()
            .any(|m| m.exchange.is_empty() || m.exchange == ".")
        {
            return Route::Final(
                Verdict::Undeliverable,
                Reason::NullMx,
                format!("{domain} publishes a null MX (RFC 7505): it takes no mail"),
            );
        }
        if !mxs.is_empty() {
            return Route::Hosts(mxs.into_iter().map(|m| m.exchange).collect());
        }
        // RFC 5321 §5.1: no MX, the domain's own address.
        match self.resolver.ips(domain).await {
            Ok(ips) if !ips.is_empty() => Route::Hosts(vec![domain.to_string()]),
            Ok(_) => Route::Final(
                Verdict::Undeliverable,
                Reason::NoSuchDomain,
                format!("{domain} has no MX and no address records"),
            ),
            Err(e) => Route::Unknown(e.to_string()),
        }
    }

    /// The answers for addresses of one domain: `(index, address, local part)`.
    async fn verify_domain(
        &self,
        domain: &str,
        items: &[(usize, String, String)],
    ) -> Vec<(usize, Answer)> {
        let suggestion = lists::suggestion(domain);
        let hosts = match self.route(domain).await {
            Route::Final(v, r, why) => {
                return items
                    .iter()
                    .map(|(i, a, _)| {
                        let mut ans = base(a, v, vec![r], 0.99);
                        ans.detail = Some(why.clone());
                        with_suggestion(&mut ans, suggestion, a);
                        (*i, ans)
                    })
                    .collect();
            }
            Route::Unknown(why) => {
                return items
                    .iter()
                    .map(|(i, a, _)| {
                        let mut ans = unknown(a, Reason::DnsError, why.clone());
                        with_suggestion(&mut ans, suggestion, a);
                        (*i, ans)
                    })
                    .collect();
            }
            Route::Hosts(h) => h,
        };
        let addrs: Vec<&str> = items.iter().map(|(_, a, _)| a.as_str()).collect();
        let known = self.cache.catch_all(domain);
        let outcome = probe::probe(
            &self.resolver,
            &self.settings,
            &self.hosts,
            domain,
            &hosts,
            &addrs,
            known.is_none(),
        )
        .await;
        let catch_all = known.or(outcome.catch_all);
        if let (None, Some(c)) = (known, outcome.catch_all) {
            self.cache.set_catch_all(domain, c);
        }
        let throwaway = self.disposable.contains(domain);
        items
            .iter()
            .zip(outcome.replies)
            .map(|((i, a, local), reply)| {
                let mut ans = self.decide(a, local, &hosts, catch_all, reply);
                if throwaway {
                    ans.reasons.push(Reason::Disposable);
                    if ans.result == Verdict::Deliverable {
                        ans.result = Verdict::Risky;
                    }
                }
                with_suggestion(&mut ans, suggestion, a);
                (*i, ans)
            })
            .collect()
    }

    /// The verdict from what the probe found.
    fn decide(
        &self,
        address: &str,
        local: &str,
        hosts: &[String],
        catch_all: Option<bool>,
        reply: probe::Outcome,
    ) -> Answer {
        let mut ans = match reply {
            probe::Outcome::Failed { reason, detail } => unknown(address, reason, detail),
            probe::Outcome::Reply(r) => {
                let accepted = (200..300).contains(&r.code);
                // Microsoft 365 takes every address of a tenant without
                // directory-based edge blocking and bounces later: there a
                // 250 counts only when a random address was refused.
                let accepts_then_bounces = r.host.ends_with(".mail.protection.outlook.com");
                let mut ans = if accepted {
                    match catch_all {
                        Some(true) => base(address, Verdict::Risky, vec![Reason::CatchAll], 0.6),
                        Some(false) => base(address, Verdict::Deliverable, vec![], 0.95),
                        None if accepts_then_bounces => {
                            base(address, Verdict::Risky, vec![Reason::CatchAll], 0.5)
                        }
                        None => base(address, Verdict::Deliverable, vec![], 0.8),
                    }
                } else {
                    let c = self
                        .classifier
                        .classify(r.code, r.enhanced.as_deref(), &r.message);
                    use tern_feedback::Category as C;
                    let permanent = r.code >= 500;
                    match (c.category, permanent) {
                        (C::BadMailbox, true) => base(
                            address,
                            Verdict::Undeliverable,
                            vec![Reason::MailboxNotFound],
                            0.99,
                        ),
                        (C::Inactive, true) => base(
                            address,
                            Verdict::Undeliverable,
                            vec![Reason::Disabled],
                            0.97,
                        ),
                        (C::MailboxFull, _) => {
                            base(address, Verdict::Risky, vec![Reason::MailboxFull], 0.8)
                        }
                        (C::RateLimited, _) => unknown_at(address, Reason::RateLimited, &r),
                        (
                            C::SpamBlock
                            | C::Reputation
                            | C::Policy
                            | C::Authentication
                            | C::Dns
                            | C::Tls,
                            _,
                        ) => unknown_at(address, Reason::Blocked, &r),
                        (_, false) => unknown_at(address, Reason::Timeout, &r),
                        (_, true) => unknown_at(address, Reason::Blocked, &r),
                    }
                };
                ans.smtp = Some(r);
                ans
            }
        };
        ans.mx = hosts.to_vec();
        ans.catch_all = catch_all;
        if lists::is_role(local) {
            ans.reasons.push(Reason::Role);
            if ans.result == Verdict::Deliverable {
                ans.result = Verdict::Risky;
            }
        }
        ans
    }
}

fn with_suggestion(ans: &mut Answer, suggestion: Option<&str>, address: &str) {
    if let (Some(s), Some((local, _))) = (suggestion, address.rsplit_once('@')) {
        ans.suggestion = Some(format!("{local}@{s}"));
        ans.reasons.push(Reason::TypoSuggestion);
    }
}

fn base(address: &str, result: Verdict, reasons: Vec<Reason>, confidence: f64) -> Answer {
    Answer {
        address: address.to_string(),
        result,
        reasons,
        confidence,
        suggestion: None,
        mx: Vec::new(),
        smtp: None,
        catch_all: None,
        detail: None,
    }
}

fn unknown(address: &str, reason: Reason, detail: String) -> Answer {
    let mut a = base(address, Verdict::Unknown, vec![reason], 0.0);
    a.detail = Some(detail);
    a
}

fn unknown_at(address: &str, reason: Reason, r: &SmtpReply) -> Answer {
    unknown(
        address,
        reason,
        format!("{} answered {} {}", r.host, r.code, r.message),
    )
}

fn invalid(address: &str, why: &str) -> Answer {
    let mut a = base(
        address,
        Verdict::Undeliverable,
        vec![Reason::InvalidSyntax],
        1.0,
    );
    a.detail = Some(why.to_string());
    a
}

/// The local part and the domain (A-labels, lower case) of `address`, or
/// what is wrong with it.
pub fn parse(address: &str) -> Result<(String, String), String> {
    let address = address.trim();
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| "no @ in the address".to_string())?;
    if local.is_empty() {
        return Err("the local part (before the @) is empty".into());
    }
    if local.len() > 64 {
        return Err("the local part is longer than 64 octets (RFC 5321 §4.5.3.1.1)".into());
    }
    let domain = idna::domain_to_ascii(domain.trim_end_matches('.'))
        .map_err(|_| format!("{domain:?} is not a valid domain name"))?;
    let domain = tern_core::address::normalize_domain(&domain)
        .filter(|d| d.contains('.') && !d.starts_with('['))
        .ok_or_else(|| format!("{domain:?} is not a domain that takes mail"))?;
    if domain
        .rsplit('.')
        .next()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("{domain:?} is not a domain name"));
    }
    let normalized = format!("{local}@{domain}");
    tern_core::Address::parse(&normalized).map_err(|e| e.to_string())?;
    Ok((local.to_string(), domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        assert_eq!(parse("Ann@Example.COM").unwrap().1, "example.com");
        assert_eq!(
            parse("ann@bücher.example").unwrap().1,
            "xn--bcher-kva.example"
        );
        assert!(parse("\"ann smith\"@example.com").is_ok());
        assert!(parse("ann+tag@example.com").is_ok());
        for bad in [
            "ann",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann@1.2.3.4",
            "ann@exa mple.com",
            &format!("{}@example.com", "a".repeat(65)),
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
