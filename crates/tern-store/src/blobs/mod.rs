//! The blob role: message bodies by content hash (DESIGN.md, "Storage").
//!
//! A body is stored once under the lower-case hex SHA-256 of its bytes, at
//! the same relative name on every backend ([`relative_name`]: `ab/cd/abcd…`),
//! so a folder of files copied into a bucket (`aws s3 sync blobs/
//! s3://bucket/`) is a valid S3 store, and a second put of the same body only
//! rewrites identical bytes.
//!
//! The contract every backend keeps, checked by `tests/blobs.rs` on each:
//! - [`Blobs::put`] returns only once the body survives a crash of this
//!   machine (file and folder fsynced; S3's PUT acknowledged). Metadata that
//!   references a blob is committed only after its put returned, so a
//!   committed reference never points at nothing.
//! - A put refreshes the object's write time ([`Blobs::written_at`]), which
//!   the collector of unreferenced blobs reads to leave a body alone while a
//!   delivery that just stored it may still be committing.
//! - [`Blobs::get`] of a missing key is [`StoreError::NotFound`];
//!   [`Blobs::delete`] of a missing key succeeds.
//! - Keys are checked: anything but 64 lower-case hex digits is refused
//!   before it reaches a path or a URL.

mod files;
mod s3;

pub use files::FileBlobs;
pub use s3::S3Blobs;

use crate::{Result, StoreError};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::SystemTime;

/// Storage of message bodies by content hash.
#[async_trait]
pub trait Blobs: Send + Sync + 'static {
    /// Stores `data` under `hash` (its SHA-256, lower-case hex), durably.
    async fn put(&self, hash: &str, data: Arc<Vec<u8>>) -> Result<()>;
    /// The body stored under `hash`.
    async fn get(&self, hash: &str) -> Result<Vec<u8>>;
    /// Removes the body under `hash`; a missing one is not an error.
    async fn delete(&self, hash: &str) -> Result<()>;
    /// When the body under `hash` was last put, `None` if there is none.
    async fn written_at(&self, hash: &str) -> Result<Option<SystemTime>>;
    /// Every body whose key starts with `shard` (two hex digits), with its
    /// write time: what the store holds, for the sweep of bodies no row
    /// knows (a crash between a put and its commit leaves one).
    async fn list_shard(&self, shard: &str) -> Result<Vec<(String, SystemTime)>>;
    /// Where the bodies are, for logs and `tern` commands.
    fn describe(&self) -> String;
}

/// Refuses a key that is not a SHA-256 in lower-case hex.
pub fn check_key(hash: &str) -> Result<()> {
    if hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("not a blob key: {hash:?}")))
    }
}

/// Where a body lives relative to the store's root: `ab/cd/<hash>` (two
/// levels of 256 keep any folder small). `hash` must have passed
/// [`check_key`].
pub fn relative_name(hash: &str) -> String {
    format!("{}/{}/{hash}", &hash[..2], &hash[2..4])
}

/// The 256 shards keys are spread over (`00` … `ff`), in order.
pub fn shards() -> impl Iterator<Item = String> + Clone {
    (0..=255u8).map(|b| format!("{b:02x}"))
}

fn check_shard(shard: &str) -> Result<()> {
    if shard.len() == 2
        && shard
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("not a blob shard: {shard:?}")))
    }
}

/// The key of `data`: its SHA-256 in lower-case hex.
pub fn key_of(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// Whether a body written `at` is younger than `grace` (a time in the
/// future, from another machine's clock, counts as young).
pub(crate) fn written_within(at: std::time::SystemTime, grace: std::time::Duration) -> bool {
    std::time::SystemTime::now()
        .duration_since(at)
        .map_or(true, |age| age < grace)
}

/// Where the bodies are (`tern blobs status`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BodyCounts {
    /// Bodies in the database.
    pub inline: u64,
    /// Their bytes.
    pub inline_bytes: u64,
    /// Bodies in the blob store.
    pub external: u64,
    /// Their bytes.
    pub external_bytes: u64,
    /// Bodies waiting for the collector.
    pub to_collect: u64,
}

/// What [`BodyStore::sweep_blobs`] did with one shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Bodies the blob store holds.
    pub looked_at: usize,
    /// Bodies no row referred to, deleted.
    pub deleted: usize,
    /// Bodies no row refers to yet, put within the grace period: left.
    pub young: usize,
}

/// What one pass of [`BodyStore::collect_blobs`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Bodies deleted from the blob store.
    pub deleted: usize,
    /// Candidates a row refers to again (kept; the entry is dropped).
    pub in_use: usize,
    /// Bodies put within the grace period, left for a later pass.
    pub young: usize,
}

/// The bodies role: where bodies are, moving them out of the database,
/// checking them, collecting the ones nothing refers to (`tern blobs`, and
/// the server's collector).
#[async_trait::async_trait]
pub trait BodyStore: Send + Sync {
    /// The blob store, `None` when bodies are in the database.
    fn blob_store(&self) -> Option<&Arc<dyn Blobs>>;
    /// How many bodies are where.
    async fn body_counts(&self) -> Result<BodyCounts>;
    /// Moves up to `limit` bodies from the database to the blob store; how
    /// many moved (0 when none is left, always 0 where bodies are never in
    /// the database).
    async fn move_bodies_out(&self, limit: usize) -> Result<usize>;
    /// The bodies the blob store should hold and does not, among up to
    /// `limit` after id `after`: (missing ids and hashes, the last id
    /// looked at, `None` when none was left).
    async fn check_bodies(
        &self,
        after: crate::BlobId,
        limit: usize,
    ) -> Result<(Vec<(crate::BlobId, String)>, Option<crate::BlobId>)>;
    /// Deletes the bodies nothing refers to any more, except those put
    /// within `grace`.
    async fn collect_blobs(&self, grace: std::time::Duration) -> Result<Collected>;
    /// Deletes one shard's bodies no row refers to, put before `grace`.
    async fn sweep_blobs(&self, shard: &str, grace: std::time::Duration) -> Result<Swept>;
}

/// Of the bodies `rows` (id, hash) the database refers to, those `blobs`
/// does not hold, and the last id looked at ([`BodyStore::check_bodies`]).
pub(crate) async fn missing(
    blobs: &dyn Blobs,
    rows: Vec<(crate::BlobId, String)>,
) -> Result<(Vec<(crate::BlobId, String)>, Option<crate::BlobId>)> {
    let last = rows.last().map(|r| r.0);
    let mut missing = Vec::new();
    for (id, hash) in rows {
        if blobs.written_at(&hash).await?.is_none() {
            missing.push((id, hash));
        }
    }
    Ok((missing, last))
}
