//! [`Platform`] for PostgreSQL: events, message logs, suppressions, API
//! keys, idempotent responses, webhooks with their outbox, templates —
//! shared by every node.
//!
//! Webhook deliveries are claimed: an endpoint is drained by one node at a
//! time (`claimed_by`, renewed with every result and expiring
//! [`WEBHOOK_CLAIM_SECS`] after its node stops), so events reach it once
//! and in order whichever nodes run.

use super::PgStore;
use super::events::{
    WEBHOOK_COLUMNS, insert_events, insert_idempotent, insert_log, insert_suppressions,
    load_webhooks, webhook,
};
use crate::intake::{encode_events, encode_logs};
use crate::platform::*;
use crate::{Result, StoreError};
use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use std::collections::HashMap;
use tern_events::Event;

/// Most rows one query returns.
const MAX_PAGE: usize = 1000;

/// How long a node's claim on a webhook endpoint outlives its last result.
pub const WEBHOOK_CLAIM_SECS: i64 = 120;

/// Appends an event query's conditions (over `events e`).
fn event_filter(b: &mut QueryBuilder<Postgres>, q: &EventQuery) {
    let after = if q.newest_first {
        None
    } else {
        q.after.clone()
    };
    b.push(" WHERE TRUE");
    if !q.types.is_empty() {
        let types: Vec<String> = q.types.iter().map(|t| t.as_str().to_string()).collect();
        b.push(" AND e.type = ANY(").push_bind(types).push(")");
    }
    if let Some(r) = &q.recipient {
        b.push(" AND e.recipient = ").push_bind(r.to_lowercase());
    }
    if let Some(d) = &q.domain {
        b.push(" AND e.domain = ").push_bind(d.to_lowercase());
    }
    if let Some(m) = &q.message_id {
        b.push(" AND e.message_id = ").push_bind(m.clone());
    }
    if let Some(t) = &q.tag {
        b.push(
            " AND EXISTS (SELECT 1 FROM jsonb_array_elements_text(e.data::jsonb -> 'tags') AS t(v) WHERE t.v = ",
        )
        .push_bind(t.clone())
        .push(")");
    }
    // Ids sort by time: time bounds are id bounds.
    let mut lower = q.since.map(tern_events::id::lower_bound);
    if let Some(after) = &after {
        b.push(" AND e.id > ").push_bind(after.clone());
        lower = lower.filter(|l| l > after);
    }
    if let Some(l) = lower {
        b.push(" AND e.id >= ").push_bind(l);
    }
    if let Some(u) = q.until {
        b.push(" AND e.id < ")
            .push_bind(tern_events::id::lower_bound(u));
    }
}

async fn query_events(c: &mut PgConnection, q: &EventQuery) -> Result<Vec<Event>> {
    let mut b = QueryBuilder::new("SELECT e.data FROM events e");
    event_filter(&mut b, q);
    b.push(if q.newest_first {
        " ORDER BY e.id DESC LIMIT "
    } else {
        " ORDER BY e.id ASC LIMIT "
    })
    .push_bind(q.limit.clamp(1, MAX_PAGE) as i64);
    let rows: Vec<String> = b.build_query_scalar().fetch_all(c).await?;
    let mut out = Vec::with_capacity(rows.len());
    for data in rows {
        match Event::from_json(&data) {
            Ok(e) => out.push(e),
            Err(e) => tracing::warn!(error = %e, "store: unreadable event skipped"),
        }
    }
    Ok(out)
}

type SuppressionTuple = (String, String, String, i64, Option<i64>, String);

fn suppression(
    (address, domain, reason, created, expires, detail): SuppressionTuple,
) -> Suppression {
    Suppression {
        address,
        domain,
        reason,
        created,
        expires,
        detail,
    }
}

type ApiKeyTuple = (String, String, String, String, String, i64, Option<i64>);

fn api_key((id, hash, scope, domains, name, created, revoked): ApiKeyTuple) -> ApiKey {
    ApiKey {
        id,
        hash,
        scope,
        domains: serde_json::from_str(&domains).unwrap_or_default(),
        name,
        created,
        revoked,
    }
}

type TemplateTuple = (String, String, Option<String>, Option<String>, i64, i64);

fn template((name, subject, text, html, created, updated): TemplateTuple) -> Template {
    Template {
        name,
        subject,
        text,
        html,
        created,
        updated,
    }
}

#[async_trait]
impl Platform for PgStore {
    async fn record_events(
        &self,
        events: Vec<Event>,
        logs: Vec<MessageLog>,
        idempotency: Option<IdempotentResponse>,
    ) -> Result<()> {
        let events = encode_events(events);
        let logs = encode_logs(&logs)?;
        let mut tx = self.pool.begin().await?;
        insert_events(&mut tx, &events.iter().collect::<Vec<_>>(), &[]).await?;
        for l in &logs {
            insert_log(&mut tx, l).await?;
        }
        if let Some(r) = &idempotency {
            insert_idempotent(&mut tx, r).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_feedback(&self, events: Vec<Event>, suppress: Vec<Suppression>) -> Result<()> {
        let events = encode_events(events);
        let mut tx = self.pool.begin().await?;
        insert_events(&mut tx, &events.iter().collect::<Vec<_>>(), &[]).await?;
        insert_suppressions(&mut tx, &suppress).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn event_counts(
        &self,
        domain: &str,
        dim: &str,
        since_hour: i64,
        until_hour: i64,
    ) -> Result<Vec<EventCount>> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(
            "SELECT hour, type, detail, SUM(n)::BIGINT FROM event_counts
             WHERE domain = $1 AND dim = $2 AND hour >= $3 AND hour < $4
             GROUP BY hour, type, detail ORDER BY hour, type, detail",
        )
        .bind(domain.to_ascii_lowercase())
        .bind(dim)
        .bind(since_hour)
        .bind(until_hour)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(hour, event_type, detail, n)| EventCount {
                hour,
                event_type,
                detail,
                n,
            })
            .collect())
    }

    async fn events(&self, query: EventQuery) -> Result<Vec<Event>> {
        let mut c = self.pool.acquire().await?;
        query_events(&mut c, &query).await
    }

    async fn prune_events(&self, before: i64) -> Result<usize> {
        let bound = tern_events::id::lower_bound(before);
        let mut total = 0;
        loop {
            // Small batches: deliveries write the same tables.
            let n = sqlx::query(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id < $1 ORDER BY id LIMIT 5000)",
            )
            .bind(&bound)
            .execute(&self.pool)
            .await?
            .rows_affected() as usize;
            total += n;
            if n < 5000 {
                break;
            }
        }
        // Queue ids sort by time: the log's key is its time index.
        sqlx::query("DELETE FROM message_log WHERE message_id < $1")
            .bind(tern_core::id::queue_id_lower_bound(before / 1000))
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM idempotency WHERE created < $1")
            .bind(tern_core::now_unix() - 86400)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE seq < (SELECT MAX(seq) - 100000 FROM webhook_attempts)",
        )
        .execute(&self.pool)
        .await?;
        Ok(total)
    }

    async fn message_log(&self, message_id: &str) -> Result<Option<MessageLog>> {
        let data: Option<String> =
            sqlx::query_scalar("SELECT data FROM message_log WHERE message_id = $1")
                .bind(message_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(data.and_then(|d| serde_json::from_str(&d).ok()))
    }

    async fn search_message_logs(&self, q: MessageSearch) -> Result<Vec<MessageLog>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT data FROM message_log
             WHERE time >= $1 AND time < $2
               AND ($3::TEXT IS NULL OR lower(data::jsonb ->> 'sender') = lower($3))
               AND ($4::TEXT IS NULL OR strpos(lower(data::jsonb ->> 'headers'), lower($4)) > 0)
             ORDER BY message_id DESC LIMIT $5",
        )
        .bind(q.since.unwrap_or(0))
        .bind(q.until.unwrap_or(i64::MAX))
        .bind(&q.sender)
        .bind(&q.text)
        .bind(q.limit.clamp(1, MAX_PAGE) as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|d| serde_json::from_str(&d).ok())
            .collect())
    }

    async fn suppressed(
        &self,
        addresses: &[String],
        sender_domain: &str,
        now: i64,
    ) -> Result<HashMap<String, Suppression>> {
        let addresses: Vec<String> = addresses.iter().map(|a| a.to_lowercase()).collect();
        // The domain's own entry wins over the global one ('' sorts first).
        let rows: Vec<SuppressionTuple> = sqlx::query_as(
            "SELECT DISTINCT ON (address) address, domain, reason, created, expires, detail
             FROM suppressions
             WHERE address = ANY($1) AND domain IN ('', $2) AND (expires IS NULL OR expires > $3)
             ORDER BY address, domain DESC",
        )
        .bind(&addresses)
        .bind(sender_domain.to_lowercase())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|t| (t.0.clone(), suppression(t)))
            .collect())
    }

    async fn add_suppressions(&self, entries: Vec<Suppression>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_suppressions(&mut tx, &entries).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn remove_suppression(&self, address: &str, domain: &str) -> Result<bool> {
        Ok(
            sqlx::query("DELETE FROM suppressions WHERE address = $1 AND domain = $2")
                .bind(address.to_lowercase())
                .bind(domain.to_lowercase())
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn list_suppressions(&self, q: SuppressionQuery) -> Result<Vec<Suppression>> {
        let mut b = QueryBuilder::new(
            "SELECT address, domain, reason, created, expires, detail FROM suppressions WHERE TRUE",
        );
        if let Some(d) = &q.domain {
            b.push(" AND domain = ").push_bind(d.to_lowercase());
        }
        if let Some(r) = &q.reason {
            b.push(" AND reason = ").push_bind(r.clone());
        }
        if let Some(p) = &q.prefix {
            b.push(" AND starts_with(address, ")
                .push_bind(p.to_lowercase())
                .push(")");
        }
        if let Some((a, d)) = &q.after {
            b.push(" AND (address, domain) > (")
                .push_bind(a.clone())
                .push(", ")
                .push_bind(d.clone())
                .push(")");
        }
        b.push(" ORDER BY address, domain LIMIT ")
            .push_bind(q.limit.clamp(1, MAX_PAGE) as i64);
        let rows: Vec<SuppressionTuple> = b.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(suppression).collect())
    }

    async fn add_api_key(&self, key: ApiKey) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_keys(id, hash, scope, domains, name, created, revoked)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.id)
        .bind(&key.hash)
        .bind(&key.scope)
        .bind(serde_json::to_string(&key.domains).unwrap_or_else(|_| "[]".into()))
        .bind(&key.name)
        .bind(key.created)
        .bind(key.revoked)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let row: Option<ApiKeyTuple> = sqlx::query_as(
            "SELECT id, hash, scope, domains, name, created, revoked FROM api_keys WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(api_key))
    }

    async fn api_keys(&self) -> Result<Vec<ApiKey>> {
        let rows: Vec<ApiKeyTuple> = sqlx::query_as(
            "SELECT id, hash, scope, domains, name, created, revoked FROM api_keys ORDER BY created DESC, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(api_key).collect())
    }

    async fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool> {
        Ok(
            sqlx::query("UPDATE api_keys SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
                .bind(now)
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected()
                > 0,
        )
    }

    async fn idempotent_response(
        &self,
        key_id: &str,
        key: &str,
        since: i64,
    ) -> Result<Option<IdempotentResponse>> {
        let row: Option<(String, String, String, i64, String, i64)> = sqlx::query_as(
            "SELECT key_id, key, request, status, response, created FROM idempotency
             WHERE key_id = $1 AND key = $2 AND created >= $3",
        )
        .bind(key_id)
        .bind(key)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(
            |(key_id, key, request, status, response, created)| IdempotentResponse {
                key_id,
                key,
                request,
                status: status as u16,
                response,
                created,
            },
        ))
    }

    async fn save_idempotent_response(&self, response: IdempotentResponse) -> Result<()> {
        let mut c = self.pool.acquire().await?;
        insert_idempotent(&mut c, &response).await
    }

    async fn add_webhook(&self, hook: Webhook) -> Result<()> {
        let events: Vec<&str> = hook.events.iter().map(|e| e.as_str()).collect();
        sqlx::query(
            "INSERT INTO webhooks(id, url, secret, events, domain, batch, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&hook.id)
        .bind(&hook.url)
        .bind(&hook.secret)
        .bind(serde_json::to_string(&events).unwrap_or_else(|_| "[]".into()))
        .bind(hook.domain.to_lowercase())
        .bind(hook.batch)
        .bind(hook.created)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let mut c = self.pool.acquire().await?;
        load_webhooks(&mut c, "").await
    }

    async fn webhook(&self, id: &str) -> Result<Option<Webhook>> {
        if id.is_empty() {
            return Ok(None);
        }
        let mut c = self.pool.acquire().await?;
        Ok(load_webhooks(&mut c, id).await?.into_iter().next())
    }

    async fn remove_webhook(&self, id: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }

    async fn webhooks_due(&self, now: i64) -> Result<Vec<Webhook>> {
        // Claimed for this node: endpoints no other node holds (or whose
        // node stopped renewing), locked rows skipped.
        let rows = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE webhooks SET claimed_by = $2, claimed_until = $1 + $3
             WHERE id IN (SELECT id FROM webhooks w
                          WHERE next_attempt <= $1 AND (claimed_until <= $1 OR claimed_by = $2)
                            AND EXISTS (SELECT 1 FROM webhook_outbox o WHERE o.webhook_id = w.id)
                          FOR UPDATE SKIP LOCKED)
             RETURNING {WEBHOOK_COLUMNS}"
        )))
        .bind(now)
        .bind(&*self.node)
        .bind(WEBHOOK_CLAIM_SECS)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(webhook).collect())
    }

    async fn outbox(&self, webhook_id: &str, limit: usize) -> Result<Vec<OutboxItem>> {
        let rows: Vec<(i64, Option<String>, i64, i64)> = sqlx::query_as(
            "SELECT o.seq, e.data, o.attempts, o.created FROM webhook_outbox o
             LEFT JOIN events e ON e.id = o.event_id
             WHERE o.webhook_id = $1 ORDER BY o.seq LIMIT $2",
        )
        .bind(webhook_id)
        .bind(limit.clamp(1, MAX_PAGE) as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut items = Vec::new();
        let mut gone = Vec::new();
        for (seq, data, attempts, created) in rows {
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
        if !gone.is_empty() {
            sqlx::query("DELETE FROM webhook_outbox WHERE seq = ANY($1)")
                .bind(&gone)
                .execute(&self.pool)
                .await?;
        }
        Ok(items)
    }

    async fn outbox_len(&self, webhook_id: &str) -> Result<u64> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox WHERE webhook_id = $1")
                .bind(webhook_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(n as u64)
    }

    async fn outbox_result(
        &self,
        webhook_id: &str,
        seqs: &[i64],
        attempt: WebhookAttempt,
        retry_at: Option<i64>,
        dead_before: i64,
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts(webhook_id, time, events, status, error, millis)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(webhook_id)
        .bind(attempt.time)
        .bind(i64::from(attempt.events))
        .bind(attempt.status.map(i64::from))
        .bind(&attempt.error)
        .bind(attempt.millis as i64)
        .execute(&mut *tx)
        .await?;
        match retry_at {
            None => {
                sqlx::query("DELETE FROM webhook_outbox WHERE seq = ANY($1)")
                    .bind(seqs)
                    .execute(&mut *tx)
                    .await?;
                // The claim is renewed: this node keeps the endpoint
                // while it lives.
                sqlx::query(
                    "UPDATE webhooks SET failures = 0, next_attempt = 0,
                        claimed_until = CASE WHEN claimed_by = $4 THEN $2 + $3 ELSE claimed_until END
                     WHERE id = $1",
                )
                .bind(webhook_id)
                .bind(attempt.time)
                .bind(WEBHOOK_CLAIM_SECS)
                .bind(&*self.node)
                .execute(&mut *tx)
                .await?;
            }
            Some(at) => {
                sqlx::query(
                    "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = $1 WHERE seq = ANY($2)",
                )
                .bind(&attempt.error)
                .bind(seqs)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO webhook_dead(webhook_id, event_id, time, attempts, last_error)
                     SELECT webhook_id, event_id, $1, attempts, COALESCE(last_error, '')
                     FROM webhook_outbox WHERE webhook_id = $2 AND created < $3",
                )
                .bind(attempt.time)
                .bind(webhook_id)
                .bind(dead_before)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM webhook_outbox WHERE webhook_id = $1 AND created < $2")
                    .bind(webhook_id)
                    .bind(dead_before)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE webhooks SET failures = failures + 1, next_attempt = $1 WHERE id = $2",
                )
                .bind(at)
                .bind(webhook_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn webhook_attempts(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<WebhookAttempt>> {
        let rows: Vec<(i64, i64, Option<i64>, String, i64)> = sqlx::query_as(
            "SELECT time, events, status, error, millis FROM webhook_attempts
             WHERE webhook_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(webhook_id)
        .bind(limit.clamp(1, MAX_PAGE) as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(time, events, status, error, millis)| WebhookAttempt {
                time,
                events: events as u32,
                status: status.map(|s| s as u16),
                error,
                millis: millis as u64,
            })
            .collect())
    }

    async fn webhook_dead_letters(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let rows: Vec<(String, i64, i64, String)> = sqlx::query_as(
            "SELECT event_id, time, attempts, last_error FROM webhook_dead
             WHERE webhook_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(webhook_id)
        .bind(limit.clamp(1, MAX_PAGE) as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(event_id, time, attempts, last_error)| DeadLetter {
                event_id,
                time,
                attempts: attempts as u32,
                last_error,
            })
            .collect())
    }

    async fn replay_webhook(&self, webhook_id: &str, query: EventQuery) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let Some(hook) = load_webhooks(&mut tx, webhook_id).await?.into_iter().next() else {
            return Err(StoreError::NotFound(format!("webhook {webhook_id}")));
        };
        let now = tern_core::now_unix();
        let mut q = query;
        let mut n = 0;
        // Page through the range inside the one transaction.
        loop {
            q.limit = MAX_PAGE;
            let page = query_events(&mut tx, &q).await?;
            let ids: Vec<&str> = page
                .iter()
                .filter(|e| hook.wants(e))
                .map(|e| e.id.as_str())
                .collect();
            if !ids.is_empty() {
                sqlx::query(
                    "INSERT INTO webhook_outbox(webhook_id, event_id, created)
                     SELECT $1, e, $3 FROM UNNEST($2::TEXT[]) WITH ORDINALITY AS u(e, n) ORDER BY n",
                )
                .bind(&hook.id)
                .bind(&ids)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                n += ids.len();
            }
            match page.last() {
                Some(last) if page.len() == MAX_PAGE => q.after = Some(last.id.clone()),
                _ => break,
            }
        }
        // A replay is asked for now: the endpoint's backoff ends.
        sqlx::query("UPDATE webhooks SET next_attempt = 0 WHERE id = $1")
            .bind(&hook.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn put_template(&self, t: Template) -> Result<()> {
        sqlx::query(
            "INSERT INTO templates(name, subject, text, html, created, updated)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (name) DO UPDATE SET subject = $2, text = $3, html = $4, updated = $5",
        )
        .bind(&t.name)
        .bind(&t.subject)
        .bind(&t.text)
        .bind(&t.html)
        .bind(t.updated)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn template(&self, name: &str) -> Result<Option<Template>> {
        let row: Option<TemplateTuple> = sqlx::query_as(
            "SELECT name, subject, text, html, created, updated FROM templates WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(template))
    }

    async fn templates(&self) -> Result<Vec<Template>> {
        let rows: Vec<TemplateTuple> = sqlx::query_as(
            "SELECT name, subject, text, html, created, updated FROM templates ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(template).collect())
    }

    async fn remove_template(&self, name: &str) -> Result<bool> {
        Ok(sqlx::query("DELETE FROM templates WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0)
    }
}
