//! Per-account change notices across nodes (PostgreSQL LISTEN/NOTIFY): a
//! change committed on any node wakes the IDLE and NOTIFY sessions of that
//! account on every node (DESIGN.md, "Storage": coordination).
//!
//! Each account has its own channel (`tern_account_<id>`), notified in the
//! transaction that changes its mail (so at commit). A node listens only to
//! the accounts it has sessions watching: the first watcher of an account
//! makes the node's listening connection LISTEN, the last one to go makes
//! it UNLISTEN. Nodes are not sent what nobody on them watches.

use super::PgStore;
use super::lookups::{self, Lookups};
use crate::{AccountId, AccountWatch, Result};
use sqlx::postgres::{PgListener, PgPool};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// The channel of an account's changes.
pub(super) fn channel(account: AccountId) -> String {
    format!("tern_account_{account}")
}

/// What the listening task is asked to do.
pub(super) enum Command {
    /// LISTEN to an account's channel, then answer.
    Listen(AccountId, oneshot::Sender<()>),
    /// UNLISTEN (its last watcher went).
    Unlisten(AccountId),
}

/// The accounts this node's sessions watch, and how many sessions each.
pub(super) struct Watchers {
    counts: Mutex<HashMap<AccountId, usize>>,
    commands: mpsc::UnboundedSender<Command>,
}

impl Watchers {
    pub(super) fn new(commands: mpsc::UnboundedSender<Command>) -> Arc<Self> {
        Arc::new(Self {
            counts: Mutex::default(),
            commands,
        })
    }
}

/// One session's interest in an account, given up when dropped.
struct Interest {
    watchers: Arc<Watchers>,
    account: AccountId,
}

impl Drop for Interest {
    fn drop(&mut self) {
        let mut counts = self
            .watchers
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.account) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.account);
                let _ = self.watchers.commands.send(Command::Unlisten(self.account));
            }
        }
    }
}

impl PgStore {
    /// Tells every node watching `account` (this one included) that its
    /// mail changed: NOTIFY outside a transaction. Writes of mail notify in
    /// their own transaction instead (delivered at commit).
    pub async fn changed(&self, account: AccountId) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(channel(account))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Changes to `account`'s mail on any node, from when this returns (the
    /// node is then listening to the account).
    pub async fn watch_changes(&self, account: AccountId) -> AccountWatch {
        let changes = self.changes.subscribe();
        let (ack, listening) = oneshot::channel();
        {
            let mut counts = self
                .watchers
                .counts
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            *counts.entry(account).or_default() += 1;
            // Sent under the lock: LISTEN and UNLISTEN reach the task in the
            // order the counts changed.
            let _ = self.watchers.commands.send(Command::Listen(account, ack));
        }
        let interest = Interest {
            watchers: self.watchers.clone(),
            account,
        };
        if tokio::time::timeout(Duration::from_secs(10), listening)
            .await
            .is_err()
        {
            tracing::warn!(
                account,
                "postgres: not yet listening for the account's changes"
            );
        }
        AccountWatch::new(account, changes, Some(Box::new(interest)))
    }
}

/// Listens for as long as the store lives: LISTENs and UNLISTENs as asked,
/// and passes each notified account to `changes` (`ready` once connected).
/// A lost connection is made again with its channels (sessions
/// resynchronise on their next command, as after any missed wake-up).
/// Directory changes ([`lookups::CHANNEL`]) make `lookups` forget its
/// answers, and so does a lost connection.
pub(super) async fn listen(
    pool: PgPool,
    changes: broadcast::Sender<AccountId>,
    lookups: Arc<Lookups>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    ready: oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut listener = loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut l) => match l.listen(lookups::CHANNEL).await {
                Ok(()) => break l,
                Err(e) => tracing::warn!(error = %e, "postgres: LISTEN failed; retrying"),
            },
            Err(e) => tracing::warn!(error = %e, "postgres: cannot listen for changes; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    if let Some(ready) = ready.take() {
        let _ = ready.send(());
    }
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Listen(account, ack)) => {
                    if let Err(e) = listener.listen(&channel(account)).await {
                        tracing::warn!(account, error = %e, "postgres: LISTEN failed");
                    }
                    let _ = ack.send(());
                }
                Some(Command::Unlisten(account)) => {
                    if let Err(e) = listener.unlisten(&channel(account)).await {
                        tracing::warn!(account, error = %e, "postgres: UNLISTEN failed");
                    }
                }
                // The store is gone.
                None => return,
            },
            // Cancel-safe (sqlx reads whole messages only); reconnects and
            // listens again to every channel after a lost connection.
            n = listener.try_recv() => match n {
                Ok(Some(n)) if n.channel() == lookups::CHANNEL => lookups.forget_all(),
                Ok(Some(n)) => {
                    if let Some(account) = n
                        .channel()
                        .strip_prefix("tern_account_")
                        .and_then(|a| a.parse::<AccountId>().ok())
                    {
                        let _ = changes.send(account);
                    }
                }
                Ok(None) => {
                    lookups.forget_all();
                    tracing::warn!("postgres: change notices interrupted; reconnected");
                }
                Err(e) => {
                    lookups.forget_all();
                    tracing::warn!(error = %e, "postgres: change notices failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}
