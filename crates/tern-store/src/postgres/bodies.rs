//! Message bodies on PostgreSQL: the bytes in the blob store under their
//! SHA-256, a `blobs` row per content (metadata, header block, field
//! names, reference count), and a collector that is safe with several
//! nodes.
//!
//! The rule that makes it safe is a PostgreSQL advisory lock per hash
//! (transaction-scoped, so a crashed node's locks go with its connection):
//! a write takes it *shared* before it puts a body and holds it until the
//! commit that refers to the body; the collector takes it *exclusively*
//! while it checks that no row refers to the hash and deletes the body. So
//! the collector never deletes a body a write on any node is about to
//! commit, and a write that comes after the collector puts the body again.
//! A crash between a put and its commit leaves a body no row names, which
//! the sweep (same lock) finds by listing the blob store.

use super::PgStore;
use crate::blobs::written_within;
use crate::intake::Analysed;
use crate::{Result, StoreError};
use sqlx::PgConnection;
use std::sync::Arc;
use std::time::Duration;

use crate::BlobId;
use crate::blobs::{BodyCounts, Collected, Swept};

/// The advisory lock key of a hash: its first 60 bits (two hashes sharing
/// a key only share a lock).
fn lock_key(hash: &str) -> i64 {
    hash.get(..15)
        .and_then(|h| i64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

impl PgStore {
    /// The blob store, or why there is none.
    pub(super) fn required_blobs(&self) -> Result<Arc<dyn crate::Blobs>> {
        self.blobs.clone().ok_or_else(|| {
            StoreError::Invalid(
                "the PostgreSQL store keeps bodies in a blob store, and none is configured ([blobs] backend)"
                    .into(),
            )
        })
    }

    /// Puts `bodies` in the blob store inside `tx` ([`put_bodies`]); a
    /// no-op when bodies are in the database (written with their rows).
    pub(super) async fn put_bodies(
        &self,
        tx: &mut PgConnection,
        bodies: &[(String, Arc<Vec<u8>>)],
    ) -> Result<()> {
        match &self.blobs {
            Some(blobs) if !bodies.is_empty() => put_bodies(tx, blobs, bodies).await,
            _ => Ok(()),
        }
    }

    /// Hands bodies a failed write put to the collector.
    pub(super) async fn forget_bodies(&self, hashes: Vec<String>) {
        forget_bodies(&self.pool, hashes).await
    }

    /// The body of a stored message.
    /// In the database when it was written there, else in the blob store.
    pub(super) async fn body(&self, blob: crate::BlobId) -> Result<Vec<u8>> {
        let row: Option<(String, Option<Vec<u8>>)> = sqlx::query_as(
            "SELECT b.hash, d.data FROM blobs b LEFT JOIN blob_data d ON d.blob_id = b.id WHERE b.id = $1",
        )
        .bind(blob)
        .fetch_optional(&self.pool)
        .await?;
        match row.ok_or_else(|| StoreError::NotFound(format!("message body {blob}")))? {
            (_, Some(data)) => Ok(data),
            (hash, None) => self.required_blobs()?.get(&hash).await,
        }
    }
}

#[async_trait::async_trait]
impl crate::blobs::BodyStore for PgStore {
    fn blob_store(&self) -> Option<&Arc<dyn crate::Blobs>> {
        self.blobs.as_ref()
    }
    /// How many bodies there are, where, and how many wait for the
    /// collector.
    async fn body_counts(&self) -> Result<BodyCounts> {
        let (inline, inline_bytes, n, bytes, gc): (i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT COUNT(d.blob_id), COALESCE(SUM(b.size) FILTER (WHERE d.blob_id IS NOT NULL), 0)::BIGINT,
                    COUNT(*) - COUNT(d.blob_id),
                    COALESCE(SUM(b.size) FILTER (WHERE d.blob_id IS NULL), 0)::BIGINT,
                    (SELECT COUNT(*) FROM blob_gc)
             FROM blobs b LEFT JOIN blob_data d ON d.blob_id = b.id",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(BodyCounts {
            inline: inline as u64,
            inline_bytes: inline_bytes as u64,
            external: n as u64,
            external_bytes: bytes as u64,
            to_collect: gc as u64,
        })
    }
    /// Moves up to `limit` bodies from the database to the blob store (each
    /// put durably, then its data row removed, under the hash's lock).
    async fn move_bodies_out(&self, limit: usize) -> Result<usize> {
        let blobs = self.required_blobs()?;
        let rows: Vec<(i64, String, Vec<u8>)> = sqlx::query_as(
            "SELECT b.id, b.hash, d.data FROM blob_data d JOIN blobs b ON b.id = d.blob_id
             ORDER BY d.blob_id LIMIT $1",
        )
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        let moved = rows.len();
        for (id, hash, data) in rows {
            let mut tx = self.pool.begin().await?;
            put_bodies(&mut tx, &blobs, &[(hash, Arc::new(data))]).await?;
            sqlx::query("DELETE FROM blob_data WHERE blob_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(moved)
    }
    async fn check_bodies(
        &self,
        after: BlobId,
        limit: usize,
    ) -> Result<(Vec<(BlobId, String)>, Option<BlobId>)> {
        let blobs = self.required_blobs()?;
        let rows: Vec<(BlobId, String)> = sqlx::query_as(
            "SELECT id, hash FROM blobs b WHERE id > $1
                   AND NOT EXISTS (SELECT 1 FROM blob_data d WHERE d.blob_id = b.id)
                 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        crate::blobs::missing(blobs.as_ref(), rows).await
    }
    /// Deletes from the blob store the bodies no row refers to any more,
    /// except those put within `grace`. Safe on every node at once, while
    /// mail flows.
    async fn collect_blobs(&self, grace: Duration) -> Result<Collected> {
        let mut done = Collected::default();
        let Some(blobs) = self.blobs.clone() else {
            // Bodies in the database went with their rows.
            sqlx::query("DELETE FROM blob_gc")
                .execute(&self.pool)
                .await?;
            return Ok(done);
        };
        let mut after = String::new();
        loop {
            let batch: Vec<String> = sqlx::query_scalar(
                "SELECT hash FROM blob_gc WHERE hash > $1 ORDER BY hash LIMIT 256",
            )
            .bind(&after)
            .fetch_all(&self.pool)
            .await?;
            let Some(last) = batch.last() else {
                return Ok(done);
            };
            after = last.clone();
            for hash in batch {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(lock_key(&hash))
                    .execute(&mut *tx)
                    .await?;
                if referenced(&mut tx, &hash).await? {
                    done.in_use += 1;
                } else {
                    let young = blobs
                        .written_at(&hash)
                        .await?
                        .is_some_and(|at| written_within(at, grace));
                    if young {
                        done.young += 1;
                        continue;
                    }
                    blobs.delete(&hash).await?;
                    done.deleted += 1;
                }
                sqlx::query("DELETE FROM blob_gc WHERE hash = $1")
                    .bind(&hash)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
        }
    }
    /// Deletes the bodies of one shard ([`crate::blobs::shards`]) that the
    /// blob store holds and no row refers to, put longer than `grace` ago
    /// (what a crash between a put and its commit leaves).
    async fn sweep_blobs(&self, shard: &str, grace: Duration) -> Result<Swept> {
        let mut done = Swept::default();
        let Some(blobs) = self.blobs.clone() else {
            return Ok(done);
        };
        let listed = blobs.list_shard(shard).await?;
        done.looked_at = listed.len();
        let known: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT hash FROM blobs WHERE hash >= $1 AND hash < $2")
                .bind(shard)
                .bind(format!("{shard}g"))
                .fetch_all(&self.pool)
                .await?
                .into_iter()
                .collect();
        for (hash, written) in listed {
            if known.contains(&hash) {
                continue;
            }
            if written_within(written, grace) {
                done.young += 1;
                continue;
            }
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock_key(&hash))
                .execute(&mut *tx)
                .await?;
            if !referenced(&mut tx, &hash).await? {
                blobs.delete(&hash).await?;
                done.deleted += 1;
            }
            tx.commit().await?;
        }
        Ok(done)
    }
}

/// Puts `bodies` in the blob store, durably, inside `tx` (which then holds
/// their hashes' locks, shared, until it ends): the first step of every
/// write that stores mail.
pub(super) async fn put_bodies(
    tx: &mut PgConnection,
    blobs: &Arc<dyn crate::Blobs>,
    bodies: &[(String, Arc<Vec<u8>>)],
) -> Result<()> {
    let mut keys: Vec<i64> = bodies.iter().map(|(h, _)| lock_key(h)).collect();
    keys.sort_unstable();
    keys.dedup();
    sqlx::query("SELECT pg_advisory_xact_lock_shared(k) FROM UNNEST($1::BIGINT[]) AS k")
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
    let mut puts = tokio::task::JoinSet::new();
    for (hash, data) in bodies.iter().cloned() {
        let blobs = blobs.clone();
        puts.spawn(async move { blobs.put(&hash, data).await });
    }
    let mut stored = Ok(());
    while let Some(done) = puts.join_next().await {
        let done = done
            .map_err(|e| StoreError::Blob(format!("storing a message body: {e}")))
            .and_then(|r| r);
        if stored.is_ok() {
            stored = done;
        }
    }
    stored
}

/// Hands bodies a failed write put to the collector.
pub(super) async fn forget_bodies(pool: &sqlx::PgPool, hashes: Vec<String>) {
    let r = sqlx::query(
        "INSERT INTO blob_gc(hash, since)
         SELECT h, EXTRACT(EPOCH FROM now())::BIGINT FROM UNNEST($1::TEXT[]) AS h
         ON CONFLICT (hash) DO NOTHING",
    )
    .bind(&hashes)
    .execute(pool)
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "store: cannot record bodies to collect; they stay in the blob store");
    }
}

/// Whether a row refers to the body under `hash`.
async fn referenced(tx: &mut PgConnection, hash: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM blobs WHERE hash = $1")
            .bind(hash)
            .fetch_optional(tx)
            .await?
            .is_some(),
    )
}

/// The `blobs` row of a body (its id), made or found: one row per content.
/// A body first stored for the queue only gains its metadata and header
/// when a mailbox gets it.
pub(super) async fn blob_row(
    tx: &mut PgConnection,
    hash: &str,
    raw: &[u8],
    analysed: Option<&Analysed>,
    inline: bool,
) -> Result<i64> {
    let (meta, header, fields) = match analysed {
        Some(a) => (
            a.meta.as_str(),
            Some(&raw[..a.header_len]),
            Some(a.field_names.as_str()),
        ),
        None => ("{}", None, None),
    };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO blobs(hash, size, meta, header, fields) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (hash) DO UPDATE SET
            meta = CASE WHEN blobs.header IS NULL THEN EXCLUDED.meta ELSE blobs.meta END,
            header = COALESCE(blobs.header, EXCLUDED.header),
            fields = COALESCE(blobs.fields, EXCLUDED.fields)
         RETURNING id",
    )
    .bind(hash)
    .bind(raw.len() as i64)
    .bind(meta)
    .bind(header)
    .bind(fields)
    .fetch_one(&mut *tx)
    .await?;
    if inline {
        sqlx::query("INSERT INTO blob_data(blob_id, data) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(id)
            .bind(raw)
            .execute(tx)
            .await?;
    }
    Ok(id)
}
