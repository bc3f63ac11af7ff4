//! SEARCH (RFC 9051 §6.4.4): every search key, evaluated over the mailbox
//! view. Flag, size, date and UID keys use the index; header and text keys
//! read the message (parsed with `mail-parser`, so encoded words and
//! transfer encodings are decoded before matching, case-insensitively).

use crate::view::View;
use chrono::NaiveDate;
use imap_codec::imap_types::search::SearchKey;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use std::sync::Arc;
use tern_store::{MessageRow, SharedStore};

/// Whether `n` is in `set`, `*` being `largest` (RFC 9051 §9 seq-number).
pub fn in_set(set: &SequenceSet, n: u32, largest: u32) -> bool {
    let v = |s: &SeqOrUid| match s {
        SeqOrUid::Value(v) => v.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|seq| match seq {
        Sequence::Single(s) => v(s) == n,
        Sequence::Range(a, b) => {
            let (a, b) = (v(a), v(b));
            (a.min(b)..=a.max(b)).contains(&n)
        }
    })
}

fn has_flag(row: &MessageRow, flag: &str) -> bool {
    row.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

/// A message being tested, with its content loaded on first need.
struct Candidate<'a> {
    seq: u32,
    row: &'a MessageRow,
    raw: Option<Vec<u8>>,
    header: Option<Vec<u8>>,
}

impl Candidate<'_> {
    /// The header block only (cheaper than the whole message).
    async fn header(&mut self, store: &SharedStore) -> &[u8] {
        if let Some(raw) = &self.raw {
            let end = tern_store::meta::find_body_offset(raw) as usize;
            return &raw[..end.min(raw.len())];
        }
        if self.header.is_none() {
            self.header = Some(store.read_header(self.row.blob).await.unwrap_or_default());
        }
        self.header.as_deref().unwrap_or_default()
    }

    async fn raw(&mut self, store: &SharedStore) -> &[u8] {
        if self.raw.is_none() {
            self.raw = Some(match store.read_blob(self.row.blob).await {
                Ok(raw) => raw,
                Err(e) => {
                    tracing::error!(uid = self.row.uid, error = %e, "IMAP SEARCH: message body unavailable");
                    Vec::new()
                }
            });
        }
        self.raw.as_deref().unwrap_or_default()
    }
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    needle.is_empty() || hay.to_lowercase().contains(&needle.to_lowercase())
}

/// Raw pre-check: the field's unfolded raw values, if the header has it.
fn raw_fields(header: &[u8], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = header.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let matches = line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name.as_bytes())
            && line[name.len()] == b':';
        if !matches {
            continue;
        }
        let mut value = String::from_utf8_lossy(&line[name.len() + 1..])
            .trim()
            .to_string();
        while let Some(next) = lines.peek() {
            if next.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                value.push(' ');
                value.push_str(String::from_utf8_lossy(next).trim());
                lines.next();
            } else {
                break;
            }
        }
        out.push(value);
    }
    out
}

fn header_matches(raw: &[u8], name: &str, needle: &str) -> bool {
    // Most messages are decided without a MIME parse: no such field, or
    // the needle appears in the raw value.
    let values = raw_fields(raw, name);
    if values.is_empty() {
        return false;
    }
    if needle.is_empty() {
        return true;
    }
    // Address fields match as the ENVELOPE shows them (RFC 9051 §6.4.4):
    // comments and quoting gone, encoded names decoded. A plain value
    // without the needle is decided without parsing.
    if ["From", "To", "Cc", "Bcc"].contains(&name) {
        return values.iter().any(|v| {
            let plain = !v.contains(['(', '"', '\\']) && !v.contains("=?");
            if plain {
                contains_ci(v, needle)
            } else {
                contains_ci(&crate::address::search_text(v), needle)
            }
        });
    }
    if values.iter().any(|v| contains_ci(v, needle)) {
        return true;
    }
    if !values.iter().any(|v| v.contains("=?")) {
        return false;
    }
    let Some(msg) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return false;
    };
    msg.root_part().headers.iter().any(|h| {
        if !h.name.as_str().eq_ignore_ascii_case(name) {
            return false;
        }
        if needle.is_empty() {
            return true;
        }
        let text = match &h.value {
            mail_parser::HeaderValue::Text(t) => t.to_string(),
            mail_parser::HeaderValue::TextList(l) => l.join(" "),
            mail_parser::HeaderValue::Address(a) => a
                .iter()
                .map(|x| {
                    format!(
                        "{} <{}>",
                        x.name.as_deref().unwrap_or(""),
                        x.address.as_deref().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => {
                let raw_value = raw
                    .get(h.offset_start as usize..h.offset_end as usize)
                    .unwrap_or_default();
                String::from_utf8_lossy(raw_value).to_string()
            }
        };
        contains_ci(&text, needle)
    })
}

fn body_matches(raw: &[u8], needle: &str, with_headers: bool) -> bool {
    if with_headers {
        let end = tern_store::meta::find_body_offset(raw) as usize;
        if contains_ci(&String::from_utf8_lossy(&raw[..end.min(raw.len())]), needle) {
            return true;
        }
    }
    let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
        return contains_ci(&String::from_utf8_lossy(raw), needle);
    };
    (0..msg.text_body_count()).any(|i| msg.body_text(i).is_some_and(|t| contains_ci(&t, needle)))
        || (0..msg.html_body_count())
            .any(|i| msg.body_html(i).is_some_and(|t| contains_ci(&t, needle)))
}

fn date_of(ts: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

fn sent_date(raw: &[u8]) -> Option<NaiveDate> {
    let msg = mail_parser::MessageParser::default().parse_headers(raw)?;
    let d = msg.date()?;
    NaiveDate::from_ymd_opt(d.year as i32, d.month as u32, d.day as u32)
}

fn s(a: &impl AsRef<[u8]>) -> String {
    String::from_utf8_lossy(a.as_ref()).to_string()
}

/// Evaluates one key. Boxed recursion for NOT/OR/AND.
fn eval<'a>(
    key: &'a SearchKey<'a>,
    c: &'a mut Candidate<'_>,
    view: &'a View,
    store: &'a SharedStore,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
    Box::pin(async move {
        let row = c.row;
        match key {
            SearchKey::And(keys) => {
                for k in keys.as_ref() {
                    if !eval(k, c, view, store).await {
                        return false;
                    }
                }
                true
            }
            SearchKey::SequenceSet(set) => in_set(set, c.seq, view.len() as u32),
            SearchKey::Uid(set) => in_set(set, row.uid, view.max_uid()),
            SearchKey::All => true,
            SearchKey::Answered => has_flag(row, "\\Answered"),
            SearchKey::Unanswered => !has_flag(row, "\\Answered"),
            SearchKey::Deleted => has_flag(row, "\\Deleted"),
            SearchKey::Undeleted => !has_flag(row, "\\Deleted"),
            SearchKey::Draft => has_flag(row, "\\Draft"),
            SearchKey::Undraft => !has_flag(row, "\\Draft"),
            SearchKey::Flagged => has_flag(row, "\\Flagged"),
            SearchKey::Unflagged => !has_flag(row, "\\Flagged"),
            SearchKey::Seen => has_flag(row, "\\Seen"),
            SearchKey::Unseen => !has_flag(row, "\\Seen"),
            SearchKey::Keyword(k) => has_flag(row, k.as_ref()),
            SearchKey::Unkeyword(k) => !has_flag(row, k.as_ref()),
            // RFC 3501 §6.4.4 (IMAP4rev2 removed \Recent).
            SearchKey::Recent => view.is_recent(row.uid),
            SearchKey::New => view.is_recent(row.uid) && !has_flag(row, "\\Seen"),
            SearchKey::Old => !view.is_recent(row.uid),
            SearchKey::Larger(n) => row.size > u64::from(*n),
            SearchKey::Smaller(n) => row.size < u64::from(*n),
            SearchKey::Before(d) => date_of(row.internaldate) < *d.as_ref(),
            SearchKey::On(d) => date_of(row.internaldate) == *d.as_ref(),
            SearchKey::Since(d) => date_of(row.internaldate) >= *d.as_ref(),
            SearchKey::SentBefore(d) | SearchKey::SentOn(d) | SearchKey::SentSince(d) => {
                let sent =
                    sent_date(c.header(store).await).unwrap_or_else(|| date_of(row.internaldate));
                let d = *d.as_ref();
                match key {
                    SearchKey::SentBefore(_) => sent < d,
                    SearchKey::SentOn(_) => sent == d,
                    _ => sent >= d,
                }
            }
            SearchKey::Bcc(v) => header_matches(c.header(store).await, "Bcc", &s(v)),
            SearchKey::Cc(v) => header_matches(c.header(store).await, "Cc", &s(v)),
            SearchKey::From(v) => header_matches(c.header(store).await, "From", &s(v)),
            SearchKey::To(v) => header_matches(c.header(store).await, "To", &s(v)),
            SearchKey::Subject(v) => header_matches(c.header(store).await, "Subject", &s(v)),
            SearchKey::Header(name, v) => header_matches(c.header(store).await, &s(name), &s(v)),
            SearchKey::Body(v) => body_matches(c.raw(store).await, &s(v), false),
            SearchKey::Text(v) => body_matches(c.raw(store).await, &s(v), true),
            SearchKey::Not(k) => !eval(k, c, view, store).await,
            SearchKey::Or(a, b) => eval(a, c, view, store).await || eval(b, c, view, store).await,
            SearchKey::ModSequence { modseq, .. } => row.modseq >= *modseq,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    })
}

/// A header field that every match must have (a top-level, positive header
/// key), if any.
fn required_field(keys: &[SearchKey<'_>]) -> Option<String> {
    keys.iter()
        .find_map(|k| match k {
            SearchKey::Header(name, _) => Some(s(name)),
            SearchKey::From(_) => Some("From".into()),
            SearchKey::To(_) => Some("To".into()),
            SearchKey::Cc(_) => Some("Cc".into()),
            SearchKey::Bcc(_) => Some("Bcc".into()),
            SearchKey::Subject(_) => Some("Subject".into()),
            SearchKey::And(inner) => required_field(inner.as_ref()),
            _ => None,
        })
        .filter(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
}

/// Whether a key (or a key inside it) looks at header fields.
fn uses_headers(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::Bcc(_)
        | SearchKey::Cc(_)
        | SearchKey::From(_)
        | SearchKey::To(_)
        | SearchKey::Subject(_)
        | SearchKey::Header(..)
        | SearchKey::SentBefore(_)
        | SearchKey::SentOn(_)
        | SearchKey::SentSince(_) => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_headers),
        SearchKey::Not(k) => uses_headers(k),
        SearchKey::Or(a, b) => uses_headers(a) || uses_headers(b),
        _ => false,
    }
}

/// Messages looked at together: rows and header blocks are read for one
/// batch of UIDs at a time, so a search costs memory for a batch, not for
/// the mailbox (a header search over 100,000 messages held every header
/// block at once, about 240 MB).
const BATCH: usize = 1024;

/// Runs a search; returns matching (sequence number, row) pairs.
pub async fn run(
    keys: &[SearchKey<'_>],
    view: &View,
    store: &SharedStore,
) -> Vec<(u32, MessageRow)> {
    let store: SharedStore = Arc::clone(store);
    let field = required_field(keys);
    let needs_headers = keys.iter().any(uses_headers);
    let mut out = Vec::new();
    for batch in view.uids().chunks(BATCH) {
        let (first, last) = (batch[0], batch[batch.len() - 1]);
        let (rows, mut headers) = match &field {
            // A header key every match must satisfy: let the database find
            // the few messages whose header block mentions the field at all.
            Some(field) if batch.len() > 16 => {
                let found = store
                    .headers_with_field(view.mailbox.id, first, last, field)
                    .await
                    .unwrap_or_default();
                let uids: Vec<u32> = found
                    .iter()
                    .map(|(u, _)| *u)
                    .filter(|u| view.seq_of(*u).is_some())
                    .collect();
                let rows = view.rows_for(&store, &uids).await.unwrap_or_default();
                (rows, found.into_iter().collect())
            }
            _ => {
                let rows = view.rows_for(&store, batch).await.unwrap_or_default();
                // Header keys over many messages: the batch's header blocks in one query.
                let headers: std::collections::HashMap<u32, Vec<u8>> =
                    if rows.len() > 16 && needs_headers {
                        store
                            .headers_in(view.mailbox.id, first, last)
                            .await
                            .unwrap_or_default()
                            .into_iter()
                            .collect()
                    } else {
                        Default::default()
                    };
                (rows, headers)
            }
        };
        for row in rows {
            let Some(seq) = view.seq_of(row.uid) else {
                continue;
            };
            let mut c = Candidate {
                seq,
                row: &row,
                raw: None,
                header: headers.remove(&row.uid),
            };
            let mut ok = true;
            for k in keys {
                if !eval(k, &mut c, view, &store).await {
                    ok = false;
                    break;
                }
            }
            if ok {
                out.push((seq, row));
            }
        }
    }
    out
}

/// Whether a search key uses MODSEQ (a CONDSTORE-enabling search, RFC 7162
/// §3.1.5), anywhere inside it.
pub fn uses_modseq(key: &SearchKey<'_>) -> bool {
    match key {
        SearchKey::ModSequence { .. } => true,
        SearchKey::And(keys) => keys.as_ref().iter().any(uses_modseq),
        SearchKey::Or(a, b) => uses_modseq(a) || uses_modseq(b),
        SearchKey::Not(k) => uses_modseq(k),
        _ => false,
    }
}
