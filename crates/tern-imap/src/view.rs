//! The selected mailbox as this session sees it: the sequence-number ↔ UID
//! map and flags, brought up to date at the points RFC 9051 §7.5.1 allows
//! (never during FETCH, STORE or SEARCH), with untagged EXISTS, EXPUNGE and
//! FETCH FLAGS responses for what changed.

use crate::write::{Str, string};
use std::fmt::Write as _;
use tern_store::{MailboxRow, MessageRow, SharedStore, StoreError};

/// A selected mailbox.
pub struct View {
    /// The mailbox row at selection time (id, name, UIDVALIDITY…).
    pub mailbox: MailboxRow,
    /// EXAMINE: no changes allowed.
    pub read_only: bool,
    /// CONDSTORE enabled: FETCH responses carry MODSEQ.
    pub condstore: bool,
    rows: Vec<MessageRow>,
}

impl View {
    /// Loads a mailbox.
    pub async fn open(
        store: &SharedStore,
        mailbox: MailboxRow,
        read_only: bool,
    ) -> Result<Self, StoreError> {
        let rows = store.messages(mailbox.id).await?;
        Ok(Self {
            mailbox,
            read_only,
            condstore: false,
            rows,
        })
    }

    /// Messages in the view.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Rows in sequence order.
    pub fn rows(&self) -> &[MessageRow] {
        &self.rows
    }

    /// Highest UID in the view (for `*` in UID sets), or 0.
    pub fn max_uid(&self) -> u32 {
        self.rows.last().map(|r| r.uid).unwrap_or(0)
    }

    /// Sequence number of a UID.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.rows
            .binary_search_by_key(&uid, |r| r.uid)
            .ok()
            .map(|i| i as u32 + 1)
    }

    /// Records our own flag change, so the next sync does not repeat it.
    pub fn set_flags(&mut self, uid: u32, flags: Vec<String>, modseq: u64) {
        if let Ok(i) = self.rows.binary_search_by_key(&uid, |r| r.uid) {
            self.rows[i].flags = flags;
            self.rows[i].modseq = modseq;
        }
    }

    /// Reloads the mailbox and writes untagged updates. Expunges are
    /// announced highest sequence number first, so each number is valid
    /// when the client reads it.
    pub async fn sync(&mut self, store: &SharedStore, out: &mut Vec<u8>) -> Result<(), StoreError> {
        let fresh = store.messages(self.mailbox.id).await?;
        let mut expunged = Vec::new();
        {
            let mut j = 0;
            for (i, old) in self.rows.iter().enumerate() {
                while j < fresh.len() && fresh[j].uid < old.uid {
                    j += 1;
                }
                if j >= fresh.len() || fresh[j].uid != old.uid {
                    expunged.push(i as u32 + 1);
                }
            }
        }
        for seq in expunged.iter().rev() {
            let _ = write!(Str(out), "* {seq} EXPUNGE\r\n");
        }
        let old_max = self.max_uid();
        let old_flags: std::collections::HashMap<u32, (&Vec<String>, u64)> = self
            .rows
            .iter()
            .map(|r| (r.uid, (&r.flags, r.modseq)))
            .collect();
        let mut changed = Vec::new();
        for (i, r) in fresh.iter().enumerate() {
            if let Some((flags, _)) = old_flags.get(&r.uid)
                && **flags != r.flags
            {
                changed.push(i);
            }
        }
        let grew = fresh.len() != self.rows.len() - expunged.len()
            || fresh.last().map(|r| r.uid).unwrap_or(0) > old_max;
        self.rows = fresh;
        if grew || !expunged.is_empty() {
            let _ = write!(Str(out), "* {} EXISTS\r\n", self.rows.len());
        }
        for i in changed {
            let r = &self.rows[i];
            let _ = write!(Str(out), "* {} FETCH (UID {} ", i + 1, r.uid);
            flags(out, &r.flags);
            if self.condstore {
                let _ = write!(Str(out), " MODSEQ ({})", r.modseq);
            }
            out.extend_from_slice(b")\r\n");
        }
        Ok(())
    }
}

/// `FLAGS (...)` with the flags of a message.
pub fn flags(out: &mut Vec<u8>, flags: &[String]) {
    out.extend_from_slice(b"FLAGS (");
    out.extend_from_slice(flags.join(" ").as_bytes());
    out.push(b')');
}

/// The mailbox name as an IMAP string.
pub fn name(out: &mut Vec<u8>, n: &str) {
    string(out, n.as_bytes());
}
