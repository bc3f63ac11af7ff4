//! The selected mailbox as this session sees it: the sequence-number ↔ UID
//! map, kept up to date at the points RFC 9051 §7.5.1 allows (never during
//! FETCH, STORE or SEARCH), with untagged EXISTS, EXPUNGE and FETCH FLAGS
//! responses for what changed.
//!
//! Only the UIDs are held (4 bytes a message), plus the HIGHESTMODSEQ last
//! reported: flags and sizes are read from the store when a command needs
//! them, and changes are found with a MODSEQ query (RFC 7162), so an idle
//! session on a large mailbox costs little memory and a NOOP on an unchanged
//! mailbox is one small query.

use crate::write::{Str, string};
use std::collections::HashSet;
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
    /// QRESYNC enabled: expunges are reported as VANISHED (RFC 7162 §3.2.10).
    pub qresync: bool,
    uids: Vec<u32>,
    modseq: u64,
    /// MODSEQs this session produced itself (already reported to it).
    own: HashSet<u64>,
    /// Keywords announced in FLAGS to this session.
    keywords: std::collections::BTreeSet<String>,
    /// What is recent in this session.
    pub recent: Recent,
}

/// The messages recent in a session (RFC 3501 §2.3.2).
#[derive(Debug, Clone, Default)]
pub struct Recent {
    /// Their UIDs, as ranges.
    ranges: Vec<std::ops::Range<u32>>,
    /// An IMAP4rev1 session: `\Recent` and RECENT are shown (IMAP4rev2
    /// removed them, RFC 9051 Appendix E).
    pub show: bool,
}

impl Recent {
    /// Whether a message is recent in this session.
    pub fn contains(&self, uid: u32) -> bool {
        let i = self.ranges.partition_point(|r| r.end <= uid);
        self.ranges.get(i).is_some_and(|r| r.contains(&uid))
    }

    /// Adds `from..upto`, which starts at or after every range held: kept
    /// sorted and merged, so a session that sees one new message at a time
    /// holds one range, not one per message.
    fn push(&mut self, from: u32, upto: u32) {
        if from >= upto {
            return;
        }
        match self.ranges.last_mut() {
            Some(last) if last.end >= from => last.end = last.end.max(upto),
            _ => self.ranges.push(from..upto),
        }
    }

    /// How many of `uids` (ascending) are recent.
    fn count_in(&self, uids: &[u32]) -> usize {
        self.ranges
            .iter()
            .map(|r| uids.partition_point(|&u| u < r.end) - uids.partition_point(|&u| u < r.start))
            .sum()
    }

    /// `FLAGS (…)` of a message, with `\Recent` when this session shows it.
    pub fn write_flags(&self, out: &mut Vec<u8>, uid: u32, flags: &[String]) {
        if self.show && self.contains(uid) {
            let mut all = flags.to_vec();
            all.push("\\Recent".into());
            self::flags(out, &all);
        } else {
            self::flags(out, flags);
        }
    }
}

impl View {
    /// Loads a mailbox: its UIDs only (4 bytes a message).
    pub async fn open(
        store: &SharedStore,
        mailbox: MailboxRow,
        read_only: bool,
    ) -> Result<Self, StoreError> {
        let (modseq, _) = store.mailbox_state(mailbox.id).await?;
        let uids = store.uids(mailbox.id).await?;
        let keywords = store.mailbox_keywords(mailbox.id).await?;
        let mut view = Self {
            uids,
            modseq,
            mailbox,
            read_only,
            condstore: false,
            qresync: false,
            keywords: keywords.into_iter().collect(),
            own: HashSet::new(),
            recent: Recent::default(),
        };
        view.take_recent(store).await?;
        Ok(view)
    }

    /// Takes the messages of the view that are still recent: a read-write
    /// session claims them (no other session will see them as recent), a
    /// read-only one only looks (RFC 3501 §6.3.2: EXAMINE changes nothing).
    async fn take_recent(&mut self, store: &SharedStore) -> Result<(), StoreError> {
        let upto = self.max_uid().saturating_add(1);
        let (_, first) = store.recent(self.mailbox.id).await?;
        if first >= upto {
            return Ok(());
        }
        let first = if self.read_only {
            first
        } else {
            store.claim_recent(self.mailbox.id, upto).await?
        };
        let from = self
            .recent
            .ranges
            .last()
            .map_or(first, |r| first.max(r.end));
        self.recent.push(from, upto);
        Ok(())
    }

    /// Whether a message is recent in this session.
    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.contains(uid)
    }

    /// How many messages of the view are recent in this session.
    pub fn recent_count(&self) -> usize {
        self.recent.count_in(&self.uids)
    }

    /// Sequence number of the first message without `\Seen` (SELECT's
    /// UNSEEN for IMAP4rev1 clients), reading rows a batch at a time.
    pub async fn first_unseen(&self, store: &SharedStore) -> Result<Option<u32>, StoreError> {
        for batch in self.uids.chunks(1024) {
            let rows = self.rows_for(store, batch).await?;
            if let Some(r) = rows.iter().find(|r| !r.flags.iter().any(|f| f == "\\Seen")) {
                return Ok(self.seq_of(r.uid));
            }
        }
        Ok(None)
    }

    /// Messages in the view.
    pub fn len(&self) -> usize {
        self.uids.len()
    }

    /// UIDs in sequence order.
    pub fn uids(&self) -> &[u32] {
        &self.uids
    }

    /// The mailbox's MODSEQ as this session last saw it.
    pub fn highest_modseq(&self) -> u64 {
        self.modseq
    }

    /// Highest UID in the view (for `*` in UID sets), or 0.
    pub fn max_uid(&self) -> u32 {
        self.uids.last().copied().unwrap_or(0)
    }

    /// Sequence number of a UID.
    pub fn seq_of(&self, uid: u32) -> Option<u32> {
        self.uids.binary_search(&uid).ok().map(|i| i as u32 + 1)
    }

    /// Current rows of the view's messages (flags, sizes…), in sequence
    /// order; messages expunged meanwhile by others are left out.
    pub async fn rows(&self, store: &SharedStore) -> Result<Vec<MessageRow>, StoreError> {
        let (Some(&first), Some(&last)) = (self.uids.first(), self.uids.last()) else {
            return Ok(Vec::new());
        };
        let mut rows = store.messages_in(self.mailbox.id, first, last).await?;
        rows.retain(|r| self.uids.binary_search(&r.uid).is_ok());
        Ok(rows)
    }

    /// Rows for some UIDs of the view, ascending by UID (`uids` ascending).
    pub async fn rows_for(
        &self,
        store: &SharedStore,
        uids: &[u32],
    ) -> Result<Vec<MessageRow>, StoreError> {
        let (Some(&first), Some(&last)) = (uids.first(), uids.last()) else {
            return Ok(Vec::new());
        };
        let mut rows = store.messages_in(self.mailbox.id, first, last).await?;
        if rows.len() != uids.len() {
            rows.retain(|r| uids.binary_search(&r.uid).is_ok());
        }
        Ok(rows)
    }

    /// Notes a change this session made and has reported itself.
    pub fn own_change(&mut self, modseq: u64) {
        self.own.insert(modseq);
    }

    /// Brings the view up to date and writes untagged updates. Expunges are
    /// announced highest sequence number first, so each number is valid
    /// when the client reads it.
    pub async fn sync(&mut self, store: &SharedStore, out: &mut Vec<u8>) -> Result<(), StoreError> {
        let (modseq, count) = store.mailbox_state(self.mailbox.id).await?;
        if modseq == self.modseq && count as usize == self.uids.len() {
            return Ok(());
        }
        let changed = store.changed_since(self.mailbox.id, self.modseq).await?;
        let max = self.max_uid();
        let new: Vec<u32> = changed
            .iter()
            .filter(|r| r.uid > max)
            .map(|r| r.uid)
            .collect();
        if self.uids.len() + new.len() != count as usize {
            // Something was expunged: compare full UID lists.
            let current = store.uids(self.mailbox.id).await?;
            let present: HashSet<u32> = current.iter().copied().collect();
            let gone: Vec<u32> = self
                .uids
                .iter()
                .enumerate()
                .filter(|(_, u)| !present.contains(u))
                .map(|(i, _)| i as u32 + 1)
                .collect();
            if self.qresync {
                let uids: Vec<u32> = gone.iter().map(|s| self.uids[*s as usize - 1]).collect();
                if !uids.is_empty() {
                    let _ = write!(
                        Str(out),
                        "* VANISHED {}\r\n",
                        crate::session::compress(&uids)
                    );
                }
            } else {
                for seq in gone.iter().rev() {
                    let _ = write!(Str(out), "* {seq} EXPUNGE\r\n");
                }
            }
            self.uids.retain(|u| present.contains(u));
            let max = self.max_uid();
            self.uids.extend(current.iter().filter(|&&u| u > max));
            let _ = write!(Str(out), "* {} EXISTS\r\n", self.uids.len());
        } else if !new.is_empty() {
            self.uids.extend(new);
            let _ = write!(Str(out), "* {} EXISTS\r\n", self.uids.len());
        }
        if self.max_uid() > max {
            self.take_recent(store).await?;
            if self.recent.show {
                let _ = write!(Str(out), "* {} RECENT\r\n", self.recent_count());
            }
        }
        for r in &changed {
            if r.uid > max || self.own.contains(&r.modseq) {
                continue;
            }
            if let Some(seq) = self.seq_of(r.uid) {
                self.announce(&r.flags, out);
                let _ = write!(Str(out), "* {seq} FETCH (UID {} ", r.uid);
                self.recent.write_flags(out, r.uid, &r.flags);
                if self.condstore {
                    let _ = write!(Str(out), " MODSEQ ({})", r.modseq);
                }
                out.extend_from_slice(b")\r\n");
            }
        }
        self.own.clear();
        self.modseq = modseq;
        Ok(())
    }
}

impl View {
    /// `* FLAGS (…)` and the PERMANENTFLAGS response code: the system flags
    /// and every keyword used in the mailbox (RFC 9051 §7.3.5).
    pub fn flag_lines(&self, out: &mut Vec<u8>) {
        let keywords: Vec<&str> = self.keywords.iter().map(String::as_str).collect();
        let extra = if keywords.is_empty() {
            String::new()
        } else {
            format!(" {}", keywords.join(" "))
        };
        let _ = write!(
            Str(out),
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{extra})\r\n"
        );
        if self.read_only {
            out.extend_from_slice(b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n");
        } else {
            let _ = write!(
                Str(out),
                "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{extra} \\*)] Flags permitted\r\n"
            );
        }
    }

    /// Before a FETCH showing `flags`: a keyword this session has not been
    /// told of brings new FLAGS and PERMANENTFLAGS first (RFC 9051 §7.3.5).
    pub fn announce(&mut self, flags: &[String], out: &mut Vec<u8>) {
        let mut new = false;
        for f in flags.iter().filter(|f| !f.starts_with('\\')) {
            new |= self.keywords.insert(f.clone());
        }
        if new {
            self.flag_lines(out);
        }
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

#[cfg(test)]
mod recent_tests {
    use super::Recent;

    /// RFC 3501 §2.3.2: a session that sees messages one at a time keeps
    /// them recent; the ranges merge, and counting stays exact.
    #[test]
    fn ranges_merge_and_count() {
        let mut r = Recent::default();
        for uid in 10..1010 {
            r.push(uid, uid + 1);
        }
        r.push(2000, 2003);
        assert_eq!(r.ranges, vec![10..1010, 2000..2003]);
        assert!(r.contains(10) && r.contains(1009) && r.contains(2002));
        assert!(!r.contains(9) && !r.contains(1010) && !r.contains(2003));
        let uids: Vec<u32> = (1..3000).filter(|u| u % 2 == 0).collect();
        assert_eq!(r.count_in(&uids), 500 + 2);
        r.push(5, 5);
        assert_eq!(r.ranges.len(), 2);
    }
}
