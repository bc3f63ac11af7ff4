//! Bodies outside the database ([`SqliteStore::with_blobs`]): stored before
//! the commit that refers to them, read back by hash, and deleted once
//! nothing refers to them.
//!
//! Safety of the collector, on one node: a body is deleted only when no row
//! refers to its hash, no delivery of this process is between its put and
//! its commit (the hash's gate, held exclusively while deciding and
//! deleting), and it was not put within the grace period (which covers a
//! put by another process on the same data folder). A crash between a put
//! and its commit leaves a body no row refers to and no `blob_gc` entry
//! names: it stays in the blob store (space, never a lost message).

use super::SqliteStore;
use crate::blobs::{BodyCounts, Collected, Swept, written_within};
use crate::{BlobId, Result, StoreError};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;
use std::time::Duration;

/// How many gates the hashes are spread over.
pub(super) const GATES: usize = 64;

fn gate_of(hash: &str) -> usize {
    hash.get(..2)
        .and_then(|h| usize::from_str_radix(h, 16).ok())
        .unwrap_or(0)
        % GATES
}

impl SqliteStore {
    /// Runs `op` in the writer. Without a blob store it gets `false` and
    /// writes bodies inline. With one, the bodies are put first (all of
    /// them, concurrently, each durable before the commit), `op` gets
    /// `true` and writes only their hashes; if the write fails, the bodies
    /// are handed to the collector.
    pub(super) async fn write_with_bodies<T: Send + 'static>(
        &self,
        bodies: Vec<(String, Arc<Vec<u8>>)>,
        op: impl FnOnce(&Connection, bool) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let Some(blobs) = self.blobs.clone() else {
            return self.write(move |c| op(c, false)).await;
        };
        let mut gates: Vec<usize> = bodies.iter().map(|(h, _)| gate_of(h)).collect();
        gates.sort_unstable();
        gates.dedup();
        let mut held = Vec::with_capacity(gates.len());
        for g in gates {
            held.push(self.blob_gates[g].read().await);
        }
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
        let r = match stored {
            Ok(()) => self.write(move |c| op(c, true)).await,
            Err(e) => Err(e),
        };
        drop(held);
        if r.is_err() {
            self.forget_bodies(bodies.into_iter().map(|(h, _)| h).collect())
                .await;
        }
        r
    }

    /// Hands bodies a failed write may have left unreferenced to the
    /// collector.
    async fn forget_bodies(&self, hashes: Vec<String>) {
        let r = self
            .write(move |c| {
                let mut st = c.prepare_cached(
                    "INSERT OR IGNORE INTO blob_gc(hash, since)
                     VALUES (?, CAST(strftime('%s', 'now') AS INTEGER))",
                )?;
                for h in &hashes {
                    st.execute([h])?;
                }
                Ok(())
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "store: cannot record bodies to collect; they stay in the blob store");
        }
    }

    /// The blob store, or why there is none.
    fn required_blobs(&self) -> Result<Arc<dyn crate::Blobs>> {
        self.blobs.clone().ok_or_else(|| {
            StoreError::Invalid("no blob store is configured ([blobs] backend)".into())
        })
    }

    /// Whether a row refers to the body under `hash` in the blob store.
    fn referenced(&self, hash: &str) -> Result<bool> {
        self.read(|c| {
            Ok(
                c.prepare_cached("SELECT 1 FROM blobs WHERE hash = ? AND external <> 0 LIMIT 1")?
                    .query_row([hash], |_| Ok(()))
                    .optional()?
                    .is_some(),
            )
        })
    }

    /// The body of `blob`, which is in the blob store under `hash`.
    pub(super) async fn external_body(&self, blob: BlobId, hash: &str) -> Result<Vec<u8>> {
        match &self.blobs {
            Some(blobs) => blobs.get(hash).await,
            None => Err(StoreError::Invalid(format!(
                "message body {blob} is in a blob store, and none is configured ([blobs] backend)"
            ))),
        }
    }
}

#[async_trait::async_trait]
impl crate::blobs::BodyStore for SqliteStore {
    fn blob_store(&self) -> Option<&Arc<dyn crate::Blobs>> {
        self.blobs.as_ref()
    }
    /// How many bodies are where.
    async fn body_counts(&self) -> Result<BodyCounts> {
        self.read(|c| {
            Ok(c.query_row(
                "SELECT COALESCE(SUM(external = 0), 0), COALESCE(SUM(CASE WHEN external = 0 THEN size END), 0),
                        COALESCE(SUM(external <> 0), 0), COALESCE(SUM(CASE WHEN external <> 0 THEN size END), 0),
                        (SELECT COUNT(*) FROM blob_gc)
                 FROM blobs",
                [],
                |r| {
                    Ok(BodyCounts {
                        inline: r.get::<_, i64>(0)? as u64,
                        inline_bytes: r.get::<_, i64>(1)? as u64,
                        external: r.get::<_, i64>(2)? as u64,
                        external_bytes: r.get::<_, i64>(3)? as u64,
                        to_collect: r.get::<_, i64>(4)? as u64,
                    })
                },
            )?)
        })
    }
    /// Moves up to `limit` bodies from the database to the blob store
    /// (each put durably, then its row changed to refer to it by hash, with
    /// its header block kept for searches); how many moved, 0 when none
    /// is left. Safe while the server runs: a reader sees the body in one
    /// place or the other.
    async fn move_bodies_out(&self, limit: usize) -> Result<usize> {
        self.required_blobs()?;
        let rows: Vec<(BlobId, String, Vec<u8>)> = self.read_bulk(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, hash, data FROM blobs WHERE external = 0 ORDER BY id LIMIT ?",
            )?;
            let rows = st.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        if rows.is_empty() {
            return Ok(0);
        }
        let moved = rows.len();
        let bodies = rows
            .iter()
            .map(|(_, hash, data)| (hash.clone(), Arc::new(data.clone())))
            .collect();
        let headers: Vec<(BlobId, Vec<u8>)> = rows
            .into_iter()
            .map(|(id, _, data)| {
                let end = data
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(data.len(), |p| p + 4);
                (id, data[..end].to_vec())
            })
            .collect();
        self.write_with_bodies(bodies, move |c, _| {
            let mut header = c.prepare_cached(
                "INSERT OR IGNORE INTO blob_headers(blob_id, header) VALUES (?, ?)",
            )?;
            let mut fields = c.prepare_cached(
                "INSERT OR IGNORE INTO blob_fields(blob_id, names) VALUES (?, ?)",
            )?;
            let mut out = c.prepare_cached(
                "UPDATE blobs SET data = X'', external = 1 WHERE id = ? AND external = 0",
            )?;
            for (id, h) in &headers {
                header.execute(params![id, h])?;
                fields.execute(params![id, crate::meta::field_names(h)])?;
                out.execute([id])?;
            }
            Ok(())
        })
        .await?;
        Ok(moved)
    }
    /// The bodies the blob store should hold and does not, looking at up to
    /// `limit` of them after id `after`: (missing ids and hashes, the last
    /// id looked at, `None` when there were none left).
    async fn check_bodies(
        &self,
        after: BlobId,
        limit: usize,
    ) -> Result<(Vec<(BlobId, String)>, Option<BlobId>)> {
        let blobs = self.required_blobs()?;
        let rows: Vec<(BlobId, String)> = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT id, hash FROM blobs WHERE external <> 0 AND id > ? ORDER BY id LIMIT ?",
            )?;
            let rows =
                st.query_map(params![after, limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        crate::blobs::missing(blobs.as_ref(), rows).await
    }
    /// Deletes from the blob store the bodies no row refers to any more,
    /// except those put within `grace`. Safe to run at any time, while mail
    /// flows; a no-op when bodies are in the database.
    async fn collect_blobs(&self, grace: Duration) -> Result<Collected> {
        let mut done = Collected::default();
        let Some(blobs) = self.blobs.clone() else {
            return Ok(done);
        };
        let mut after = String::new();
        loop {
            let from = after.clone();
            let batch: Vec<String> = self.read(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT hash FROM blob_gc WHERE hash > ? ORDER BY hash LIMIT 256",
                )?;
                let rows = st.query_map([from], |r| r.get(0))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            })?;
            let Some(last) = batch.last() else {
                return Ok(done);
            };
            after = last.clone();
            let mut settled = Vec::with_capacity(batch.len());
            for hash in batch {
                let _gate = self.blob_gates[gate_of(&hash)].write().await;
                let in_use = self.referenced(&hash)?;
                if in_use {
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
                settled.push(hash);
            }
            self.write(move |c| {
                let mut st = c.prepare_cached("DELETE FROM blob_gc WHERE hash = ?")?;
                for h in &settled {
                    st.execute(params![h])?;
                }
                Ok(())
            })
            .await?;
        }
    }
    /// Deletes the bodies of one shard ([`crate::blobs::shards`]) that the
    /// blob store holds and no row refers to, put longer than `grace` ago:
    /// what a crash between a put and its commit leaves, which the
    /// collector (working from deleted rows) never sees.
    async fn sweep_blobs(&self, shard: &str, grace: Duration) -> Result<Swept> {
        let mut done = Swept::default();
        let Some(blobs) = self.blobs.clone() else {
            return Ok(done);
        };
        let listed = blobs.list_shard(shard).await?;
        done.looked_at = listed.len();
        if listed.is_empty() {
            return Ok(done);
        }
        let (from, to) = (shard.to_string(), format!("{shard}g"));
        let known: std::collections::HashSet<String> = self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT hash FROM blobs WHERE external <> 0 AND hash >= ? AND hash < ?",
            )?;
            let rows = st.query_map([from, to], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })?;
        for (hash, written) in listed {
            if known.contains(&hash) {
                continue;
            }
            if written_within(written, grace) {
                done.young += 1;
                continue;
            }
            // Under the hash's gate: no delivery of this process is between
            // its put and its commit; a row committed since the listing wins.
            let _gate = self.blob_gates[gate_of(&hash)].write().await;
            let referenced = self.referenced(&hash)?;
            if !referenced {
                blobs.delete(&hash).await?;
                done.deleted += 1;
            }
        }
        Ok(done)
    }
}
