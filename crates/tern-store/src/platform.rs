//! What the sending platform keeps: events and the log of sent messages,
//! suppression lists, API keys and idempotent responses, webhook endpoints
//! with their outbox, templates.
//!
//! Events are written by the same commit as the change they record: the
//! queue's writes ([`crate::NewMessage::events`], [`crate::Completion`])
//! carry them, and each event is copied into the outbox of every webhook
//! endpoint that wants it in that commit too, so an acknowledged change
//! always has its event and its webhook deliveries.

use crate::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tern_events::{Event, EventType};

/// What is kept of a message that was sent (or refused) for as long as its
/// events: its envelope and headers. Queue rows go when a recipient is
/// done; this stays.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MessageLog {
    /// The message id (queue id).
    pub message_id: String,
    /// When it was accepted (Unix seconds).
    pub time: i64,
    /// `submission`, `api`, `forward`, `dsn`, `report`.
    pub source: String,
    /// Envelope sender.
    pub sender: String,
    /// Envelope recipients, as given.
    pub recipients: Vec<String>,
    /// The header block as sent (trace and signature headers included),
    /// at most 64 KiB.
    pub headers: String,
    /// `transactional` or `broadcast`.
    #[serde(default)]
    pub stream: String,
    /// Tags given at sending.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata given at sending.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The API key that sent it.
    #[serde(default)]
    pub api_key: Option<String>,
}

/// A filter over the event log. Results are in id (time) order, after
/// `after` (a cursor: the last id of the previous page).
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    /// Only these types (empty: all).
    pub types: Vec<EventType>,
    /// Only about this recipient (compared case-insensitively).
    pub recipient: Option<String>,
    /// Only recipients in this domain.
    pub domain: Option<String>,
    /// Only this message.
    pub message_id: Option<String>,
    /// Only events carrying this tag.
    pub tag: Option<String>,
    /// From this time on (Unix milliseconds).
    pub since: Option<i64>,
    /// Before this time (Unix milliseconds).
    pub until: Option<i64>,
    /// After this event id.
    pub after: Option<String>,
    /// At most this many (capped by the backend at 1,000).
    pub limit: usize,
    /// Newest first (then `after` is not used).
    pub newest_first: bool,
}

/// A search over what is kept of sent messages, newest first.
#[derive(Debug, Clone, Default)]
pub struct MessageSearch {
    /// Only from this envelope sender (compared case-insensitively).
    pub sender: Option<String>,
    /// Only messages whose header block contains this (a subject, a
    /// Message-ID), case-insensitively.
    pub text: Option<String>,
    /// From this time on (Unix seconds).
    pub since: Option<i64>,
    /// Before this time (Unix seconds).
    pub until: Option<i64>,
    /// At most this many (capped at 1,000).
    pub limit: usize,
}

/// One hourly counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCount {
    /// Unix time / 3600.
    pub hour: i64,
    /// The event type's name.
    pub event_type: String,
    /// The failure category (bounced, deferred), `human`/`machine`
    /// (opened, clicked), else empty.
    pub detail: String,
    /// How many.
    pub n: i64,
}

/// Why an address is suppressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    /// The address, lower case.
    pub address: String,
    /// The sending domain the entry applies to; empty for every domain.
    pub domain: String,
    /// `hard_bounce`, `complaint`, `unsubscribe` or `manual`.
    pub reason: String,
    /// When it was added (Unix seconds).
    pub created: i64,
    /// When it lapses (Unix seconds); `None`: never.
    pub expires: Option<i64>,
    /// What caused it (the bounce reply, …).
    pub detail: String,
}

/// A filter over suppression lists, in (address, domain) order.
#[derive(Debug, Clone, Default)]
pub struct SuppressionQuery {
    /// Only entries for this sending domain (`Some("")`: the global list).
    pub domain: Option<String>,
    /// Only this reason.
    pub reason: Option<String>,
    /// Only addresses starting with this.
    pub prefix: Option<String>,
    /// After this `(address, domain)`.
    pub after: Option<(String, String)>,
    /// At most this many.
    pub limit: usize,
}

/// An API key as stored (the secret only as its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The public part of the key, shown in lists and logs.
    pub id: String,
    /// SHA-256 of the whole key, hex.
    pub hash: String,
    /// `send`, `read` or `admin`.
    pub scope: String,
    /// Sending domains the key is limited to (empty: any of ours).
    pub domains: Vec<String>,
    /// A name for people.
    pub name: String,
    /// When it was made (Unix seconds).
    pub created: i64,
    /// When it was revoked.
    pub revoked: Option<i64>,
}

/// A response kept for an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    /// The API key that made the request.
    pub key_id: String,
    /// The client's key.
    pub key: String,
    /// Hash of the request (method, path, body): the same key with another
    /// request is a conflict.
    pub request: String,
    /// HTTP status of the first response.
    pub status: u16,
    /// Its body.
    pub response: String,
    /// When (Unix seconds).
    pub created: i64,
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// Its id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The signing secret (`whsec_…`).
    pub secret: String,
    /// The event types it wants (empty: all).
    pub events: Vec<EventType>,
    /// Only events about messages of this sending domain or to this
    /// recipient domain (empty: all).
    pub domain: String,
    /// Up to 100 events per POST (`{"events": […]}`) instead of one.
    pub batch: bool,
    /// When it was added (Unix seconds).
    pub created: i64,
    /// The endpoint is not tried before this (backoff after failures).
    pub next_attempt: i64,
    /// Consecutive failed POSTs.
    pub failures: u32,
}

impl Webhook {
    /// Whether the endpoint wants `event`.
    pub fn wants(&self, event: &Event) -> bool {
        (self.events.is_empty() || self.events.contains(&event.event_type))
            && (self.domain.is_empty()
                || event.domain.as_deref() == Some(self.domain.as_str())
                || event
                    .sender
                    .as_deref()
                    .and_then(|s| s.rsplit_once('@'))
                    .is_some_and(|(_, d)| d.eq_ignore_ascii_case(&self.domain)))
    }
}

/// An event waiting in an endpoint's outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    /// Outbox row.
    pub seq: i64,
    /// The event.
    pub event: Event,
    /// POSTs tried so far.
    pub attempts: u32,
    /// When it entered the outbox (Unix seconds).
    pub created: i64,
}

/// One POST to an endpoint, as shown to its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookAttempt {
    /// When (Unix seconds).
    pub time: i64,
    /// Events in the POST.
    pub events: u32,
    /// The HTTP status, if there was an answer.
    pub status: Option<u16>,
    /// What went wrong (empty on success).
    pub error: String,
    /// How long it took.
    pub millis: u64,
}

/// An event given up on after retrying for the configured time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The event id.
    pub event_id: String,
    /// When it was given up (Unix seconds).
    pub time: i64,
    /// POSTs tried.
    pub attempts: u32,
    /// The last failure.
    pub last_error: String,
}

/// A message template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Template {
    /// Its name (the id in URLs).
    pub name: String,
    /// Subject template.
    pub subject: String,
    /// Plain-text body template.
    pub text: Option<String>,
    /// HTML body template.
    pub html: Option<String>,
    /// Created (Unix seconds).
    pub created: i64,
    /// Last changed.
    pub updated: i64,
}

/// The sending platform's data.
#[async_trait]
pub trait Platform: Send + Sync {
    /// Records events that change nothing else (a refusal, a message whose
    /// every recipient was suppressed) with their webhook deliveries, the
    /// messages' logs and an idempotent response, in one commit.
    async fn record_events(
        &self,
        events: Vec<Event>,
        logs: Vec<MessageLog>,
        idempotency: Option<IdempotentResponse>,
    ) -> Result<()>;
    /// Records what came back about sent mail (bounces, complaints,
    /// unsubscribes) with the suppressions it causes, in one commit.
    async fn record_feedback(&self, events: Vec<Event>, suppress: Vec<Suppression>) -> Result<()>;
    /// The hourly counters of `domain` (a sending domain, or ours for
    /// inbound events; `*` for every domain together) for hours in
    /// `[since_hour, until_hour)` (Unix time / 3600): its totals with
    /// `dim` empty, or only the events of `stream:NAME` or `tag:NAME`.
    async fn event_counts(
        &self,
        domain: &str,
        dim: &str,
        since_hour: i64,
        until_hour: i64,
    ) -> Result<Vec<EventCount>>;
    /// Events matching `query`.
    async fn events(&self, query: EventQuery) -> Result<Vec<Event>>;
    /// Forgets events and message logs older than `before` (Unix
    /// milliseconds); returns how many events went.
    async fn prune_events(&self, before: i64) -> Result<usize>;
    /// What is kept of a message.
    async fn message_log(&self, message_id: &str) -> Result<Option<MessageLog>>;
    /// Logged messages matching `search`, newest first.
    async fn search_message_logs(&self, search: MessageSearch) -> Result<Vec<MessageLog>>;

    /// The entries that suppress any of `addresses` (lower case) for mail
    /// from `sender_domain`, by address; lapsed entries do not count.
    async fn suppressed(
        &self,
        addresses: &[String],
        sender_domain: &str,
        now: i64,
    ) -> Result<HashMap<String, Suppression>>;
    /// Adds entries (replacing those with the same address and domain).
    async fn add_suppressions(&self, entries: Vec<Suppression>) -> Result<()>;
    /// Removes an entry; whether it was there.
    async fn remove_suppression(&self, address: &str, domain: &str) -> Result<bool>;
    /// Entries matching `query`.
    async fn list_suppressions(&self, query: SuppressionQuery) -> Result<Vec<Suppression>>;

    /// Stores a new API key.
    async fn add_api_key(&self, key: ApiKey) -> Result<()>;
    /// The key with this id.
    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>>;
    /// Every key, newest first.
    async fn api_keys(&self) -> Result<Vec<ApiKey>>;
    /// Revokes a key; whether it existed and was valid.
    async fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool>;

    /// The response kept for `(key_id, key)`, if younger than `since`.
    async fn idempotent_response(
        &self,
        key_id: &str,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotentResponse>>;
    /// Keeps a response (for requests that do not enqueue a message).
    async fn save_idempotent_response(&self, response: IdempotentResponse) -> Result<()>;

    /// Adds an endpoint.
    async fn add_webhook(&self, hook: Webhook) -> Result<()>;
    /// Every endpoint.
    async fn webhooks(&self) -> Result<Vec<Webhook>>;
    /// One endpoint.
    async fn webhook(&self, id: &str) -> Result<Option<Webhook>>;
    /// Removes an endpoint with its outbox; whether it existed.
    async fn remove_webhook(&self, id: &str) -> Result<bool>;
    /// Endpoints with events waiting whose backoff is over at `now`.
    async fn webhooks_due(&self, now: i64) -> Result<Vec<Webhook>>;
    /// The oldest `limit` events in an endpoint's outbox.
    async fn outbox(&self, webhook_id: &str, limit: usize) -> Result<Vec<OutboxItem>>;
    /// Events waiting in an endpoint's outbox.
    async fn outbox_len(&self, webhook_id: &str) -> Result<u64>;
    /// Records a POST: on success its rows leave the outbox and the
    /// endpoint's backoff ends; on failure the endpoint waits until
    /// `retry_at`, and rows that entered the outbox before `dead_before`
    /// move to the dead-letter list.
    async fn outbox_result(
        &self,
        webhook_id: &str,
        seqs: &[i64],
        attempt: WebhookAttempt,
        retry_at: Option<i64>,
        dead_before: i64,
    ) -> Result<()>;
    /// The latest POSTs to an endpoint, newest first.
    async fn webhook_attempts(&self, webhook_id: &str, limit: usize)
    -> Result<Vec<WebhookAttempt>>;
    /// An endpoint's dead letters, newest first.
    async fn webhook_dead_letters(&self, webhook_id: &str, limit: usize)
    -> Result<Vec<DeadLetter>>;
    /// Puts the stored events matching `query` that the endpoint wants into
    /// its outbox again; returns how many.
    async fn replay_webhook(&self, webhook_id: &str, query: EventQuery) -> Result<usize>;

    /// Creates or replaces a template.
    async fn put_template(&self, template: Template) -> Result<()>;
    /// One template.
    async fn template(&self, name: &str) -> Result<Option<Template>>;
    /// Every template, by name.
    async fn templates(&self) -> Result<Vec<Template>>;
    /// Removes a template; whether it existed.
    async fn remove_template(&self, name: &str) -> Result<bool>;
}
