//! Group commit on PostgreSQL: the deliveries of one node that arrive
//! together are written in one transaction, one WAL flush.
//!
//! Why: a delivery locks its mailbox row (UIDNEXT and HIGHESTMODSEQ) until
//! its commit, WAL flush included, so deliveries to one mailbox commit one
//! after another, each with its own flush, and PostgreSQL's own group
//! commit never gets two of them together. Here one task takes what is
//! waiting (up to [`MAX_BATCH`] writes) and writes it as a whole: bodies put
//! concurrently under their shared locks (or, without a blob store, written
//! in the transaction itself), the target mailboxes and accounts
//! locked up front in id order (so batches, and the other writers, which
//! lock a mailbox before its account, never wait on each other in a
//! cycle), one insert per body set and per mailbox, the events of the whole
//! batch in one go, one commit. With a blob store, up to
//! [`BATCHES_IN_FLIGHT`] batches run at once (their puts overlap; their
//! mailbox locks order them); with bodies in the database, one. A batch that
//! fails is retried one write at a time, so one bad write fails alone.
//!
//! The writer runs on a thread and a runtime of its own, with its own
//! connections ([`start`]): a batch is about a dozen round trips, every
//! delivery in it waits for all of them, and on the server's runtime each
//! reply would wait behind the sessions' tasks for a worker (inbound on
//! PostgreSQL: 1,360 → 1,838 msg/s with the same work). Rows added count
//! themselves in the statements that add them, a batch at once (migration
//! 0007): each body's references as its row is made or found, each
//! account's bytes in one update.

use super::bodies::{forget_bodies, put_bodies};
use super::events::{insert_events, insert_idempotent, insert_suppressions};
use crate::intake::{EncodedEvent, Prepared};
use crate::{AccountId, QueuedRcpt, Result, StoreError};
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

/// Most writes one transaction carries.
pub(super) const MAX_BATCH: usize = 256;

/// Batches committing at once with bodies in a blob store: their puts
/// overlap (their mailbox locks still order their commits).
pub(super) const BATCHES_IN_FLIGHT: usize = 4;

/// One caller's write: messages stored all or none, and what a delivery
/// attempt records with them.
pub(super) struct Job {
    pub prepared: Vec<Prepared>,
    pub after: Option<Completed>,
    pub reply: oneshot::Sender<Result<Vec<QueuedRcpt>>>,
}

/// A delivery attempt's outcomes, events and suppressions
/// ([`crate::Completion`] without its DSNs, which are `prepared`).
pub(super) struct Completed {
    pub outcomes: Vec<(i64, crate::RcptOutcome)>,
    pub events: Vec<EncodedEvent>,
    pub suppress: Vec<crate::Suppression>,
}

/// What the writer task needs of the store.
pub(super) struct Ctx {
    pub pool: PgPool,
    /// The blob store; `None`: bodies in the database.
    pub blobs: Option<Arc<dyn crate::Blobs>>,
    pub node: Arc<str>,
    pub queue_wakeup: Arc<Notify>,
    /// The node's remembered lookups, whose usage figures a commit updates.
    pub lookups: Arc<super::lookups::Lookups>,
}

/// Starts the writer on a thread of its own, with a runtime and
/// connections of its own: a batch's dozen round trips are the critical
/// path of every delivery waiting on it, and on the server's runtime each
/// of them would wait behind the sessions' tasks for a worker to poll it.
pub(super) fn start(
    pool: &PgPool,
    blobs: Option<Arc<dyn crate::Blobs>>,
    node: Arc<str>,
    queue_wakeup: Arc<Notify>,
    lookups: Arc<super::lookups::Lookups>,
    rx: mpsc::Receiver<Job>,
) {
    let options = pool.connect_options();
    // A connection per batch in flight, and one for a failed batch's
    // bodies to be forgotten.
    let connections = if blobs.is_some() {
        BATCHES_IN_FLIGHT
    } else {
        1
    };
    let spawned = std::thread::Builder::new()
        .name("tern-pg-writer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "store: cannot start the writer's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(connections as u32 + 1)
                    .acquire_timeout(std::time::Duration::from_secs(10))
                    .connect_lazy_with(generic_plans((*options).clone()));
                let ctx = Arc::new(Ctx {
                    pool,
                    blobs,
                    node,
                    queue_wakeup,
                    lookups,
                });
                run(ctx, rx).await;
            });
        });
    if let Err(e) = spawned {
        // The receiver went with the closure: writes fail with WriterGone.
        tracing::error!(error = %e, "store: cannot start the writer's thread");
    }
}

/// The writer's statements planned once per connection: they are the same
/// few statements over and over, keyed by ids and arrays, and a custom plan
/// for each run (PostgreSQL's choice for statements whose generic plan it
/// cannot cost well, as with UNNEST of arrays) is planning work in every
/// batch (inbound: 280 → 250 µs of PostgreSQL CPU per message).
fn generic_plans(options: sqlx::postgres::PgConnectOptions) -> sqlx::postgres::PgConnectOptions {
    options.options([("plan_cache_mode", "force_generic_plan")])
}

/// Runs until every sender is gone (the store is dropped).
pub(super) async fn run(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Job>) {
    // With bodies in the database there is nothing to overlap: one batch at
    // a time, and what arrives meanwhile makes the next one.
    let in_flight = if ctx.blobs.is_some() {
        BATCHES_IN_FLIGHT
    } else {
        1
    };
    let slots = Arc::new(Semaphore::new(in_flight));
    while let Some(first) = rx.recv().await {
        // Waiting for a slot lets the next batch grow.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            commit(&ctx, batch).await;
            drop(permit);
        });
    }
}

/// Writes a batch and answers each caller.
async fn commit(ctx: &Ctx, jobs: Vec<Job>) {
    let started = std::time::Instant::now();
    match write(ctx, &jobs).await {
        Ok(results) => {
            // The same figures as the embedded store's writer.
            metrics::histogram!("tern_store_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            metrics::histogram!("tern_store_commit_batch_size").record(jobs.len() as f64);
            tracing::debug!(
                writes = jobs.len(),
                micros = started.elapsed().as_micros() as u64,
                "store: batch committed"
            );
            let wake = results.iter().any(|r| {
                r.as_ref()
                    .is_ok_and(|q| q.iter().any(|q| q.leased_until == 0))
            });
            for (job, r) in jobs.into_iter().zip(results) {
                let _ = job.reply.send(r);
            }
            if wake {
                ctx.queue_wakeup.notify_one();
            }
        }
        Err(e) if jobs.len() > 1 => {
            tracing::debug!(error = %e, writes = jobs.len(), "store: batch failed; writing one at a time");
            for job in jobs {
                Box::pin(commit(ctx, vec![job])).await;
            }
        }
        Err(e) => {
            let hashes = jobs
                .iter()
                .flat_map(|j| j.prepared.iter().map(|p| p.hash.clone()))
                .collect();
            forget_bodies(&ctx.pool, hashes).await;
            for job in jobs {
                let _ = job.reply.send(Err(StoreError::Db(e.to_string().into())));
            }
        }
    }
}

/// Where each copy of a message goes: (account, folder, flags).
type Targets = Vec<(AccountId, i64, &'static str)>;

/// Writes every job in one transaction. The outer error fails the batch;
/// an inner one fails only its job (nothing of it written).
async fn write(ctx: &Ctx, all: &[Job]) -> Result<Vec<Result<Vec<QueuedRcpt>>>> {
    let jobs: Vec<&[Prepared]> = all.iter().map(|j| j.prepared.as_slice()).collect();
    let mut tx = ctx.pool.begin().await?;
    let mut bodies: Vec<(String, Arc<Vec<u8>>)> = jobs
        .iter()
        .flat_map(|j| j.iter().map(Prepared::body))
        .collect();
    bodies.sort_by(|a, b| a.0.cmp(&b.0));
    bodies.dedup_by(|a, b| a.0 == b.0);
    if let Some(blobs) = &ctx.blobs {
        put_bodies(&mut tx, blobs, &bodies).await?;
    }

    // Each message's folders, found once per (account, role) in the batch,
    // all in one statement.
    let pairs: BTreeSet<(AccountId, &'static str)> = jobs
        .iter()
        .flat_map(|j| j.iter())
        .flat_map(|p| {
            let sent = p.message.sent_copy.map(|a| (a, "Sent"));
            p.recipients.iter().copied().chain(sent)
        })
        .collect();
    let pairs: Vec<(AccountId, &'static str)> = pairs.into_iter().collect();
    let found = super::mail::target_folders(&mut tx, &pairs).await?;
    let mut targets: Vec<Vec<Targets>> = Vec::with_capacity(jobs.len());
    let mut results: Vec<Option<Result<Vec<QueuedRcpt>>>> = Vec::with_capacity(jobs.len());
    for job in &jobs {
        let mut per_message = Vec::with_capacity(job.len());
        let mut reachable = true;
        for p in job.iter() {
            let mut t = Targets::new();
            let roles = p.recipients.iter().map(|(a, r)| (*a, *r, ""));
            let sent = p.message.sent_copy.map(|a| (a, "Sent", "\\Seen"));
            for (account, role, flags) in roles.chain(sent) {
                let folder = found.get(&(account, role)).copied().flatten();
                match folder {
                    Some(f) => t.push((account, f, flags)),
                    None => {
                        tracing::warn!(queue_id = %p.message.queue_id, account, "recipient account vanished before delivery")
                    }
                }
            }
            reachable &= !t.is_empty() || !p.message.outbound.is_empty();
            per_message.push(t);
        }
        results.push(if reachable {
            None
        } else {
            Some(Err(StoreError::NotFound("every recipient account".into())))
        });
        targets.push(per_message);
    }
    let failed: Vec<bool> = results.iter().map(Option::is_some).collect();
    let live = |i: usize| !failed[i];

    // What the batch's rows hold (migration 0007: inserts count
    // themselves): each body's references (a mailbox copy each, a queue
    // row for a message with remote recipients), each account's bytes.
    let mut refs: HashMap<&str, i64> = HashMap::new();
    let mut used: BTreeMap<AccountId, i64> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate().filter(|(i, _)| live(*i)) {
        for (p, t) in job.iter().zip(&targets[i]) {
            let queued = i64::from(!p.message.outbound.is_empty());
            *refs.entry(p.hash.as_str()).or_default() += t.len() as i64 + queued;
            for (account, _, _) in t {
                *used.entry(*account).or_default() += p.message.raw.len() as i64;
            }
        }
    }
    // Locks, in id order: mailboxes, then their accounts, whose bytes grow
    // by the batch's in the same statement.
    let mailboxes: BTreeSet<i64> = targets
        .iter()
        .enumerate()
        .filter(|(i, _)| live(*i))
        .flat_map(|(_, per_message)| per_message.iter().flatten().map(|(_, f, _)| *f))
        .collect();
    // The change notices (sent at the commit, whenever they are asked for).
    let notify: BTreeSet<AccountId> = jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| live(*i))
        .flat_map(|(_, job)| job.iter().flat_map(|p| p.notify.iter().copied()))
        .collect();
    let channels: Vec<String> = notify.iter().map(|a| super::changes::channel(*a)).collect();
    let mut notified = false;
    if !mailboxes.is_empty() {
        let ids: Vec<i64> = mailboxes.iter().copied().collect();
        let (accounts, bytes): (Vec<i64>, Vec<i64>) = used.iter().map(|(a, n)| (*a, *n)).unzip();
        sqlx::query(
            "WITH m AS (SELECT id FROM mailboxes WHERE id = ANY($1) ORDER BY id FOR UPDATE),
                  a AS (SELECT id FROM accounts WHERE id = ANY($2) AND (SELECT COUNT(*) FROM m) >= 0
                        ORDER BY id FOR UPDATE),
                  n AS (SELECT pg_notify(c, '') FROM UNNEST($4::TEXT[]) AS c)
             UPDATE accounts SET used = accounts.used + u.n
             FROM UNNEST($2::BIGINT[], $3::BIGINT[]) AS u(id, n)
             WHERE accounts.id = u.id AND (SELECT COUNT(*) FROM a) >= 0
                 AND (SELECT COUNT(*) FROM n) >= 0",
        )
        .bind(&ids)
        .bind(&accounts)
        .bind(&bytes)
        .bind(&channels)
        .execute(&mut *tx)
        .await?;
        notified = true;
    }

    // One row per content, in hash order.
    let mut contents: BTreeMap<&str, &Prepared> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate().filter(|(i, _)| live(*i)) {
        let _ = i;
        for p in job.iter() {
            // A copy analysed for mailboxes wins over a queue-only one.
            let e = contents.entry(p.hash.as_str()).or_insert(p);
            if e.analysed.is_none() && p.analysed.is_some() {
                *e = p;
            }
        }
    }
    // Bodies in the database go in with their rows, once per content.
    let blob_ids = blob_rows(&mut tx, &contents, &refs, ctx.blobs.is_none()).await?;

    // Mailbox rows, by folder, in job order within each.
    let mut by_folder: BTreeMap<i64, Vec<(&Prepared, &'static str)>> = BTreeMap::new();
    for (i, job) in jobs.iter().enumerate().filter(|(i, _)| live(*i)) {
        for (p, t) in job.iter().zip(&targets[i]) {
            for (_, folder, flags) in t {
                by_folder.entry(*folder).or_default().push((p, flags));
            }
        }
    }
    for (folder, rows) in &by_folder {
        insert_rows(&mut tx, *folder, rows, &blob_ids).await?;
    }

    // Queue rows, logs and idempotent responses, per job; then the events
    // of the whole batch (and the change notices, if the locks did not
    // send them).
    let mut events: Vec<&EncodedEvent> = Vec::new();
    let mut logs: BTreeMap<&str, &crate::intake::EncodedLog> = BTreeMap::new();
    // The delivery outcomes of the whole batch: two statements at most.
    let outcomes = all
        .iter()
        .enumerate()
        .filter(|(i, _)| live(*i))
        .filter_map(|(_, j)| j.after.as_ref())
        .flat_map(|a| a.outcomes.iter());
    super::queue::record_outcomes(&mut tx, outcomes).await?;
    // The queue rows of the whole batch: one statement.
    let messages: Vec<(&Prepared, i64)> = jobs
        .iter()
        .enumerate()
        .filter(|(i, _)| live(*i))
        .flat_map(|(_, job)| job.iter())
        .map(|p| (p, blob_ids[p.hash.as_str()]))
        .collect();
    let mut queued = super::mail::insert_queued(&mut tx, &messages, &ctx.node)
        .await?
        .into_iter();
    for (i, job) in jobs.iter().enumerate() {
        if !live(i) {
            continue;
        }
        if let Some(after) = &all[i].after {
            insert_suppressions(&mut tx, &after.suppress).await?;
            events.extend(after.events.iter());
        }
        let mut rcpts = Vec::new();
        for p in job.iter() {
            rcpts.extend(queued.next().unwrap_or_default());
            if let Some(r) = &p.message.idempotency {
                insert_idempotent(&mut tx, r).await?;
            }
            events.extend(p.events.iter());
            for l in &p.logs {
                logs.insert(l.message_id.as_str(), l);
            }
        }
        results[i] = Some(Ok(rcpts));
    }
    // The logs (each message's latest) go with the events' statement.
    let logs: Vec<&crate::intake::EncodedLog> = logs.into_values().collect();
    insert_events(&mut tx, &events, &logs).await?;
    if !notified && !channels.is_empty() {
        sqlx::query("SELECT pg_notify(c, '') FROM UNNEST($1::TEXT[]) AS c")
            .bind(&channels)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    ctx.lookups.stored(&used);
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Ok(Vec::new())))
        .collect())
}

/// The `blobs` rows of the batch's contents (made or found), by hash, with
/// `refs` more references each; with `inline`, the bodies themselves too
/// (`blob_data`, in the same statement).
async fn blob_rows<'a>(
    tx: &mut PgConnection,
    contents: &BTreeMap<&'a str, &'a Prepared>,
    refs: &HashMap<&str, i64>,
    inline: bool,
) -> Result<HashMap<&'a str, i64>> {
    if contents.is_empty() {
        return Ok(HashMap::new());
    }
    let hashes: Vec<&str> = contents.keys().copied().collect();
    let sizes: Vec<i64> = contents
        .values()
        .map(|p| p.message.raw.len() as i64)
        .collect();
    let metas: Vec<&str> = contents.values().map(|p| p.meta()).collect();
    let headers: Vec<Option<&[u8]>> = contents
        .values()
        .map(|p| p.analysed.as_ref().map(|a| &p.message.raw[..a.header_len]))
        .collect();
    let fields: Vec<Option<&str>> = contents
        .values()
        .map(|p| p.analysed.as_ref().map(|a| a.field_names.as_str()))
        .collect();
    let counts: Vec<i64> = contents
        .keys()
        .map(|h| refs.get(h).copied().unwrap_or(0))
        .collect();
    let data: Vec<&[u8]> = if inline {
        contents
            .values()
            .map(|p| p.message.raw.as_slice())
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "WITH b AS (
            INSERT INTO blobs(hash, size, meta, header, fields, refcount)
            SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::BYTEA[], $5::TEXT[],
                                 $6::BIGINT[])
            ON CONFLICT (hash) DO UPDATE SET
               refcount = blobs.refcount + EXCLUDED.refcount,
               meta = CASE WHEN blobs.header IS NULL THEN EXCLUDED.meta ELSE blobs.meta END,
               header = COALESCE(blobs.header, EXCLUDED.header),
               fields = COALESCE(blobs.fields, EXCLUDED.fields)
            RETURNING id, hash),
          d AS (
            INSERT INTO blob_data(blob_id, data)
            SELECT b.id, u.data FROM b JOIN UNNEST($1::TEXT[], $7::BYTEA[]) AS u(hash, data)
                ON u.hash = b.hash
            -- No bodies given (a blob store has them): UNNEST pads with NULLs.
            WHERE u.data IS NOT NULL
            ON CONFLICT DO NOTHING)
         SELECT id, hash FROM b",
    )
    .bind(&hashes)
    .bind(&sizes)
    .bind(&metas)
    .bind(&headers)
    .bind(&fields)
    .bind(&counts)
    .bind(&data)
    .fetch_all(&mut *tx)
    .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for (id, hash) in rows {
        if let Some((h, _)) = contents.get_key_value(hash.as_str()) {
            out.insert(*h, id);
        }
    }
    Ok(out)
}

/// Adds messages to one (locked) mailbox in one statement: consecutive
/// UIDs from UIDNEXT, consecutive MODSEQs above HIGHESTMODSEQ.
async fn insert_rows(
    tx: &mut PgConnection,
    folder: i64,
    rows: &[(&Prepared, &'static str)],
    blob_ids: &HashMap<&str, i64>,
) -> Result<()> {
    let blobs: Vec<i64> = rows
        .iter()
        .map(|(p, _)| blob_ids[p.hash.as_str()])
        .collect();
    let sizes: Vec<i64> = rows
        .iter()
        .map(|(p, _)| p.message.raw.len() as i64)
        .collect();
    let flags: Vec<&str> = rows.iter().map(|(_, f)| *f).collect();
    let dates: Vec<i64> = rows.iter().map(|(p, _)| p.message.received_at).collect();
    let qids: Vec<&str> = rows
        .iter()
        .map(|(p, _)| p.message.queue_id.as_str())
        .collect();
    let froms: Vec<&str> = rows
        .iter()
        .map(|(p, _)| p.message.mail_from.as_str())
        .collect();
    let params: Vec<&str> = rows
        .iter()
        .map(|(p, _)| p.message.envelope_params.as_str())
        .collect();
    sqlx::query(
        "WITH m AS (
            UPDATE mailboxes SET uidnext = uidnext + $2, highest_modseq = highest_modseq + $2
            WHERE id = $1 RETURNING uidnext - $2 AS first_uid, highest_modseq - $2 AS base)
         INSERT INTO mailbox_messages(mailbox_id, uid, blob_id, size, flags, modseq,
            internaldate, queue_id, mail_from, params, saved_at)
         SELECT $1, m.first_uid + u.n - 1, u.b, u.s, u.f, m.base + u.n, u.d, u.q, u.mf, u.p,
                EXTRACT(EPOCH FROM now())::BIGINT
         FROM m, UNNEST($3::BIGINT[], $4::BIGINT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[],
                        $8::TEXT[], $9::TEXT[]) WITH ORDINALITY AS u(b, s, f, d, q, mf, p, n)",
    )
    .bind(folder)
    .bind(rows.len() as i64)
    .bind(&blobs)
    .bind(&sizes)
    .bind(&flags)
    .bind(&dates)
    .bind(&qids)
    .bind(&froms)
    .bind(&params)
    .execute(tx)
    .await?;
    Ok(())
}
