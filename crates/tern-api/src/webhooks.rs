//! Webhook delivery: events leave each endpoint's durable outbox (filled by
//! the store in the same commit as the events) as JSON POSTs signed as
//! Standard Webhooks specifies, in order, at least once.
//!
//! An endpoint is one queue: its events go out oldest first, and a failure
//! holds the rest back (which keeps each message's events in order) while
//! the endpoint backs off — exponentially with jitter, or as long as a
//! `429`/`503` `Retry-After` asks — for `[webhooks] retry_for` (3 days);
//! events older than that then go to the endpoint's dead-letter list.
//! Requests go only to the configured URL: redirects are not followed, and
//! unless `[webhooks] allow_http` is on, only `https://` with verified TLS
//! to public addresses (checked on every connection, so DNS cannot point a
//! hook at this host's private network).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern_core::config::WebhooksConfig;
use tern_events::{Event, EventType, signature};
use tern_store::{OutboxItem, SharedStore, Webhook, WebhookAttempt};

/// Events per POST for endpoints that take batches.
const BATCH: usize = 100;
/// Events read from an outbox at once for one-per-POST endpoints.
const SINGLES: usize = 50;
/// How often the outboxes are looked at.
const POLL: Duration = Duration::from_millis(200);
/// First backoff after a failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// A new endpoint with a fresh id and secret.
pub fn new_endpoint(url: String, events: Vec<EventType>, domain: String, batch: bool) -> Webhook {
    let id: String = (0..16)
        .map(|_| b"abcdefghijklmnopqrstuvwxyz234567"[rand::random_range(0..32)] as char)
        .collect();
    Webhook {
        id: format!("wh_{id}"),
        url,
        secret: signature::new_secret(),
        events,
        domain: domain.to_lowercase(),
        batch,
        created: tern_core::now_unix(),
        next_attempt: 0,
        failures: 0,
    }
}

/// Whether `ip` is on the public internet (not loopback, private, link-local,
/// shared, documentation, multicast or unspecified).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// Checks an endpoint URL against the policy; `Err` says why not.
pub fn check_url(url: &str, allow_http: bool) -> Result<(), String> {
    if url.len() > 2000 {
        return Err("longer than 2000 characters".into());
    }
    let u = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(
                "must be https:// (plain http is allowed only with [webhooks] allow_http = true)"
                    .into(),
            );
        }
        s => return Err(format!("{s}: is not http(s)")),
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    match u.host() {
        None => return Err("has no host".into()),
        Some(url::Host::Ipv4(ip)) if !allow_http && !is_public(ip.into()) => {
            return Err(format!("{ip} is not a public address"));
        }
        Some(url::Host::Ipv6(ip)) if !allow_http && !is_public(ip.into()) => {
            return Err(format!("{ip} is not a public address"));
        }
        _ => {}
    }
    Ok(())
}

/// Name resolution for webhook requests through Tern's resolver, refusing
/// non-public addresses unless allowed.
struct GuardedResolver {
    resolver: tern_dns::Resolver,
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.resolver.clone();
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let ips = resolver.ips(&host).await.map_err(|e| {
                Box::new(std::io::Error::other(format!("{host}: {e}")))
                    as Box<dyn std::error::Error + Send + Sync>
            })?;
            let ips: Vec<IpAddr> = ips
                .into_iter()
                .filter(|ip| allow || is_public(*ip))
                .collect();
            if ips.is_empty() {
                return Err(Box::new(std::io::Error::other(format!(
                    "{host} has no public address (private ones need [webhooks] allow_http)"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: reqwest::dns::Addrs =
                Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The delivery loop.
pub struct Deliverer {
    store: SharedStore,
    client: reqwest::Client,
    config: WebhooksConfig,
    retry_for: Duration,
    busy: Mutex<HashSet<String>>,
}

/// What one POST came to.
enum Outcome {
    Delivered,
    /// Try the endpoint again after this long.
    Retry(Duration, String),
}

impl Deliverer {
    /// A deliverer reading `store`'s outboxes.
    pub fn new(
        store: SharedStore,
        resolver: tern_dns::Resolver,
        config: WebhooksConfig,
    ) -> Result<Arc<Self>, String> {
        let retry_for = tern_core::config::parse_duration(&config.retry_for)?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(config.timeout.max(1)))
            .connect_timeout(Duration::from_secs(config.timeout.clamp(1, 10)))
            .user_agent(concat!("Tern-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver {
                resolver,
                allow_private: config.allow_http,
            }))
            .https_only(!config.allow_http)
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Arc::new(Self {
            store,
            client,
            config,
            retry_for,
            busy: Mutex::new(HashSet::new()),
        }))
    }

    /// Runs forever: every endpoint with events due gets its own task (at
    /// most `max_concurrent` at once).
    pub async fn run(self: Arc<Self>) {
        loop {
            let now = tern_core::now_unix();
            match self.store.webhooks_due(now).await {
                Ok(due) => {
                    for hook in due {
                        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
                        if busy.len() >= self.config.max_concurrent.max(1) {
                            break;
                        }
                        if busy.insert(hook.id.clone()) {
                            drop(busy);
                            let me = self.clone();
                            tokio::spawn(async move {
                                let id = hook.id.clone();
                                me.drain(hook).await;
                                me.busy
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .remove(&id);
                            });
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhooks: cannot read the outboxes"),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// POSTs an endpoint's events until its outbox is empty or a POST fails.
    async fn drain(&self, hook: Webhook) {
        let mut failures = hook.failures;
        loop {
            let take = if hook.batch { BATCH } else { SINGLES };
            let items = match self.store.outbox(&hook.id, take).await {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(webhook = %hook.id, error = %e, "webhooks: cannot read the outbox");
                    return;
                }
            };
            if items.is_empty() {
                return;
            }
            let groups: Vec<&[OutboxItem]> = if hook.batch {
                vec![&items[..]]
            } else {
                items.chunks(1).collect()
            };
            for group in groups {
                let started = Instant::now();
                let (status, outcome) = self.post(&hook, group).await;
                let now = tern_core::now_unix();
                let seqs: Vec<i64> = group.iter().map(|i| i.seq).collect();
                let (retry_at, error) = match &outcome {
                    Outcome::Delivered => (None, String::new()),
                    Outcome::Retry(wait, e) => {
                        (Some(now + wait.as_secs().max(1) as i64), e.clone())
                    }
                };
                let attempt = WebhookAttempt {
                    time: now,
                    events: group.len() as u32,
                    status,
                    error: error.clone(),
                    millis: started.elapsed().as_millis() as u64,
                };
                let dead_before = now - self.retry_for.as_secs() as i64;
                if let Err(e) = self
                    .store
                    .outbox_result(&hook.id, &seqs, attempt, retry_at, dead_before)
                    .await
                {
                    tracing::error!(webhook = %hook.id, error = %e, "webhooks: cannot record a POST");
                    return;
                }
                match outcome {
                    Outcome::Delivered => {
                        metrics::counter!("tern_webhook_events_total", "result" => "delivered")
                            .increment(group.len() as u64);
                        failures = 0;
                    }
                    Outcome::Retry(wait, e) => {
                        metrics::counter!("tern_webhook_events_total", "result" => "retry")
                            .increment(group.len() as u64);
                        failures += 1;
                        tracing::info!(webhook = %hook.id, url = %hook.url, error = %e, failures, retry_in_s = wait.as_secs(), "webhooks: POST failed");
                        return;
                    }
                }
            }
        }
    }

    /// One POST of `items`.
    async fn post(&self, hook: &Webhook, items: &[OutboxItem]) -> (Option<u16>, Outcome) {
        let events: Vec<&Event> = items.iter().map(|i| &i.event).collect();
        let (id, body) = if hook.batch {
            (
                format!("bat_{}", events[0].id),
                serde_json::to_vec(&serde_json::json!({ "events": events })).unwrap_or_default(),
            )
        } else {
            (events[0].id.clone(), events[0].to_json().into_bytes())
        };
        let ts = tern_core::now_unix();
        let sig = match signature::sign(&hook.secret, &id, ts, &body) {
            Ok(s) => s,
            Err(e) => return (None, Outcome::Retry(MAX_BACKOFF, e.to_string())),
        };
        let attempts = items.iter().map(|i| i.attempts).max().unwrap_or(0);
        let backoff = backoff(attempts + 1);
        let resp = self
            .client
            .post(&hook.url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => (Some(r.status().as_u16()), Outcome::Delivered),
            Ok(r) => {
                let status = r.status();
                let wait = match status.as_u16() {
                    429 | 503 => retry_after(r.headers()).unwrap_or(backoff),
                    _ => backoff,
                };
                let why = if status.is_redirection() {
                    format!("HTTP {status} (redirects are not followed)")
                } else {
                    format!("HTTP {status}")
                };
                (Some(status.as_u16()), Outcome::Retry(wait, why))
            }
            Err(e) => {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    src = s.source();
                }
                (None, Outcome::Retry(backoff, msg))
            }
        }
    }
}

/// The wait after the `n`th failed attempt: 5 s doubling to an hour, ±20%.
fn backoff(n: u32) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    let jitter = rand::random_range(0.8..1.2);
    base.mul_f64(jitter)
}

/// `Retry-After` as seconds or an HTTP date, at most a day.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let t = chrono::DateTime::parse_from_rfc2822(v).ok()?.timestamp();
            (t - tern_core::now_unix()).max(0) as u64
        }
    };
    Some(Duration::from_secs(secs.clamp(1, 86400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_policy() {
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert!(check_url("http://hooks.example.com/x", false).is_err());
        assert!(check_url("http://127.0.0.1:8080/x", true).is_ok());
        assert!(check_url("https://127.0.0.1/x", false).is_err());
        assert!(check_url("https://[::1]/x", false).is_err());
        assert!(check_url("https://10.1.2.3/x", false).is_err());
        assert!(check_url("https://user:pw@example.com/", false).is_err());
        assert!(check_url("ftp://example.com/", true).is_err());
        assert!(is_public("8.8.8.8".parse().unwrap()));
        assert!(!is_public("::ffff:192.168.1.1".parse().unwrap()));
        assert!(!is_public("169.254.169.254".parse().unwrap()));
        assert!(!is_public("100.64.0.1".parse().unwrap()));
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert!(backoff(1) <= Duration::from_secs(6));
        assert!(backoff(4) >= Duration::from_secs(30));
        assert!(backoff(40) <= Duration::from_secs(4320));
    }
}
