//! APPEND and its extensions: MULTIAPPEND (RFC 3502, several messages, all
//! or none), CATENATE (RFC 4469, a message made of text and parts of
//! stored messages named by IMAP URLs, RFC 5092, or by URLAUTH-authorized
//! URLs of other accounts, RFC 4467) and REPLACE (RFC 8508, an
//! APPEND and the expunge of the message it replaces, in one commit).
//!
//! imap-codec decodes the plain one-message APPEND; the rest is parsed
//! here.

use super::tokens::{Token, tokens};
use super::{Session, State, compress, store_err};
use std::fmt::Write as _;
use tern_store::{Appended, StoreError};

/// Where a message's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Data {
    /// A literal.
    Bytes(Vec<u8>),
    /// CATENATE parts, in order.
    Catenate(Vec<Part>),
}

/// A CATENATE part (RFC 4469 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    /// `TEXT literal`
    Text(Vec<u8>),
    /// `URL "…"`: a message or part of one on this server.
    Url(String),
}

/// One message of an APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Message {
    pub flags: Vec<String>,
    /// INTERNALDATE, Unix seconds, when given.
    pub date: Option<i64>,
    pub data: Data,
}

/// An APPEND-family command Tern parses itself.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    /// Not one: the codec decodes it (a plain one-message APPEND too).
    Other,
    /// Breaks the grammar: BAD with this text.
    Bad(String, String),
    /// APPEND with several messages or CATENATE.
    Append {
        tag: String,
        mailbox: String,
        messages: Vec<Message>,
    },
    /// `[UID] REPLACE number mailbox message`.
    Replace {
        tag: String,
        uid: bool,
        number: u32,
        mailbox: String,
        message: Message,
    },
}

fn upper(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_uppercase()
}

/// RFC 9051 §9 `date-time`: `"dd-Mon-yyyy hh:mm:ss +zzzz"` (day may be
/// space-padded).
fn date_time(s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?.trim_start();
    chrono::DateTime::parse_from_str(s, "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|d| d.timestamp())
}

fn mailbox(t: Option<Token>) -> Result<String, String> {
    match t {
        Some(Token::Atom(a) | Token::Quoted(a) | Token::Literal(a, _)) => {
            let name = String::from_utf8(a).map_err(|_| "Mailbox name is not valid UTF-8")?;
            Ok(if name.eq_ignore_ascii_case("INBOX") {
                "INBOX".into()
            } else {
                name
            })
        }
        _ => Err("Mailbox name expected".into()),
    }
}

/// `[SP flag-list] [SP date-time] SP append-data`, from `it`.
fn message(it: &mut std::iter::Peekable<std::vec::IntoIter<Token>>) -> Result<Message, String> {
    let mut flags = Vec::new();
    if it.peek() == Some(&Token::Open) {
        it.next();
        loop {
            match it.next() {
                Some(Token::Close) => break,
                Some(Token::Atom(f)) => {
                    let f = String::from_utf8(f).map_err(|_| "Invalid flag")?;
                    // \Recent is the server's (RFC 3501 §2.3.2).
                    if !f.eq_ignore_ascii_case("\\Recent") {
                        flags.push(f);
                    }
                }
                _ => return Err("Invalid flag list".into()),
            }
        }
    }
    let mut date = None;
    if let Some(Token::Quoted(d)) = it.peek() {
        date = Some(date_time(d).ok_or("Invalid date-time")?);
        it.next();
    }
    let data = match it.next() {
        Some(Token::Literal(bytes, _)) => Data::Bytes(bytes),
        // RFC 6855 §4: UTF8 (literal8) for a message with UTF-8 headers.
        Some(Token::Atom(a)) if upper(&a) == "UTF8" => {
            let (Some(Token::Open), Some(Token::Literal(bytes, _)), Some(Token::Close)) =
                (it.next(), it.next(), it.next())
            else {
                return Err("UTF8 (literal8) expected".into());
            };
            Data::Bytes(bytes)
        }
        Some(Token::Atom(a)) if upper(&a) == "CATENATE" => {
            if it.next() != Some(Token::Open) {
                return Err("CATENATE (parts) expected".into());
            }
            let mut parts = Vec::new();
            loop {
                match it.next() {
                    Some(Token::Close) if !parts.is_empty() => break,
                    Some(Token::Atom(k)) if upper(&k) == "TEXT" => match it.next() {
                        Some(Token::Literal(bytes, _)) => parts.push(Part::Text(bytes)),
                        _ => return Err("TEXT literal expected".into()),
                    },
                    Some(Token::Atom(k)) if upper(&k) == "URL" => match it.next() {
                        Some(Token::Atom(u) | Token::Quoted(u) | Token::Literal(u, false)) => {
                            parts.push(Part::Url(String::from_utf8_lossy(&u).into_owned()))
                        }
                        _ => return Err("URL string expected".into()),
                    },
                    _ => return Err("Invalid CATENATE part".into()),
                }
            }
            Data::Catenate(parts)
        }
        _ => return Err("Message literal expected".into()),
    };
    Ok(Message { flags, date, data })
}

/// Parses `tag APPEND …`, `tag REPLACE …` and `tag UID REPLACE …`.
pub(super) fn parse(bytes: &[u8]) -> Parsed {
    // Cheap look at the command name before tokenizing message data.
    let head: Vec<&[u8]> = bytes.split(|&b| b == b' ' || b == b'\r').take(3).collect();
    let name = head.get(1).map(|n| upper(n)).unwrap_or_default();
    let uid = name == "UID";
    let name = if uid {
        head.get(2).map(|n| upper(n)).unwrap_or_default()
    } else {
        name
    };
    if name != "APPEND" && name != "REPLACE" {
        return Parsed::Other;
    }
    let Some(mut toks) = tokens(bytes) else {
        return Parsed::Other; // the codec answers BAD
    };
    let tag = match toks.first() {
        Some(Token::Atom(t)) => String::from_utf8_lossy(t).into_owned(),
        _ => return Parsed::Other,
    };
    toks.drain(..if uid { 3 } else { 2 }.min(toks.len()));
    let mut it = toks.into_iter().peekable();
    let bad = |why: String| Parsed::Bad(tag.clone(), why);
    if name == "REPLACE" {
        let number = match it.next() {
            Some(Token::Atom(n)) => match std::str::from_utf8(&n).ok().and_then(|n| n.parse().ok())
            {
                Some(n) if n > 0 => n,
                _ => return bad("REPLACE needs a message number".into()),
            },
            _ => return bad("REPLACE needs a message number".into()),
        };
        let mailbox = match mailbox(it.next()) {
            Ok(m) => m,
            Err(e) => return bad(e),
        };
        let message = match message(&mut it) {
            Ok(m) => m,
            Err(e) => return bad(e),
        };
        if it.next().is_some() {
            return bad("REPLACE takes one message".into());
        }
        return Parsed::Replace {
            tag,
            uid,
            number,
            mailbox,
            message,
        };
    }
    if uid {
        return Parsed::Other;
    }
    let mailbox = match mailbox(it.next()) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    let mut messages = Vec::new();
    while it.peek().is_some() {
        match message(&mut it) {
            Ok(m) => messages.push(m),
            Err(e) => return bad(e),
        }
    }
    let plain = messages.len() == 1 && matches!(messages[0].data, Data::Bytes(_));
    if messages.is_empty() || plain {
        return Parsed::Other;
    }
    Parsed::Append {
        tag,
        mailbox,
        messages,
    }
}

impl Session {
    /// Builds each message's bytes (CATENATE), bounded by `max_command`.
    async fn build(&mut self, tag: &str, messages: Vec<Message>) -> Option<Vec<Appended>> {
        let now = tern_core::now_unix();
        let limit = self.server.config.max_command as usize;
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            let raw = match m.data {
                Data::Bytes(b) => b,
                Data::Catenate(parts) => {
                    let mut raw = Vec::new();
                    for p in parts {
                        match p {
                            Part::Text(t) => raw.extend_from_slice(&t),
                            Part::Url(u) => match self.readable_url(&u).await {
                                Some(b) => raw.extend_from_slice(&b),
                                None => {
                                    let mut text = String::new();
                                    let _ = write!(text, "[BADURL {u}] URL names nothing readable");
                                    self.tagged(tag, "NO", &text);
                                    return None;
                                }
                            },
                        }
                        if raw.len() > limit {
                            self.tagged(tag, "NO", "[TOOBIG] Message too large");
                            return None;
                        }
                    }
                    raw
                }
            };
            if raw.is_empty() {
                self.tagged(tag, "NO", "Empty message");
                return None;
            }
            out.push(Appended {
                raw,
                flags: m.flags,
                internaldate: m.date.unwrap_or(now),
            });
        }
        Some(out)
    }

    /// APPEND of one or more messages (all or none), or REPLACE with
    /// `replace` = (UID in the selected mailbox).
    pub(super) async fn append_messages(
        &mut self,
        tag: &str,
        name: &str,
        messages: Vec<Message>,
        replace: Option<u32>,
    ) {
        let what = if replace.is_some() {
            "REPLACE"
        } else {
            "APPEND"
        };
        let m = match self.find_mailbox(name, false).await {
            Ok(m) => m,
            Err(_) => {
                self.tagged(tag, "NO", "[TRYCREATE] No such mailbox");
                return;
            }
        };
        let replace = match (replace, &self.state) {
            (None, _) => None,
            (Some(uid), State::Selected(v)) if !v.read_only => Some((v.mailbox.id, uid)),
            (Some(_), State::Selected(_)) => {
                self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
                return;
            }
            (Some(_), _) => {
                self.tagged(tag, "BAD", "REPLACE requires a selected mailbox");
                return;
            }
        };
        let Some(appended) = self.build(tag, messages).await else {
            return;
        };
        let account = self.account_id();
        match self
            .server
            .store
            .append(account, m.id, appended, replace)
            .await
        {
            Ok((uidvalidity, uids)) => {
                let code = format!("[APPENDUID {uidvalidity} {}]", compress(&uids));
                if replace.is_some() {
                    // RFC 8508 §3.2: APPENDUID in an untagged OK, then the
                    // expunge of the replaced message.
                    let _ = write!(
                        super::Str(&mut self.out),
                        "* OK {code} Replacement appended\r\n"
                    );
                    self.sync().await;
                    self.tagged(tag, "OK", "REPLACE completed");
                } else {
                    self.sync().await;
                    self.tagged(tag, "OK", &format!("{code} {what} completed"));
                }
            }
            Err(e @ StoreError::OverQuota) => self.tagged(tag, "NO", &format!("[OVERQUOTA] {e}")),
            Err(e) => self.tagged(tag, "NO", &format!("{} {e}", store_err(&e))),
        }
    }

    /// REPLACE (RFC 8508): the message by sequence number or UID.
    pub(super) async fn replace(
        &mut self,
        tag: &str,
        uid: bool,
        number: u32,
        mailbox: &str,
        message: Message,
    ) {
        let target = match &self.state {
            State::Selected(v) if uid => v.seq_of(number).map(|_| number),
            State::Selected(v) => v.uids().get(number as usize - 1).copied(),
            _ => {
                self.tagged(tag, "BAD", "REPLACE requires a selected mailbox");
                return;
            }
        };
        let Some(target) = target else {
            self.tagged(tag, "NO", "No such message");
            return;
        };
        self.append_messages(tag, mailbox, vec![message], Some(target))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiappend_and_catenate_parse() {
        let p = parse(
            b"a APPEND Drafts (\\Seen) \" 1-Feb-2026 10:00:00 +0000\" {3}\r\none {3+}\r\ntwo\r\n",
        );
        let Parsed::Append {
            mailbox, messages, ..
        } = p
        else {
            panic!("{p:?}")
        };
        assert_eq!(mailbox, "Drafts");
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].flags, ["\\Seen"]);
        assert_eq!(messages[0].date, Some(1_769_940_000));
        assert_eq!(messages[1].data, Data::Bytes(b"two".to_vec()));
        let p = parse(b"a APPEND INBOX CATENATE (URL \"/INBOX;UIDVALIDITY=9/;UID=2/;SECTION=1\" TEXT {2}\r\nok)\r\n");
        let Parsed::Append { messages, .. } = p else {
            panic!("{p:?}")
        };
        assert_eq!(
            messages[0].data,
            Data::Catenate(vec![
                Part::Url("/INBOX;UIDVALIDITY=9/;UID=2/;SECTION=1".into()),
                Part::Text(b"ok".to_vec())
            ])
        );
        assert_eq!(parse(b"a APPEND INBOX {1}\r\nx\r\n"), Parsed::Other);
        assert!(matches!(
            parse(b"a APPEND INBOX {1}\r\nx junk\r\n"),
            Parsed::Bad(..)
        ));
        assert!(matches!(
            parse(b"a APPEND INBOX CATENATE ()\r\n"),
            Parsed::Bad(..)
        ));
        let p = parse(b"a UID REPLACE 7 Drafts {1}\r\nx\r\n");
        assert!(
            matches!(
                p,
                Parsed::Replace {
                    uid: true,
                    number: 7,
                    ..
                }
            ),
            "{p:?}"
        );
        assert!(matches!(
            parse(b"a REPLACE 0 Drafts {1}\r\nx\r\n"),
            Parsed::Bad(..)
        ));
    }
}
