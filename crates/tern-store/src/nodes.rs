//! The coordination role's first part: which Tern nodes share this store,
//! when each last said it was alive, and what each holds (queue leases).
//!
//! A node is one running `tern serve`, named by `[node] name` (the host name
//! by default). Queue leases carry their owner: a node that restarts frees
//! only its own ([`crate::Queue::release_leases`]); a node silent for three
//! heartbeats is taken for dead, and the others free its leases
//! ([`Nodes::take_over_silent`]) and do its work. (A node that was only
//! slow may then finish a delivery another node repeats: delivery is
//! at least once, and such duplicates are counted.) Leases also end by
//! themselves ([`crate::LEASE_SECS`]).

use crate::Result;
use async_trait::async_trait;

/// A node as `tern node list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its name (`[node] name`).
    pub name: String,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// When it last said it was alive (Unix seconds).
    pub heartbeat: i64,
    /// Its process id on its machine.
    pub pid: u32,
    /// The Tern version it runs.
    pub version: String,
    /// Queue recipients it holds leased now.
    pub leases: u64,
}

/// How often a running node says it is alive by default (seconds, `[node]
/// heartbeat`); a node silent for [`SILENT_BEATS`] times as long is taken
/// for dead.
pub const HEARTBEAT_SECS: i64 = 10;

/// Heartbeats a node may miss before the others take over its work.
pub const SILENT_BEATS: i64 = 3;

/// Nodes sharing the store.
#[async_trait]
pub trait Nodes: Send + Sync {
    /// This store's node name (`""` for `tern` commands, which lease nothing).
    fn node(&self) -> &str;
    /// Records that this node is alive (creating its row at the first call).
    async fn heartbeat(&self, started_at: i64, pid: u32, version: &str) -> Result<()>;
    /// Every node that has said it was alive, with its leases, by name.
    async fn nodes(&self) -> Result<Vec<NodeInfo>>;
    /// Frees the queue leases of the other nodes whose last heartbeat is
    /// before `silent_since` (their recipients fall due at `now`); returns
    /// the nodes and how many leases each lost.
    async fn take_over_silent(&self, now: i64, silent_since: i64) -> Result<Vec<(String, u64)>>;
    /// The secret called `name`, shared by every node: `fresh` becomes it
    /// when there is none yet (the first node to ask wins; the others get
    /// its value).
    async fn shared_secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>>;
}
