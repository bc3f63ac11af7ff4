//! Tern's outbound queue: takes due recipients from the store, delivers
//! them to their domains' MX hosts (or transport rules) over SMTP, and
//! records each recipient's outcome: delivered, deferred with the retry
//! schedule, or returned to the sender with a DSN (RFC 3464).
//!
//! Scheduling: recipients are claimed from the store in batches (a lease,
//! so nothing is sent twice) and grouped per destination domain. Each domain
//! gets up to `max_connections_per_domain` workers; a worker keeps its
//! connection open for the next message of the same domain (up to
//! `messages_per_connection`), and all recipients of one message at one
//! domain go in one transaction. A domain that is down defers only its own
//! mail. Total connections are bounded by `max_connections`.

pub mod client;
pub mod dane;
pub mod dsn;
pub mod intake;
pub mod mta_sts;
pub mod route;
pub mod signers;
pub mod tlsrpt;
pub mod waiting;

use client::{ClientError, Envelope, Reply, SmtpClient, Timeouts};
use intake::{Intake, MessageParams, RcptParams};
use route::{Hop, RouteError};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern_core::config::{QueueConfig, TlsPolicy, parse_duration};
use tern_core::now_unix;
use tern_dns::Resolver;
use tern_events::{BounceType, Event, EventType};
use tern_store::{
    Completion, NewMessage, QueuedRcpt, RcptOutcome, Recipient, SharedStore, Suppression,
};
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsConnector;

/// Recipients claimed per store round trip.
const CLAIM_BATCH: usize = 500;
/// Most recipients held in memory (claimed or handed over, not yet finished).
const MAX_IN_FLIGHT: usize = 5000;
/// Seconds a claim holds a recipient: longer than any single attempt.
const LEASE_SECS: i64 = tern_store::LEASE_SECS;
/// Longest sleep between looks at the queue: `tern queue retry`, run in
/// another process, takes effect within this (one indexed MIN() per look).
const MAX_IDLE: Duration = Duration::from_millis(250);

/// Setup failures.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// A configuration value is invalid.
    #[error("queue configuration: {0}")]
    Config(String),
}

/// All recipients of one message at one domain: one SMTP transaction.
struct Job {
    rcpts: Vec<QueuedRcpt>,
    /// The message, when it was handed over with it (else read from the store).
    body: Option<Arc<Vec<u8>>>,
}

#[derive(Default)]
struct DomainQueue {
    jobs: VecDeque<Job>,
    workers: usize,
}

/// The delivery engine.
pub struct QueueService {
    store: SharedStore,
    resolver: Resolver,
    config: QueueConfig,
    hostname: String,
    helo: String,
    retry: Vec<Duration>,
    delay_notice: Option<Duration>,
    opportunistic: TlsConnector,
    verified: Option<TlsConnector>,
    mta_sts: Option<mta_sts::MtaSts>,
    domains: Mutex<HashMap<String, DomainQueue>>,
    connections: Arc<Semaphore>,
    in_flight: AtomicUsize,
    capacity: Notify,
    domain_rates: Option<governor::DefaultKeyedRateLimiter<String>>,
    /// Signalled when a worker deferred a recipient: its retry may be due
    /// before the scheduler would look again.
    rescheduled: Notify,
    next_source: AtomicUsize,
    /// When DNSSEC was last probed and whether it worked (DANE needs it).
    dnssec_probe: std::sync::Mutex<Option<(Instant, bool)>>,
    /// TLS outcomes per destination, for TLS reports (RFC 8460).
    tlsrpt: Arc<tlsrpt::TlsRptCounter>,
    /// The one way into the queue (DSNs go through it too).
    intake: Arc<Intake>,
}

/// The result for one recipient of an attempt.
#[derive(Debug, Clone)]
enum Attempt {
    Delivered {
        host: String,
        reply: Reply,
        tls: Option<&'static str>,
    },
    Temporary {
        host: Option<String>,
        error: String,
    },
    Permanent {
        host: Option<String>,
        status: String,
        error: String,
    },
}

/// Why a hop could not be used; `tls` says which TLS failure (as the
/// destination's policy demanded TLS) TLS reports count it as.
struct HopError {
    message: String,
    tls: Option<tlsrpt::ResultType>,
}

impl HopError {
    fn tls(message: String, result: tlsrpt::ResultType) -> Self {
        Self {
            message,
            tls: Some(result),
        }
    }
}

impl From<String> for HopError {
    fn from(message: String) -> Self {
        Self { message, tls: None }
    }
}

impl From<ClientError> for HopError {
    fn from(e: ClientError) -> Self {
        e.to_string().into()
    }
}

impl QueueService {
    /// A service delivering from `store`; `hostname` is this server's name
    /// (EHLO default, DSN `Reporting-MTA`); `extra_roots` are trusted for
    /// verified TLS besides the system's trust store.
    pub fn new(
        store: SharedStore,
        resolver: Resolver,
        config: QueueConfig,
        hostname: String,
        extra_roots: &[rustls_pki_types::CertificateDer<'static>],
        state_dir: Option<&std::path::Path>,
    ) -> Result<Arc<Self>, QueueError> {
        let retry = config.retry_schedule().map_err(QueueError::Config)?;
        let delay = parse_duration(&config.delay_notice).map_err(QueueError::Config)?;
        let helo = if config.helo_name.is_empty() {
            hostname.clone()
        } else {
            config.helo_name.clone()
        };
        let verified_cfg = match client::verified_tls_config(extra_roots) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "queue: no trust store; tls = \"required\" hops are deferred and MTA-STS is off");
                None
            }
        };
        let verified = verified_cfg
            .clone()
            .map(|c| TlsConnector::from(Arc::new(c)));
        let mta_sts = verified_cfg
            .filter(|_| config.mta_sts)
            .map(|c| mta_sts::MtaSts::new(resolver.clone(), c, 443))
            .map(|m| {
                m.with_store(
                    store.clone(),
                    state_dir.map(|dir| dir.join("mta-sts-cache.json")),
                )
            });
        let report_expire = parse_duration(&config.report_expire).map_err(QueueError::Config)?;
        let expire = parse_duration(&config.expire).map_err(QueueError::Config)?;
        let intake = Arc::new(Intake::new(
            store.clone(),
            intake::Expiry {
                default: expire,
                forward: expire,
                report: report_expire,
            },
        ));
        let svc = Arc::new(Self {
            intake,
            store,
            resolver,
            hostname,
            helo,
            retry,
            delay_notice: (!delay.is_zero()).then_some(delay),
            opportunistic: client::opportunistic_tls(),
            verified,
            mta_sts,
            domains: Mutex::new(HashMap::new()),
            connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
            in_flight: AtomicUsize::new(0),
            capacity: Notify::new(),
            domain_rates: std::num::NonZeroU32::new(config.max_messages_per_domain_per_minute)
                .map(|n| governor::RateLimiter::keyed(governor::Quota::per_minute(n))),
            rescheduled: Notify::new(),
            next_source: AtomicUsize::new(0),
            dnssec_probe: std::sync::Mutex::new(None),
            tlsrpt: Arc::new(tlsrpt::TlsRptCounter::default()),
            config,
        });
        svc.intake.attach(&svc);
        Ok(svc)
    }

    /// The intake every sender hands messages to.
    pub fn intake(&self) -> Arc<Intake> {
        self.intake.clone()
    }

    /// Whether freshly queued recipients would be taken now (else they are
    /// claimed from the store later).
    fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) < MAX_IN_FLIGHT
    }

    /// Runs forever: claims due recipients and hands them to workers.
    pub async fn run(self: Arc<Self>) {
        if let Err(e) = self.store.release_leases().await {
            tracing::error!(error = %e, "queue: cannot release leases");
        }
        let wake = self.store.queue_wakeup();
        loop {
            let in_flight = self.in_flight.load(Ordering::Acquire);
            // Claim in whole batches only: a claim is a write transaction,
            // and one per finished recipient would double the writes.
            let room = match MAX_IN_FLIGHT.saturating_sub(in_flight) {
                r if r >= CLAIM_BATCH || in_flight == 0 => r.min(CLAIM_BATCH),
                _ => 0,
            };
            if room > 0 {
                let now = now_unix();
                match self.store.claim_due(now, room, now + LEASE_SECS).await {
                    Ok(rcpts) => {
                        let n = rcpts.len();
                        if n > 0 {
                            self.dispatch(rcpts, None);
                        }
                        if n == room {
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "queue: cannot read the queue");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        continue;
                    }
                }
            }
            let wait = if room == 0 {
                MAX_IDLE
            } else {
                match self.store.next_due().await {
                    Ok(Some(t)) => Duration::from_secs(
                        (t - now_unix()).clamp(0, MAX_IDLE.as_secs() as i64) as u64,
                    )
                    .max(Duration::from_millis(200)),
                    _ => MAX_IDLE,
                }
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = self.capacity.notified(), if room == 0 => {}
                _ = self.rescheduled.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn dispatch(self: &Arc<Self>, rcpts: Vec<QueuedRcpt>, body: Option<Arc<Vec<u8>>>) {
        if rcpts.is_empty() {
            return;
        }
        self.in_flight.fetch_add(rcpts.len(), Ordering::AcqRel);
        let mut jobs: Vec<(String, Job)> = Vec::new();
        let mut index: HashMap<(i64, String), usize> = HashMap::new();
        for r in rcpts {
            let key = (r.message_id, r.domain.clone());
            match index.get(&key) {
                Some(&i) => jobs[i].1.rcpts.push(r),
                None => {
                    index.insert(key, jobs.len());
                    jobs.push((
                        r.domain.clone(),
                        Job {
                            rcpts: vec![r],
                            body: body.clone(),
                        },
                    ));
                }
            }
        }
        let mut to_start = Vec::new();
        {
            let mut domains = self.domains.lock().unwrap_or_else(|e| e.into_inner());
            for (domain, job) in jobs {
                let dq = domains.entry(domain.clone()).or_default();
                dq.jobs.push_back(job);
                if dq.workers < self.config.max_connections_per_domain.max(1)
                    && dq.workers < dq.jobs.len()
                {
                    dq.workers += 1;
                    to_start.push(domain);
                }
            }
        }
        for domain in to_start {
            tokio::spawn(self.clone().worker(domain));
        }
    }

    fn next_job(&self, domain: &str) -> Option<Job> {
        let mut domains = self.domains.lock().unwrap_or_else(|e| e.into_inner());
        let dq = domains.get_mut(domain)?;
        match dq.jobs.pop_front() {
            Some(j) => Some(j),
            None => {
                dq.workers -= 1;
                if dq.workers == 0 {
                    domains.remove(domain);
                }
                None
            }
        }
    }

    /// Delivers jobs of one domain until there are none left.
    async fn worker(self: Arc<Self>, domain: String) {
        let permit = self.connections.clone().acquire_owned().await;
        let mut conn: Option<(SmtpClient, Hop)> = None;
        let mut sent = 0usize;
        // Once every hop failed, the rest of this round is deferred at once.
        let mut unreachable: Option<Attempt> = None;
        while let Some(job) = self.next_job(&domain) {
            // The local address the attempt left from, for its events.
            let mut local = None;
            if let Some(rates) = &self.domain_rates {
                rates.until_key_ready(&domain).await;
            }
            let results = match &unreachable {
                Some(a) => vec![a.clone(); job.rcpts.len()],
                None => {
                    let r = self.attempt(&domain, &job, &mut conn).await;
                    local = conn.as_ref().and_then(|(c, _)| c.local).map(|a| a.ip());
                    if conn.is_none()
                        && r.iter().all(|a| {
                            matches!(
                                a,
                                Attempt::Temporary { host: None, .. }
                                    | Attempt::Permanent { host: None, .. }
                            )
                        })
                    {
                        unreachable = r.first().cloned();
                    }
                    sent += 1;
                    if sent >= self.config.messages_per_connection.max(1)
                        && let Some((c, _)) = conn.take()
                    {
                        c.quit().await;
                        sent = 0;
                    }
                    r
                }
            };
            // Recording the outcome waits for a commit (an fsync shared
            // with other writes); the connection moves on to the next
            // message meanwhile. The lease keeps the recipients out of
            // other workers' hands until the outcome is written.
            let svc = self.clone();
            tokio::spawn(async move {
                let n = job.rcpts.len();
                svc.finish(job, results, local).await;
                svc.in_flight.fetch_sub(n, Ordering::AcqRel);
                svc.capacity.notify_one();
            });
        }
        if let Some((c, _)) = conn {
            c.quit().await;
        }
        drop(permit);
    }

    /// One transaction for a job, opening a connection if needed.
    async fn attempt(
        &self,
        domain: &str,
        job: &Job,
        conn: &mut Option<(SmtpClient, Hop)>,
    ) -> Vec<Attempt> {
        let first = &job.rcpts[0];
        let all = |a: Attempt| vec![a; job.rcpts.len()];
        let stored = match &job.body {
            Some(b) => Ok(b.clone()),
            None => self.store.read_blob(first.blob).await.map(Arc::new),
        };
        let message = match stored {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(queue_id = %first.queue_id, error = %e, "queue: cannot read the message");
                return all(Attempt::Temporary {
                    host: None,
                    error: format!("local error reading the message: {e}"),
                });
            }
        };
        let params = MessageParams::parse(&first.message_params);
        let smtputf8 = params.smtputf8;
        let eightbit = params.body.as_deref() == Some("8bitmime");
        if conn.is_none() {
            match self.open(domain).await {
                Ok(c) => *conn = Some(c),
                Err(a) => return all(a),
            }
        }
        let Some((client, hop)) = conn.as_mut() else {
            return all(Attempt::Temporary {
                host: None,
                error: "no connection".into(),
            });
        };
        let host = format!("{}[{}]", hop.host, hop.addr.ip());
        let tls = client.tls_version;
        if smtputf8 && !client.caps.smtputf8 {
            // RFC 6531 §3.4: no downgrade of non-ASCII addresses.
            return all(Attempt::Permanent {
                host: Some(host),
                status: "5.6.7".into(),
                error: "the receiving server does not support SMTPUTF8".into(),
            });
        }
        if !client.caps.eightbitmime && (eightbit || message.iter().any(|b| *b >= 0x80)) {
            // RFC 6152 §3: 8-bit content to a 7-bit server is converted or
            // returned. Converting would break the DKIM signatures the
            // message carries, so it is returned.
            return all(Attempt::Permanent {
                host: Some(host),
                status: "5.6.3".into(),
                error: "the message has 8-bit content and the receiving server does not support 8BITMIME".into(),
            });
        }
        if client.caps.size > 0 && message.len() as u64 > client.caps.size {
            return all(Attempt::Permanent {
                host: Some(host),
                status: "5.3.4".into(),
                error: format!(
                    "message of {} bytes exceeds the receiving server's limit of {}",
                    message.len(),
                    client.caps.size
                ),
            });
        }
        // RFC 3461 §5.2: pass the submitter's DSN requests on.
        let mut dsn_mail = String::new();
        match params.ret {
            Some(intake::Ret::Full) => dsn_mail.push_str(" RET=FULL"),
            Some(intake::Ret::Hdrs) => dsn_mail.push_str(" RET=HDRS"),
            None => {}
        }
        if let Some(envid) = &params.envid {
            dsn_mail.push_str(&format!(" ENVID={}", client::xtext(envid)));
        }
        let dsn_rcpts: Vec<String> = job
            .rcpts
            .iter()
            .map(|r| {
                let p = RcptParams::parse(&r.params);
                let mut out = String::new();
                if !p.notify.is_empty() {
                    out.push_str(&format!(" NOTIFY={}", p.notify.join(",")));
                }
                if let Some(o) = &p.orcpt {
                    let o = if o.contains(';') {
                        o.to_string()
                    } else {
                        format!("rfc822;{o}")
                    };
                    out.push_str(&format!(" ORCPT={}", client::xtext(&o)));
                }
                out
            })
            .collect();
        // With per-recipient return paths (VERP) each recipient is its own
        // transaction on the connection; otherwise one for all.
        let verp = self
            .intake
            .feedback()
            .filter(|_| params.verp)
            .zip(first.mail_from.rsplit_once('@').map(|(_, d)| d));
        let groups: Vec<std::ops::Range<usize>> = match verp {
            Some(_) => (0..job.rcpts.len()).map(|i| i..i + 1).collect(),
            None => std::iter::once(0..job.rcpts.len()).collect(),
        };
        let now = now_unix();
        let mut results: Vec<Attempt> = Vec::with_capacity(job.rcpts.len());
        for group in groups {
            let mail_from = match verp {
                Some((fb, domain)) => fb.keys.return_path(
                    &first.queue_id,
                    &job.rcpts[group.start].address,
                    domain,
                    now,
                ),
                None => first.mail_from.clone(),
            };
            let rcpts: Vec<&str> = job.rcpts[group.clone()]
                .iter()
                .map(|r| r.address.as_str())
                .collect();
            let env = Envelope {
                dsn_mail: &dsn_mail,
                dsn_rcpts: &dsn_rcpts[group.clone()],
                mail_from: &mail_from,
                rcpts: &rcpts,
                eightbit,
                smtputf8,
                message: &message,
            };
            match client.send(&env).await {
                Ok(t) => {
                    for i in 0..group.len() {
                        let reply = match (&t.mail, t.rcpts.get(i), &t.data) {
                            (Some(m), _, _) => m.clone(),
                            (None, Some(r), _) if !r.is_positive() => r.clone(),
                            (None, Some(_), Some(d)) => d.clone(),
                            _ => {
                                results.push(Attempt::Temporary {
                                    host: Some(host.clone()),
                                    error: "no reply to the message data".into(),
                                });
                                continue;
                            }
                        };
                        results.push(outcome(&host, reply, tls));
                    }
                }
                Err(e) => {
                    tracing::info!(host, error = %e, "queue: connection failed during a transaction");
                    if let Some((c, _)) = conn.take() {
                        drop(c);
                    }
                    while results.len() < job.rcpts.len() {
                        results.push(Attempt::Temporary {
                            host: Some(host.clone()),
                            error: e.to_string(),
                        });
                    }
                    break;
                }
            }
        }
        results
    }

    /// Connects to the first hop that works: greeting, EHLO, STARTTLS as the
    /// policy says, AUTH for transport rules.
    async fn open(&self, domain: &str) -> Result<(SmtpClient, Hop), Attempt> {
        let by_rule = self
            .config
            .transport
            .iter()
            .any(|t| t.domain.eq_ignore_ascii_case(domain) || t.domain == "*");
        let now = now_unix();
        let policy = match &self.mta_sts {
            Some(m) if !by_rule => match m.policy(domain).await {
                Ok(p) => p,
                Err(e) => {
                    let details = tlsrpt::PolicyDetails::new(tlsrpt::PolicyType::Sts, domain);
                    self.tlsrpt.failure(
                        &details,
                        tlsrpt::ResultType::StsPolicyFetchError,
                        None,
                        &e,
                        now,
                    );
                    None
                }
            },
            _ => None,
        };
        let mut hops = route::hops(
            &self.resolver,
            domain,
            &self.config.transport,
            self.config.mx_port,
            self.config.tls,
        )
        .await
        .map_err(|e| match e {
            RouteError::Temporary(m) => Attempt::Temporary {
                host: None,
                error: m,
            },
            RouteError::Permanent(status, m) => Attempt::Permanent {
                host: None,
                status: status.into(),
                error: m,
            },
        })?;
        if let Some(p) = &policy {
            match p.mode {
                mta_sts::Mode::Enforce => {
                    // RFC 8461 §4: only hosts the policy names, only over
                    // TLS with a certificate valid for the MX name.
                    hops.retain(|h| p.matches(&h.host));
                    for h in &mut hops {
                        h.tls = TlsPolicy::Required;
                    }
                    if hops.is_empty() {
                        return Err(Attempt::Temporary {
                            host: None,
                            error: format!(
                                "MTA-STS: the policy of {domain} (enforce) allows none of its MX hosts"
                            ),
                        });
                    }
                }
                mta_sts::Mode::Testing => {
                    for h in hops.iter().filter(|h| !p.matches(&h.host)) {
                        tracing::info!(domain, host = %h.host, "mta-sts: (testing) MX not in the policy");
                    }
                }
                mta_sts::Mode::None => {}
            }
        }
        if !by_rule && self.config.dane && self.dnssec_works().await {
            route::apply_dane(&self.resolver, domain, &mut hops, self.config.mx_port)
                .await
                .map_err(|e| {
                    // Every DANE failure is one of DNSSEC: a bogus or failed lookup.
                    let (RouteError::Temporary(m) | RouteError::Permanent(_, m)) = e;
                    let details = tlsrpt::PolicyDetails::new(tlsrpt::PolicyType::Tlsa, domain);
                    self.tlsrpt
                        .failure(&details, tlsrpt::ResultType::DnssecInvalid, None, &m, now);
                    Attempt::Temporary {
                        host: None,
                        error: m,
                    }
                })?;
        }
        let sts = policy.as_ref().map(|p| tlsrpt::sts_policy(domain, p));
        let mut last = String::from("no host to try");
        for hop in hops {
            let details = match (&hop.dane, &sts) {
                (Some(tlsa), _) => tlsrpt::tlsa_policy(domain, &hop.host, tlsa),
                (None, Some(s)) => s.clone(),
                (None, None) => tlsrpt::no_policy(domain),
            };
            let mx = Some((hop.host.as_str(), hop.addr.ip()));
            match self.open_hop(&hop, domain).await {
                Ok(c) => {
                    if by_rule {
                    } else if c.tls {
                        self.tlsrpt.success(&details, now);
                    } else {
                        self.tlsrpt.failure(
                            &details,
                            tlsrpt::ResultType::StartTlsNotSupported,
                            mx,
                            "delivered without TLS",
                            now,
                        );
                    }
                    return Ok((c, hop));
                }
                Err(e) => {
                    if let Some(result) = e.tls.filter(|_| !by_rule) {
                        self.tlsrpt.failure(&details, result, mx, &e.message, now);
                    }
                    tracing::info!(domain, host = %hop.host, addr = %hop.addr, error = %e.message, "queue: host unusable, trying the next");
                    last = format!("{}[{}]: {}", hop.host, hop.addr.ip(), e.message);
                }
            }
        }
        Err(Attempt::Temporary {
            host: None,
            error: last,
        })
    }

    /// TLS outcomes counted for TLS reports (RFC 8460).
    pub fn tls_counter(&self) -> Arc<tlsrpt::TlsRptCounter> {
        self.tlsrpt.clone()
    }

    /// Whether DANE can be had: validation is set up and the resolvers
    /// pass DNSSEC through (probed at most every ten minutes).
    async fn dnssec_works(&self) -> bool {
        if !self.resolver.validates() {
            return false;
        }
        if let Some((at, ok)) = *self.dnssec_probe.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < Duration::from_secs(600)
        {
            return ok;
        }
        let ok = self.resolver.dnssec_works().await;
        if !ok {
            tracing::warn!(
                "queue: DNSSEC answers do not validate through the configured resolvers ([dns] nameservers, trust_anchor); DANE is not used"
            );
        }
        *self.dnssec_probe.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), ok));
        ok
    }

    async fn open_hop(&self, hop: &Hop, domain: &str) -> Result<SmtpClient, HopError> {
        let timeouts = Timeouts {
            connect: Duration::from_secs(self.config.connect_timeout),
            command: Duration::from_secs(self.config.command_timeout),
            data: Duration::from_secs(self.config.data_timeout),
        };
        let source = if self.config.source_ips.is_empty() {
            None
        } else {
            let i = self.next_source.fetch_add(1, Ordering::Relaxed);
            Some(self.config.source_ips[i % self.config.source_ips.len()])
        };
        let mut c = self.greet(hop, source, timeouts).await?;
        // The connector, and whether TLS is mandatory: DANE (RFC 7672 §2.2,
        // authenticated by the TLSA records), `required` (verified), or
        // opportunistic (RFC 7435: any certificate, plaintext fallback).
        let (connector, mandatory, what) = match (&hop.dane, hop.tls) {
            (Some(tlsa), _) => {
                let connector = dane::DaneVerifier::new(tlsa.to_vec(), &hop.host, domain)
                    .connector()
                    .map_err(|e| HopError::from(format!("DANE: {e}")))?;
                (connector, true, "DANE: ")
            }
            (None, TlsPolicy::Required) => match self.verified.clone() {
                Some(v) => (v, true, ""),
                None => {
                    return Err(HopError::tls(
                        "no trust store to verify the certificate".into(),
                        tlsrpt::ResultType::ValidationFailure,
                    ));
                }
            },
            (None, TlsPolicy::Opportunistic) => (self.opportunistic.clone(), false, ""),
            (None, TlsPolicy::None) => return self.auth(c, hop).await,
        };
        if !c.caps.starttls {
            if mandatory {
                return Err(HopError::tls(
                    format!("{what}TLS is required but the server does not offer STARTTLS"),
                    tlsrpt::ResultType::StartTlsNotSupported,
                ));
            }
            return self.auth(c, hop).await;
        }
        let name = rustls_pki_types::ServerName::try_from(hop.host.clone())
            .unwrap_or_else(|_| rustls_pki_types::ServerName::IpAddress(hop.addr.ip().into()));
        c = match c.starttls(&connector, name).await {
            Ok(Ok(tls)) => tls,
            Ok(Err((_, reply))) if mandatory => {
                return Err(HopError::tls(
                    format!("{what}STARTTLS refused: {reply}"),
                    tlsrpt::ResultType::StartTlsNotSupported,
                ));
            }
            Ok(Err((plain, reply))) => {
                tracing::info!(host = %hop.host, reply = %reply, "queue: STARTTLS refused; continuing without TLS");
                return self.auth(plain, hop).await;
            }
            Err(ClientError::Tls(e, kind)) if mandatory => {
                return Err(HopError::tls(
                    format!("{what}TLS handshake failed: {e}"),
                    tlsrpt::result_type(kind),
                ));
            }
            Err(ClientError::Tls(e, _)) => {
                // RFC 7435: fall back to a new plaintext connection.
                tracing::info!(host = %hop.host, error = %e, "queue: TLS failed; retrying this host without TLS");
                let plain = self.greet(hop, source, timeouts).await?;
                return self.auth(plain, hop).await;
            }
            Err(e) => return Err(e.into()),
        };
        if hop.dane.is_some() {
            tracing::info!(host = %hop.host, "queue: DANE-authenticated TLS");
        }
        let r = c.ehlo(&self.helo).await?;
        if !r.is_positive() {
            return Err(format!("EHLO after STARTTLS: {r}").into());
        }
        self.auth(c, hop).await
    }

    /// Connects to a hop: its greeting, then EHLO.
    async fn greet(
        &self,
        hop: &Hop,
        source: Option<std::net::IpAddr>,
        timeouts: Timeouts,
    ) -> Result<SmtpClient, HopError> {
        let (mut c, greeting) = SmtpClient::connect(hop.addr, source, timeouts).await?;
        if greeting.code != 220 {
            return Err(format!("greeting: {greeting}").into());
        }
        let r = c.ehlo(&self.helo).await?;
        if !r.is_positive() {
            return Err(format!("EHLO: {r}").into());
        }
        Ok(c)
    }

    async fn auth(&self, mut c: SmtpClient, hop: &Hop) -> Result<SmtpClient, HopError> {
        if let Some((user, pass)) = &hop.auth {
            if !c.tls && !hop.addr.ip().is_loopback() {
                return Err(String::from("refusing to send a password without TLS").into());
            }
            let r = c.auth_plain(user, pass).await?;
            if !r.is_positive() {
                return Err(format!("AUTH: {r}").into());
            }
        }
        Ok(c)
    }

    /// Records the outcomes of a job, their events, the suppressions hard
    /// bounces cause and the DSNs, in one commit.
    async fn finish(&self, job: Job, results: Vec<Attempt>, local: Option<std::net::IpAddr>) {
        let now = now_unix();
        let first = &job.rcpts[0];
        // The message's source, tags and metadata travel with its queue row.
        let context = MessageParams::parse(&first.message_params);
        let mut c = Completion::default();
        let mut reports = Vec::new();
        for (r, a) in job.rcpts.iter().zip(results) {
            let params = RcptParams::parse(&r.params);
            let wants = |what: &str| !r.mail_from.is_empty() && params.wants(what);
            let event = |t: EventType| {
                let mut e = Event::new(t, &r.queue_id).to(&r.address);
                e.sender = Some(r.mail_from.clone());
                e.attempt = Some(r.attempts + 1);
                e.source = context.source.clone();
                e.sending_ip = local.map(|ip| ip.to_string());
                e.stream = context.stream.clone();
                e.tags = context.tags.clone();
                e.metadata = context.metadata.clone();
                e
            };
            let orcpt = params.orcpt.clone();
            match a {
                Attempt::Delivered { host, reply, tls } => {
                    metrics::counter!("tern_queue_delivered_total").increment(1);
                    tracing::info!(queue_id = %r.queue_id, to = %r.address, host, reply = %reply, attempt = r.attempts + 1, delay_s = now - r.created_at, "queue: delivered");
                    let mut e = event(EventType::Delivered);
                    (e.mx_host, e.remote_ip) = split_host(&host);
                    e.reply = Some(reply.to_string());
                    e.status = reply.enhanced().map(str::to_string);
                    e.tls = tls.map(str::to_string);
                    c.events.push(e);
                    c.outcomes.push((r.id, RcptOutcome::Delivered));
                }
                Attempt::Permanent {
                    host,
                    status,
                    error,
                } => {
                    metrics::counter!("tern_queue_bounced_total").increment(1);
                    tracing::info!(queue_id = %r.queue_id, to = %r.address, host = host.as_deref().unwrap_or(""), status, error, "queue: failed permanently");
                    let verdict = self.verdict(Some(&status), &error);
                    let class = if verdict.hard {
                        BounceType::Hard
                    } else {
                        BounceType::Soft
                    };
                    let mut e = event(EventType::Bounced);
                    e.category = Some(verdict.category.as_str().into());
                    e.blocklist = verdict.blocklist;
                    e.via = Some("smtp".into());
                    if let Some(h) = &host {
                        (e.mx_host, e.remote_ip) = split_host(h);
                    }
                    e.reply = Some(error.clone());
                    e.status = Some(status.clone());
                    e.bounce_type = Some(class);
                    c.events.push(e);
                    // A hard bounce from the recipient's own server (not a
                    // local refusal such as a missing SMTPUTF8) suppresses.
                    if class == BounceType::Hard
                        && host.is_some()
                        && self.config.suppress_hard_bounces
                        && !r.mail_from.is_empty()
                    {
                        c.suppress.push(Suppression {
                            address: r.address.to_lowercase(),
                            domain: String::new(),
                            reason: "hard_bounce".into(),
                            created: now,
                            expires: None,
                            detail: error.clone(),
                        });
                        let mut s = event(EventType::Suppressed);
                        s.reason = Some(format!("hard bounce: {error}"));
                        s.attempt = None;
                        c.events.push(s);
                    }
                    if wants("FAILURE") {
                        reports.push(dsn::RecipientReport {
                            address: r.address.clone(),
                            original: orcpt,
                            action: dsn::Action::Failed,
                            status,
                            remote_mta: host.map(|h| h.split('[').next().unwrap_or("").to_string()),
                            diagnostic: error.clone(),
                            will_retry_until: None,
                        });
                    }
                    c.outcomes.push((r.id, RcptOutcome::Failed { error }));
                }
                Attempt::Temporary { host, error } => {
                    let verdict = self.verdict(None, &error);
                    let error = match &host {
                        Some(h) => format!("{h}: {error}"),
                        None => error,
                    };
                    if now >= r.expires_at {
                        metrics::counter!("tern_queue_bounced_total").increment(1);
                        tracing::info!(queue_id = %r.queue_id, to = %r.address, error, "queue: expired, returning to sender");
                        let mut e = event(EventType::Expired);
                        e.reply = Some(error.clone());
                        e.status = Some("4.4.7".into());
                        e.reason = Some(format!(
                            "not delivered after {} attempts over {}",
                            r.attempts + 1,
                            human_duration(now - r.created_at)
                        ));
                        c.events.push(e);
                        if wants("FAILURE") {
                            reports.push(dsn::RecipientReport {
                                address: r.address.clone(),
                                original: orcpt,
                                action: dsn::Action::Failed,
                                status: "4.4.7".into(),
                                remote_mta: None,
                                diagnostic: format!("delivery time expired; last error: {error}"),
                                will_retry_until: None,
                            });
                        }
                        c.outcomes.push((r.id, RcptOutcome::Failed { error }));
                        continue;
                    }
                    let wait = self.retry[(r.attempts as usize).min(self.retry.len() - 1)];
                    let next_attempt = (now + wait.as_secs() as i64).min(r.expires_at.max(now + 1));
                    let notice = !r.delay_noticed
                        && self
                            .delay_notice
                            .is_some_and(|d| now - r.created_at >= d.as_secs() as i64)
                        && wants("DELAY");
                    if notice {
                        reports.push(dsn::RecipientReport {
                            address: r.address.clone(),
                            original: orcpt,
                            action: dsn::Action::Delayed,
                            status: "4.0.0".into(),
                            remote_mta: None,
                            diagnostic: error.clone(),
                            will_retry_until: Some(r.expires_at),
                        });
                    }
                    metrics::counter!("tern_queue_deferred_total").increment(1);
                    tracing::info!(queue_id = %r.queue_id, to = %r.address, error, attempt = r.attempts + 1, retry_in_s = next_attempt - now, "queue: deferred");
                    let mut e = event(EventType::Deferred);
                    if let Some(h) = &host {
                        (e.mx_host, e.remote_ip) = split_host(h);
                        e.category = Some(verdict.category.as_str().into());
                        e.blocklist = verdict.blocklist;
                    }
                    e.reply = Some(error.clone());
                    e.next_attempt = Some(next_attempt * 1000);
                    c.events.push(e);
                    c.outcomes.push((
                        r.id,
                        RcptOutcome::Deferred {
                            next_attempt,
                            error,
                            delay_noticed: notice,
                        },
                    ));
                }
            }
        }
        if !reports.is_empty() {
            match self.bounce(first, &reports, now).await {
                Ok(Ok(m)) => c.new.push(m),
                Ok(Err(only)) => c.events.extend(only.events),
                Err(e) => {
                    tracing::error!(queue_id = %first.queue_id, error = %e, "queue: cannot build the DSN")
                }
            }
        }
        let deferred = c
            .outcomes
            .iter()
            .any(|(_, o)| matches!(o, RcptOutcome::Deferred { .. }));
        if let Err(e) = self.store.complete(c).await {
            // The lease expires and the recipients are tried again.
            tracing::error!(queue_id = %first.queue_id, error = %e, "queue: cannot record delivery results");
        }
        if deferred {
            self.rescheduled.notify_one();
        }
    }

    /// What a failure reply means (`[feedback] rules`, then Tern's table).
    fn verdict(&self, status: Option<&str>, reply: &str) -> tern_feedback::Classification {
        static DEFAULT: std::sync::LazyLock<tern_feedback::Classifier> =
            std::sync::LazyLock::new(tern_feedback::Classifier::default);
        let code = reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(
            if status.is_some_and(|s| s.starts_with('5')) {
                550
            } else {
                450
            },
        );
        let classifier = self.intake.feedback().map_or(&*DEFAULT, |f| &f.classifier);
        classifier.classify(code, status, reply)
    }

    /// The DSN for `reports`, addressed (null sender) to the message's
    /// sender, through the intake (signed, with its events): the message to
    /// commit, or only events if the sender is suppressed.
    async fn bounce(
        &self,
        first: &QueuedRcpt,
        reports: &[dsn::RecipientReport],
        now: i64,
    ) -> Result<Result<NewMessage, Box<intake::EventsOnly>>, intake::IntakeError> {
        let message = self.store.read_blob(first.blob).await?;
        let params = MessageParams::parse(&first.message_params);
        let raw = dsn::build(
            &self.hostname,
            &first.mail_from,
            &dsn::Original {
                queue_id: &first.queue_id,
                arrival: first.created_at,
                envid: params.envid.as_deref(),
                headers_only: params.ret == Some(intake::Ret::Hdrs),
                message: &message,
            },
            reports,
            now,
        );
        let mut env = intake::Envelope::new(intake::Source::Dsn, "", raw);
        env.received_at = now;
        let to = tern_core::Address::parse(&first.mail_from)
            .map_err(|e| tern_store::StoreError::Invalid(e.to_string()))?;
        match self.store.resolve(&to, true).await? {
            Recipient::Local(l) => env.local.push((l.account, first.mail_from.clone())),
            Recipient::UnknownUser => {
                // A local domain without that user: nobody to tell.
                tracing::info!(queue_id = %first.queue_id, to = %first.mail_from, "queue: DSN not sent: the sender's address does not exist here");
                return Ok(Err(Box::default()));
            }
            _ => env
                .recipients
                .push(intake::Rcpt::new(first.mail_from.clone())),
        }
        tracing::info!(queue_id = %first.queue_id, dsn_queue_id = %env.queue_id, to = %first.mail_from, "queue: DSN queued");
        Ok(self.intake.prepare(env).await?.into_message())
    }
}

/// `host[1.2.3.4]` as (host, IP).
fn split_host(h: &str) -> (Option<String>, Option<String>) {
    match h.split_once('[') {
        Some((host, ip)) => (
            Some(host.to_string()),
            Some(ip.trim_end_matches(']').to_string()),
        ),
        None => (Some(h.to_string()), None),
    }
}

/// Seconds as "3 days", "5 hours", "12 minutes".
fn human_duration(secs: i64) -> String {
    match secs {
        s if s >= 2 * 86400 => format!("{} days", s / 86400),
        s if s >= 2 * 3600 => format!("{} hours", s / 3600),
        s if s >= 120 => format!("{} minutes", s / 60),
        s => format!("{s} seconds"),
    }
}

fn outcome(host: &str, reply: Reply, tls: Option<&'static str>) -> Attempt {
    if reply.is_positive() {
        Attempt::Delivered {
            host: host.to_string(),
            reply,
            tls,
        }
    } else if reply.is_permanent() {
        Attempt::Permanent {
            host: Some(host.to_string()),
            status: reply.enhanced().unwrap_or("5.0.0").to_string(),
            error: reply.to_string(),
        }
    } else {
        Attempt::Temporary {
            host: Some(host.to_string()),
            error: reply.to_string(),
        }
    }
}
