//! The SMTP probe (RFC 5321 §3.3 without DATA): one connection for all
//! the addresses of a domain, each MX host in turn while they are down or
//! fail temporarily, a catch-all test with a random local part, greylisted
//! addresses tried again after a wait, and every step under a timeout so
//! that a tarpit cannot hold a job.

use crate::{Reason, Settings, SmtpReply};
use std::net::SocketAddr;
use tern_dns::Resolver;
use tern_queue::client::{Reply, SmtpClient, Timeouts};

/// What became of one address.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The server's reply to `RCPT TO`.
    Reply(SmtpReply),
    /// No reply that decides.
    Failed {
        /// Why.
        reason: Reason,
        /// In a sentence.
        detail: String,
    },
}

/// What the probe of a domain found.
#[derive(Debug)]
pub struct DomainOutcome {
    /// Per address, in order.
    pub replies: Vec<Outcome>,
    /// Whether a random address was accepted (`None`: not found out).
    pub catch_all: Option<bool>,
}

fn smtp_reply(host: &str, r: &Reply) -> SmtpReply {
    SmtpReply {
        host: host.to_string(),
        code: r.code,
        enhanced: r.enhanced().map(str::to_string),
        message: r.text.chars().take(500).collect(),
    }
}

fn looks_greylisted(r: &Reply) -> bool {
    let t = r.text.to_ascii_lowercase();
    (400..500).contains(&r.code)
        && !t.contains("rate limit")
        && r.enhanced() != Some("4.7.28")
        && (t.contains("greylist")
            || t.contains("graylist")
            || t.contains("try again")
            || t.contains("later"))
}

/// The wait a greylisting reply asks for ("try again in 5 minutes",
/// "greylisted for 300 seconds"), if it names one.
fn asked_wait(text: &str) -> Option<std::time::Duration> {
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '(' || c == ')')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    words.windows(2).find_map(|w| {
        let n: u64 = w[0].parse().ok()?;
        let unit = if w[1].starts_with("sec") {
            1
        } else if w[1].starts_with("min") {
            60
        } else {
            return None;
        };
        Some(std::time::Duration::from_secs(n.saturating_mul(unit)))
    })
}

/// How long to wait before trying greylisted addresses again: what the
/// replies ask for, at most `bound` (the configured `greylist_wait`, also
/// the wait when they do not say).
fn greylist_wait<'a>(
    replies: impl Iterator<Item = &'a Reply>,
    bound: std::time::Duration,
) -> std::time::Duration {
    replies
        .filter(|r| looks_greylisted(r))
        .filter_map(|r| asked_wait(&r.text))
        .max()
        .map_or(bound, |asked| asked.min(bound))
}

/// Most recipients in one transaction.
const MAX_RCPTS: usize = 100;

/// Why a host could not be asked.
#[derive(Debug)]
enum Failure {
    /// Down, silent, or the connection broke.
    Unreachable(String),
    /// It answered our greeting, EHLO or MAIL FROM with a refusal: it will
    /// not talk to this prober (a blocklist, a rate limit, a policy).
    Refused { host: String, reply: Reply },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable(why) => f.write_str(why),
            Self::Refused { host, reply } => write!(f, "{host} refused the prober: {reply}"),
        }
    }
}

impl From<tern_queue::client::ClientError> for Failure {
    fn from(e: tern_queue::client::ClientError) -> Self {
        Self::Unreachable(e.to_string())
    }
}

/// One session with one host: the replies for `addresses` and the
/// catch-all test, or why the host could not be used.
async fn session(
    settings: &Settings,
    host: &str,
    addr: SocketAddr,
    domain: &str,
    addresses: &[&str],
    catch_all_probe: bool,
) -> Result<(Vec<Reply>, Option<bool>), Failure> {
    let timeouts = Timeouts {
        connect: settings.connect_timeout,
        command: settings.command_timeout,
        data: settings.command_timeout,
    };
    let refused = |reply: Reply| Failure::Refused {
        host: host.to_string(),
        reply,
    };
    let source = settings
        .source
        .iter()
        .copied()
        .find(|ip| ip.is_ipv4() == addr.is_ipv4());
    let (mut c, greeting) = SmtpClient::connect(addr, source, timeouts)
        .await
        .map_err(|e| Failure::Unreachable(format!("{host}[{}]: {e}", addr.ip())))?;
    if greeting.code != 220 {
        return Err(refused(greeting));
    }
    let r = c.ehlo(&settings.helo).await?;
    if !r.is_positive() {
        return Err(refused(r));
    }
    // Some hosts refuse recipients until STARTTLS; any certificate will do
    // for a probe (RFC 7435).
    if c.caps.starttls
        && let Ok(name) = rustls_pki_types::ServerName::try_from(host.to_string())
    {
        match c
            .starttls(&tern_queue::client::opportunistic_tls(), name)
            .await
        {
            Ok(Ok(mut tls)) => {
                let r = tls.ehlo(&settings.helo).await?;
                if !r.is_positive() {
                    return Err(refused(r));
                }
                c = tls;
            }
            Ok(Err((plain, _))) => c = plain,
            Err(e) => {
                return Err(Failure::Unreachable(format!(
                    "{host}: STARTTLS failed: {e}"
                )));
            }
        }
    }
    let utf8 = addresses.iter().any(|a| !a.is_ascii());
    let mut mail = format!("MAIL FROM:<{}>", settings.mail_from);
    if utf8 && c.caps.smtputf8 {
        mail.push_str(" SMTPUTF8");
    }
    // What can be asked: a UTF-8 address of a server without SMTPUTF8
    // gets its answer without asking (RFC 6531 §3.4).
    let mut replies: Vec<Option<Reply>> = addresses
        .iter()
        .map(|a| {
            (!a.is_ascii() && !c.caps.smtputf8).then(|| Reply {
                code: 553,
                text: "5.6.7 SMTPUTF8 not supported by the server".into(),
            })
        })
        .collect();
    let asked: Vec<usize> = (0..addresses.len())
        .filter(|&i| replies[i].is_none())
        .collect();
    let random = catch_all_probe.then(|| {
        let local: String = (0..16)
            .map(|_| (b'a' + rand::random_range(0..26u8)) as char)
            .collect();
        format!("{local}@{domain}")
    });
    // Transactions of at most 100 recipients (RFC 5321 §4.5.3.1.8: a
    // server need take no more), the random address in the first; each
    // sent as one write when the server pipelines (RFC 2920).
    let mut rcpts: Vec<String> = random.iter().cloned().collect();
    rcpts.extend(asked.iter().map(|&i| addresses[i].to_string()));
    let mut answers: Vec<Reply> = Vec::with_capacity(rcpts.len());
    for (n, batch) in rcpts.chunks(MAX_RCPTS).enumerate() {
        let mut lines = Vec::with_capacity(batch.len() + 2);
        if n > 0 {
            lines.push("RSET".to_string());
        }
        lines.push(mail.clone());
        lines.extend(batch.iter().map(|a| format!("RCPT TO:<{a}>")));
        let mut got = if c.caps.pipelining {
            c.pipeline(&lines).await?
        } else {
            let mut got = Vec::with_capacity(lines.len());
            for l in &lines {
                let r = c.command(l).await?;
                let stop = l.starts_with("MAIL") && !r.is_positive();
                got.push(r);
                if stop {
                    break;
                }
            }
            got
        }
        .into_iter();
        if n > 0 {
            got.next();
        }
        let m = got.next().unwrap_or(Reply {
            code: 421,
            text: "no reply to MAIL FROM".into(),
        });
        if !m.is_positive() {
            c.quit().await;
            // A refused prober learns nothing about the addresses.
            return Err(refused(m));
        }
        answers.extend(got);
        if answers.len() != rcpts.len().min((n + 1) * MAX_RCPTS) {
            return Err(Failure::Unreachable(format!(
                "{host} answered {} of {} commands",
                answers.len(),
                lines.len()
            )));
        }
    }
    let mut answers = answers.into_iter();
    let catch_all = if random.is_some() {
        answers.next().and_then(|r| match r.code {
            200..=299 => Some(true),
            500..=599 => Some(false),
            _ => None,
        })
    } else {
        None
    };
    for (&i, r) in asked.iter().zip(answers) {
        replies[i] = Some(r);
    }
    let _ = c.command("RSET").await;
    c.quit().await;
    Ok((replies.into_iter().flatten().collect(), catch_all))
}

/// Connections open to each host, at most a few at once: domains that
/// share an MX (hosted mail) are probed politely.
pub struct HostLimits {
    per_host: usize,
    open: std::sync::Mutex<
        std::collections::HashMap<std::net::IpAddr, std::sync::Arc<tokio::sync::Semaphore>>,
    >,
}

impl HostLimits {
    /// At most `per_host` connections to one address.
    pub fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            open: Default::default(),
        }
    }

    async fn acquire(&self, ip: std::net::IpAddr) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let sem = {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            // Forget idle hosts now and then, so the map stays small.
            if open.len() > 10_000 {
                open.retain(|_, s| s.available_permits() < self.per_host);
            }
            open.entry(ip)
                .or_insert_with(|| std::sync::Arc::new(tokio::sync::Semaphore::new(self.per_host)))
                .clone()
        };
        sem.acquire_owned().await.ok()
    }
}

/// Probes `addresses` (all at `domain`) on `hosts`, in order; with
/// `test_catch_all`, a random address too.
pub async fn probe(
    resolver: &Resolver,
    settings: &Settings,
    limits: &HostLimits,
    domain: &str,
    hosts: &[String],
    addresses: &[&str],
    test_catch_all: bool,
) -> DomainOutcome {
    let mut failures: Vec<Failure> = Vec::new();
    for host in hosts.iter().take(settings.max_hosts.max(1)) {
        let ips = match resolver.ips(host).await {
            Ok(ips) if !ips.is_empty() => ips,
            Ok(_) => {
                failures.push(Failure::Unreachable(format!("{host} has no address")));
                continue;
            }
            Err(e) => {
                failures.push(Failure::Unreachable(e.to_string()));
                continue;
            }
        };
        let addr = SocketAddr::new(ips[0], settings.port);
        let _slot = limits.acquire(addr.ip()).await;
        // The whole session is bounded: a tarpit answering slowly to each
        // command cannot stretch it.
        let limit = settings.connect_timeout
            + settings.command_timeout * (addresses.len() as u32 + 6).min(200);
        let first = tokio::time::timeout(
            limit,
            session(settings, host, addr, domain, addresses, test_catch_all),
        )
        .await;
        let (mut replies, catch_all) = match first {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                failures.push(e);
                continue;
            }
            Err(_) => {
                failures.push(Failure::Unreachable(format!(
                    "{host} did not finish within {}s",
                    limit.as_secs()
                )));
                continue;
            }
        };
        // Every address failing temporarily: the next MX may know better.
        if !replies.is_empty()
            && replies.iter().all(|r| (400..500).contains(&r.code))
            && !replies.iter().any(looks_greylisted)
            && host != hosts.last().unwrap_or(host)
        {
            failures.push(Failure::Unreachable(format!(
                "{host} answered {}",
                replies[0]
            )));
            continue;
        }
        // Greylisted: wait as asked, then try again from the same address.
        let mut tries = 0;
        while tries < settings.greylist_retries && replies.iter().any(looks_greylisted) {
            tries += 1;
            tokio::time::sleep(greylist_wait(replies.iter(), settings.greylist_wait)).await;
            let again: Vec<&str> = addresses
                .iter()
                .zip(&replies)
                .filter(|(_, r)| looks_greylisted(r))
                .map(|(a, _)| *a)
                .collect();
            if let Ok(Ok((new, _))) =
                tokio::time::timeout(limit, session(settings, host, addr, domain, &again, false))
                    .await
            {
                let mut new = new.into_iter();
                for r in replies.iter_mut().filter(|r| looks_greylisted(r)) {
                    if let Some(n) = new.next() {
                        *r = n;
                    }
                }
            }
        }
        let replies = replies
            .iter()
            .map(|r| {
                if looks_greylisted(r) {
                    Outcome::Failed {
                        reason: Reason::Greylisted,
                        detail: format!("{host} still greylists after {tries} retries: {r}"),
                    }
                } else if r.code == 553 && r.text.starts_with("5.6.7") {
                    Outcome::Failed {
                        reason: Reason::SmtputfUnsupported,
                        detail: format!("{host} does not support SMTPUTF8"),
                    }
                } else {
                    Outcome::Reply(smtp_reply(host, r))
                }
            })
            .collect();
        return DomainOutcome { replies, catch_all };
    }
    let detail = if failures.is_empty() {
        format!("{domain} has no usable MX host")
    } else {
        failures
            .iter()
            .map(Failure::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    };
    // A host that refused the prober outright says more than one that was
    // down: a rate limit (slow down) or a block (a list, a policy).
    let reason = failures
        .iter()
        .find_map(|f| match f {
            Failure::Refused { reply, .. } => Some(refusal_reason(reply)),
            Failure::Unreachable(_) => None,
        })
        .unwrap_or(Reason::Timeout);
    DomainOutcome {
        replies: addresses
            .iter()
            .map(|_| Outcome::Failed {
                reason,
                detail: detail.clone(),
            })
            .collect(),
        catch_all: None,
    }
}

/// Why a host that refused the prober did so.
fn refusal_reason(r: &Reply) -> Reason {
    static CLASSIFIER: std::sync::LazyLock<tern_feedback::Classifier> =
        std::sync::LazyLock::new(tern_feedback::Classifier::default);
    match CLASSIFIER.classify(r.code, r.enhanced(), &r.text).category {
        tern_feedback::Category::RateLimited => Reason::RateLimited,
        _ => Reason::Blocked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greylisting_waits_as_asked_within_the_bound() {
        let r = |text: &str| Reply {
            code: 451,
            text: text.into(),
        };
        let bound = std::time::Duration::from_secs(120);
        let secs = |replies: &[Reply]| greylist_wait(replies.iter(), bound).as_secs();
        assert_eq!(secs(&[r("4.7.1 Greylisted for 30 seconds")]), 30);
        assert_eq!(secs(&[r("4.7.1 Greylisted, try again in 1 minute")]), 60);
        assert_eq!(secs(&[r("4.7.1 Greylisted, try again in 10 minutes")]), 120);
        assert_eq!(secs(&[r("4.7.1 Greylisted, please try again later")]), 120);
        assert_eq!(
            secs(&[
                r("4.7.1 greylisted 45 secs"),
                r("4.7.1 greylisted (90 seconds)")
            ]),
            90
        );
        // A reply that is not greylisting asks for nothing.
        assert_eq!(secs(&[r("4.2.2 mailbox full for 5 minutes")]), 120);
    }

    #[tokio::test]
    async fn one_host_gets_only_so_many_connections() {
        let limits = HostLimits::new(1);
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        let first = limits.acquire(ip).await;
        assert!(first.is_some());
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), limits.acquire(ip)).await;
        assert!(
            waiting.is_err(),
            "a second connection to the same host waits"
        );
        let other = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            limits.acquire("192.0.2.2".parse().unwrap()),
        )
        .await;
        assert!(other.is_ok(), "another host does not wait");
        drop(first);
        assert!(limits.acquire(ip).await.is_some());
    }
}
