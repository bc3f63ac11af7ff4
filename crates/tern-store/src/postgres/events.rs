//! The records every write of mail may carry, written in its transaction:
//! events (with their hourly counters and their copies in the webhook
//! outboxes), message logs, suppressions and idempotent API responses.

use crate::intake::{EncodedEvent, EncodedLog};
use crate::platform::{IdempotentResponse, Suppression, Webhook};
use crate::{EventType, Result};
use sqlx::PgConnection;

/// How many rows each counter is spread over (see `event_counts` in the
/// schema).
const COUNTER_SLOTS: i16 = 16;

type WebhookRow = (String, String, String, String, String, bool, i64, i64, i64);

pub(super) const WEBHOOK_COLUMNS: &str =
    "id, url, secret, events, domain, batch, created, next_attempt, failures";

pub(super) fn webhook(r: WebhookRow) -> Webhook {
    let (id, url, secret, events, domain, batch, created, next_attempt, failures) = r;
    let events: Vec<String> = serde_json::from_str(&events).unwrap_or_default();
    Webhook {
        id,
        url,
        secret,
        events: events.iter().filter_map(|e| EventType::parse(e)).collect(),
        domain,
        batch,
        created,
        next_attempt,
        failures: failures as u32,
    }
}

/// The webhooks, all (`id` empty) or one.
pub(super) async fn load_webhooks(c: &mut PgConnection, id: &str) -> Result<Vec<Webhook>> {
    let rows: Vec<WebhookRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE $1 = '' OR id = $1 ORDER BY created, id"
    )))
    .bind(id)
    .fetch_all(c)
    .await?;
    Ok(rows.into_iter().map(webhook).collect())
}

/// Writes events (each once: an id already stored is skipped) and message
/// logs (replacing a message's earlier one) in one statement, copies each
/// new event into the outbox of every endpoint that wants it, and adds
/// them to the hourly counters. A few statements whatever the numbers.
pub(super) async fn insert_events(
    c: &mut PgConnection,
    events: &[&EncodedEvent],
    logs: &[&EncodedLog],
) -> Result<()> {
    if events.is_empty() && logs.is_empty() {
        return Ok(());
    }
    let log_ids: Vec<&str> = logs.iter().map(|l| l.message_id.as_str()).collect();
    let log_times: Vec<i64> = logs.iter().map(|l| l.time).collect();
    let log_data: Vec<&str> = logs.iter().map(|l| l.json.as_str()).collect();
    let ids: Vec<&str> = events.iter().map(|e| e.event.id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event.event_type.as_str()).collect();
    let messages: Vec<&str> = events.iter().map(|e| e.event.message_id.as_str()).collect();
    let recipients: Vec<Option<String>> = events
        .iter()
        .map(|e| e.event.recipient.as_ref().map(|r| r.to_lowercase()))
        .collect();
    let domains: Vec<Option<&str>> = events.iter().map(|e| e.event.domain.as_deref()).collect();
    let data: Vec<&str> = events.iter().map(|e| e.json.as_str()).collect();
    let new: Vec<String> = sqlx::query_scalar(
        "WITH logs AS (
            INSERT INTO message_log(message_id, time, data)
            SELECT * FROM UNNEST($7::TEXT[], $8::BIGINT[], $9::TEXT[])
            ON CONFLICT (message_id) DO UPDATE SET time = EXCLUDED.time, data = EXCLUDED.data)
         INSERT INTO events(id, type, message_id, recipient, domain, data)
         SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[])
         ON CONFLICT (id) DO NOTHING RETURNING id",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&messages)
    .bind(&recipients)
    .bind(&domains)
    .bind(&data)
    .bind(&log_ids)
    .bind(&log_times)
    .bind(&log_data)
    .fetch_all(&mut *c)
    .await?;
    if new.is_empty() {
        return Ok(());
    }
    let new: std::collections::HashSet<String> = new.into_iter().collect();
    let hooks = load_webhooks(c, "").await?;
    let mut outbox: (Vec<String>, Vec<String>) = Default::default();
    // Summed here, written once per key, in key order.
    let mut counts = std::collections::BTreeMap::new();
    for e in events
        .iter()
        .map(|e| &e.event)
        .filter(|e| new.contains(&e.id))
    {
        crate::intake::count_event(&mut counts, e);
        for h in hooks.iter().filter(|h| h.wants(e)) {
            outbox.0.push(h.id.clone());
            outbox.1.push(e.id.clone());
        }
    }
    if !outbox.0.is_empty() {
        sqlx::query(
            "INSERT INTO webhook_outbox(webhook_id, event_id, created)
             SELECT w, e, $3 FROM UNNEST($1::TEXT[], $2::TEXT[]) AS u(w, e)",
        )
        .bind(&outbox.0)
        .bind(&outbox.1)
        .bind(tern_core::now_unix())
        .execute(&mut *c)
        .await?;
    }
    // In key order: two transactions touching the same counters lock them
    // in the same order.
    let counts: Vec<_> = counts.into_iter().collect();
    let slot = rand::random_range(0..COUNTER_SLOTS);
    let hours: Vec<i64> = counts.iter().map(|c| c.0.0).collect();
    let domains: Vec<&str> = counts.iter().map(|c| c.0.1.as_str()).collect();
    let dims: Vec<&str> = counts.iter().map(|c| c.0.2.as_str()).collect();
    let types: Vec<&str> = counts.iter().map(|c| c.0.3).collect();
    let details: Vec<&str> = counts.iter().map(|c| c.0.4.as_str()).collect();
    let ns: Vec<i64> = counts.iter().map(|c| c.1).collect();
    sqlx::query(
        "INSERT INTO event_counts(hour, domain, dim, type, detail, slot, n)
         SELECT h, d, m, t, x, $7, n FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[])
              AS u(h, d, m, t, x, n)
         ON CONFLICT (domain, dim, hour, type, detail, slot) DO UPDATE SET n = event_counts.n + EXCLUDED.n",
    )
    .bind(&hours)
    .bind(&domains)
    .bind(&dims)
    .bind(&types)
    .bind(&details)
    .bind(&ns)
    .bind(slot)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Adds suppression entries (replacing the same address and domain).
pub(super) async fn insert_suppressions(
    c: &mut PgConnection,
    entries: &[Suppression],
) -> Result<()> {
    for s in entries {
        sqlx::query(
            "INSERT INTO suppressions(address, domain, reason, created, expires, detail)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (address, domain) DO UPDATE SET reason = EXCLUDED.reason,
                created = EXCLUDED.created, expires = EXCLUDED.expires, detail = EXCLUDED.detail",
        )
        .bind(s.address.to_lowercase())
        .bind(s.domain.to_lowercase())
        .bind(&s.reason)
        .bind(s.created)
        .bind(s.expires)
        .bind(&s.detail)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

/// Writes (or replaces) a message log.
pub(super) async fn insert_log(c: &mut PgConnection, log: &EncodedLog) -> Result<()> {
    sqlx::query(
        "INSERT INTO message_log(message_id, time, data) VALUES ($1, $2, $3)
         ON CONFLICT (message_id) DO UPDATE SET time = EXCLUDED.time, data = EXCLUDED.data",
    )
    .bind(&log.message_id)
    .bind(log.time)
    .bind(&log.json)
    .execute(c)
    .await?;
    Ok(())
}

/// Keeps an idempotent API response.
pub(super) async fn insert_idempotent(c: &mut PgConnection, r: &IdempotentResponse) -> Result<()> {
    sqlx::query(
        "INSERT INTO idempotency(key_id, key, request, status, response, created)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (key_id, key) DO UPDATE SET request = EXCLUDED.request,
            status = EXCLUDED.status, response = EXCLUDED.response, created = EXCLUDED.created",
    )
    .bind(&r.key_id)
    .bind(&r.key)
    .bind(&r.request)
    .bind(i64::from(r.status))
    .bind(&r.response)
    .bind(r.created)
    .execute(c)
    .await?;
    Ok(())
}
