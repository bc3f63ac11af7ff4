//! [`Platform`] for SQLite: events, message logs, suppressions, API keys,
//! idempotent responses, webhooks and their outbox, templates.

use super::SqliteStore;
use crate::platform::*;
use crate::{Result, StoreError};
use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use std::collections::HashMap;
use tern_events::{Event, EventType};

/// Most rows one query returns.
const MAX_PAGE: usize = 1000;

use crate::intake::{EncodedEvent as Encoded, EncodedLog, encode_events as encode, encode_logs};

/// Writes events and copies each into the outbox of every endpoint that
/// wants it. Runs inside the caller's transaction.
pub(super) fn insert_events(c: &Connection, events: &[Encoded]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut ins = c.prepare_cached(
        "INSERT OR IGNORE INTO events(id, type, message_id, recipient, domain, data)
         VALUES (?, ?, ?, ?, ?, ?)",
    )?;
    let hooks = load_webhooks(c, "")?;
    let mut outbox = c.prepare_cached(
        "INSERT INTO webhook_outbox(webhook_id, event_id, created) VALUES (?, ?, ?)",
    )?;
    let now = tern_core::now_unix();
    // The hourly counters, summed here and written once per key.
    let mut counts = std::collections::BTreeMap::new();
    for Encoded { event: e, json } in events {
        let new = ins.execute(params![
            e.id,
            e.event_type.as_str(),
            e.message_id,
            e.recipient.as_ref().map(|r| r.to_lowercase()),
            e.domain,
            json
        ])?;
        if new == 0 {
            continue;
        }
        crate::intake::count_event(&mut counts, e);
        for h in hooks.iter().filter(|h| h.wants(e)) {
            outbox.execute(params![h.id, e.id, now])?;
        }
    }
    let mut count = c.prepare_cached(
        "INSERT INTO event_counts(hour, domain, dim, type, detail, n) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(domain, dim, hour, type, detail) DO UPDATE SET n = n + excluded.n",
    )?;
    for ((hour, domain, dim, t, detail), n) in counts {
        count.execute(params![hour, domain, dim, t, detail, n])?;
    }
    Ok(())
}

/// Adds suppression entries (replacing the same address and domain).
pub(super) fn insert_suppressions(c: &Connection, entries: &[Suppression]) -> Result<()> {
    let mut st = c.prepare_cached(
        "INSERT OR REPLACE INTO suppressions(address, domain, reason, created, expires, detail)
         VALUES (?, ?, ?, ?, ?, ?)",
    )?;
    for s in entries {
        st.execute(params![
            s.address.to_lowercase(),
            s.domain.to_lowercase(),
            s.reason,
            s.created,
            s.expires,
            s.detail
        ])?;
    }
    Ok(())
}

pub(super) fn insert_log(c: &Connection, log: &EncodedLog) -> Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO message_log(message_id, time, data) VALUES (?, ?, ?)",
    )?
    .execute(params![log.message_id, log.time, log.json])?;
    Ok(())
}

pub(super) fn insert_idempotent(c: &Connection, r: &IdempotentResponse) -> Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO idempotency(key_id, key, request, status, response, created)
         VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        r.key_id, r.key, r.request, r.status, r.response, r.created
    ])?;
    Ok(())
}

fn webhook_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Webhook> {
    let events: String = r.get(3)?;
    let events: Vec<String> = serde_json::from_str(&events).unwrap_or_default();
    Ok(Webhook {
        id: r.get(0)?,
        url: r.get(1)?,
        secret: r.get(2)?,
        events: events.iter().filter_map(|e| EventType::parse(e)).collect(),
        domain: r.get(4)?,
        batch: r.get::<_, i64>(5)? != 0,
        created: r.get(6)?,
        next_attempt: r.get(7)?,
        failures: r.get::<_, i64>(8)? as u32,
    })
}

const WEBHOOK_COLUMNS: &str =
    "id, url, secret, events, domain, batch, created, next_attempt, failures";

fn load_webhooks(c: &Connection, id: &str) -> Result<Vec<Webhook>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE ?1 = '' OR id = ?1 ORDER BY created, id"
    ))?;
    Ok(st
        .query_map([id], webhook_row)?
        .collect::<rusqlite::Result<_>>()?)
}

/// The SQL condition and arguments of an event query (over `events e`).
fn event_filter(q: &EventQuery) -> (String, Vec<Value>) {
    let mut cond = vec!["1".to_string()];
    let mut args: Vec<Value> = Vec::new();
    let q = &EventQuery {
        after: if q.newest_first {
            None
        } else {
            q.after.clone()
        },
        ..q.clone()
    };
    if !q.types.is_empty() {
        let marks = vec!["?"; q.types.len()].join(",");
        cond.push(format!("e.type IN ({marks})"));
        args.extend(q.types.iter().map(|t| Value::Text(t.as_str().into())));
    }
    if let Some(r) = &q.recipient {
        cond.push("e.recipient = ?".into());
        args.push(Value::Text(r.to_lowercase()));
    }
    if let Some(d) = &q.domain {
        cond.push("e.domain = ?".into());
        args.push(Value::Text(d.to_lowercase()));
    }
    if let Some(m) = &q.message_id {
        cond.push("e.message_id = ?".into());
        args.push(Value::Text(m.clone()));
    }
    if let Some(t) = &q.tag {
        cond.push("EXISTS (SELECT 1 FROM json_each(e.data, '$.tags') WHERE value = ?)".into());
        args.push(Value::Text(t.clone()));
    }
    // Ids sort by time: time bounds are id bounds, served by every index.
    let mut lower = q.since.map(tern_events::id::lower_bound);
    if let Some(after) = &q.after {
        cond.push("e.id > ?".into());
        args.push(Value::Text(after.clone()));
        lower = lower.filter(|l| l > after);
    }
    if let Some(l) = lower {
        cond.push("e.id >= ?".into());
        args.push(Value::Text(l));
    }
    if let Some(u) = q.until {
        cond.push("e.id < ?".into());
        args.push(Value::Text(tern_events::id::lower_bound(u)));
    }
    (cond.join(" AND "), args)
}

fn query_events(c: &Connection, q: &EventQuery) -> Result<Vec<Event>> {
    let (cond, mut args) = event_filter(q);
    args.push(Value::Integer(q.limit.clamp(1, MAX_PAGE) as i64));
    let mut st = c.prepare_cached(&format!(
        "SELECT e.data FROM events e WHERE {cond} ORDER BY e.id {} LIMIT ?",
        if q.newest_first { "DESC" } else { "ASC" }
    ))?;
    let rows = st.query_map(params_from_iter(args), |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for data in rows {
        match Event::from_json(&data?) {
            Ok(e) => out.push(e),
            Err(e) => tracing::warn!(error = %e, "store: unreadable event skipped"),
        }
    }
    Ok(out)
}

fn suppression_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Suppression> {
    Ok(Suppression {
        address: r.get(0)?,
        domain: r.get(1)?,
        reason: r.get(2)?,
        created: r.get(3)?,
        expires: r.get(4)?,
        detail: r.get(5)?,
    })
}

fn api_key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    let domains: String = r.get(3)?;
    Ok(ApiKey {
        id: r.get(0)?,
        hash: r.get(1)?,
        scope: r.get(2)?,
        domains: serde_json::from_str(&domains).unwrap_or_default(),
        name: r.get(4)?,
        created: r.get(5)?,
        revoked: r.get(6)?,
    })
}

fn template_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Template> {
    Ok(Template {
        name: r.get(0)?,
        subject: r.get(1)?,
        text: r.get(2)?,
        html: r.get(3)?,
        created: r.get(4)?,
        updated: r.get(5)?,
    })
}

#[async_trait]
impl Platform for SqliteStore {
    async fn record_events(
        &self,
        events: Vec<Event>,
        logs: Vec<MessageLog>,
        idempotency: Option<IdempotentResponse>,
    ) -> Result<()> {
        let events = encode(events);
        let logs = encode_logs(&logs)?;
        self.write(move |c| {
            insert_events(c, &events)?;
            for l in &logs {
                insert_log(c, l)?;
            }
            if let Some(r) = &idempotency {
                insert_idempotent(c, r)?;
            }
            Ok(())
        })
        .await
    }

    async fn record_feedback(&self, events: Vec<Event>, suppress: Vec<Suppression>) -> Result<()> {
        let events = encode(events);
        self.write(move |c| {
            insert_events(c, &events)?;
            insert_suppressions(c, &suppress)
        })
        .await
    }

    async fn event_counts(
        &self,
        domain: &str,
        dim: &str,
        since_hour: i64,
        until_hour: i64,
    ) -> Result<Vec<EventCount>> {
        let domain = domain.to_ascii_lowercase();
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT hour, type, detail, n FROM event_counts
                 WHERE domain = ? AND dim = ? AND hour >= ? AND hour < ? ORDER BY hour",
            )?;
            let rows = st.query_map(params![domain, dim, since_hour, until_hour], |r| {
                Ok(EventCount {
                    hour: r.get(0)?,
                    event_type: r.get(1)?,
                    detail: r.get(2)?,
                    n: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<Event>> {
        self.read(|c| query_events(c, &query))
    }

    async fn prune_events(&self, before: i64) -> Result<usize> {
        let bound = tern_events::id::lower_bound(before);
        let mut total = 0;
        loop {
            let bound = bound.clone();
            // Small batches: the writer is shared with deliveries.
            let n = self
                .write(move |c| {
                    let n = c.execute(
                        "DELETE FROM events WHERE id IN
                            (SELECT id FROM events WHERE id < ? ORDER BY id LIMIT 5000)",
                        [&bound],
                    )?;
                    // Queue ids sort by time: the log's key is its time index.
                    c.execute(
                        "DELETE FROM message_log WHERE message_id IN
                            (SELECT message_id FROM message_log WHERE message_id < ?
                             ORDER BY message_id LIMIT 5000)",
                        [tern_core::id::queue_id_lower_bound(before / 1000)],
                    )?;
                    c.execute(
                        "DELETE FROM idempotency WHERE created < ?",
                        [tern_core::now_unix() - 86400],
                    )?;
                    c.execute(
                        "DELETE FROM webhook_attempts WHERE seq < (SELECT MAX(seq) - 100000 FROM webhook_attempts)",
                        [],
                    )?;
                    Ok(n)
                })
                .await?;
            total += n;
            if n < 5000 {
                return Ok(total);
            }
        }
    }

    async fn message_log(&self, message_id: &str) -> Result<Option<MessageLog>> {
        self.read(|c| {
            let data: Option<String> = c
                .prepare_cached("SELECT data FROM message_log WHERE message_id = ?")?
                .query_row([message_id], |r| r.get(0))
                .optional()?;
            Ok(data.and_then(|d| serde_json::from_str(&d).ok()))
        })
    }

    async fn search_message_logs(&self, q: MessageSearch) -> Result<Vec<MessageLog>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT data FROM message_log
                 WHERE time >= ?1 AND time < ?2
                   AND (?3 IS NULL OR lower(json_extract(data, '$.sender')) = lower(?3))
                   AND (?4 IS NULL OR instr(lower(json_extract(data, '$.headers')), lower(?4)) > 0)
                 ORDER BY message_id DESC LIMIT ?5",
            )?;
            let rows = st.query_map(
                params![
                    q.since.unwrap_or(0),
                    q.until.unwrap_or(i64::MAX),
                    q.sender,
                    q.text,
                    q.limit.clamp(1, MAX_PAGE) as i64
                ],
                |r| r.get::<_, String>(0),
            )?;
            let mut out = Vec::new();
            for d in rows {
                if let Ok(log) = serde_json::from_str(&d?) {
                    out.push(log);
                }
            }
            Ok(out)
        })
    }

    async fn suppressed(
        &self,
        addresses: &[String],
        sender_domain: &str,
        now: i64,
    ) -> Result<HashMap<String, Suppression>> {
        let sender_domain = sender_domain.to_lowercase();
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT address, domain, reason, created, expires, detail FROM suppressions
                 WHERE address = ? AND domain IN ('', ?) AND (expires IS NULL OR expires > ?)
                 ORDER BY domain DESC LIMIT 1",
            )?;
            let mut out = HashMap::new();
            for a in addresses {
                let a = a.to_lowercase();
                if let Some(s) = st
                    .query_row(params![a, sender_domain, now], suppression_row)
                    .optional()?
                {
                    out.insert(a, s);
                }
            }
            Ok(out)
        })
    }

    async fn add_suppressions(&self, entries: Vec<Suppression>) -> Result<()> {
        self.write(move |c| insert_suppressions(c, &entries)).await
    }

    async fn remove_suppression(&self, address: &str, domain: &str) -> Result<bool> {
        let (address, domain) = (address.to_lowercase(), domain.to_lowercase());
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM suppressions WHERE address = ? AND domain = ?",
                params![address, domain],
            )? > 0)
        })
        .await
    }

    async fn list_suppressions(&self, q: SuppressionQuery) -> Result<Vec<Suppression>> {
        self.read(|c| {
            let mut cond = vec!["1".to_string()];
            let mut args: Vec<Value> = Vec::new();
            if let Some(d) = &q.domain {
                cond.push("domain = ?".into());
                args.push(Value::Text(d.to_lowercase()));
            }
            if let Some(r) = &q.reason {
                cond.push("reason = ?".into());
                args.push(Value::Text(r.clone()));
            }
            if let Some(p) = &q.prefix {
                cond.push("substr(address, 1, ?) = ?".into());
                args.push(Value::Integer(p.chars().count() as i64));
                args.push(Value::Text(p.to_lowercase()));
            }
            if let Some((a, d)) = &q.after {
                cond.push("(address, domain) > (?, ?)".into());
                args.push(Value::Text(a.clone()));
                args.push(Value::Text(d.clone()));
            }
            args.push(Value::Integer(q.limit.clamp(1, MAX_PAGE) as i64));
            let mut st = c.prepare_cached(&format!(
                "SELECT address, domain, reason, created, expires, detail FROM suppressions
                 WHERE {} ORDER BY address, domain LIMIT ?",
                cond.join(" AND ")
            ))?;
            Ok(st
                .query_map(params_from_iter(args), suppression_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn add_api_key(&self, key: ApiKey) -> Result<()> {
        self.write(move |c| {
            let domains = serde_json::to_string(&key.domains).unwrap_or_else(|_| "[]".into());
            c.execute(
                "INSERT INTO api_keys(id, hash, scope, domains, name, created, revoked)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![
                    key.id,
                    key.hash,
                    key.scope,
                    domains,
                    key.name,
                    key.created,
                    key.revoked
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id, hash, scope, domains, name, created, revoked FROM api_keys WHERE id = ?",
            )?
            .query_row([id], api_key_row)
            .optional()?)
        })
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT id, hash, scope, domains, name, created, revoked FROM api_keys
                 ORDER BY created DESC, id",
            )?
            .query_map([], api_key_row)?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool> {
        let id = id.to_string();
        self.write(move |c| {
            Ok(c.execute(
                "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                params![now, id],
            )? > 0)
        })
        .await
    }

    async fn idempotent_response(
        &self,
        key_id: &str,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotentResponse>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT key_id, key, request, status, response, created FROM idempotency
                 WHERE key_id = ? AND key = ? AND created >= ?",
            )?
            .query_row(params![key_id, key, since], |r| {
                Ok(IdempotentResponse {
                    key_id: r.get(0)?,
                    key: r.get(1)?,
                    request: r.get(2)?,
                    status: r.get::<_, i64>(3)? as u16,
                    response: r.get(4)?,
                    created: r.get(5)?,
                })
            })
            .optional()?)
        })
    }

    async fn save_idempotent_response(&self, response: IdempotentResponse) -> Result<()> {
        self.write(move |c| insert_idempotent(c, &response)).await
    }

    async fn add_webhook(&self, hook: Webhook) -> Result<()> {
        self.write(move |c| {
            let events: Vec<&str> = hook.events.iter().map(|e| e.as_str()).collect();
            c.execute(
                "INSERT INTO webhooks(id, url, secret, events, domain, batch, created)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                params![
                    hook.id,
                    hook.url,
                    hook.secret,
                    serde_json::to_string(&events).unwrap_or_else(|_| "[]".into()),
                    hook.domain.to_lowercase(),
                    hook.batch,
                    hook.created
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.read(|c| load_webhooks(c, ""))
    }

    async fn webhook(&self, id: &str) -> Result<Option<Webhook>> {
        if id.is_empty() {
            return Ok(None);
        }
        self.read(|c| Ok(load_webhooks(c, id)?.into_iter().next()))
    }

    async fn remove_webhook(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.write(move |c| Ok(c.execute("DELETE FROM webhooks WHERE id = ?", [id])? > 0))
            .await
    }

    async fn webhooks_due(&self, now: i64) -> Result<Vec<Webhook>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE next_attempt <= ?
                 AND EXISTS (SELECT 1 FROM webhook_outbox o WHERE o.webhook_id = w.id)"
            ))?;
            Ok(st
                .query_map([now], webhook_row)?
                .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn outbox(&self, webhook_id: &str, limit: usize) -> Result<Vec<OutboxItem>> {
        let (items, gone) = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT o.seq, e.data, o.attempts, o.created FROM webhook_outbox o
                 LEFT JOIN events e ON e.id = o.event_id
                 WHERE o.webhook_id = ? ORDER BY o.seq LIMIT ?",
            )?;
            let rows = st.query_map(params![webhook_id, limit.clamp(1, MAX_PAGE) as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut items = Vec::new();
            let mut gone = Vec::new();
            for row in rows {
                let (seq, data, attempts, created) = row?;
                // An event pruned (or unreadable) while waiting is dropped.
                match data.as_deref().map(Event::from_json) {
                    Some(Ok(event)) => items.push(OutboxItem {
                        seq,
                        event,
                        attempts: attempts as u32,
                        created,
                    }),
                    _ => gone.push(seq),
                }
            }
            Ok((items, gone))
        })?;
        if !gone.is_empty() {
            self.write(move |c| {
                let mut st = c.prepare_cached("DELETE FROM webhook_outbox WHERE seq = ?")?;
                for s in gone {
                    st.execute([s])?;
                }
                Ok(())
            })
            .await?;
        }
        Ok(items)
    }

    async fn outbox_len(&self, webhook_id: &str) -> Result<u64> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT COUNT(*) FROM webhook_outbox WHERE webhook_id = ?")?
                    .query_row([webhook_id], |r| r.get::<_, i64>(0))? as u64,
            )
        })
    }

    async fn outbox_result(
        &self,
        webhook_id: &str,
        seqs: &[i64],
        attempt: WebhookAttempt,
        retry_at: Option<i64>,
        dead_before: i64,
    ) -> Result<()> {
        let webhook_id = webhook_id.to_string();
        let seqs = seqs.to_vec();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO webhook_attempts(webhook_id, time, events, status, error, millis)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                webhook_id,
                attempt.time,
                attempt.events,
                attempt.status,
                attempt.error,
                attempt.millis as i64
            ])?;
            match retry_at {
                None => {
                    let mut del = c.prepare_cached("DELETE FROM webhook_outbox WHERE seq = ?")?;
                    for s in &seqs {
                        del.execute([s])?;
                    }
                    c.execute(
                        "UPDATE webhooks SET failures = 0, next_attempt = 0 WHERE id = ?",
                        [&webhook_id],
                    )?;
                }
                Some(at) => {
                    let mut bump = c.prepare_cached(
                        "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = ?
                         WHERE seq = ?",
                    )?;
                    for s in &seqs {
                        bump.execute(params![attempt.error, s])?;
                    }
                    c.execute(
                        "INSERT INTO webhook_dead(webhook_id, event_id, time, attempts, last_error)
                         SELECT webhook_id, event_id, ?, attempts, COALESCE(last_error, '')
                         FROM webhook_outbox WHERE webhook_id = ? AND created < ?",
                        params![attempt.time, webhook_id, dead_before],
                    )?;
                    c.execute(
                        "DELETE FROM webhook_outbox WHERE webhook_id = ? AND created < ?",
                        params![webhook_id, dead_before],
                    )?;
                    c.execute(
                        "UPDATE webhooks SET failures = failures + 1, next_attempt = ? WHERE id = ?",
                        params![at, webhook_id],
                    )?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn webhook_attempts(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<WebhookAttempt>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT time, events, status, error, millis FROM webhook_attempts
                 WHERE webhook_id = ? ORDER BY seq DESC LIMIT ?",
            )?
            .query_map(params![webhook_id, limit.clamp(1, MAX_PAGE) as i64], |r| {
                Ok(WebhookAttempt {
                    time: r.get(0)?,
                    events: r.get::<_, i64>(1)? as u32,
                    status: r.get::<_, Option<i64>>(2)?.map(|s| s as u16),
                    error: r.get(3)?,
                    millis: r.get::<_, i64>(4)? as u64,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn webhook_dead_letters(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT event_id, time, attempts, last_error FROM webhook_dead
                 WHERE webhook_id = ? ORDER BY seq DESC LIMIT ?",
            )?
            .query_map(params![webhook_id, limit.clamp(1, MAX_PAGE) as i64], |r| {
                Ok(DeadLetter {
                    event_id: r.get(0)?,
                    time: r.get(1)?,
                    attempts: r.get::<_, i64>(2)? as u32,
                    last_error: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn replay_webhook(&self, webhook_id: &str, query: EventQuery) -> Result<usize> {
        let webhook_id = webhook_id.to_string();
        self.write(move |c| {
            let Some(hook) = load_webhooks(c, &webhook_id)?.into_iter().next() else {
                return Err(StoreError::NotFound(format!("webhook {webhook_id}")));
            };
            let mut ins = c.prepare_cached(
                "INSERT INTO webhook_outbox(webhook_id, event_id, created) VALUES (?, ?, ?)",
            )?;
            let now = tern_core::now_unix();
            let mut q = query;
            let mut n = 0;
            // Page through the range inside the one transaction.
            loop {
                q.limit = MAX_PAGE;
                let page = query_events(c, &q)?;
                for e in page.iter().filter(|e| hook.wants(e)) {
                    ins.execute(params![hook.id, e.id, now])?;
                    n += 1;
                }
                match page.last() {
                    Some(last) if page.len() == MAX_PAGE => q.after = Some(last.id.clone()),
                    _ => break,
                }
            }
            // A replay is asked for now: the endpoint's backoff ends.
            c.execute(
                "UPDATE webhooks SET next_attempt = 0 WHERE id = ?",
                [&hook.id],
            )?;
            Ok(n)
        })
        .await
    }

    async fn put_template(&self, t: Template) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO templates(name, subject, text, html, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT(name) DO UPDATE SET subject = ?2, text = ?3, html = ?4, updated = ?5",
                params![t.name, t.subject, t.text, t.html, t.updated],
            )?;
            Ok(())
        })
        .await
    }

    async fn template(&self, name: &str) -> Result<Option<Template>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT name, subject, text, html, created, updated FROM templates WHERE name = ?",
            )?
            .query_row([name], template_row)
            .optional()?)
        })
    }

    async fn templates(&self) -> Result<Vec<Template>> {
        self.read(|c| {
            Ok(c.prepare_cached(
                "SELECT name, subject, text, html, created, updated FROM templates ORDER BY name",
            )?
            .query_map([], template_row)?
            .collect::<rusqlite::Result<_>>()?)
        })
    }

    async fn remove_template(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.write(move |c| Ok(c.execute("DELETE FROM templates WHERE name = ?", [name])? > 0))
            .await
    }
}
