//! NOTIFY (RFC 5465): the client says which mailboxes and events it cares
//! about, and the server tells it as they happen, without polling — new and
//! expunged messages and flag changes as STATUS responses for mailboxes
//! other than the selected one (at once for the selected one with the
//! `selected` filter), created, deleted and renamed mailboxes and
//! subscription changes as LIST responses.
//!
//! Changes are noticed through the store's per-account change signal and
//! found by comparing each mailbox's counters with the last ones reported.
//! Annotation and metadata events are not offered ([BADEVENT]).

use super::tokens::{Token, tokens};
use super::{Session, State};
use crate::view;
use crate::write::Str;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use tern_store::MailboxRow;

/// Events Tern can report (RFC 5465 §5).
pub(super) const SUPPORTED: &str =
    "MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange";

/// Which mailboxes an event group covers (RFC 5465 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Filter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<String>),
    Mailboxes(Vec<String>),
}

/// The events asked for in one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Events {
    /// MessageNew and MessageExpunge (always together, §5.2).
    messages: bool,
    flags: bool,
    names: bool,
    subscriptions: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    filter: Filter,
    /// `None`: NONE (no events for these mailboxes).
    events: Option<Events>,
}

/// A mailbox's counters as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snap {
    name: String,
    messages: u32,
    uidnext: u32,
    unseen: u32,
    modseq: u64,
}

/// The NOTIFY state of a session.
#[derive(Debug, Default)]
pub(super) struct Notify {
    groups: Vec<Group>,
    /// By UIDVALIDITY (which RENAME keeps): counters and name.
    snapshot: HashMap<u32, Snap>,
    subscribed: HashSet<String>,
}

/// What a NOTIFY command asks.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    Other,
    Bad(String, String),
    /// NO [BADEVENT …]: an event Tern does not offer.
    BadEvent(String),
    None(String),
    Set {
        tag: String,
        status: bool,
        groups: Vec<Group>,
    },
}

fn word(t: &Token) -> Option<String> {
    match t {
        Token::Atom(a) | Token::Quoted(a) | Token::Literal(a, _) => {
            Some(String::from_utf8_lossy(a).into_owned())
        }
        _ => None,
    }
}

fn mailbox_name(t: &Token) -> Option<String> {
    let w = word(t)?;
    Some(if w.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else {
        w
    })
}

/// Parses `tag NOTIFY NONE` / `tag NOTIFY SET [(STATUS)] groups`.
pub(super) fn parse(bytes: &[u8]) -> Parsed {
    let head: Vec<&[u8]> = bytes.splitn(3, |&b| b == b' ').collect();
    if head.len() < 2 || !head[1].trim_ascii_end().eq_ignore_ascii_case(b"NOTIFY") {
        return Parsed::Other;
    }
    let tag = String::from_utf8_lossy(head[0]).into_owned();
    let Some(toks) = tokens(bytes) else {
        return Parsed::Bad(tag, "Syntax error in NOTIFY".into());
    };
    match parse_args(&toks[2..]) {
        Ok(None) => Parsed::None(tag),
        Ok(Some((status, groups))) => Parsed::Set {
            tag,
            status,
            groups,
        },
        Err(Some(why)) => Parsed::Bad(tag, why),
        Err(None) => Parsed::BadEvent(tag),
    }
}

/// `Err(None)`: an unsupported event.
#[allow(clippy::type_complexity)]
fn parse_args(t: &[Token]) -> Result<Option<(bool, Vec<Group>)>, Option<String>> {
    let bad = |s: &str| Err(Some(s.to_string()));
    let mut it = t.iter().peekable();
    match it.next().and_then(word).map(|w| w.to_ascii_uppercase()) {
        Some(w) if w == "NONE" => {
            return if it.next().is_none() {
                Ok(None)
            } else {
                bad("NOTIFY NONE takes nothing more")
            };
        }
        Some(w) if w == "SET" => {}
        _ => return bad("NOTIFY SET or NOTIFY NONE expected"),
    }
    let mut status = false;
    // `(STATUS)` comes first when present.
    if let (Some(Token::Open), Some(Token::Atom(a)), Some(Token::Close)) =
        (t.get(1), t.get(2), t.get(3))
        && a.eq_ignore_ascii_case(b"STATUS")
    {
        status = true;
        it.next();
        it.next();
        it.next();
    }
    let mut groups = Vec::new();
    while let Some(tok) = it.next() {
        if *tok != Token::Open {
            return bad("Event group expected");
        }
        let f = it.next().and_then(word).map(|w| w.to_ascii_lowercase());
        let names = |it: &mut std::iter::Peekable<std::slice::Iter<'_, Token>>| {
            let mut v = Vec::new();
            if it.peek() == Some(&&Token::Open) {
                it.next();
                for t in it.by_ref() {
                    if *t == Token::Close {
                        break;
                    }
                    v.extend(mailbox_name(t));
                }
            } else if let Some(n) = it.next().and_then(mailbox_name) {
                v.push(n);
            }
            v
        };
        let filter = match f.as_deref() {
            Some("selected") => Filter::Selected,
            Some("selected-delayed") => Filter::SelectedDelayed,
            Some("inboxes") => Filter::Inboxes,
            Some("personal") => Filter::Personal,
            Some("subscribed") => Filter::Subscribed,
            Some("subtree") => Filter::Subtree(names(&mut it)),
            Some("mailboxes") => Filter::Mailboxes(names(&mut it)),
            _ => return bad("Unknown NOTIFY filter"),
        };
        let events = match it.next() {
            Some(Token::Atom(a)) if a.eq_ignore_ascii_case(b"NONE") => None,
            Some(Token::Open) => {
                let mut e = Events::default();
                let (mut new, mut expunge) = (false, false);
                loop {
                    match it.next() {
                        Some(Token::Close) => break,
                        Some(Token::Atom(a)) => match a.to_ascii_lowercase().as_slice() {
                            b"messagenew" => {
                                new = true;
                                if it.peek() == Some(&&Token::Open) {
                                    return bad(
                                        "Fetch attributes after MessageNew are not supported",
                                    );
                                }
                            }
                            b"messageexpunge" => expunge = true,
                            b"flagchange" => e.flags = true,
                            b"mailboxname" => e.names = true,
                            b"subscriptionchange" => e.subscriptions = true,
                            _ => return Err(None),
                        },
                        _ => return bad("Event expected"),
                    }
                }
                // RFC 5465 §5.2, §5.3: MessageNew and MessageExpunge go
                // together, and FlagChange needs them.
                if new != expunge || (e.flags && !new) {
                    return bad("MessageNew and MessageExpunge go together (and with FlagChange)");
                }
                e.messages = new;
                let selected = matches!(filter, Filter::Selected | Filter::SelectedDelayed);
                if selected && (e.names || e.subscriptions) {
                    return bad("The selected mailbox takes message events only");
                }
                Some(e)
            }
            _ => return bad("Events or NONE expected"),
        };
        if it.next() != Some(&Token::Close) {
            return bad("Syntax error in event group");
        }
        groups.push(Group { filter, events });
    }
    if groups.is_empty() {
        return bad("NOTIFY SET needs an event group");
    }
    Ok(Some((status, groups)))
}

fn snap(b: &MailboxRow) -> Snap {
    Snap {
        name: b.name.clone(),
        messages: b.messages,
        uidnext: b.uidnext,
        unseen: b.unseen,
        modseq: b.highest_modseq,
    }
}

impl Notify {
    /// The events for a mailbox other than the selected one: those of the
    /// first group whose filter covers it.
    fn events_for(&self, name: &str, subscribed: bool) -> Option<&Events> {
        self.groups
            .iter()
            .find(|g| match &g.filter {
                Filter::Selected | Filter::SelectedDelayed => false,
                Filter::Inboxes => name == "INBOX" || name == "Junk",
                Filter::Personal => true,
                Filter::Subscribed => subscribed,
                Filter::Subtree(roots) => roots.iter().any(|r| {
                    name == r
                        || name
                            .strip_prefix(r.as_str())
                            .is_some_and(|x| x.starts_with('/'))
                }),
                Filter::Mailboxes(list) => list.iter().any(|m| m == name),
            })
            .and_then(|g| g.events.as_ref())
    }

    /// The events for the selected mailbox, and whether they come at once
    /// (`selected`) rather than at the usual points (`selected-delayed`).
    pub(super) fn selected_now(&self) -> bool {
        self.groups
            .iter()
            .any(|g| g.filter == Filter::Selected && g.events.as_ref().is_some_and(|e| e.messages))
    }
}

impl Session {
    /// NOTIFY SET: keeps the groups, takes a snapshot of every mailbox, and
    /// with `(STATUS)` reports the mailboxes watched now (RFC 5465 §3.1).
    pub(super) async fn notify_set(&mut self, tag: &str, status: bool, groups: Vec<Group>) {
        let mut n = Notify {
            groups,
            ..Default::default()
        };
        let account = self.account_id();
        let (Ok(boxes), Ok(subs)) = (
            self.server.store.mailboxes(account).await,
            self.server.store.subscriptions(account).await,
        ) else {
            self.tagged(tag, "NO", "[SERVERBUG] Mailboxes could not be read");
            return;
        };
        n.subscribed = subs.into_iter().collect();
        n.snapshot = boxes.iter().map(|b| (b.uidvalidity, snap(b))).collect();
        if status {
            let selected = self.selected_name();
            for b in &boxes {
                if Some(&b.name) == selected.as_ref() {
                    continue;
                }
                if let Some(e) = n.events_for(&b.name, n.subscribed.contains(&b.name))
                    && e.messages
                {
                    self.status_line(b, e.flags);
                }
            }
        }
        self.notify = Some(n);
        self.watch = Some(self.server.store.watch_account(self.account_id()).await);
        self.tagged(tag, "OK", "NOTIFY completed");
    }

    /// NOTIFY NONE.
    pub(super) fn notify_none(&mut self, tag: &str) {
        self.notify = None;
        self.watch = None;
        self.tagged(tag, "OK", "NOTIFY completed");
    }

    fn selected_name(&self) -> Option<String> {
        match &self.state {
            State::Selected(v) => Some(v.mailbox.name.clone()),
            _ => None,
        }
    }

    /// `* STATUS` for a watched mailbox (RFC 5465 §5.2, §5.3).
    fn status_line(&mut self, b: &MailboxRow, flags: bool) {
        self.out.extend_from_slice(b"* STATUS ");
        view::name(&mut self.out, &b.name);
        let _ = write!(
            Str(&mut self.out),
            " (MESSAGES {} UIDNEXT {} UIDVALIDITY {}",
            b.messages,
            b.uidnext,
            b.uidvalidity
        );
        if flags {
            let _ = write!(Str(&mut self.out), " UNSEEN {}", b.unseen);
            if self.condstore {
                let _ = write!(Str(&mut self.out), " HIGHESTMODSEQ {}", b.highest_modseq);
            }
        }
        self.out.extend_from_slice(b")\r\n");
    }

    /// Something changed in the account: reports what the client watches.
    pub(super) async fn notify_changes(&mut self) {
        let Some(mut n) = self.notify.take() else {
            return;
        };
        if n.selected_now() {
            self.sync().await;
        }
        let account = self.account_id();
        let (Ok(boxes), Ok(subs)) = (
            self.server.store.mailboxes(account).await,
            self.server.store.subscriptions(account).await,
        ) else {
            self.notify = Some(n);
            return;
        };
        let selected = self.selected_name();
        let subs: HashSet<String> = subs.into_iter().collect();
        let mut seen = HashSet::new();
        for b in &boxes {
            seen.insert(b.uidvalidity);
            let is_sub = subs.contains(&b.name);
            let events = n.events_for(&b.name, is_sub).cloned();
            let before = n.snapshot.get(&b.uidvalidity).cloned();
            n.snapshot.insert(b.uidvalidity, snap(b));
            let Some(e) = events else { continue };
            match before {
                None if e.names => {
                    self.out.extend_from_slice(b"* LIST () \"/\" ");
                    view::name(&mut self.out, &b.name);
                    self.out.extend_from_slice(b"\r\n");
                }
                Some(old) if old.name != b.name && e.names => {
                    // RFC 5465 §5.4: a rename carries the old name.
                    self.out.extend_from_slice(b"* LIST () \"/\" ");
                    view::name(&mut self.out, &b.name);
                    self.out.extend_from_slice(b" (\"OLDNAME\" (");
                    view::name(&mut self.out, &old.name);
                    self.out.extend_from_slice(b"))\r\n");
                }
                Some(old) if Some(&b.name) != selected.as_ref() => {
                    let counts = old.messages != b.messages || old.uidnext != b.uidnext;
                    let flags = old.unseen != b.unseen || old.modseq != b.highest_modseq;
                    if (counts && e.messages) || (flags && e.flags) {
                        self.status_line(b, e.flags);
                    }
                }
                _ => {}
            }
        }
        let gone: Vec<u32> = n
            .snapshot
            .keys()
            .filter(|k| !seen.contains(k))
            .copied()
            .collect();
        for k in gone {
            if let Some(old) = n.snapshot.remove(&k)
                && n.events_for(&old.name, n.subscribed.contains(&old.name))
                    .is_some_and(|e| e.names)
            {
                self.out.extend_from_slice(b"* LIST (\\NonExistent) \"/\" ");
                view::name(&mut self.out, &old.name);
                self.out.extend_from_slice(b"\r\n");
            }
        }
        let changed: Vec<&String> = subs.symmetric_difference(&n.subscribed).collect();
        for name in changed {
            let now = subs.contains(name);
            if n.events_for(name, true).is_some_and(|e| e.subscriptions) {
                let attrs = if now { "\\Subscribed" } else { "" };
                let _ = write!(Str(&mut self.out), "* LIST ({attrs}) \"/\" ");
                view::name(&mut self.out, name);
                self.out.extend_from_slice(b"\r\n");
            }
        }
        n.subscribed = subs;
        self.notify = Some(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5465 §8's example shapes.
    #[test]
    fn notify_commands() {
        let p = parse(b"a NOTIFY SET (STATUS) (selected (MessageNew MessageExpunge FlagChange)) (subtree Lists (MessageNew MessageExpunge)) (mailboxes (INBOX Drafts) NONE)\r\n");
        let Parsed::Set { status, groups, .. } = p else {
            panic!("{p:?}")
        };
        assert!(status);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[1].filter, Filter::Subtree(vec!["Lists".into()]));
        assert_eq!(
            groups[2],
            Group {
                filter: Filter::Mailboxes(vec!["INBOX".into(), "Drafts".into()]),
                events: None
            }
        );
        assert_eq!(parse(b"b NOTIFY NONE\r\n"), Parsed::None("b".into()));
        assert_eq!(
            parse(b"c NOTIFY SET (personal (AnnotationChange))\r\n"),
            Parsed::BadEvent("c".into())
        );
        for bad in [
            &b"d NOTIFY SET (personal (MessageNew))\r\n"[..],
            b"d NOTIFY SET (personal (FlagChange))\r\n",
            b"d NOTIFY SET (selected (MailboxName))\r\n",
            b"d NOTIFY SET (nowhere (MessageNew MessageExpunge))\r\n",
            b"d NOTIFY SET\r\n",
            b"d NOTIFY SET (personal (MessageNew (UID) MessageExpunge))\r\n",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Bad(..)),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse(b"e NOOP\r\n"), Parsed::Other);
    }
}
