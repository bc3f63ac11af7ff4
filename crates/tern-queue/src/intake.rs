//! The one way into the queue. Whatever sends — SMTP submission, the HTTP
//! API, forwarding, DSNs, DMARC and TLS reports — describes its message as
//! an [`Envelope`] and hands it here:
//!
//! 1. [`Intake::prepare`] decides, without writing: which recipients are
//!    suppressed (and so not queued), the expiry for the source, the DKIM
//!    signature of the `From:` domain when it is one of ours (DSNs and
//!    reports included), the `accepted`/`suppressed`/`delivered` events.
//!    The result, a [`Prepared`], says each recipient's state — the API's
//!    answer is built from it before anything is written.
//! 2. [`Intake::commit`] writes message, queue rows, events, the message log
//!    and an idempotent response in one commit, then hands the recipients
//!    straight to the delivery engine when it has room.
//!
//! DSNs built while recording delivery outcomes go through `prepare` too and
//! are committed with those outcomes ([`Prepared::into_message`]).

use crate::QueueService;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tern_auth::SignerCache;
use tern_events::{Event, EventType};
use tern_store::{
    AccountId, IdempotentResponse, MessageLog, NewMessage, OutboundRcpt, SharedStore, StoreError,
};

/// Who hands the message in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// An authenticated user over SMTP (587/465).
    Submission,
    /// The HTTP API.
    Api,
    /// An alias forwarding incoming mail onwards.
    Forward,
    /// A delivery status notification (bounce or delay).
    Dsn,
    /// A DMARC or TLS aggregate report.
    Report,
}

impl Source {
    /// The name in events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submission => "submission",
            Self::Api => "api",
            Self::Forward => "forward",
            Self::Dsn => "dsn",
            Self::Report => "report",
        }
    }
}

/// The kind of mail, kept apart so that one cannot hurt the other's
/// reputation (IP pools, later) and for suppression of broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// Mail a recipient asked for (receipts, password resets).
    #[default]
    Transactional,
    /// Newsletters and campaigns.
    Broadcast,
}

impl Stream {
    /// The name in the API and the message log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transactional => "transactional",
            Self::Broadcast => "broadcast",
        }
    }
}

/// RFC 3461 §4.3 `RET`: what a DSN returns of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ret {
    /// The whole message.
    Full,
    /// Its headers only.
    Hdrs,
}

/// The message's SMTP parameters as the queue keeps them (the JSON of
/// [`tern_store::QueuedRcpt::message_params`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageParams {
    /// RFC 3461 `RET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ret: Option<Ret>,
    /// RFC 3461 `ENVID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envid: Option<String>,
    /// RFC 6531: the envelope has non-ASCII addresses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smtputf8: bool,
    /// RFC 6152 body type (`8bitmime`, `binarymime`), if declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Who handed the message in (set by the intake), for its events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Its stream (set by the intake), copied into its delivery events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Its tags (set by the intake), copied into its delivery events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Its metadata (set by the intake), copied into its delivery events.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Each recipient's copy leaves with its own signed return path (set
    /// by the intake for mail from our domains, `[feedback] verp`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verp: bool,
}

impl MessageParams {
    /// The parameters stored as `json` (older rows may hold more keys;
    /// unreadable ones mean none).
    pub fn parse(json: &str) -> Self {
        serde_json::from_str(json).unwrap_or_default()
    }
}

/// A recipient's DSN parameters (RFC 3461 §4.1, §4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcptParams {
    /// `NOTIFY`: `NEVER`, or any of `SUCCESS`, `FAILURE`, `DELAY`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// `ORCPT`, as given (`rfc822;addr`) or as an address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orcpt: Option<String>,
}

impl RcptParams {
    /// The parameters stored as `json`.
    pub fn parse(json: &str) -> Self {
        serde_json::from_str(json).unwrap_or_default()
    }

    /// Whether the sender wants a DSN of this kind (`FAILURE`, `DELAY`):
    /// what NOTIFY says, or by default failures and delays.
    pub fn wants(&self, what: &str) -> bool {
        if self.notify.iter().any(|n| n == "NEVER") {
            return false;
        }
        self.notify.is_empty() || self.notify.iter().any(|n| n == what)
    }
}

/// A remote recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt {
    /// The address.
    pub address: String,
    /// Its DSN parameters.
    pub params: RcptParams,
}

impl Rcpt {
    /// A recipient without DSN parameters.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            params: RcptParams::default(),
        }
    }
}

/// A message to send, as every source describes it.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// Who hands it in.
    pub source: Source,
    /// Its id (logs, `Received:`, the API).
    pub queue_id: String,
    /// Envelope sender; empty for the null reverse-path.
    pub sender: String,
    /// Remote recipients.
    pub recipients: Vec<Rcpt>,
    /// Local accounts it is delivered to in the same commit, with the
    /// address each was written to.
    pub local: Vec<(AccountId, String)>,
    /// File a `\Seen` copy in this account's Sent folder.
    pub sent_copy: Option<AccountId>,
    /// DSN and SMTP parameters.
    pub params: MessageParams,
    /// Transactional or broadcast.
    pub stream: Stream,
    /// Tags, copied into every event.
    pub tags: Vec<String>,
    /// Metadata, copied into every event.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The message, CRLF line endings, trace headers included.
    pub message: Vec<u8>,
    /// When it was handed in (Unix seconds).
    pub received_at: i64,
    /// The client that handed it in.
    pub source_ip: Option<IpAddr>,
    /// The API key that sent it.
    pub api_key: Option<String>,
    /// Hold the message until then (Unix seconds; 0: send now).
    pub not_before: i64,
    /// Sign with the `From:` domain's DKIM keys (off only for mail that is
    /// passed on unchanged, which keeps its author's signatures).
    pub sign: bool,
}

impl Envelope {
    /// An envelope with the defaults: no local recipients, transactional,
    /// no tags, signed, handed in now.
    pub fn new(source: Source, sender: impl Into<String>, message: Vec<u8>) -> Self {
        Self {
            source,
            queue_id: tern_core::id::queue_id(),
            sender: sender.into(),
            recipients: Vec::new(),
            local: Vec::new(),
            sent_copy: None,
            params: MessageParams::default(),
            stream: Stream::default(),
            tags: Vec::new(),
            metadata: serde_json::Map::new(),
            message,
            received_at: tern_core::now_unix(),
            source_ip: None,
            api_key: None,
            not_before: 0,
            sign: source != Source::Forward,
        }
    }
}

/// A recipient's state once the intake decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptState {
    /// Queued for delivery.
    Queued,
    /// Stored in a local mailbox.
    Delivered,
    /// Not queued: on a suppression list for this reason.
    Suppressed(String),
}

/// What the intake decided for a message: the answer its sender gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The message id.
    pub queue_id: String,
    /// Each recipient (remote ones, then local ones) and its state.
    pub recipients: Vec<(String, RcptState)>,
    /// The domain whose DKIM key signed the message, if any.
    pub signed: Option<String>,
}

/// A [`Decision`] with what is to be written, ready to commit.
pub struct Prepared {
    /// What was decided.
    pub decision: Decision,
    message: NewMessage,
    events: Vec<Event>,
}

impl Prepared {
    /// Whether anything is written by [`Intake::commit`] besides events.
    pub fn has_recipients(&self) -> bool {
        !self.message.outbound.is_empty()
            || !self.message.recipients.is_empty()
            || self.message.sent_copy.is_some()
    }

    /// The message to write in another commit (a DSN with the delivery
    /// outcomes that caused it), with its events; when every recipient was
    /// suppressed, only what is to be recorded.
    pub fn into_message(self) -> Result<NewMessage, Box<EventsOnly>> {
        if self.has_recipients() {
            let mut m = self.message;
            m.events = self.events;
            Ok(m)
        } else {
            Err(Box::new(EventsOnly {
                events: self.events,
                logs: self.message.logs,
                idempotency: self.message.idempotency,
            }))
        }
    }

    /// Keeps `response` for an `Idempotency-Key`, in the same commit.
    pub fn with_idempotency(mut self, response: IdempotentResponse) -> Self {
        self.message.idempotency = Some(response);
        self
    }
}

/// What is recorded of a message nobody is left to send to.
#[derive(Debug, Default)]
pub struct EventsOnly {
    /// Its events (`suppressed`).
    pub events: Vec<Event>,
    /// Its log (and those merged into it).
    pub logs: Vec<MessageLog>,
    /// The idempotent response it carried.
    pub idempotency: Option<IdempotentResponse>,
}

impl EventsOnly {
    /// Adds another's.
    pub fn merge(&mut self, other: EventsOnly) {
        self.events.extend(other.events);
        self.logs.extend(other.logs);
        if other.idempotency.is_some() {
            self.idempotency = other.idempotency;
        }
    }
}

/// Why the intake refused a message.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The store failed (reading suppressions or writing).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The message has no recipient at all.
    #[error("the message has no recipients")]
    NoRecipients,
}

/// How long each source's mail is retried before it is returned.
#[derive(Debug, Clone, Copy)]
pub struct Expiry {
    /// Submission, the API, DSNs.
    pub default: Duration,
    /// Forwarded mail.
    pub forward: Duration,
    /// DMARC and TLS reports (stale after a day or two).
    pub report: Duration,
}

/// The intake.
pub struct Intake {
    store: SharedStore,
    signers: SignerCache,
    expiry: Expiry,
    engine: OnceLock<Weak<QueueService>>,
    feedback: OnceLock<Arc<tern_feedback::Settings>>,
    /// Our domains, and when they were read.
    domains: std::sync::Mutex<Option<(std::time::Instant, std::collections::HashSet<String>)>>,
}

/// Longest header block kept in the message log.
const MAX_LOGGED_HEADERS: usize = 64 * 1024;

impl Intake {
    /// An intake writing to `store`.
    pub fn new(store: SharedStore, expiry: Expiry) -> Self {
        Self {
            store,
            signers: SignerCache::new(Duration::from_secs(60)),
            expiry,
            engine: OnceLock::new(),
            feedback: OnceLock::new(),
            domains: std::sync::Mutex::new(None),
        }
    }

    /// Return paths, unsubscribe headers and `Feedback-ID` from now on.
    pub fn set_feedback(&self, settings: Arc<tern_feedback::Settings>) {
        let _ = self.feedback.set(settings);
    }

    /// The feedback settings, once set.
    pub fn feedback(&self) -> Option<&Arc<tern_feedback::Settings>> {
        self.feedback.get()
    }

    /// The store it writes to.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Hands committed recipients to `engine` directly from now on.
    pub(crate) fn attach(&self, engine: &Arc<QueueService>) {
        let _ = self.engine.set(Arc::downgrade(engine));
    }

    /// The DKIM keys' cache, shared with ARC sealing.
    pub fn signers(&self) -> &SignerCache {
        &self.signers
    }

    /// Decides what happens to each recipient and signs; writes nothing.
    pub async fn prepare(&self, mut env: Envelope) -> Result<Prepared, IntakeError> {
        if env.recipients.is_empty() && env.local.is_empty() && env.sent_copy.is_none() {
            return Err(IntakeError::NoRecipients);
        }
        let now = env.received_at;
        let from_domain = from_domain(&env.message);
        // Suppression lists (§5): bounces (null sender) and reports are
        // never held back by them.
        let suppressed = if matches!(env.source, Source::Dsn | Source::Report) {
            Default::default()
        } else {
            let addrs: Vec<String> = env
                .recipients
                .iter()
                .map(|r| r.address.to_lowercase())
                .collect();
            let domain = from_domain
                .clone()
                .or_else(|| env.sender.rsplit_once('@').map(|(_, d)| d.to_lowercase()))
                .unwrap_or_default();
            let mut found = self.store.suppressed(&addrs, &domain, now).await?;
            // An unsubscribe stops broadcasts; receipts and password resets
            // still go.
            if env.stream == Stream::Transactional {
                found.retain(|_, s| s.reason != "unsubscribe");
            }
            found
        };
        let feedback = self.feedback.get();
        let mut message = match (env.stream, feedback, &from_domain) {
            (Stream::Broadcast, Some(fb), Some(domain)) => broadcast_headers(fb, &env, domain),
            _ => std::mem::take(&mut env.message),
        };
        // Return paths per recipient for the sending platform's mail. A
        // person's own mail (submission) keeps their address: their
        // bounces belong in their inbox.
        let verp = feedback.is_some_and(|f| f.verp)
            && env.source == Source::Api
            && self.is_local_sender(&env.sender).await;
        let mut signed = None;
        if env.sign
            && let Some(from) = &from_domain
            && let Some((domain, signer)) = self.signer_for(from).await
        {
            match signer.sign(&message) {
                Ok(sig) => {
                    let mut raw = Vec::with_capacity(sig.len() + message.len());
                    raw.extend_from_slice(sig.as_bytes());
                    raw.extend_from_slice(&message);
                    message = raw;
                    signed = Some(domain);
                }
                Err(e) => {
                    tracing::warn!(queue_id = %env.queue_id, error = %e, "intake: DKIM signing failed; sending unsigned")
                }
            }
        }
        let base = |t: EventType| {
            let mut e = Event::new(t, &env.queue_id);
            e.sender = Some(env.sender.clone());
            e.source = Some(env.source.as_str().into());
            e.source_ip = env.source_ip.map(|ip| ip.to_string());
            e.stream = Some(env.stream.as_str().into());
            e.tags = env.tags.clone();
            e.metadata = env.metadata.clone();
            e
        };
        let mut events = Vec::new();
        let mut recipients = Vec::new();
        let mut outbound = Vec::new();
        for r in &env.recipients {
            let lower = r.address.to_lowercase();
            if let Some(s) = suppressed.get(&lower) {
                let mut e = base(EventType::Suppressed).to(&r.address);
                e.reason = Some(format!(
                    "{} is on the {} suppression list ({})",
                    r.address,
                    if s.domain.is_empty() {
                        "global".to_string()
                    } else {
                        s.domain.clone()
                    },
                    s.reason
                ));
                events.push(e);
                recipients.push((r.address.clone(), RcptState::Suppressed(s.reason.clone())));
                continue;
            }
            events.push(base(EventType::Accepted).to(&r.address));
            recipients.push((r.address.clone(), RcptState::Queued));
            outbound.push(OutboundRcpt {
                domain: r
                    .address
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_ascii_lowercase())
                    .unwrap_or_default(),
                address: r.address.clone(),
                params: serde_json::to_string(&r.params).unwrap_or_else(|_| "{}".into()),
            });
        }
        for (_, address) in &env.local {
            let mut e = base(EventType::Delivered).to(address);
            e.reply = Some("stored in a local mailbox".into());
            events.push(e);
            recipients.push((address.clone(), RcptState::Delivered));
        }
        let expire = match env.source {
            Source::Forward => self.expiry.forward,
            Source::Report => self.expiry.report,
            _ => self.expiry.default,
        };
        let headers = logged_headers(&message);
        let log = MessageLog {
            message_id: env.queue_id.clone(),
            time: now,
            source: env.source.as_str().into(),
            sender: env.sender.clone(),
            recipients: env
                .recipients
                .iter()
                .map(|r| r.address.clone())
                .chain(env.local.iter().map(|(_, a)| a.clone()))
                .collect(),
            headers,
            stream: env.stream.as_str().into(),
            tags: env.tags.clone(),
            metadata: env.metadata.clone(),
            api_key: env.api_key.clone(),
        };
        let params = MessageParams {
            verp,
            source: Some(env.source.as_str().into()),
            stream: Some(env.stream.as_str().into()),
            tags: env.tags,
            metadata: env.metadata,
            ..env.params
        };
        let mut m = NewMessage::local(
            env.queue_id.clone(),
            message,
            env.sender.clone(),
            env.local.iter().map(|(a, _)| *a).collect(),
            now,
            serde_json::to_string(&params).unwrap_or_else(|_| "{}".into()),
        );
        m.outbound = outbound;
        m.expires_at = now + expire.as_secs() as i64;
        m.sent_copy = env.sent_copy;
        m.not_before = env.not_before;
        if env.not_before > now {
            m.expires_at = env.not_before + expire.as_secs() as i64;
        }
        m.logs = vec![log];
        Ok(Prepared {
            decision: Decision {
                queue_id: env.queue_id,
                recipients,
                signed,
            },
            message: m,
            events,
        })
    }

    /// Whether `sender`'s domain is one of ours (its bounces come back here).
    /// (The domain list is cached for a minute: this is asked for every
    /// message the API sends.)
    async fn is_local_sender(&self, sender: &str) -> bool {
        let Some((_, domain)) = sender.rsplit_once('@') else {
            return false;
        };
        let domain = domain.to_ascii_lowercase();
        {
            let cached = self.domains.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, set)) = &*cached
                && at.elapsed() < Duration::from_secs(60)
            {
                return set.contains(&domain);
            }
        }
        let Ok(list) = self.store.list_domains().await else {
            return false;
        };
        let set: std::collections::HashSet<String> = list.into_iter().map(|d| d.name).collect();
        let ours = set.contains(&domain);
        *self.domains.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), set));
        ours
    }

    /// The signer for `domain`, or for the nearest parent domain with keys
    /// (DMARC's relaxed alignment accepts it: DSNs from
    /// `MAILER-DAEMON@mail.example.com` are signed by example.com).
    async fn signer_for(&self, domain: &str) -> Option<(String, Arc<tern_auth::DomainSigner>)> {
        let mut d = domain;
        loop {
            if let Some(s) = crate::signers::load(&self.signers, &self.store, d).await {
                return Some((d.to_string(), s));
            }
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent,
                _ => return None,
            }
        }
    }

    /// Writes a prepared message with its events (and the idempotent
    /// response it carries) in one commit; once this returns `Ok`, the
    /// message and its history survive a crash. Its recipients then go
    /// straight to the delivery engine when it has room.
    pub async fn commit(&self, prepared: Prepared) -> Result<(), StoreError> {
        let queue_id = prepared.decision.queue_id.clone();
        let mut message = match prepared.into_message() {
            Ok(m) => m,
            Err(only) => {
                let only = *only;
                // Nobody left to send to: the history and the answer only.
                return self
                    .store
                    .record_events(only.events, only.logs, only.idempotency)
                    .await;
            }
        };
        let engine = self.engine.get().and_then(Weak::upgrade);
        let hand_off = engine.as_ref().filter(|e| {
            !message.outbound.is_empty()
                && message.not_before <= message.received_at
                && e.has_room()
        });
        if hand_off.is_some() {
            message.lease_until = message.received_at + tern_store::LEASE_SECS;
        }
        let body = message.raw.clone();
        let rcpts = self.store.enqueue(message).await?;
        if let Some(e) = hand_off {
            e.dispatch(rcpts, Some(body));
        }
        tracing::debug!(queue_id = %queue_id, "intake: committed");
        Ok(())
    }

    /// [`Intake::prepare`] then [`Intake::commit`].
    pub async fn submit(&self, env: Envelope) -> Result<Decision, IntakeError> {
        let prepared = self.prepare(env).await?;
        let decision = prepared.decision.clone();
        self.commit(prepared).await?;
        Ok(decision)
    }
}

/// A broadcast message with the fields mailbox providers ask of bulk mail
/// (Gmail's and Yahoo's 2024 sender requirements), added before signing so
/// the DKIM signature covers them: `List-Unsubscribe` with one-click POST
/// (RFC 8058) for its single recipient, unless the sender wrote its own,
/// and a `Feedback-ID` (Google's `campaign:customer:type:sender` form) so
/// complaint rates are reported per tag.
fn broadcast_headers(fb: &tern_feedback::Settings, env: &Envelope, domain: &str) -> Vec<u8> {
    let message = &env.message;
    let head = &message[..header_len(message)];
    let has = |name: &[u8]| {
        head.split(|b| *b == b'\n').any(|l| {
            l.len() > name.len()
                && l[..name.len()].eq_ignore_ascii_case(name)
                && l[name.len()] == b':'
        })
    };
    let mut fields = String::new();
    if let [rcpt] = env.recipients.as_slice()
        && !has(b"List-Unsubscribe")
    {
        fields.push_str(&tern_feedback::unsubscribe::header_fields(
            &fb.keys,
            &fb.public_url,
            &env.queue_id,
            &rcpt.address,
            domain,
        ));
    }
    if !has(b"Feedback-ID") {
        let campaign: String = env
            .tags
            .first()
            .map(|t| t.as_str())
            .unwrap_or("untagged")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(64)
            .collect();
        fields.push_str(&format!(
            "Feedback-ID: {campaign}:{domain}:broadcast:tern\r\n"
        ));
    }
    let mut out = Vec::with_capacity(fields.len() + message.len());
    out.extend_from_slice(fields.as_bytes());
    out.extend_from_slice(message);
    out
}

/// The header block as kept in the message log: every field but the
/// signatures (DKIM-Signature, ARC-*: long, and of no use to a reader), at
/// most [`MAX_LOGGED_HEADERS`].
fn logged_headers(message: &[u8]) -> String {
    let block = &message[..header_len(message)];
    let mut out = String::new();
    let mut skip = false;
    for line in block.split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            let name = line.split(|b| *b == b':').next().unwrap_or(b"");
            skip = name.eq_ignore_ascii_case(b"DKIM-Signature")
                || name.len() > 4 && name[..4].eq_ignore_ascii_case(b"ARC-");
        }
        if !skip {
            if out.len() + line.len() > MAX_LOGGED_HEADERS {
                break;
            }
            out.push_str(&String::from_utf8_lossy(line));
        }
    }
    out
}

/// Length of the header block (through the empty line), or the whole
/// message when it has no body.
pub fn header_len(message: &[u8]) -> usize {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4)
}

/// The domain of the first `From:` address, lower case.
pub fn from_domain(message: &[u8]) -> Option<String> {
    static PARSER: std::sync::LazyLock<mail_parser::MessageParser> =
        std::sync::LazyLock::new(|| {
            mail_parser::MessageParser::default()
                .default_header_ignore()
                .header_address(mail_parser::HeaderName::From)
        });
    let end = header_len(message);
    PARSER
        .parse_headers(&message[..end])?
        .from()?
        .first()?
        .address
        .as_deref()?
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_round_trip_the_stored_json() {
        let p = MessageParams::parse(r#"{"ret":"hdrs","envid":"x1","smtputf8":true,"size":10}"#);
        assert_eq!(p.ret, Some(Ret::Hdrs));
        assert_eq!(p.envid.as_deref(), Some("x1"));
        assert!(p.smtputf8);
        let r = RcptParams::parse(r#"{"notify":["SUCCESS","DELAY"],"orcpt":"rfc822;a@b"}"#);
        assert!(r.wants("DELAY") && !r.wants("FAILURE"));
        assert!(RcptParams::default().wants("FAILURE"));
        assert!(!RcptParams::parse(r#"{"notify":["NEVER"]}"#).wants("FAILURE"));
        assert_eq!(MessageParams::parse("garbage"), MessageParams::default());
    }

    #[test]
    fn logged_headers_leave_out_signatures() {
        let m = b"DKIM-Signature: v=1; a=rsa-sha256;\r\n b=abc\r\nARC-Seal: i=1\r\nFrom: a@b\r\nSubject: s\r\n folded\r\n\r\nbody";
        assert_eq!(
            logged_headers(m),
            "From: a@b\r\nSubject: s\r\n folded\r\n\r\n"
        );
    }

    #[test]
    fn from_domains() {
        assert_eq!(
            from_domain(b"Subject: x\r\nFrom: \"A\" <a@Mail.Example.COM>\r\n\r\nbody").as_deref(),
            Some("mail.example.com")
        );
        assert_eq!(from_domain(b"Subject: x\r\n\r\n"), None);
    }
}
