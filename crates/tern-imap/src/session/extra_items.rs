//! FETCH, STATUS and SEARCH items that imap-codec does not parse: OBJECTID
//! (RFC 8474: EMAILID, THREADID, MAILBOXID), SAVEDATE (RFC 8514) and
//! PREVIEW (RFC 8970). They are taken out of the command before it is
//! decoded and answered here; search keys become the equivalent `UID` set
//! of the selected mailbox, so they combine with NOT, OR and the rest
//! exactly as the key itself would.

use super::{Session, State, compress};
use chrono::NaiveDate;

/// What a token of a command is (RFC 9051 §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Open,
    Close,
    Atom,
    /// A quoted string or a literal: data, never a keyword.
    Data,
}

/// A token's place in the command bytes.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    kind: Kind,
}

/// The tokens of a command, literals (`{n}`, `{n+}`, `~{n}` and their
/// data) as one token each. Stops at anything malformed: the codec then
/// refuses the command as it stands.
fn spans(b: &[u8]) -> Vec<Span> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let kind = match b[i] {
            b' ' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Kind::Open
            }
            b')' => {
                i += 1;
                Kind::Close
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                Kind::Data
            }
            c if c == b'{' || (c == b'~' && b.get(i + 1) == Some(&b'{')) => {
                let Some(close) = b[i..].iter().position(|&x| x == b'}').map(|p| i + p) else {
                    return out;
                };
                let digits = &b[i + if c == b'~' { 2 } else { 1 }..close];
                let digits = digits.strip_suffix(b"+").unwrap_or(digits);
                let Some(n) = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<usize>().ok())
                else {
                    return out;
                };
                i = close + 1;
                if b.get(i..i + 2) == Some(b"\r\n") {
                    i += 2;
                }
                i = (i + n).min(b.len());
                Kind::Data
            }
            _ => {
                while i < b.len() && !matches!(b[i], b' ' | b'(' | b')' | b'\r' | b'\n') {
                    // Brackets hold a section spec with spaces and parens.
                    if b[i] == b'[' {
                        while i < b.len() && b[i] != b']' {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                Kind::Atom
            }
        };
        out.push(Span {
            start,
            end: i.min(b.len()),
            kind,
        });
    }
    out
}

fn word(b: &[u8], s: &Span) -> String {
    String::from_utf8_lossy(&b[s.start..s.end]).to_ascii_uppercase()
}

/// The index of the command name's token (after the tag and an optional
/// `UID`), and the name.
fn command_at(b: &[u8], t: &[Span]) -> Option<(usize, String)> {
    let first = t.get(1)?;
    let name = word(b, first);
    if name == "UID" {
        Some((2, word(b, t.get(2)?)))
    } else {
        Some((1, name))
    }
}

/// Cuts `ranges` (in order, disjoint) out of `b` and puts `with` in their
/// place; a range out of order is skipped, never a panic.
fn splice(b: &[u8], ranges: &[(usize, usize, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut at = 0;
    for (start, end, with) in ranges {
        if *start < at || end < start || *end > b.len() {
            continue;
        }
        out.extend_from_slice(&b[at..*start]);
        out.extend_from_slice(with);
        at = *end;
    }
    out.extend_from_slice(&b[at..]);
    out
}

/// FETCH items answered here.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct FetchExtras {
    pub emailid: bool,
    pub threadid: bool,
    pub savedate: bool,
    pub preview: bool,
}

/// A parenthesised list starting at token `open`: the index of its `)`
/// and its top-level items, each as a token range.
fn list_items(t: &[Span], open: usize) -> Option<(usize, Vec<(usize, usize)>)> {
    let mut items = Vec::new();
    let (mut depth, mut i, mut item_start) = (0usize, open, None);
    while let Some(s) = t.get(i) {
        match s.kind {
            Kind::Open => {
                depth += 1;
                // A parenthesised group belongs to the item before it
                // (`PREVIEW (LAZY)`).
                if depth == 2 && item_start.is_none() {
                    item_start = Some(i);
                }
            }
            Kind::Close => {
                depth -= 1;
                if depth == 0 {
                    if let Some(st) = item_start.take() {
                        items.push((st, i - 1));
                    }
                    return Some((i, items));
                }
            }
            _ if depth == 1 => {
                if let Some(st) = item_start.take() {
                    items.push((st, i - 1));
                }
                item_start = Some(i);
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The list at token `open` rebuilt from the items `keep` says to keep (or
/// `instead` when none is left): the bytes to put in its place.
fn rebuild(
    b: &[u8],
    t: &[Span],
    items: &[(usize, usize)],
    keep: impl Fn(&str) -> bool,
    instead: &str,
) -> Vec<u8> {
    let kept: Vec<&[u8]> = items
        .iter()
        .filter(|(first, _)| keep(&word(b, &t[*first])))
        .map(|&(first, last)| &b[t[first].start..t[last].end])
        .collect();
    let mut out = b"(".to_vec();
    if kept.is_empty() {
        out.extend_from_slice(instead.as_bytes());
    }
    out.extend_from_slice(&kept.join(&b" "[..]));
    out.push(b')');
    out
}

/// Takes EMAILID, THREADID, SAVEDATE and PREVIEW (with its optional
/// `(LAZY)`) out of a `[UID] FETCH set items` command; an item list left
/// empty asks for UID.
pub(super) fn take_fetch_extras(b: &[u8]) -> Option<(Vec<u8>, FetchExtras)> {
    let t = spans(b);
    let (at, name) = command_at(b, &t)?;
    if name != "FETCH" {
        return None;
    }
    let open = at + 2;
    let first = t.get(open)?;
    let mut extras = FetchExtras::default();
    let mut mark = |w: &str| {
        match w {
            "EMAILID" => extras.emailid = true,
            "THREADID" => extras.threadid = true,
            "SAVEDATE" => extras.savedate = true,
            "PREVIEW" => extras.preview = true,
            _ => return true,
        }
        false
    };
    let (range, with) = match first.kind {
        Kind::Atom => {
            if mark(&word(b, first)) {
                return None;
            }
            ((first.start, first.end), b"(UID)".to_vec())
        }
        Kind::Open => {
            let (close, items) = list_items(&t, open)?;
            let keep: Vec<bool> = items.iter().map(|(f, _)| mark(&word(b, &t[*f]))).collect();
            if keep.iter().all(|k| *k) {
                return None;
            }
            let kept: Vec<(usize, usize)> = items
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(r, _)| *r)
                .collect();
            (
                (first.start, t[close].end),
                rebuild(b, &t, &kept, |_| true, "UID"),
            )
        }
        _ => return None,
    };
    Some((splice(b, &[(range.0, range.1, with)]), extras))
}

/// Takes MAILBOXID out of a `STATUS mailbox (items)` command; returns
/// whether MESSAGES stands in for an item list left empty.
pub(super) fn take_status_mailboxid(b: &[u8]) -> Option<(Vec<u8>, bool)> {
    let t = spans(b);
    let (at, name) = command_at(b, &t)?;
    if name != "STATUS" || at != 1 {
        return None;
    }
    let open = at + 2;
    if t.get(open)?.kind != Kind::Open {
        return None;
    }
    let (close, items) = list_items(&t, open)?;
    let is_id = |w: &str| w == "MAILBOXID";
    if !items.iter().any(|(f, _)| is_id(&word(b, &t[*f]))) {
        return None;
    }
    let stand_in = items.iter().all(|(f, _)| is_id(&word(b, &t[*f])));
    let with = rebuild(b, &t, &items, |w| !is_id(w), "MESSAGES");
    Some((splice(b, &[(t[open].start, t[close].end, with)]), stand_in))
}

/// A search key answered here.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    EmailId(String),
    ThreadId,
    SavedBefore(NaiveDate),
    SavedOn(NaiveDate),
    SavedSince(NaiveDate),
    SaveDateSupported,
}

/// Search keys whose argument is a string (RFC 9051 §6.4.4): a keyword
/// right after one is that string, not a key.
const STRING_KEYS: &[&str] = &[
    "BCC",
    "BODY",
    "CC",
    "FROM",
    "KEYWORD",
    "SUBJECT",
    "TEXT",
    "TO",
    "UNKEYWORD",
];

fn date_arg(b: &[u8], s: &Span) -> Option<NaiveDate> {
    let text = String::from_utf8_lossy(&b[s.start..s.end]);
    NaiveDate::parse_from_str(text.trim_matches('"'), "%d-%b-%Y").ok()
}

/// The keys of a SEARCH, SORT or THREAD command answered here, with the
/// bytes they take.
fn search_extras(b: &[u8]) -> Vec<(usize, usize, Key)> {
    let t = spans(b);
    let Some((at, name)) = command_at(b, &t) else {
        return Vec::new();
    };
    if !matches!(name.as_str(), "SEARCH" | "SORT" | "THREAD") {
        return Vec::new();
    }
    let mut found = Vec::new();
    let mut i = at + 1;
    while let Some(s) = t.get(i) {
        let key = if s.kind == Kind::Atom {
            word(b, s)
        } else {
            String::new()
        };
        let prev = i.checked_sub(1).map(|p| word(b, &t[p])).unwrap_or_default();
        let header_value = i >= 2 && word(b, &t[i - 2]) == "HEADER";
        if STRING_KEYS.contains(&prev.as_str()) || prev == "HEADER" || header_value {
            i += 1;
            continue;
        }
        let arg = t.get(i + 1);
        let with_arg = |k: Key| arg.map(|a| (s.start, a.end, k));
        let hit = match key.as_str() {
            "EMAILID" => arg.and_then(|a| {
                let id = String::from_utf8_lossy(&b[a.start..a.end])
                    .trim_matches('"')
                    .to_string();
                with_arg(Key::EmailId(id))
            }),
            "THREADID" => with_arg(Key::ThreadId),
            "SAVEDBEFORE" => arg
                .and_then(|a| date_arg(b, a))
                .and_then(|d| with_arg(Key::SavedBefore(d))),
            "SAVEDON" => arg
                .and_then(|a| date_arg(b, a))
                .and_then(|d| with_arg(Key::SavedOn(d))),
            "SAVEDSINCE" => arg
                .and_then(|a| date_arg(b, a))
                .and_then(|d| with_arg(Key::SavedSince(d))),
            "SAVEDATESUPPORTED" => Some((s.start, s.end, Key::SaveDateSupported)),
            _ => None,
        };
        if let Some(h) = hit {
            i += if h.1 == s.end { 1 } else { 2 };
            found.push(h);
        } else {
            i += 1;
        }
    }
    found
}

/// Finds the search keys answered here and splices stand-ins in, on any
/// bytes (for the fuzz target).
pub(super) fn check_search_extras(b: &[u8]) {
    let cuts: Vec<(usize, usize, Vec<u8>)> = search_extras(b)
        .into_iter()
        .map(|(s, e, _)| (s, e, b"UID 1".to_vec()))
        .collect();
    let _ = splice(b, &cuts);
}

/// `M` and the stored body's id: the same for every copy of a message,
/// kept by COPY and MOVE (RFC 8474 §5.1).
pub(super) fn email_id(blob: tern_store::BlobId) -> String {
    format!("M{blob:012x}")
}

/// `F` and the mailbox's UIDVALIDITY, which no other mailbox ever gets
/// (schema v18) and which RENAME keeps (RFC 8474 §4).
pub(super) fn mailbox_id(uidvalidity: u32) -> String {
    format!("F{uidvalidity:08x}")
}

fn date_of(ts: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

impl Session {
    /// Replaces the search keys answered here by `UID` sets of the selected
    /// mailbox (a set no message has when none matches).
    pub(super) async fn rewrite_search_extras(&self, b: Vec<u8>) -> Vec<u8> {
        let found = search_extras(&b);
        if found.is_empty() {
            return b;
        }
        let State::Selected(v) = &self.state else {
            return b;
        };
        let rows = v.rows(&self.server.store).await.unwrap_or_default();
        let needs_dates = found.iter().any(|(_, _, k)| {
            matches!(
                k,
                Key::SavedBefore(_) | Key::SavedOn(_) | Key::SavedSince(_)
            )
        });
        let saved: std::collections::HashMap<u32, i64> = if needs_dates {
            self.server
                .store
                .saved_dates(v.mailbox.id, 1, u32::MAX)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(u, d)| d.map(|d| (u, d)))
                .collect()
        } else {
            Default::default()
        };
        let mut cuts = Vec::new();
        for (start, end, key) in found {
            let uids: Vec<u32> = rows
                .iter()
                .filter(|r| {
                    let saved = || date_of(saved.get(&r.uid).copied().unwrap_or(r.internaldate));
                    match &key {
                        Key::EmailId(id) => email_id(r.blob).eq_ignore_ascii_case(id),
                        Key::ThreadId => false,
                        Key::SavedBefore(d) => saved() < *d,
                        Key::SavedOn(d) => saved() == *d,
                        Key::SavedSince(d) => saved() >= *d,
                        Key::SaveDateSupported => true,
                    }
                })
                .map(|r| r.uid)
                .collect();
            let set = if uids.is_empty() {
                u32::MAX.to_string()
            } else {
                compress(&uids)
            };
            cuts.push((start, end, format!("UID {set}").into_bytes()));
        }
        splice(&b, &cuts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch(line: &str) -> Option<(String, FetchExtras)> {
        take_fetch_extras(line.as_bytes()).map(|(b, e)| (String::from_utf8(b).unwrap(), e))
    }

    #[test]
    fn fetch_items_taken_out() {
        let (cmd, e) =
            fetch("a FETCH 1:* (FLAGS EMAILID BODY[HEADER.FIELDS (EMAILID)] THREADID)\r\n")
                .unwrap();
        assert_eq!(cmd, "a FETCH 1:* (FLAGS BODY[HEADER.FIELDS (EMAILID)])\r\n");
        assert!(e.emailid && e.threadid && !e.savedate && !e.preview);
        let (cmd, e) = fetch("a UID FETCH 1 (PREVIEW (LAZY) SAVEDATE)\r\n").unwrap();
        assert_eq!(cmd, "a UID FETCH 1 (UID)\r\n");
        assert!(e.preview && e.savedate);
        let (cmd, _) = fetch("a FETCH 2 EMAILID\r\n").unwrap();
        assert_eq!(cmd, "a FETCH 2 (UID)\r\n");
        assert!(fetch("a FETCH 1 (FLAGS UID)\r\n").is_none());
        assert!(fetch("a SEARCH EMAILID x\r\n").is_none());
    }

    #[test]
    fn status_mailboxid_taken_out() {
        let (cmd, stand_in) =
            take_status_mailboxid(b"a STATUS INBOX (MESSAGES MAILBOXID)\r\n").unwrap();
        assert_eq!(
            String::from_utf8(cmd).unwrap(),
            "a STATUS INBOX (MESSAGES)\r\n"
        );
        assert!(!stand_in);
        let (cmd, stand_in) =
            take_status_mailboxid(b"a STATUS \"My (box)\" (MAILBOXID)\r\n").unwrap();
        assert_eq!(
            String::from_utf8(cmd).unwrap(),
            "a STATUS \"My (box)\" (MESSAGES)\r\n"
        );
        assert!(stand_in);
    }

    #[test]
    fn search_keys_found_where_keys_stand() {
        let line = b"a UID SEARCH OR EMAILID M00000000002a SUBJECT EMAILID NOT SAVEDBEFORE 1-Feb-2026 SAVEDATESUPPORTED\r\n";
        let keys: Vec<Key> = search_extras(line).into_iter().map(|k| k.2).collect();
        assert_eq!(
            keys,
            vec![
                Key::EmailId("M00000000002a".into()),
                Key::SavedBefore(NaiveDate::from_ymd_opt(2026, 2, 1).unwrap()),
                Key::SaveDateSupported,
            ]
        );
        assert!(search_extras(b"a SEARCH HEADER EMAILID x\r\n").is_empty());
        assert!(search_extras(b"a SEARCH TEXT {7}\r\nEMAILID\r\n").is_empty());
    }
}
