//! Per-account change notifications across nodes (PostgreSQL LISTEN/NOTIFY):
//! a change committed on any node wakes the IDLE and NOTIFY sessions of that
//! account on every node (DESIGN.md, "Storage": coordination).
//!
//! One channel carries them all, the payload is the account id; every node
//! receives every notification (a few bytes each) and sessions keep only
//! their own account's, as they do on one node.

use super::PgStore;
use crate::{AccountId, Result};
use sqlx::postgres::{PgListener, PgPool};
use std::time::Duration;
use tokio::sync::broadcast;

/// The channel every node listens on.
pub(super) const CHANNEL: &str = "tern_changes";

impl PgStore {
    /// Tells every node, this one included, that `account`'s mail changed.
    /// Call it after the commit: NOTIFY is delivered at commit, and a
    /// listener that reads the store then sees the change.
    pub async fn changed(&self, account: AccountId) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(account.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The accounts whose mail changes, on any node, as they change.
    pub fn watch(&self) -> broadcast::Receiver<AccountId> {
        self.changes.subscribe()
    }
}

/// Listens on [`CHANNEL`] for as long as the store lives, passing each
/// account id to `changes` (`ready` once the first LISTEN is in place);
/// reconnects after a lost connection (sessions resynchronise on their next
/// command, as after any missed wake-up).
pub(super) async fn listen(
    pool: PgPool,
    changes: broadcast::Sender<AccountId>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "postgres: cannot listen for changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(CHANNEL).await {
            tracing::warn!(error = %e, "postgres: LISTEN failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        if let Some(ready) = ready.take() {
            let _ = ready.send(());
        }
        loop {
            match listener.recv().await {
                Ok(n) => {
                    if let Ok(account) = n.payload().parse::<AccountId>() {
                        let _ = changes.send(account);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "postgres: change notifications interrupted; reconnecting");
                    break;
                }
            }
        }
    }
}
