//! Moving an installation from SQLite to PostgreSQL (`tern migrate`): every
//! table, with ids, UIDs, UIDVALIDITYs, MODSEQs, flags, the queue, events,
//! keys and secrets, in one PostgreSQL transaction (all or nothing), then
//! the counts compared.
//!
//! A reader thread streams the SQLite tables in chunks; the rows go into
//! PostgreSQL in multi-row inserts. Bodies: one `blobs` row per content
//! (SQLite keeps one per delivery; ids are mapped); a body in the SQLite
//! database goes into PostgreSQL, or, when the target has a blob store, is
//! put there (durably, before the commit); a body already in the blob
//! store stays where it is, under the same key. Usage and reference counts
//! are recomputed from the rows copied, before the commit.

use crate::postgres::PgStore;
use crate::{Result, StoreError};
use rusqlite::types::Value;
use sqlx::{Postgres, QueryBuilder};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Rows read per chunk.
const CHUNK: usize = 500;

/// A table copied as it is: its PostgreSQL columns, the SQLite expressions
/// that give them, and which are booleans (SQLite keeps 0/1).
struct Plain {
    table: &'static str,
    columns: &'static str,
    select: &'static str,
    booleans: &'static [&'static str],
}

const fn plain(table: &'static str, columns: &'static str) -> Plain {
    Plain {
        table,
        columns,
        select: columns,
        booleans: &[],
    }
}

/// In dependency order; blobs, mailbox rows, the queue and Junk verdicts
/// are copied by hand (their body ids change).
const BEFORE_MAIL: &[Plain] = &[
    plain("domains", "id, name, catch_all, created_at"),
    // `used` starts at 0: it is added up again from the mailbox rows.
    plain(
        "accounts",
        "id, address, domain_id, password_hash, quota, created_at",
    ),
    plain("aliases", "id, address, domain_id, account_id"),
    plain("forwards", "address, domain_id, target"),
    plain(
        "dkim_keys",
        "id, domain, selector, algorithm, private_key, status, created_at",
    ),
    plain(
        "mailboxes",
        "id, account_id, name, special_use, uidvalidity, uidnext, highest_modseq, recent_uid",
    ),
    plain("subscriptions", "account_id, name"),
    plain("metadata", "account_id, mailbox, entry, value"),
    plain("urlauth_keys", "account_id, mailbox, key"),
    plain("secrets", "name, value"),
    // MTA-STS policies stay in use until their max_age (RFC 8461 §5.1).
    plain("cache", "name, value, until"),
];

const AFTER_MAIL: &[Plain] = &[
    plain("expunged", "mailbox_id, uid, modseq"),
    plain("events", "id, type, message_id, recipient, domain, data"),
    Plain {
        table: "event_counts",
        columns: "hour, domain, dim, type, detail, slot, n",
        select: "hour, domain, dim, type, detail, 0, n",
        booleans: &[],
    },
    plain("message_log", "message_id, time, data"),
    plain(
        "suppressions",
        "address, domain, reason, created, expires, detail",
    ),
    plain(
        "api_keys",
        "id, hash, scope, domains, name, created, revoked",
    ),
    plain(
        "idempotency",
        "key_id, key, request, status, response, created",
    ),
    Plain {
        table: "webhooks",
        columns: "id, url, secret, events, domain, batch, created, next_attempt, failures",
        select: "id, url, secret, events, domain, batch, created, next_attempt, failures",
        booleans: &["batch"],
    },
    plain(
        "webhook_outbox",
        "seq, webhook_id, event_id, created, attempts, last_error",
    ),
    plain(
        "webhook_attempts",
        "seq, webhook_id, time, events, status, error, millis",
    ),
    plain(
        "webhook_dead",
        "seq, webhook_id, event_id, time, attempts, last_error",
    ),
    plain("templates", "name, subject, text, html, created, updated"),
    plain("bayes_tokens", "scope, token, spam, ham"),
    plain("bayes_totals", "scope, spam, ham"),
    plain("filter_policies", "target, junk_score, reject_score"),
    plain(
        "greylist",
        "network, sender, rcpt, first_seen, passed_until",
    ),
    plain(
        "dmarc_reports",
        "id, domain, org, report_id, begin_at, end_at, messages, failed, report, received_at",
    ),
    plain(
        "tls_reports",
        "id, domain, org, report_id, begin_at, end_at, successes, failures, report, received_at",
    ),
    plain("report_counts", "kind, domain, key, meta, count, first_at"),
    plain("verify_jobs", "id, created, api_key, total, done, finished"),
    plain("verify_items", "job, idx, address, result, answer"),
    plain("web_users", "email, password_hash, domains, created"),
    plain("web_sessions", "id_hash, email, csrf, expires"),
];

/// Serial columns whose sequences continue after the copied ids.
const SERIALS: &[(&str, &str)] = &[
    ("domains", "id"),
    ("accounts", "id"),
    ("aliases", "id"),
    ("dkim_keys", "id"),
    ("mailboxes", "id"),
    ("blobs", "id"),
    ("junk_training", "id"),
    ("queue_messages", "id"),
    ("queue_rcpts", "id"),
    ("webhook_outbox", "seq"),
    ("webhook_attempts", "seq"),
    ("webhook_dead", "seq"),
    ("dmarc_reports", "id"),
    ("tls_reports", "id"),
];

/// What was moved, table by table: rows in SQLite and in PostgreSQL.
#[derive(Debug, Default)]
pub struct Moved {
    /// `(table, rows in SQLite, rows in PostgreSQL)`; bodies count distinct
    /// contents on both sides.
    pub tables: Vec<(String, u64, u64)>,
}

impl Moved {
    /// The tables whose counts differ.
    pub fn mismatches(&self) -> Vec<&(String, u64, u64)> {
        self.tables.iter().filter(|t| t.1 != t.2).collect()
    }
}

/// A chunk of one table's rows, from the reader thread.
type Chunk = (&'static str, Vec<Vec<Value>>);

/// Streams `select` over `table` in chunks to `tx` (a reader thread).
fn read_table(
    c: &rusqlite::Connection,
    table: &'static str,
    sql: &str,
    tx: &tokio::sync::mpsc::Sender<Chunk>,
) -> rusqlite::Result<()> {
    let mut st = c.prepare(sql)?;
    let n = st.column_count();
    let mut rows = st.query([])?;
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some(r) = rows.next()? {
        chunk.push(
            (0..n)
                .map(|i| r.get::<_, Value>(i))
                .collect::<rusqlite::Result<Vec<_>>>()?,
        );
        if chunk.len() == CHUNK
            && tx
                .blocking_send((table, std::mem::take(&mut chunk)))
                .is_err()
        {
            return Ok(());
        }
    }
    let _ = tx.blocking_send((table, chunk));
    Ok(())
}

fn bind_value(
    b: &mut sqlx::query_builder::Separated<'_, Postgres, &'static str>,
    v: Value,
    boolean: bool,
) {
    match v {
        Value::Null => {
            b.push("NULL");
        }
        Value::Integer(i) if boolean => {
            b.push_bind(i != 0);
        }
        Value::Integer(i) => {
            b.push_bind(i);
        }
        Value::Real(f) => {
            b.push_bind(f);
        }
        Value::Text(t) => {
            b.push_bind(t);
        }
        Value::Blob(x) => {
            b.push_bind(x);
        }
    }
}

/// Inserts plain rows into `table`.
async fn insert_plain(
    tx: &mut sqlx::PgConnection,
    spec: &Plain,
    rows: Vec<Vec<Value>>,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let cols: Vec<&str> = spec.columns.split(',').map(str::trim).collect();
    let mut q =
        QueryBuilder::<Postgres>::new(format!("INSERT INTO {} ({}) ", spec.table, spec.columns));
    q.push_values(rows, |mut b, row| {
        for (v, col) in row.into_iter().zip(&cols) {
            bind_value(&mut b, v, spec.booleans.contains(col));
        }
    });
    if spec.table == "secrets" {
        q.push(" ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value");
    }
    q.build().execute(tx).await?;
    Ok(())
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Integer(i) => *i,
        _ => 0,
    }
}

fn text(v: Value) -> String {
    match v {
        Value::Text(t) => t,
        Value::Integer(i) => i.to_string(),
        _ => String::new(),
    }
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::Blob(b) => Some(b),
        Value::Text(t) => Some(t.into_bytes()),
        _ => None,
    }
}

/// Copies the SQLite database at `sqlite` into the (empty) PostgreSQL store
/// `pg`. `source_blobs` is where the source keeps bodies outside its
/// database, if anywhere. `progress` hears each table and its rows so far.
pub async fn sqlite_to_postgres(
    sqlite: &Path,
    source_blobs: Option<Arc<dyn crate::Blobs>>,
    pg: &PgStore,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> Result<Moved> {
    let pool = pg.pool().clone();
    let taken: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM domains) + (SELECT COUNT(*) FROM accounts)",
    )
    .fetch_one(&pool)
    .await?;
    if taken > 0 {
        return Err(StoreError::Invalid(
            "the PostgreSQL database already has domains or accounts: migrate into an empty one"
                .into(),
        ));
    }
    let src =
        rusqlite::Connection::open_with_flags(sqlite, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let version: i64 = src.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let uidvalidity: i64 = src
        .query_row(
            "SELECT value FROM sequences WHERE name = 'uidvalidity'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    if version < 21 {
        return Err(StoreError::Invalid(format!(
            "the SQLite database is at schema version {version}: start this Tern on it once (tern serve) to bring it up to date, then migrate"
        )));
    }
    drop(src);

    // The reader thread: every table, in order, in chunks.
    let (chunks, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4);
    let path = sqlite.to_path_buf();
    let reader = std::thread::spawn(move || -> rusqlite::Result<()> {
        let c = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let plain_tables = |list: &[Plain]| -> rusqlite::Result<()> {
            for p in list {
                let sql = format!("SELECT {} FROM {}", p.select, p.table);
                read_table(&c, p.table, &sql, &chunks)?;
            }
            Ok(())
        };
        plain_tables(BEFORE_MAIL)?;
        read_table(
            &c,
            "blobs",
            "SELECT b.id, b.hash, b.size, b.meta, CASE WHEN b.external = 0 THEN b.data END,
                    h.header, f.names
             FROM blobs b LEFT JOIN blob_headers h ON h.blob_id = b.id
             LEFT JOIN blob_fields f ON f.blob_id = b.id ORDER BY b.id",
            &chunks,
        )?;
        read_table(
            &c,
            "mailbox_messages",
            "SELECT mailbox_id, uid, blob_id, size, flags, modseq, internaldate, queue_id, mail_from, params, saved_at
             FROM mailbox_messages ORDER BY mailbox_id, uid",
            &chunks,
        )?;
        read_table(
            &c,
            "junk_training",
            "SELECT id, account_id, blob_id, is_spam, at FROM junk_training ORDER BY id",
            &chunks,
        )?;
        read_table(
            &c,
            "queue_messages",
            "SELECT id, queue_id, blob_id, mail_from, params, size, created_at, expires_at FROM queue_messages ORDER BY id",
            &chunks,
        )?;
        // Leases are not carried over: the nodes claim afresh.
        read_table(
            &c,
            "queue_rcpts",
            "SELECT id, message_id, address, domain, params, attempts,
                    CASE WHEN lease_until <> 0 THEN MIN(next_attempt, CAST(strftime('%s', 'now') AS INTEGER))
                         ELSE next_attempt END,
                    last_error, delay_noticed
             FROM queue_rcpts ORDER BY id",
            &chunks,
        )?;
        plain_tables(AFTER_MAIL)?;
        Ok(())
    });

    let specs: HashMap<&str, &Plain> = BEFORE_MAIL
        .iter()
        .chain(AFTER_MAIL)
        .map(|p| (p.table, p))
        .collect();
    let mut tx = pool.begin().await?;
    let mut copied: HashMap<&str, u64> = HashMap::new();
    // SQLite body id → PostgreSQL body id, and content → PostgreSQL id.
    let mut blob_ids: HashMap<i64, i64> = HashMap::new();
    let mut by_hash: HashMap<String, i64> = HashMap::new();
    let target_blobs = pg.blobs().cloned();
    while let Some((table, rows)) = rx.recv().await {
        *copied.entry(table).or_default() += rows.len() as u64;
        progress(table, copied[table]);
        match table {
            "blobs" => {
                copy_bodies(
                    &mut tx,
                    rows,
                    &mut blob_ids,
                    &mut by_hash,
                    source_blobs.as_ref(),
                    target_blobs.as_ref(),
                )
                .await?
            }
            "mailbox_messages" | "junk_training" | "queue_messages" => {
                // The body id is the third column of each.
                let at = 2;
                let mut rows = rows;
                for r in &mut rows {
                    let old = int(&r[at]);
                    let new = *blob_ids.get(&old).ok_or_else(|| {
                        StoreError::Invalid(format!(
                            "{table} refers to body {old}, which is not stored"
                        ))
                    })?;
                    r[at] = Value::Integer(new);
                }
                let spec = match table {
                    "mailbox_messages" => Plain {
                        table,
                        columns: "mailbox_id, uid, blob_id, size, flags, modseq, internaldate, queue_id, mail_from, params, saved_at",
                        select: "",
                        booleans: &[],
                    },
                    "junk_training" => Plain {
                        table,
                        columns: "id, account_id, blob_id, is_spam, at",
                        select: "",
                        booleans: &["is_spam"],
                    },
                    _ => Plain {
                        table,
                        columns: "id, queue_id, blob_id, mail_from, params, size, created_at, expires_at",
                        select: "",
                        booleans: &[],
                    },
                };
                insert_plain(&mut tx, &spec, rows).await?;
            }
            "queue_rcpts" => {
                let spec = Plain {
                    table,
                    columns: "id, message_id, address, domain, params, attempts, next_attempt, last_error, delay_noticed",
                    select: "",
                    booleans: &["delay_noticed"],
                };
                insert_plain(&mut tx, &spec, rows).await?;
            }
            _ => insert_plain(&mut tx, specs[table], rows).await?,
        }
    }
    reader
        .join()
        .map_err(|_| StoreError::Invalid("the SQLite reader stopped".into()))??;
    // Reference counts and usage, from the rows copied (the target counts
    // at insert in its own statements, not in triggers).
    sqlx::query(
        "UPDATE blobs SET refcount = r.n FROM (
            SELECT blob_id, COUNT(*) AS n FROM (
                SELECT blob_id FROM mailbox_messages UNION ALL SELECT blob_id FROM queue_messages
            ) AS refs GROUP BY blob_id) AS r
         WHERE blobs.id = r.blob_id",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE accounts SET used = u.n FROM (
            SELECT x.account_id, SUM(m.size)::BIGINT AS n
            FROM mailbox_messages m JOIN mailboxes x ON x.id = m.mailbox_id GROUP BY x.account_id
         ) AS u WHERE accounts.id = u.account_id",
    )
    .execute(&mut *tx)
    .await?;
    // The sequences: UIDVALIDITY above every value given; ids after the copied ones.
    sqlx::query(
        "UPDATE sequences SET value = GREATEST(value, $1, (SELECT COALESCE(MAX(uidvalidity), 0) FROM mailboxes))
         WHERE name = 'uidvalidity'",
    )
    .bind(uidvalidity)
    .execute(&mut *tx)
    .await?;
    for (table, column) in SERIALS {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', '{column}'),
                           GREATEST((SELECT COALESCE(MAX({column}), 0) FROM {table}), 1))"
        )))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    count(sqlite, &pool).await
}

/// Copies a chunk of body rows: one PostgreSQL row per content.
async fn copy_bodies(
    tx: &mut sqlx::PgConnection,
    rows: Vec<Vec<Value>>,
    blob_ids: &mut HashMap<i64, i64>,
    by_hash: &mut HashMap<String, i64>,
    source_blobs: Option<&Arc<dyn crate::Blobs>>,
    target_blobs: Option<&Arc<dyn crate::Blobs>>,
) -> Result<()> {
    for row in rows {
        let mut it = row.into_iter();
        let (id, hash, size, meta, data, header, fields) = (
            it.next().map(|v| int(&v)).unwrap_or(0),
            it.next().map(text).unwrap_or_default(),
            it.next().map(|v| int(&v)).unwrap_or(0),
            it.next().map(text).unwrap_or_default(),
            it.next().and_then(bytes),
            it.next().and_then(bytes),
            it.next().map(text).filter(|f| !f.is_empty()),
        );
        if let Some(&pg_id) = by_hash.get(&hash) {
            blob_ids.insert(id, pg_id);
            continue;
        }
        let pg_id: i64 = sqlx::query_scalar(
            "INSERT INTO blobs(id, hash, size, meta, header, fields) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(id)
        .bind(&hash)
        .bind(size)
        .bind(&meta)
        .bind(&header)
        .bind(&fields)
        .fetch_one(&mut *tx)
        .await?;
        match (data, target_blobs) {
            // In the SQLite database: into PostgreSQL, or into the target's blob store.
            (Some(data), None) => {
                sqlx::query("INSERT INTO blob_data(blob_id, data) VALUES ($1, $2)")
                    .bind(pg_id)
                    .bind(&data)
                    .execute(&mut *tx)
                    .await?;
            }
            (Some(data), Some(blobs)) => blobs.put(&hash, Arc::new(data)).await?,
            // Already in the blob store: into PostgreSQL when the target has none.
            (None, None) => {
                let blobs = source_blobs.ok_or_else(|| {
                    StoreError::Invalid(format!(
                        "body {hash} is in a blob store, and none is configured ([blobs] backend)"
                    ))
                })?;
                let data = blobs.get(&hash).await?;
                sqlx::query("INSERT INTO blob_data(blob_id, data) VALUES ($1, $2)")
                    .bind(pg_id)
                    .bind(&data)
                    .execute(&mut *tx)
                    .await?;
            }
            // Already in the source's blob store: stays when the target's
            // is the same, else copied over (before the commit).
            (None, Some(target)) => {
                if let Some(source) = source_blobs.filter(|s| s.describe() != target.describe()) {
                    let data = source.get(&hash).await?;
                    target.put(&hash, Arc::new(data)).await?;
                }
            }
        }
        by_hash.insert(hash, pg_id);
        blob_ids.insert(id, pg_id);
    }
    Ok(())
}

/// The tables `sqlite_to_postgres` copies, in order.
fn tables() -> Vec<&'static str> {
    BEFORE_MAIL
        .iter()
        .map(|p| p.table)
        .chain([
            "blobs",
            "mailbox_messages",
            "junk_training",
            "queue_messages",
            "queue_rcpts",
        ])
        .chain(AFTER_MAIL.iter().map(|p| p.table))
        .collect()
}

/// How many rows the copy of the SQLite database at `sqlite` will read (a
/// progress bar's length).
pub fn source_rows(sqlite: &Path) -> Result<u64> {
    let src =
        rusqlite::Connection::open_with_flags(sqlite, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut n = 0u64;
    for t in tables() {
        n += src.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| {
            r.get::<_, i64>(0)
        })? as u64;
    }
    Ok(n)
}

/// Rows on both sides, table by table.
async fn count(sqlite: &Path, pool: &sqlx::PgPool) -> Result<Moved> {
    let src =
        rusqlite::Connection::open_with_flags(sqlite, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut moved = Moved::default();
    for table in tables() {
        let (from_sql, to_sql) = match table {
            "blobs" => (
                "SELECT COUNT(DISTINCT hash) FROM blobs".to_string(),
                "SELECT COUNT(*) FROM blobs".to_string(),
            ),
            t => (
                format!("SELECT COUNT(*) FROM {t}"),
                format!("SELECT COUNT(*) FROM {t}"),
            ),
        };
        let from: i64 = src.query_row(&from_sql, [], |r| r.get(0))?;
        let to: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(to_sql))
            .fetch_one(pool)
            .await?;
        moved
            .tables
            .push((table.to_string(), from as u64, to as u64));
    }
    // Usage recomputed equals the source's.
    let used_from: i64 = src.query_row("SELECT COALESCE(SUM(used), 0) FROM accounts", [], |r| {
        r.get(0)
    })?;
    let used_to: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(used), 0)::BIGINT FROM accounts")
        .fetch_one(pool)
        .await?;
    moved.tables.push((
        "bytes used (all accounts)".into(),
        used_from as u64,
        used_to as u64,
    ));
    Ok(moved)
}
