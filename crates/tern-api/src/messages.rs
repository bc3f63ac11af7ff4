//! Sending (`POST /v1/messages`, `/v1/messages/batch`) and each message's
//! story (`GET /v1/messages/{id}`).
//!
//! A 2xx is sent only once the message, its queue rows and its events are
//! committed (the rule SMTP's 250 follows). With an `Idempotency-Key`, the
//! response is kept in that same commit: the same key and request within
//! 24 hours gets it again and sends nothing, across restarts; the same key
//! with another request is a 409.

use crate::auth::Caller;
use crate::body::parse;
use crate::build::{self, Content, SendRequest};
use crate::idempotency::{self, json_response};
use crate::keys::Scope;
use crate::{Api, Problem};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tern_events::{Event, RecipientState};
use tern_queue::intake::{Envelope, Prepared, Rcpt, RcptState, Source};
use tern_store::{EventQuery, Recipient};
use utoipa::ToSchema;

/// Most messages in one batch.
const MAX_BATCH: usize = 500;

/// The answer to a send.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SendResponse {
    /// The message id (`GET /v1/messages/{id}`).
    pub id: String,
    /// Each recipient's state.
    pub recipients: Vec<RecipientStatus>,
}

/// A recipient's state after sending.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecipientStatus {
    /// The address.
    pub address: String,
    /// `queued`, `suppressed`, `delivered` (a local mailbox) or `rejected`.
    pub status: String,
    /// Why, when not queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Several messages, sent in one commit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Up to 500 messages, each with its own recipients and variables.
    pub messages: Vec<SendRequest>,
}

/// The answers to a batch, in order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// One per message.
    pub messages: Vec<SendResponse>,
}

fn check_tags(
    tags: &[String],
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), Problem> {
    if tags.len() > 20 {
        return Err(Problem::invalid("tags", "at most 20 tags"));
    }
    for (i, t) in tags.iter().enumerate() {
        if t.is_empty() || t.len() > 100 || t.chars().any(char::is_control) {
            return Err(Problem::invalid(
                format!("tags[{i}]"),
                "1 to 100 characters, no control characters",
            ));
        }
    }
    if serde_json::to_string(metadata).map_or(0, |s| s.len()) > 10 * 1024 {
        return Err(Problem::invalid("metadata", "at most 10 KiB of JSON"));
    }
    Ok(())
}

/// Checks, builds and prepares one message (nothing written yet).
async fn prepare(
    api: &Api,
    caller: &Caller,
    req: SendRequest,
    field: &str,
) -> Result<(Prepared, SendResponse), Problem> {
    let in_field = |mut p: Problem| {
        if !field.is_empty() {
            for e in &mut p.errors {
                e.field = format!("{field}.{}", e.field);
            }
            p.detail = format!("{field}.{}", p.detail);
        }
        p
    };
    check_tags(&req.tags, &req.metadata).map_err(in_field)?;
    let content = match &req.template {
        Some(name) => {
            let t = crate::templates::load(api, name).await.map_err(in_field)?;
            let mut c = crate::templates::render(&t, &req.variables).map_err(in_field)?;
            if let Some(s) = &req.subject {
                c.subject = s.clone();
            }
            c.text = req.text.clone().or(c.text);
            c.html = req.html.clone().or(c.html);
            c
        }
        None => Content {
            subject: req.subject.clone().unwrap_or_default(),
            text: req.text.clone(),
            html: req.html.clone(),
        },
    };
    let now = tern_core::now_unix();
    let not_before = match &req.send_at {
        Some(s) => {
            let t = tern_events::event::parse_time(s)
                .ok_or_else(|| in_field(Problem::invalid("send_at", "not an RFC 3339 time")))?
                / 1000;
            if t > now + 30 * 86400 {
                return Err(in_field(Problem::invalid(
                    "send_at",
                    "at most 30 days ahead",
                )));
            }
            t
        }
        None => 0,
    };
    let queue_id = tern_core::id::queue_id();
    let message_id = format!("{queue_id}.{:016x}@{}", rand::random::<u64>(), api.hostname);
    let tracked_content = content.clone();
    let mut built = build::build(&req, content, &message_id, now, api.config.max_recipients)
        .map_err(in_field)?;
    // Engagement tracking: the HTML part rewritten for its one recipient,
    // then the message built again.
    if let Some(fb) = api.intake.feedback()
        && tracked_content.html.is_some()
    {
        let domain = built.from.domain();
        let stream = req.stream.unwrap_or_default();
        let default = fb.tracks(&domain, stream.as_str());
        let what = tern_feedback::tracking::Tracking {
            opens: req.track_opens.unwrap_or(default),
            clicks: req.track_clicks.unwrap_or(default),
        };
        let asked = req.track_opens == Some(true) || req.track_clicks == Some(true);
        if built.recipients.len() != 1 && asked {
            return Err(in_field(Problem::invalid(
                "track_opens",
                "tracking is per recipient: a tracked message has exactly one recipient",
            )));
        }
        if let ([rcpt], true) = (built.recipients.as_slice(), what.opens || what.clicks) {
            let mut c = tracked_content;
            let html = c.html.take().unwrap_or_default();
            c.html = Some(
                tern_feedback::tracking::rewrite(
                    &html,
                    &fb.tracking_base(&domain),
                    &fb.keys,
                    &queue_id,
                    rcpt,
                    what,
                )
                .map_err(|e| in_field(Problem::invalid("html", e.to_string())))?,
            );
            built = build::build(&req, c, &message_id, now, api.config.max_recipients)
                .map_err(in_field)?;
        }
    }
    if req.stream == Some(tern_queue::intake::Stream::Broadcast) && built.recipients.len() != 1 {
        return Err(in_field(Problem::invalid(
            "stream",
            "a broadcast message goes to exactly one recipient (its unsubscribe link is \
             personal); send one message per recipient, in one /v1/messages/batch request",
        )));
    }
    let domain = built.from.domain();
    let from = tern_core::Address::parse(&built.from.address)
        .map_err(|e| in_field(Problem::invalid("from", e.to_string())))?;
    let ours = !matches!(api.store.resolve(&from, false).await?, Recipient::NotLocal);
    if !ours {
        return Err(in_field(Problem::invalid(
            "from",
            format!("{domain} is not a domain of this server (add it with `tern domain add`)"),
        )));
    }
    if !caller.may_send_as(&domain) {
        return Err(Problem::forbidden(format!(
            "This API key sends only as {}; not as {domain}.",
            caller.key.domains.join(", ")
        )));
    }
    let mut env = Envelope::new(Source::Api, built.from.address.clone(), built.message);
    env.queue_id = queue_id.clone();
    env.received_at = now;
    env.not_before = not_before;
    env.tags = req.tags;
    env.metadata = req.metadata;
    env.stream = req.stream.unwrap_or_default();
    env.api_key = Some(caller.key.id.clone());
    let mut rejected = Vec::new();
    for address in built.recipients {
        let parsed = tern_core::Address::parse(&address)
            .map_err(|e| Problem::invalid("to", e.to_string()))?;
        match api.store.resolve(&parsed, false).await? {
            Recipient::Local(l) => env.local.push((l.account, address)),
            Recipient::Forward(target) => env.recipients.push(Rcpt::new(target)),
            Recipient::NotLocal => env.recipients.push(Rcpt::new(address)),
            Recipient::UnknownUser => rejected.push(address),
        }
    }
    let mut recipients: Vec<RecipientStatus> = Vec::new();
    if env.recipients.is_empty() && env.local.is_empty() {
        return Err(in_field(Problem::invalid(
            "to",
            format!("no such local recipient: {}", rejected.join(", ")),
        )));
    }
    let prepared = api.intake.prepare(env).await.map_err(|e| match e {
        tern_queue::intake::IntakeError::Store(e) => Problem::from(e),
        e => Problem::invalid("to", e.to_string()),
    })?;
    for (address, state) in &prepared.decision.recipients {
        let (status, reason) = match state {
            RcptState::Queued => ("queued", None),
            RcptState::Delivered => ("delivered", None),
            RcptState::Suppressed(r) => {
                ("suppressed", Some(format!("on the suppression list: {r}")))
            }
        };
        recipients.push(RecipientStatus {
            address: address.clone(),
            status: status.into(),
            reason,
        });
    }
    for address in rejected {
        recipients.push(RecipientStatus {
            address,
            status: "rejected".into(),
            reason: Some("no such user here".into()),
        });
    }
    Ok((
        prepared,
        SendResponse {
            id: queue_id,
            recipients,
        },
    ))
}

/// Sends a message.
#[utoipa::path(post, path = "/v1/messages", tag = "messages", request_body = SendRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "The same key and request within 24 hours returns the first response and sends nothing again")),
    responses(
        (status = 202, description = "Queued: the message and its events are on disk", body = SendResponse),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem), (status = 422, body = Problem),
        (status = 429, body = Problem)))]
pub async fn send(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(Scope::Send)?;
    let pending =
        match idempotency::begin(&api, &caller, &headers, "POST /v1/messages", &body).await {
            Ok(p) => p,
            Err(replay) => return Ok(replay),
        };
    let req: SendRequest = parse(&headers, &body)?;
    let (prepared, answer) = prepare(&api, &caller, req, "").await?;
    let json = serde_json::to_string(&answer).unwrap_or_default();
    // The kept answer is written in the message's own commit.
    let prepared = match &pending {
        Some(p) => prepared.with_idempotency(p.record(StatusCode::ACCEPTED, &json)),
        None => prepared,
    };
    api.intake.commit(prepared).await?;
    metrics::counter!("tern_api_messages_total").increment(1);
    tracing::info!(queue_id = %answer.id, key = %caller.key.id, recipients = answer.recipients.len(), "api: message accepted");
    Ok(json_response(StatusCode::ACCEPTED, json))
}

/// Sends up to 500 messages in one commit: all are queued, or none.
#[utoipa::path(post, path = "/v1/messages/batch", tag = "messages", request_body = BatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "As for /v1/messages")),
    responses((status = 202, body = BatchResponse), (status = 401, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn send_batch(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(Scope::Send)?;
    let pending =
        match idempotency::begin(&api, &caller, &headers, "POST /v1/messages/batch", &body).await {
            Ok(p) => p,
            Err(replay) => return Ok(replay),
        };
    let req: BatchRequest = parse(&headers, &body)?;
    if req.messages.is_empty() || req.messages.len() > MAX_BATCH {
        return Err(Problem::invalid(
            "messages",
            format!("1 to {MAX_BATCH} messages"),
        ));
    }
    let mut answers = Vec::with_capacity(req.messages.len());
    let mut to_write = Vec::new();
    let mut only = tern_queue::intake::EventsOnly::default();
    for (i, m) in req.messages.into_iter().enumerate() {
        let (prepared, answer) = prepare(&api, &caller, m, &format!("messages[{i}]")).await?;
        match prepared.into_message() {
            Ok(msg) => to_write.push(msg),
            Err(o) => only.merge(*o),
        }
        answers.push(answer);
    }
    let batch = BatchResponse { messages: answers };
    let json = serde_json::to_string(&batch).unwrap_or_default();
    let record = pending
        .as_ref()
        .map(|p| p.record(StatusCode::ACCEPTED, &json));
    match to_write.first_mut() {
        Some(first) => {
            first.events.append(&mut only.events);
            first.idempotency = record;
            // Fully suppressed messages' history rides in the same commit.
            first.logs.append(&mut only.logs);
            api.store.deliver_all(to_write).await?;
        }
        None => {
            api.store
                .record_events(only.events, only.logs, record)
                .await?
        }
    }
    metrics::counter!("tern_api_messages_total").increment(batch.messages.len() as u64);
    tracing::info!(key = %caller.key.id, messages = batch.messages.len(), "api: batch accepted");
    Ok(json_response(StatusCode::ACCEPTED, json))
}

/// A message's story.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageView {
    /// Its id.
    pub id: String,
    /// Where it came from (`api`, `submission`, `smtp`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Envelope sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// When it was accepted (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// `transactional` or `broadcast`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Metadata.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The header fields as sent, in order (`[name, value]`).
    pub headers: Vec<(String, String)>,
    /// Each recipient.
    pub recipients: Vec<RecipientView>,
}

/// Where one recipient stands, and how it got there.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecipientView {
    /// The address.
    pub address: String,
    /// Its state.
    pub status: RecipientState,
    /// For a recipient still queued: why it waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Its events, oldest first.
    pub events: Vec<Event>,
}

/// Why a queued recipient has not been delivered yet.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Waiting {
    /// Attempts made.
    pub attempts: u32,
    /// When the next one is due (RFC 3339).
    pub next_attempt: String,
    /// When the queue gives up (RFC 3339).
    pub expires: String,
    /// The last remote reply or error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    /// What holds it, in a sentence.
    pub reason: String,
}

fn header_fields(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.split("\r\n") {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((n, v)) = line.split_once(':') {
            out.push((n.to_string(), v.trim().to_string()));
        }
    }
    out
}

/// A message: envelope, headers, each recipient's state and events, and for
/// recipients still queued, why they wait.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id (as returned when sending, or a queue id)")),
    responses((status = 200, body = MessageView), (status = 404, body = Problem)))]
pub async fn get_message(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, Problem> {
    let log = api.store.message_log(&id).await?;
    // A send key sees only what it sent.
    let own = log
        .as_ref()
        .is_some_and(|l| l.api_key.as_deref() == Some(caller.key.id.as_str()));
    if !own {
        caller.require_read()?;
    }
    let events = api
        .store
        .events(EventQuery {
            message_id: Some(id.clone()),
            limit: 1000,
            ..Default::default()
        })
        .await?;
    if log.is_none() && events.is_empty() {
        return Err(Problem::not_found(format!("Message {id}")));
    }
    let queued = api.store.queued_message(&id).await?;
    let now = tern_core::now_unix();
    let mut addresses: Vec<String> = log
        .as_ref()
        .map(|l| l.recipients.clone())
        .unwrap_or_default();
    for e in &events {
        if let Some(r) = &e.recipient
            && !addresses.iter().any(|a| a.eq_ignore_ascii_case(r))
        {
            addresses.push(r.clone());
        }
    }
    let recipients = addresses
        .into_iter()
        .map(|address| {
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| {
                    e.recipient
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case(&address))
                })
                .cloned()
                .collect();
            let status = RecipientState::of(&mine);
            let waiting = queued
                .iter()
                .find(|q| q.address.eq_ignore_ascii_case(&address))
                .map(|q| Waiting {
                    attempts: q.attempts,
                    next_attempt: tern_events::event::format_time(q.next_attempt * 1000),
                    expires: tern_events::event::format_time(q.expires_at * 1000),
                    last_reply: q.last_error.clone(),
                    reason: tern_queue::waiting::reason(q, now),
                });
            RecipientView {
                address,
                status,
                waiting,
                events: mine,
            }
        })
        .collect();
    let view = match log {
        Some(l) => MessageView {
            id,
            source: Some(l.source),
            sender: Some(l.sender),
            created: Some(tern_events::event::format_time(l.time * 1000)),
            stream: Some(l.stream).filter(|s| !s.is_empty()),
            tags: l.tags,
            metadata: l.metadata,
            headers: header_fields(&l.headers),
            recipients,
        },
        None => MessageView {
            id,
            source: events.first().and_then(|e| e.source.clone()),
            sender: events.first().and_then(|e| e.sender.clone()),
            created: events
                .first()
                .map(|e| tern_events::event::format_time(e.time)),
            stream: None,
            tags: Vec::new(),
            metadata: Default::default(),
            headers: Vec::new(),
            recipients,
        },
    };
    Ok(Json(view))
}
