//! The API's collections besides messages: events, suppressions, webhook
//! endpoints, the queue.

use crate::auth::Caller;
use crate::body::{Params, parse};
use crate::idempotency;
use crate::keys::Scope;
use crate::{Api, Problem};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tern_events::{Event, EventType};
use tern_store::{EventQuery, Suppression, SuppressionQuery, Webhook};
use utoipa::{IntoParams, ToSchema};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

fn time_param(field: &str, v: &Option<String>) -> Result<Option<i64>, Problem> {
    v.as_deref()
        .map(|s| {
            tern_events::event::parse_time(s).ok_or_else(|| {
                Problem::invalid(field, "not an RFC 3339 time (2026-12-03T10:00:00Z)")
            })
        })
        .transpose()
}

fn types_param(v: &Option<String>) -> Result<Vec<EventType>, Problem> {
    let Some(v) = v else { return Ok(Vec::new()) };
    v.split(',')
        .filter(|t| !t.is_empty())
        .map(|t| {
            EventType::parse(t.trim()).ok_or_else(|| {
                Problem::invalid(
                    "type",
                    format!(
                        "{t:?} is not an event type ({})",
                        EventType::ALL.map(|t| t.as_str()).join(", ")
                    ),
                )
            })
        })
        .collect()
}

fn limit_param(v: Option<usize>) -> Result<usize, Problem> {
    match v {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(Problem::invalid("limit", format!("1 to {MAX_PAGE}"))),
    }
}

/// Filters of `GET /v1/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// Event types, comma-separated (`delivered,bounced`).
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Only events about this recipient.
    pub recipient: Option<String>,
    /// Only recipients in this domain.
    pub domain: Option<String>,
    /// Only this message's events.
    pub message_id: Option<String>,
    /// Only events with this tag.
    pub tag: Option<String>,
    /// From this time (RFC 3339).
    pub since: Option<String>,
    /// Before this time (RFC 3339).
    pub until: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (100).
    pub limit: Option<usize>,
}

/// A page of events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// Events, oldest first.
    pub events: Vec<Event>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn event_query(p: &EventsParams) -> Result<EventQuery, Problem> {
    if let Some(c) = &p.cursor
        && (c.len() != 26 || tern_events::id::time_of(c).is_none())
    {
        return Err(Problem::invalid("cursor", "not a cursor this API returned"));
    }
    Ok(EventQuery {
        types: types_param(&p.event_type)?,
        recipient: p.recipient.clone(),
        domain: p.domain.clone(),
        message_id: p.message_id.clone(),
        tag: p.tag.clone(),
        since: time_param("since", &p.since)?,
        until: time_param("until", &p.until)?,
        after: p.cursor.clone(),
        limit: limit_param(p.limit)?,
        newest_first: false,
    })
}

/// Events, filtered, oldest first, with cursor pagination.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsParams),
    responses((status = 200, body = EventPage), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn list_events(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Params(p): Params<EventsParams>,
) -> Result<Json<EventPage>, Problem> {
    caller.require_read()?;
    let q = event_query(&p)?;
    let limit = q.limit;
    let events = api.store.events(q).await?;
    let next_cursor = (events.len() == limit)
        .then(|| events.last().map(|e| e.id.clone()))
        .flatten();
    Ok(Json(EventPage {
        events,
        next_cursor,
    }))
}

/// A suppression list entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionView {
    /// The address.
    pub address: String,
    /// The sending domain it applies to; absent: every domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `hard_bounce`, `complaint`, `unsubscribe` or `manual`.
    pub reason: String,
    /// When it was added.
    pub created: String,
    /// When it lapses; absent: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// What caused it (a bounce's reply).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl From<Suppression> for SuppressionView {
    fn from(s: Suppression) -> Self {
        Self {
            address: s.address,
            domain: Some(s.domain).filter(|d| !d.is_empty()),
            reason: s.reason,
            created: tern_events::event::format_time(s.created * 1000),
            expires: s.expires.map(|e| tern_events::event::format_time(e * 1000)),
            detail: s.detail,
        }
    }
}

/// A page of suppressions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionPage {
    /// Entries, by address.
    pub suppressions: Vec<SuppressionView>,
    /// Pass as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Filters of `GET /v1/suppressions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SuppressionParams {
    /// Only this sending domain's list (`global` for the global one).
    pub domain: Option<String>,
    /// Only this reason.
    pub reason: Option<String>,
    /// Only addresses starting with this.
    pub prefix: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (100).
    pub limit: Option<usize>,
}

/// Reasons an entry may have.
pub const REASONS: &[&str] = &["hard_bounce", "complaint", "unsubscribe", "manual"];

fn reason_param(r: &str) -> Result<(), Problem> {
    if REASONS.contains(&r) {
        Ok(())
    } else {
        Err(Problem::invalid(
            "reason",
            format!("one of {}", REASONS.join(", ")),
        ))
    }
}

/// Suppression list entries.
#[utoipa::path(get, path = "/v1/suppressions", tag = "suppressions", params(SuppressionParams),
    responses((status = 200, body = SuppressionPage), (status = 422, body = Problem)))]
pub async fn list_suppressions(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Params(p): Params<SuppressionParams>,
) -> Result<Json<SuppressionPage>, Problem> {
    caller.require_read()?;
    if let Some(r) = &p.reason {
        reason_param(r)?;
    }
    let after = match &p.cursor {
        Some(c) => {
            let raw = URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| {
                    s.split_once('\n')
                        .map(|(a, d)| (a.to_string(), d.to_string()))
                })
                .ok_or_else(|| Problem::invalid("cursor", "not a cursor this API returned"))?;
            Some(raw)
        }
        None => None,
    };
    let limit = limit_param(p.limit)?;
    let rows = api
        .store
        .list_suppressions(SuppressionQuery {
            domain: p
                .domain
                .map(|d| if d == "global" { String::new() } else { d }),
            reason: p.reason,
            prefix: p.prefix,
            after,
            limit,
        })
        .await?;
    let next_cursor = (rows.len() == limit)
        .then(|| {
            rows.last()
                .map(|s| URL_SAFE_NO_PAD.encode(format!("{}\n{}", s.address, s.domain)))
        })
        .flatten();
    Ok(Json(SuppressionPage {
        suppressions: rows.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// Addresses to suppress.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddSuppressions {
    /// Up to 1,000 addresses.
    pub addresses: Vec<String>,
    /// `manual` (default), `hard_bounce`, `complaint` or `unsubscribe`.
    #[serde(default)]
    pub reason: Option<String>,
    /// Only for mail from this domain; absent: every domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// When the entries lapse (RFC 3339); absent: never.
    #[serde(default)]
    pub expires_at: Option<String>,
}

/// How many entries were added.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Added {
    /// Entries added or replaced.
    pub added: usize,
}

/// Adds addresses to a suppression list.
#[utoipa::path(post, path = "/v1/suppressions", tag = "suppressions", request_body = AddSuppressions,
    params(("Idempotency-Key" = Option<String>, Header, description = "As for /v1/messages")),
    responses((status = 201, body = Added), (status = 422, body = Problem)))]
pub async fn add_suppressions(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(Scope::Admin)?;
    let create = async {
        let req: AddSuppressions = parse(&headers, &body)?;
        if req.addresses.is_empty() || req.addresses.len() > 1000 {
            return Err(Problem::invalid("addresses", "1 to 1000 addresses"));
        }
        let reason = req.reason.unwrap_or_else(|| "manual".into());
        reason_param(&reason)?;
        let expires = time_param("expires_at", &req.expires_at)?.map(|ms| ms / 1000);
        let now = tern_core::now_unix();
        let mut entries = Vec::new();
        for (i, a) in req.addresses.iter().enumerate() {
            let parsed = tern_core::Address::parse(a.trim())
                .map_err(|e| Problem::invalid(format!("addresses[{i}]"), e.to_string()))?;
            entries.push(Suppression {
                address: parsed.to_string().to_lowercase(),
                domain: req.domain.clone().unwrap_or_default().to_lowercase(),
                reason: reason.clone(),
                created: now,
                expires,
                detail: format!("added over the API by key {}", caller.key.id),
            });
        }
        let added = Added {
            added: entries.len(),
        };
        api.store.add_suppressions(entries).await?;
        Ok(serde_json::to_string(&added).unwrap_or_default())
    };
    idempotency::created(
        &api,
        &caller,
        &headers,
        "POST /v1/suppressions",
        &body,
        create,
    )
    .await
}

/// Which list to remove from.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RemoveParams {
    /// The sending domain's list; absent: the global list.
    pub domain: Option<String>,
}

/// Removes an address from a suppression list.
#[utoipa::path(delete, path = "/v1/suppressions/{address}", tag = "suppressions",
    params(("address" = String, Path, description = "The address"), RemoveParams),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn remove_suppression(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(address): Path<String>,
    Params(p): Params<RemoveParams>,
) -> Result<StatusCode, Problem> {
    caller.require(Scope::Admin)?;
    if api
        .store
        .remove_suppression(&address, p.domain.as_deref().unwrap_or(""))
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!(
            "{address} on that suppression list"
        )))
    }
}

/// A new webhook endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddWebhook {
    /// Where to POST events: `https://…` (or `http://` when
    /// `[webhooks] allow_http` is on).
    pub url: String,
    /// Event types it wants; absent or empty: all.
    #[serde(default)]
    pub events: Vec<EventType>,
    /// Only events about this domain's mail (sender or recipient).
    #[serde(default)]
    pub domain: Option<String>,
    /// Up to 100 events per POST (`{"events": […]}`) instead of one.
    #[serde(default)]
    pub batch: bool,
}

/// A webhook endpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    /// Its id.
    pub id: String,
    /// Its URL.
    pub url: String,
    /// Event types it gets (empty: all).
    pub events: Vec<EventType>,
    /// Domain filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Batches of events per POST.
    pub batch: bool,
    /// The signing secret: shown only when the endpoint is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Events waiting to be POSTed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<u64>,
    /// Consecutive failed POSTs.
    pub failures: u32,
}

impl WebhookView {
    fn of(h: Webhook, secret: bool) -> Self {
        Self {
            id: h.id,
            url: h.url,
            events: h.events,
            domain: Some(h.domain).filter(|d| !d.is_empty()),
            batch: h.batch,
            secret: secret.then_some(h.secret),
            pending: None,
            failures: h.failures,
        }
    }
}

/// Webhook endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Every endpoint.
    pub webhooks: Vec<WebhookView>,
}

/// One endpoint with its recent POSTs and dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDetail {
    /// The endpoint.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The latest POSTs, newest first.
    #[schema(value_type = Vec<Object>)]
    pub attempts: Vec<tern_store::WebhookAttempt>,
    /// Events given up on, newest first.
    #[schema(value_type = Vec<Object>)]
    pub dead_letters: Vec<tern_store::DeadLetter>,
}

/// Lists webhook endpoints (without secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses((status = 200, body = WebhookList)))]
pub async fn list_webhooks(
    State(api): State<Arc<Api>>,
    caller: Caller,
) -> Result<Json<WebhookList>, Problem> {
    caller.require_read()?;
    let webhooks = api
        .store
        .webhooks()
        .await?
        .into_iter()
        .map(|h| WebhookView::of(h, false))
        .collect();
    Ok(Json(WebhookList { webhooks }))
}

/// Adds a webhook endpoint; the answer holds its signing secret, shown once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = AddWebhook,
    params(("Idempotency-Key" = Option<String>, Header, description = "As for /v1/messages")),
    responses((status = 201, body = WebhookView), (status = 422, body = Problem)))]
pub async fn add_webhook(
    State(api): State<Arc<Api>>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(Scope::Admin)?;
    let create = async {
        let req: AddWebhook = parse(&headers, &body)?;
        crate::webhooks::check_url(&req.url, api.webhooks.allow_http)
            .map_err(|m| Problem::invalid("url", m))?;
        let hook = crate::webhooks::new_endpoint(
            req.url,
            req.events,
            req.domain.unwrap_or_default(),
            req.batch,
        );
        api.store.add_webhook(hook.clone()).await?;
        Ok(serde_json::to_string(&WebhookView::of(hook, true)).unwrap_or_default())
    };
    idempotency::created(&api, &caller, &headers, "POST /v1/webhooks", &body, create).await
}

/// One endpoint, with its recent POSTs and dead letters.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = WebhookDetail), (status = 404, body = Problem)))]
pub async fn get_webhook(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookDetail>, Problem> {
    caller.require_read()?;
    let hook = api
        .store
        .webhook(&id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("Webhook {id}")))?;
    let mut view = WebhookView::of(hook, false);
    view.pending = Some(api.store.outbox_len(&id).await?);
    Ok(Json(WebhookDetail {
        webhook: view,
        attempts: api.store.webhook_attempts(&id, 50).await?,
        dead_letters: api.store.webhook_dead_letters(&id, 50).await?,
    }))
}

/// Removes an endpoint and its pending events.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn remove_webhook(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    caller.require(Scope::Admin)?;
    if api.store.remove_webhook(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("Webhook {id}")))
    }
}

/// What to send again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// From this time (RFC 3339).
    pub since: String,
    /// Before this time (RFC 3339); absent: now.
    #[serde(default)]
    pub until: Option<String>,
    /// Only these types; absent: those the endpoint wants.
    #[serde(default)]
    pub types: Vec<EventType>,
}

/// How many events were queued again.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Events put back into the endpoint's outbox.
    pub queued: usize,
}

/// Sends stored events of a time range to an endpoint again.
#[utoipa::path(post, path = "/v1/webhooks/{id}/replay", tag = "webhooks", request_body = ReplayRequest,
    params(("id" = String, Path, description = "Endpoint id")),
    responses((status = 202, body = Replayed), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn replay_webhook(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Replayed>), Problem> {
    caller.require(Scope::Admin)?;
    let req: ReplayRequest = parse(&headers, &body)?;
    let since = time_param("since", &Some(req.since))?;
    let until = time_param("until", &req.until)?;
    if api.store.webhook(&id).await?.is_none() {
        return Err(Problem::not_found(format!("Webhook {id}")));
    }
    let queued = api
        .store
        .replay_webhook(
            &id,
            EventQuery {
                types: req.types,
                since,
                until,
                ..Default::default()
            },
        )
        .await?;
    tracing::info!(webhook = %id, queued, "api: webhook replay");
    Ok((StatusCode::ACCEPTED, Json(Replayed { queued })))
}

/// A queued recipient.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueEntry {
    /// The message id.
    pub id: String,
    /// Envelope sender.
    pub sender: String,
    /// The recipient.
    pub recipient: String,
    /// Attempts made.
    pub attempts: u32,
    /// Next attempt (RFC 3339).
    pub next_attempt: String,
    /// When the queue gives up (RFC 3339).
    pub expires: String,
    /// The last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The queue.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueList {
    /// Queued recipients, oldest message first (at most 1,000).
    pub entries: Vec<QueueEntry>,
}

/// Lists the queue.
#[utoipa::path(get, path = "/v1/queue", tag = "queue", responses((status = 200, body = QueueList)))]
pub async fn queue_list(
    State(api): State<Arc<Api>>,
    caller: Caller,
) -> Result<Json<QueueList>, Problem> {
    caller.require_read()?;
    let entries = api
        .store
        .queue_list()
        .await?
        .into_iter()
        .take(MAX_PAGE)
        .map(|r| QueueEntry {
            id: r.queue_id,
            sender: r.mail_from,
            recipient: r.address,
            attempts: r.attempts,
            next_attempt: tern_events::event::format_time(r.next_attempt * 1000),
            expires: tern_events::event::format_time(r.expires_at * 1000),
            last_error: r.last_error,
        })
        .collect();
    Ok(Json(QueueList { entries }))
}

/// How many recipients were affected.
#[derive(Debug, Serialize, ToSchema)]
pub struct Affected {
    /// Recipients.
    pub recipients: usize,
}

/// Makes a message's queued recipients due now.
#[utoipa::path(post, path = "/v1/queue/{id}/retry", tag = "queue",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, body = Affected), (status = 404, body = Problem)))]
pub async fn queue_retry(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Affected>, Problem> {
    caller.require(Scope::Admin)?;
    if api.store.queued_message(&id).await?.is_empty() {
        return Err(Problem::not_found(format!("Message {id} in the queue")));
    }
    let n = api
        .store
        .queue_retry(Some(&id), tern_core::now_unix())
        .await?;
    Ok(Json(Affected { recipients: n }))
}

/// Removes a message from the queue without notice.
#[utoipa::path(delete, path = "/v1/queue/{id}", tag = "queue",
    params(("id" = String, Path, description = "Message id")),
    responses((status = 200, body = Affected), (status = 404, body = Problem)))]
pub async fn queue_delete(
    State(api): State<Arc<Api>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Affected>, Problem> {
    caller.require(Scope::Admin)?;
    let n = api.store.queue_delete(&id).await?;
    if n == 0 {
        return Err(Problem::not_found(format!("Message {id} in the queue")));
    }
    tracing::info!(queue_id = %id, recipients = n, key = %caller.key.id, "api: removed from the queue");
    Ok(Json(Affected { recipients: n }))
}
