//! The coordination role's shared cache: values one node fetched that every
//! node may use until they lapse (MTA-STS policies, RFC 8461 §5.1: a policy
//! is used until its `max_age` runs out, across restarts), so that a
//! domain's policy is fetched once for the installation, not once per node.

use crate::Result;
use async_trait::async_trait;

/// Values by name, each with the Unix second it lapses at.
#[async_trait]
pub trait SharedCache: Send + Sync {
    /// The value cached under `name`, unless it lapsed by `now`.
    async fn cached(&self, name: &str, now: i64) -> Result<Option<String>>;
    /// Caches `value` under `name` until `until` (replacing what was there).
    async fn cache(&self, name: &str, value: &str, until: i64) -> Result<()>;
}
