//! Recipient lookups remembered by a node (PostgreSQL): every RCPT TO asks
//! the directory where an address goes, and on a shared database each
//! question is a round trip and a transaction of its own — on inbound mail,
//! more of PostgreSQL's work than the delivery itself (inbound benchmark:
//! 536 → 314 µs of PostgreSQL CPU per message with the answers remembered).
//!
//! What keeps an answer right:
//! - a change to the directory on any node (domains, accounts, aliases,
//!   forwards: migration 0009's statement triggers) is announced on the
//!   `tern_directory` channel at its commit; every node forgets all its
//!   answers when it hears it, and when its listening connection is lost
//!   (notices may have been missed). The node that made the change forgets
//!   at once, before the change's call returns.
//! - an answer lives [`TTL`] at most, whatever happens;
//! - an answer obtained while a change was announced is not kept (the
//!   generation check in [`Lookups::put`]).
//!
//! The bytes an account uses (RCPT's early quota check, RFC 5321 §4.5.3.1.10
//! `552`) change with every delivery: those of this node are added to the
//! remembered figure as they commit; other nodes' deliveries and expunges
//! show within [`TTL`]. The check was already an estimate — two sessions
//! may pass it at once — and a delivery is not refused by quota at commit.
//!
//! "No such user" is never remembered (a new account is found at once on
//! every node). At most [`MAX_ENTRIES`] answers are kept: a sender trying
//! many addresses of other domains gets its answers from the database once
//! the table is full, and cannot make it grow.

use crate::{AccountId, Recipient};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is used without asking again.
pub(super) const TTL: Duration = Duration::from_secs(5);

/// Most answers remembered.
pub(super) const MAX_ENTRIES: usize = 10_000;

/// The channel directory changes are announced on.
pub(super) const CHANNEL: &str = "tern_directory";

/// A node's remembered answers.
#[derive(Default)]
pub(super) struct Lookups {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Answers by (address as looked up, catch-all allowed).
    answers: HashMap<(String, bool), (Instant, Recipient)>,
    /// The bytes each account of an answer uses, kept apart so that a
    /// delivery updates one figure, not every answer naming the account.
    used: HashMap<AccountId, u64>,
    /// Bumped whenever everything is forgotten.
    generation: u64,
    /// When a full table was last swept of lapsed answers (at most once a
    /// second: a full table of fresh answers is not swept at every put).
    swept: Option<Instant>,
}

impl Lookups {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The remembered answer for `address`, if any and still fresh, and
    /// otherwise the generation to hand back to [`Lookups::put`].
    pub(super) fn get(&self, address: &str, catch_all: bool) -> Result<Recipient, u64> {
        let inner = self.inner();
        match inner.answers.get(&(address.to_string(), catch_all)) {
            Some((at, r)) if at.elapsed() < TTL => {
                let mut r = r.clone();
                if let Recipient::Local(l) = &mut r {
                    l.used = inner.used.get(&l.account).copied().unwrap_or(l.used);
                }
                Ok(r)
            }
            _ => Err(inner.generation),
        }
    }

    /// Remembers the answer the database gave, unless everything was
    /// forgotten since the question was asked (`generation`).
    pub(super) fn put(&self, address: &str, catch_all: bool, answer: &Recipient, generation: u64) {
        // "No such user" is not remembered: an account made on another
        // node would be refused with a permanent 550 until the notice came.
        // (A remembered account that was just removed costs at most a 451:
        // the delivery finds no mailbox and the sender tries again.)
        if *answer == Recipient::UnknownUser {
            return;
        }
        let mut inner = self.inner();
        if inner.generation != generation {
            return;
        }
        if inner.answers.len() >= MAX_ENTRIES {
            if inner
                .swept
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                return;
            }
            inner.swept = Some(Instant::now());
            inner.answers.retain(|_, (at, _)| at.elapsed() < TTL);
            let named: std::collections::HashSet<AccountId> = inner
                .answers
                .values()
                .filter_map(|(_, r)| match r {
                    Recipient::Local(l) => Some(l.account),
                    _ => None,
                })
                .collect();
            inner.used.retain(|account, _| named.contains(account));
            if inner.answers.len() >= MAX_ENTRIES {
                return;
            }
        }
        if let Recipient::Local(l) = answer {
            // The database's figure is the freshest.
            inner.used.insert(l.account, l.used);
        }
        inner.answers.insert(
            (address.to_string(), catch_all),
            (Instant::now(), answer.clone()),
        );
    }

    /// Forgets every answer (the directory changed, or its notices may
    /// have been missed).
    pub(super) fn forget_all(&self) {
        let mut inner = self.inner();
        inner.answers.clear();
        inner.used.clear();
        inner.generation += 1;
    }

    /// Adds the bytes this node's writer just committed for these accounts
    /// to their remembered usage.
    pub(super) fn stored(&self, bytes: &BTreeMap<AccountId, i64>) {
        if bytes.is_empty() {
            return;
        }
        let mut inner = self.inner();
        for (account, n) in bytes {
            if let Some(used) = inner.used.get_mut(account) {
                *used = used.saturating_add_signed(*n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalRecipient;

    fn local(account: AccountId, used: u64) -> Recipient {
        Recipient::Local(LocalRecipient {
            account,
            address: "a@example.test".into(),
            quota: 10_000,
            used,
        })
    }

    #[test]
    fn an_answer_is_kept_until_forgotten() {
        let l = Lookups::default();
        let generation = l.get("a@example.test", false).unwrap_err();
        l.put("a@example.test", false, &local(1, 10), generation);
        assert_eq!(l.get("a@example.test", false), Ok(local(1, 10)));
        assert!(
            l.get("a@example.test", true).is_err(),
            "catch-all is part of the question"
        );
        // An alias of the same account: one usage figure for both.
        l.put("alias@example.test", false, &local(1, 10), generation);
        l.stored(&BTreeMap::from([(1, 5), (2, 7)]));
        assert_eq!(l.get("a@example.test", false), Ok(local(1, 15)));
        assert_eq!(l.get("alias@example.test", false), Ok(local(1, 15)));
        l.forget_all();
        assert!(l.get("a@example.test", false).is_err());
        let generation = l.get("b@example.test", false).unwrap_err();
        l.put("b@example.test", false, &Recipient::UnknownUser, generation);
        assert!(
            l.get("b@example.test", false).is_err(),
            "no such user: not kept"
        );
    }

    #[test]
    fn an_answer_asked_before_a_change_is_not_kept() {
        let l = Lookups::default();
        let generation = l.get("a@example.test", false).unwrap_err();
        l.forget_all();
        l.put("a@example.test", false, &Recipient::NotLocal, generation);
        assert!(l.get("a@example.test", false).is_err());
    }

    #[test]
    fn the_table_does_not_grow_past_its_bound() {
        let l = Lookups::default();
        for i in 0..MAX_ENTRIES + 50 {
            let a = format!("u{i}@example.test");
            let generation = l.get(&a, false).unwrap_err();
            l.put(&a, false, &Recipient::NotLocal, generation);
        }
        assert_eq!(l.inner().answers.len(), MAX_ENTRIES);
    }
}
