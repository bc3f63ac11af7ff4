//! MTA-STS (RFC 8461): a domain publishes, over HTTPS, which MX hosts may
//! receive its mail and that they must be reached over TLS with a valid
//! certificate. Written here (no maintained crate fetches and caches
//! policies); the TXT record is parsed here too, the HTTP fetch is
//! `reqwest`, every DNS lookup goes through `tern-dns`.
//!
//! Discovery (§5.1): the `_mta-sts.DOMAIN` TXT record announces a policy
//! with an `id`; the policy is fetched from
//! `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` and cached for its
//! `max_age`. A cached policy is kept while the TXT id is unchanged, and is
//! still used when the TXT record or the fetch fails (that is the point:
//! an attacker who strips DNS answers must not turn enforcement off).
//! The cache is the store's ([`tern_store::SharedCache`]), kept across
//! restarts and shared by every node, with this process's copy in front.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tern_dns::Resolver;
use tern_store::SharedStore;

/// Largest policy file read (RFC 8461 §3.3 suggests 64 KiB).
const MAX_POLICY: usize = 64 * 1024;
/// Longest `max_age` honoured (§3.2: one year).
const MAX_AGE_LIMIT: u64 = 31_557_600;
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// What a policy asks senders to do (§3.2 `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mode {
    /// Deliver only to matching MX hosts, over verified TLS.
    Enforce,
    /// Deliver as usual; report what would have failed (TLS-RPT).
    Testing,
    /// No policy.
    None,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// The TXT record id it was fetched under.
    pub id: String,
    /// The mode.
    pub mode: Mode,
    /// MX patterns: host names, or `*.example.com` (one leftmost label).
    pub mx: Vec<String>,
    /// Seconds the policy may be cached.
    pub max_age: u64,
}

impl Policy {
    /// Whether `host` (an MX name) matches one of the patterns (§4.1).
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
            None => *p == host,
        })
    }
}

/// The `id` of a `v=STSv1` TXT record (§3.1), if the record is one.
pub fn parse_txt(txt: &str) -> Option<String> {
    let mut fields = txt.split(';').map(str::trim).filter(|f| !f.is_empty());
    if fields.next()? != "v=STSv1" {
        return None;
    }
    fields
        .filter_map(|f| f.split_once('='))
        .find(|(k, _)| k.trim() == "id")
        .map(|(_, v)| v.trim().to_string())
        .filter(|id| {
            !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Parses a policy file (§3.2). Unknown keys are ignored.
pub fn parse_policy(id: &str, text: &str) -> Result<Policy, String> {
    let mut version = None;
    let mut mode = None;
    let mut mx = Vec::new();
    let mut max_age = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "version" => version = Some(v.to_string()),
            "mode" => {
                mode = Some(match v {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode {other:?}")),
                })
            }
            "mx" => mx.push(v.trim_end_matches('.').to_ascii_lowercase()),
            "max_age" => {
                max_age = Some(
                    v.parse::<u64>()
                        .map_err(|_| format!("bad max_age {v:?}"))?
                        .min(MAX_AGE_LIMIT),
                )
            }
            _ => {}
        }
    }
    if version.as_deref() != Some("STSv1") {
        return Err("missing or unknown version".into());
    }
    let mode = mode.ok_or("missing mode")?;
    let max_age = max_age.ok_or("missing max_age")?;
    if mode != Mode::None && mx.is_empty() {
        return Err("no mx patterns".into());
    }
    Ok(Policy {
        id: id.to_string(),
        mode,
        mx,
        max_age,
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    policy: Policy,
    /// Unix seconds until which the policy may be used.
    until: i64,
}

/// Fetches and caches policies.
pub struct MtaSts {
    resolver: Resolver,
    tls: rustls::ClientConfig,
    port: u16,
    cache: Mutex<HashMap<String, Cached>>,
    /// Where the cache is kept across restarts and shared with the other
    /// nodes (§5.1: a sender keeps using a cached policy until it expires,
    /// also after a restart).
    store: Option<SharedStore>,
    /// The cache file of earlier versions, moved into the store at the
    /// first lookup.
    legacy: tokio::sync::Mutex<Option<PathBuf>>,
}

/// The store's name for `domain`'s policy.
fn cache_name(domain: &str) -> String {
    format!("mta-sts:{domain}")
}

impl MtaSts {
    /// A fetcher verifying HTTPS certificates with `tls`, connecting to
    /// `port` (443; tests may change it).
    pub fn new(resolver: Resolver, mut tls: rustls::ClientConfig, port: u16) -> Self {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            resolver,
            tls,
            port,
            cache: Mutex::new(HashMap::new()),
            store: None,
            legacy: tokio::sync::Mutex::new(None),
        }
    }

    /// Keeps the cache in `store`; `legacy` is the JSON cache file earlier
    /// versions kept, whose live policies move into the store.
    pub fn with_store(mut self, store: SharedStore, legacy: Option<PathBuf>) -> Self {
        self.store = Some(store);
        self.legacy = tokio::sync::Mutex::new(legacy.filter(|f| f.exists()));
        self
    }

    /// Moves the policies of the legacy cache file into the store, once.
    async fn import_legacy(&self) {
        let Some(store) = &self.store else { return };
        let mut legacy = self.legacy.lock().await;
        let Some(file) = legacy.take() else { return };
        let loaded: HashMap<String, Cached> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let now = tern_core::now_unix();
        for (domain, c) in loaded.into_iter().filter(|(_, c)| c.until > now) {
            let json = serde_json::to_string(&c).unwrap_or_default();
            if let Err(e) = store.cache(&cache_name(&domain), &json, c.until).await {
                tracing::warn!(error = %e, file = %file.display(), "mta-sts: cannot move the cache file into the store");
                *legacy = Some(file);
                return;
            }
        }
        tracing::info!(file = %file.display(), "mta-sts: cached policies moved into the store");
        let _ = std::fs::remove_file(&file);
    }

    /// The policy this process holds for `domain`, if it has not lapsed.
    fn held(&self, domain: &str) -> Option<Policy> {
        let now = tern_core::now_unix();
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(domain)
            .filter(|c| c.until > now)
            .map(|c| c.policy.clone())
    }

    /// The policy the store holds for `domain` (another node, or this one
    /// before a restart, fetched it), copied into this process's cache.
    async fn load(&self, domain: &str) -> Option<Policy> {
        let store = self.store.as_ref()?;
        let json = match store
            .cached(&cache_name(domain), tern_core::now_unix())
            .await
        {
            Ok(json) => json?,
            Err(e) => {
                tracing::warn!(domain, error = %e, "mta-sts: cannot read the cached policy");
                return None;
            }
        };
        let c: Cached = serde_json::from_str(&json).ok()?;
        let policy = c.policy.clone();
        self.remember(domain, c);
        Some(policy)
    }

    fn remember(&self, domain: &str, c: Cached) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(domain.to_string(), c);
    }

    /// The policy that applies to `domain`, if any (§5.1). An error means
    /// the domain announces a policy that could not be fetched and none is
    /// cached: delivery goes on without one (§5.1), and TLS reporting
    /// counts the failure.
    pub async fn policy(&self, domain: &str) -> Result<Option<Policy>, String> {
        let domain = domain.to_ascii_lowercase();
        self.import_legacy().await;
        // This process's copy, else the store's (read at most once here).
        let held = self.held(&domain);
        let loaded = held.is_none();
        let cached = match held {
            Some(p) => Some(p),
            None => self.load(&domain).await,
        };
        let txt = self.resolver.txt(&format!("_mta-sts.{domain}")).await;
        let id = match txt {
            Ok(records) => {
                let ids: Vec<String> = records.iter().filter_map(|r| parse_txt(r)).collect();
                // §3.1: more than one STS record is as good as none.
                if ids.len() == 1 {
                    ids.into_iter().next()
                } else {
                    None
                }
            }
            Err(e) => {
                tracing::info!(domain, error = %e, "mta-sts: TXT lookup failed; using the cache");
                return Ok(cached);
            }
        };
        let Some(id) = id else {
            return Ok(cached);
        };
        if let Some(p) = &cached
            && p.id == id
        {
            return Ok(cached);
        }
        // A new id: another node may have fetched its policy already.
        if !loaded
            && let Some(p) = self.load(&domain).await
            && p.id == id
        {
            return Ok(Some(p));
        }
        match self.fetch(&domain, &id).await {
            Ok(p) => {
                tracing::info!(domain, id, mode = ?p.mode, mx = ?p.mx, max_age = p.max_age, "mta-sts: policy fetched");
                let c = Cached {
                    policy: p.clone(),
                    until: tern_core::now_unix() + p.max_age as i64,
                };
                if let Some(store) = &self.store {
                    let json = serde_json::to_string(&c).unwrap_or_default();
                    if let Err(e) = store.cache(&cache_name(&domain), &json, c.until).await {
                        tracing::warn!(domain, error = %e, "mta-sts: cannot keep the policy in the store");
                    }
                }
                self.remember(&domain, c);
                Ok(Some(p))
            }
            Err(e) => {
                tracing::warn!(domain, id, error = %e, "mta-sts: policy fetch failed");
                match cached {
                    Some(p) => Ok(Some(p)),
                    None => Err(e),
                }
            }
        }
    }

    async fn fetch(&self, domain: &str, id: &str) -> Result<Policy, String> {
        let host = format!("mta-sts.{domain}");
        let ips = self.resolver.ips(&host).await.map_err(|e| e.to_string())?;
        let ip = ips.first().ok_or(format!("{host} has no address"))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(self.tls.clone())
            .resolve(&host, SocketAddr::new(*ip, self.port))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .http1_only()
            .build()
            .map_err(|e| e.to_string())?;
        let url = if self.port == 443 {
            format!("https://{host}/.well-known/mta-sts.txt")
        } else {
            format!("https://{host}:{}/.well-known/mta-sts.txt", self.port)
        };
        let mut resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(format!("{url}: HTTP {}", resp.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_POLICY {
                return Err(format!("{url}: policy larger than {MAX_POLICY} bytes"));
            }
        }
        parse_policy(id, &String::from_utf8_lossy(&body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_records() {
        assert_eq!(
            parse_txt("v=STSv1; id=20160831085700Z;").as_deref(),
            Some("20160831085700Z")
        );
        assert_eq!(parse_txt("v=STSv1;id=abc").as_deref(), Some("abc"));
        assert_eq!(parse_txt("v=spf1 -all"), None);
        assert_eq!(parse_txt("v=STSv1; id=bad-id"), None);
        assert_eq!(parse_txt("v=STSv1;"), None);
    }

    #[test]
    fn policies_and_matching() {
        let p = parse_policy(
            "1",
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert!(p.matches("mail.example.com") && p.matches("MAIL.example.com."));
        assert!(p.matches("mx1.example.net"));
        assert!(!p.matches("a.b.example.net"), "one label only");
        assert!(!p.matches("example.net") && !p.matches("evil.example.com"));
        assert!(parse_policy("1", "version: STSv1\nmode: enforce\nmax_age: 1\n").is_err());
        assert!(parse_policy("1", "mode: enforce\nmx: a\nmax_age: 1\n").is_err());
        assert!(parse_policy("1", "version: STSv1\nmode: sometimes\nmx: a\nmax_age: 1\n").is_err());
        let long = parse_policy(
            "1",
            "version: STSv1\nmode: testing\nmx: a\nmax_age: 99999999999\n",
        )
        .unwrap();
        assert_eq!(long.max_age, MAX_AGE_LIMIT);
    }
}
