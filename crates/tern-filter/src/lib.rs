//! Tern's spam filter: a score made of explainable parts.
//!
//! - fixed rules ([`rules`]): GTUBE, authentication failures, missing or
//!   malformed headers, executable and double-extension attachments…
//! - DNS blocklists of the client address, queried through `tern-dns`;
//! - a Bayesian classifier ([`bayes`]) per account and global, which learns
//!   from users (moves into and out of Junk over IMAP; `tern spam train`).
//!
//! Each part has a name and a score; the sum decides: at `junk_score` the
//! message goes to Junk, at `reject_score` it is refused before `250` (so
//! no bounce is ever sent for it). The parts appear in `X-Spam-Status`.

pub mod bayes;
pub mod greylist;
pub mod rules;
pub mod tokens;

use std::net::IpAddr;
use std::sync::Arc;
use tern_core::config::FilterConfig;
use tern_dns::Resolver;
use tern_store::{AccountId, SharedStore};

/// The verdict on one message.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Sum of the hits.
    pub score: f64,
    /// Rule names and their scores.
    pub hits: Vec<(String, f64)>,
    /// The classifier's spam probability, when it had enough training.
    pub bayes: Option<f64>,
}

/// What to do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Deliver to the inbox.
    Inbox,
    /// Deliver to Junk.
    Junk,
    /// Refuse before `250`.
    Reject,
}

impl Report {
    /// The `X-Spam-Status` header (CRLF-terminated).
    pub fn header(&self, config: &FilterConfig) -> String {
        let tests: Vec<String> = self
            .hits
            .iter()
            .map(|(n, s)| format!("{n}={s:.1}"))
            .collect();
        format!(
            "X-Spam-Status: {}, score={:.1} required={:.1} tests={}\r\n",
            if self.score >= config.junk_score {
                "Yes"
            } else {
                "No"
            },
            self.score,
            config.junk_score,
            if tests.is_empty() {
                "none".to_string()
            } else {
                tests.join(",")
            }
        )
    }

    /// The action the score calls for.
    pub fn action(&self, config: &FilterConfig) -> Action {
        if self.score >= config.reject_score {
            Action::Reject
        } else if self.score >= config.junk_score {
            Action::Junk
        } else {
            Action::Inbox
        }
    }

    /// `BAYES_99=5.0,SPF_FAIL=2.0` for logs and replies.
    pub fn tests(&self) -> String {
        self.hits
            .iter()
            .map(|(n, s)| format!("{n}={s:.1}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Facts about the delivery the rules use.
pub struct Facts<'a> {
    /// The client address.
    pub ip: IpAddr,
    /// HELO/EHLO name.
    pub helo: &'a str,
    /// Authentication summary (`spf=pass dkim=none dmarc=fail …`).
    pub auth: &'a str,
    /// The client's forward-confirmed reverse DNS name, if it has one.
    pub rdns: Option<&'a str>,
    /// The recipient account whose own training also counts (one recipient).
    pub account: Option<AccountId>,
}

/// The filter, shared by all sessions.
pub struct Filter {
    store: SharedStore,
    resolver: Resolver,
    /// Thresholds and lists.
    pub config: FilterConfig,
    greylist: Option<greylist::Greylist>,
    /// Per-domain and per-account thresholds, reloaded every
    /// [`POLICY_TTL`] so `tern spam policy` reaches a running server.
    policies: std::sync::Mutex<Option<(std::time::Instant, Arc<Policies>)>>,
}

type Policies = std::collections::HashMap<String, (Option<f64>, Option<f64>)>;

/// How long loaded thresholds are used before they are read again.
const POLICY_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The thresholds that apply to one recipient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Junk from this score.
    pub junk: f64,
    /// Refused from this score.
    pub reject: f64,
}

impl Thresholds {
    /// What a message with `score` gets.
    pub fn action(&self, score: f64) -> Action {
        if score >= self.reject {
            Action::Reject
        } else if score >= self.junk {
            Action::Junk
        } else {
            Action::Inbox
        }
    }
}

/// Bayes probability bands and their scores (SpamAssassin's names).
const BAYES_BANDS: &[(f64, f64, &str, f64)] = &[
    (0.99, 1.01, "BAYES_99", 5.0),
    (0.90, 0.99, "BAYES_90", 3.5),
    (0.70, 0.90, "BAYES_70", 1.5),
    (0.10, 0.30, "BAYES_10", -1.0),
    (0.00, 0.10, "BAYES_00", -2.5),
];

impl Filter {
    /// A filter over `store`'s training data.
    pub fn new(store: SharedStore, resolver: Resolver, config: FilterConfig) -> Self {
        let secs = |v: &str| {
            tern_core::config::parse_duration(v)
                .map(|d| d.as_secs())
                .unwrap_or(300)
        };
        let greylist = config.greylist.then(|| {
            greylist::Greylist::new(
                secs(&config.greylist_delay),
                secs(&config.greylist_retry_window),
                secs(&config.greylist_pass_lifetime),
            )
        });
        Self {
            store,
            resolver,
            config,
            greylist,
            policies: std::sync::Mutex::new(None),
        }
    }

    /// The thresholds for `address` (an account's address): its own, else
    /// its domain's, else `[filter]`'s — each threshold on its own.
    pub async fn thresholds(&self, address: &str) -> Thresholds {
        let cached = self
            .policies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < POLICY_TTL)
            .map(|(_, p)| p.clone());
        let policies = match cached {
            Some(p) => p,
            None => {
                let loaded: Policies = match self.store.filter_policies().await {
                    Ok(rows) => rows
                        .into_iter()
                        .map(|p| {
                            (
                                p.target.to_ascii_lowercase(),
                                (p.junk_score, p.reject_score),
                            )
                        })
                        .collect(),
                    Err(e) => {
                        tracing::warn!(error = %e, "filter: cannot load thresholds");
                        Policies::new()
                    }
                };
                let p = Arc::new(loaded);
                *self.policies.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((std::time::Instant::now(), p.clone()));
                p
            }
        };
        let address = address.to_ascii_lowercase();
        let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let own = policies.get(&address).copied().unwrap_or_default();
        let dom = policies.get(domain).copied().unwrap_or_default();
        Thresholds {
            junk: own.0.or(dom.0).unwrap_or(self.config.junk_score),
            reject: own.1.or(dom.1).unwrap_or(self.config.reject_score),
        }
    }

    /// Loads the stored greylist (at start).
    pub async fn restore_greylist(&self) {
        if let Some(g) = &self.greylist {
            match self.store.load_greylist().await {
                Ok(rows) => g.restore(rows),
                Err(e) => tracing::warn!(error = %e, "greylist: cannot load the stored triplets"),
            }
        }
    }

    /// Writes greylist changes to the store (nothing when nothing changed).
    pub async fn save_greylist(&self) {
        if let Some(g) = &self.greylist {
            let (rows, stale) = g.take_changes(tern_core::now_unix());
            if rows.is_empty() {
                return;
            }
            if let Err(e) = self.store.save_greylist(rows, stale).await {
                tracing::warn!(error = %e, "greylist: cannot store the triplets");
            }
        }
    }

    /// Whether greylisting is on.
    pub fn greylisting(&self) -> bool {
        self.greylist.is_some()
    }

    /// Writes greylist changes to the store every `every`, forever (a
    /// restart forgets at most that much).
    pub async fn greylist_loop(self: Arc<Self>, every: std::time::Duration) {
        loop {
            tokio::time::sleep(every).await;
            self.save_greylist().await;
        }
    }

    /// Greylisting of one recipient (RFC 6647): `Some(seconds)` to defer.
    /// `network` is the client's rate-limit network (/24 or /64); 127.0.0.1,
    /// ::1 and the pass list are never greylisted.
    pub fn greylisted(
        &self,
        ip: IpAddr,
        network: IpAddr,
        sender: &str,
        rcpt: &str,
        now: i64,
    ) -> Option<u64> {
        let g = self.greylist.as_ref()?;
        if tern_core::is_local_host(ip)
            || self
                .config
                .greylist_pass_list
                .iter()
                .any(|n| n.contains(ip))
        {
            return None;
        }
        match g.check(network, sender, rcpt, now) {
            greylist::Greylisted::Pass => None,
            greylist::Greylisted::Defer(s) => Some(s),
        }
    }

    /// Scores a message.
    pub async fn check(&self, raw: &[u8], facts: &Facts<'_>) -> Report {
        // The body matters to the rules only in a multipart message (its
        // attachments) and to the classifier once it has learnt enough:
        // otherwise the header block is all that is parsed.
        let totals = self.totals(facts.account).await;
        let min = self.config.bayes_min_trained;
        let trained = totals.is_some_and(|(s, h)| s >= min && h >= min);
        let parser = tokens::parser();
        let headers = parser.parse_headers(raw);
        let multipart = headers
            .as_ref()
            .and_then(|m| mail_parser::MimeHeaders::content_type(m))
            .is_some_and(|ct| ct.c_type.eq_ignore_ascii_case("multipart"));
        let msg = if trained || multipart {
            parser.parse(raw)
        } else {
            headers
        };
        let mut hits: Vec<(String, f64)> = rules::check(
            raw,
            msg.as_ref(),
            &rules::Context {
                helo: facts.helo,
                auth: facts.auth,
                rdns: facts.rdns,
            },
        )
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        for zone in &self.config.dnsbl {
            if self.listed(facts.ip, zone).await {
                hits.push((format!("DNSBL({zone})"), self.config.dnsbl_score));
            }
        }
        let bayes = match totals {
            Some(t) if trained => self.bayes(msg.as_ref(), facts.account, t).await,
            _ => None,
        };
        if let Some(p) = bayes
            && let Some((_, _, name, score)) = BAYES_BANDS
                .iter()
                .find(|(lo, hi, _, _)| p >= *lo && p < *hi)
        {
            hits.push((name.to_string(), *score));
        }
        Report {
            score: hits.iter().map(|h| h.1).sum(),
            hits,
            bayes,
        }
    }

    /// The classifier's probability, or `None` while it knows too little.
    /// `(spam, ham)` messages learnt globally plus by `account`.
    async fn totals(&self, account: Option<AccountId>) -> Option<(u32, u32)> {
        let (mut ts, mut th) = (0u32, 0u32);
        for scope in std::iter::once(0).chain(account) {
            let (s, h) = self.store.bayes_totals(scope).await.ok()?;
            ts += s;
            th += h;
        }
        Some((ts, th))
    }

    /// The classifier's spam probability, given the learnt totals.
    async fn bayes(
        &self,
        msg: Option<&mail_parser::Message<'_>>,
        account: Option<AccountId>,
        (ts, th): (u32, u32),
    ) -> Option<f64> {
        let tokens = tokens::tokens_of(msg?);
        let mut counts = std::collections::HashMap::<i64, bayes::Counts>::new();
        for scope in std::iter::once(0).chain(account) {
            for (t, (s, h)) in self.store.bayes_counts(scope, &tokens).await.ok()? {
                let c = counts.entry(t).or_default();
                c.spam += s;
                c.ham += h;
            }
        }
        let v: Vec<bayes::Counts> = counts.into_values().collect();
        Some(bayes::spam_probability(&v, ts, th))
    }

    /// Learns a message as spam or ham, globally and for `account`.
    pub async fn learn(
        &self,
        raw: &[u8],
        account: Option<AccountId>,
        spam: bool,
    ) -> Result<(), tern_store::StoreError> {
        let tokens = tokens::tokens(raw);
        if tokens.is_empty() {
            return Ok(());
        }
        let mut scopes = vec![0];
        scopes.extend(account);
        self.store.bayes_learn(&scopes, &tokens, spam).await
    }

    /// Learns from the users' pending verdicts (moves into or out of
    /// Junk); returns how many were learnt.
    pub async fn train_pending(&self) -> Result<usize, tern_store::StoreError> {
        let pending = self.store.training_pending(200).await?;
        let mut done = Vec::with_capacity(pending.len());
        for r in &pending {
            match self.store.read_blob(r.blob).await {
                Ok(raw) => self.learn(&raw, Some(r.account), r.is_spam).await?,
                Err(e) => {
                    tracing::debug!(blob = r.blob, error = %e, "filter: message gone before training")
                }
            }
            done.push(r.id);
        }
        self.store.training_done(&done).await?;
        Ok(done.len())
    }

    /// Runs [`Filter::train_pending`] every `every`, forever.
    pub async fn training_loop(self: Arc<Self>, every: std::time::Duration) {
        loop {
            match self.train_pending().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(learnt = n, "filter: learnt from users' Junk moves"),
                Err(e) => tracing::warn!(error = %e, "filter: training failed"),
            }
            tokio::time::sleep(every).await;
        }
    }

    async fn listed(&self, ip: IpAddr, zone: &str) -> bool {
        let IpAddr::V4(v4) = ip else {
            return false;
        };
        let o = v4.octets();
        let name = format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0]);
        match self.resolver.ips(&name).await {
            // 127.0.0.0/24 answers mean "listed"; 127.255.255.x are the
            // lists' error codes (query refused, rate limited).
            Ok(ips) => ips.iter().any(|a| match a {
                IpAddr::V4(a) => a.octets()[0] == 127 && a.octets()[1] == 0,
                _ => false,
            }),
            Err(_) => false,
        }
    }
}
