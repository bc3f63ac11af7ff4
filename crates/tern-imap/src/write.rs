//! Response serialisation (RFC 9051 §7, formal syntax §9).
//!
//! Commands are decoded with `imap-codec`; responses are written here. The
//! typed response model of `imap-types` needs every FETCH item rebuilt into
//! owned, validated values (and message bodies copied into it), which costs
//! more than the bytes themselves on large FETCHes; this writer emits the
//! same grammar directly: strings as quoted strings when they are plain
//! 7-bit text and as literals otherwise, `NIL` for absent values.

use crate::address::{self, Item};
use std::fmt::Write as _;
use tern_store::meta::{MessageMeta, PartMeta};

/// Appends an IMAP string: quoted when safe, otherwise a literal.
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    let quotable = s.len() < 1024 && s.iter().all(|&b| (0x20..0x7f).contains(&b));
    if quotable {
        out.push(b'"');
        for &b in s {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
    } else {
        literal(out, s);
    }
}

/// Appends a literal `{n}\r\n<bytes>`.
pub fn literal(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(format!("{{{}}}\r\n", s.len()).as_bytes());
    out.extend_from_slice(s);
}

/// Appends a value that may hold any bytes: a string as [`string`] does,
/// or a `literal8` when it holds a NUL (RFC 5464 §5 values are `nstring`
/// or `literal8`).
pub fn binary_literal_or_string(out: &mut Vec<u8>, s: &[u8]) {
    if s.contains(&0) {
        binary_literal(out, s);
    } else {
        string(out, s);
    }
}

/// Appends BINARY content (RFC 3516 §4.3, RFC 9051 §4.3): a `literal8`
/// `~{n}\r\n<bytes>` when it holds a NUL, which a plain literal may not
/// carry, else a plain literal.
pub fn binary_literal(out: &mut Vec<u8>, s: &[u8]) {
    if s.contains(&0) {
        out.extend_from_slice(format!("~{{{}}}\r\n", s.len()).as_bytes());
        out.extend_from_slice(s);
    } else {
        literal(out, s);
    }
}

/// Appends an nstring: `NIL` or a string.
pub fn nstring(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => string(out, s.as_bytes()),
        None => out.extend_from_slice(b"NIL"),
    }
}

/// Appends a mailbox name as an astring (quoted or literal; `INBOX` as is).
pub fn mailbox(out: &mut Vec<u8>, name: &str) {
    string(out, name.as_bytes());
}

/// `(k v k v)` or `NIL`.
fn params(out: &mut Vec<u8>, p: &[(String, String)]) {
    if p.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for (i, (k, v)) in p.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        string(out, k.to_ascii_uppercase().as_bytes());
        out.push(b' ');
        string(out, v.as_bytes());
    }
    out.push(b')');
}

fn address_list(out: &mut Vec<u8>, raw: Option<&str>) {
    let list = raw.map(address::items).unwrap_or_default();
    if list.is_empty() {
        out.extend_from_slice(b"NIL");
        return;
    }
    out.push(b'(');
    for item in list {
        match item {
            Item::Mailbox {
                name,
                route,
                local,
                domain,
            } => {
                out.push(b'(');
                nstring(out, name.as_deref());
                out.push(b' ');
                nstring(out, route.as_deref());
                out.push(b' ');
                string(out, local.as_bytes());
                out.push(b' ');
                string(out, domain.as_bytes());
                out.push(b')');
            }
            Item::GroupStart(name) => {
                out.extend_from_slice(b"(NIL NIL ");
                string(out, name.as_bytes());
                out.extend_from_slice(b" NIL)");
            }
            Item::GroupEnd => out.extend_from_slice(b"(NIL NIL NIL NIL)"),
        }
    }
    out.push(b')');
}

/// ENVELOPE (RFC 9051 §7.5.2): Sender and Reply-To default to From.
pub fn envelope(out: &mut Vec<u8>, meta: &MessageMeta) {
    envelope_fields(out, &meta.envelope);
}

fn envelope_fields(out: &mut Vec<u8>, e: &tern_store::meta::Envelope) {
    out.push(b'(');
    nstring(out, e.date.as_deref());
    out.push(b' ');
    nstring(out, e.subject.as_deref());
    for v in [
        e.from.as_deref(),
        // Absent or empty Sender and Reply-To are copies of From.
        e.sender
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .or(e.from.as_deref()),
        e.reply_to
            .as_deref()
            .filter(|v| !v.trim().is_empty())
            .or(e.from.as_deref()),
        e.to.as_deref(),
        e.cc.as_deref(),
        e.bcc.as_deref(),
    ] {
        out.push(b' ');
        address_list(out, v);
    }
    out.push(b' ');
    nstring(out, e.in_reply_to.as_deref());
    out.push(b' ');
    nstring(out, e.message_id.as_deref());
    out.push(b')');
}

/// BODY or BODYSTRUCTURE (`extended`) of part `index` (RFC 9051 §7.5.2).
///
/// The recursion follows the stored part tree, which the parser bounds at
/// [`tern_store::meta::MAX_MIME_DEPTH`] levels; `depth_left` bounds it as
/// well for metadata stored before that (and for embedded messages analysed
/// here), so a hostile message can never exhaust the stack.
pub fn body_structure(
    out: &mut Vec<u8>,
    meta: &MessageMeta,
    raw: &[u8],
    index: usize,
    extended: bool,
) {
    part_structure(
        out,
        meta,
        raw,
        index,
        extended,
        tern_store::meta::MAX_MIME_DEPTH + 1,
    );
}

fn part_structure(
    out: &mut Vec<u8>,
    meta: &MessageMeta,
    raw: &[u8],
    index: usize,
    extended: bool,
    depth_left: usize,
) {
    let Some(p) = meta.parts.get(index).filter(|_| depth_left > 0) else {
        out.extend_from_slice(b"(\"text\" \"plain\" NIL NIL NIL \"7bit\" 0 0)");
        return;
    };
    if p.ctype == "multipart" && !p.children.is_empty() {
        out.push(b'(');
        for &c in &p.children {
            part_structure(out, meta, raw, c as usize, extended, depth_left - 1);
        }
        out.push(b' ');
        string(out, p.subtype.as_bytes());
        if extended {
            out.push(b' ');
            params(out, &p.params);
            out.push(b' ');
            disposition(out, p);
            out.extend_from_slice(b" NIL NIL");
        }
        out.push(b')');
        return;
    }
    let size = p.end_offset.saturating_sub(p.body_offset);
    out.push(b'(');
    string(out, p.ctype.as_bytes());
    out.push(b' ');
    string(out, p.subtype.as_bytes());
    out.push(b' ');
    params(out, &p.params);
    out.push(b' ');
    nstring(out, p.id.as_deref());
    out.push(b' ');
    nstring(out, p.description.as_deref());
    out.push(b' ');
    string(out, p.encoding.to_ascii_uppercase().as_bytes());
    let _ = write!(Str(out), " {size}");
    if p.ctype == "message" && p.subtype == "rfc822" {
        // Envelope, body structure and lines of the enclosed message.
        out.push(b' ');
        match (&p.envelope, p.children.first()) {
            (Some(env), Some(&root)) => {
                envelope_fields(out, env);
                out.push(b' ');
                part_structure(out, meta, raw, root as usize, extended, depth_left - 1);
            }
            _ => {
                // Metadata from before embedded messages were analysed at
                // delivery (or an encoded embedded message): analyse now.
                let inner_raw = raw
                    .get(p.body_offset as usize..p.end_offset as usize)
                    .unwrap_or_default();
                let inner = tern_store::meta::analyze(inner_raw);
                envelope(out, &inner);
                out.push(b' ');
                part_structure(out, &inner, inner_raw, 0, extended, depth_left - 1);
            }
        }
        let _ = write!(Str(out), " {}", p.lines);
    } else if p.ctype == "text" {
        let _ = write!(Str(out), " {}", p.lines);
    }
    if extended {
        out.extend_from_slice(b" NIL ");
        disposition(out, p);
        out.extend_from_slice(b" NIL NIL");
    }
    out.push(b')');
}

fn disposition(out: &mut Vec<u8>, p: &PartMeta) {
    match &p.disposition {
        Some((kind, ps)) => {
            out.push(b'(');
            string(out, kind.as_bytes());
            out.push(b' ');
            params(out, ps);
            out.push(b')');
        }
        None => out.extend_from_slice(b"NIL"),
    }
}

/// INTERNALDATE: `"27-Nov-2026 12:00:00 +0000"`.
pub fn internal_date(ts: i64) -> String {
    let d = mail_parser::DateTime::from_timestamp(ts);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} +0000\"",
        d.day,
        MONTHS[(d.month as usize).clamp(1, 12) - 1],
        d.year,
        d.hour,
        d.minute,
        d.second
    )
}

/// `fmt::Write` over a byte vector.
pub struct Str<'a>(pub &'a mut Vec<u8>);

impl std::fmt::Write for Str<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// RFC 9051 §7.5.2: groups keep their start and end markers (an empty
    /// group too); an absent or empty Sender or Reply-To is From.
    #[test]
    fn envelope_groups_and_defaults() {
        let e = tern_store::meta::Envelope {
            from: Some("Ann <ann@example.com>".into()),
            sender: Some(" ".into()),
            to: Some("Team: bob@example.com, Carol <carol@example.com>;, dan@example.com".into()),
            cc: Some("undisclosed-recipients:;".into()),
            ..Default::default()
        };
        let mut out = Vec::new();
        super::envelope_fields(&mut out, &e);
        let text = String::from_utf8(out).unwrap();
        let ann = "((\"Ann\" NIL \"ann\" \"example.com\"))";
        assert!(text.contains(&format!("{ann} {ann} {ann}")), "{text}");
        assert!(
            text.contains("((NIL NIL \"Team\" NIL)(NIL NIL \"bob\" \"example.com\")(\"Carol\" NIL \"carol\" \"example.com\")(NIL NIL NIL NIL)(NIL NIL \"dan\" \"example.com\"))"),
            "{text}"
        );
        assert!(
            text.contains("((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))"),
            "{text}"
        );
    }

    /// RFC 9051 §7.5.2: the second field of an address is its source
    /// route (RFC 5322 §4.4 obs-route, `<@relay1,@relay2:user@host>`).
    #[test]
    fn envelope_source_routes() {
        let e = tern_store::meta::Envelope {
            from: Some("Joe <@relay.example,@gw.example:joe@example.com>".into()),
            to: Some("<@relay.example:ann@example.org>, bob@example.net".into()),
            ..Default::default()
        };
        let mut out = Vec::new();
        super::envelope_fields(&mut out, &e);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("((\"Joe\" \"@relay.example,@gw.example\" \"joe\" \"example.com\"))"),
            "{text}"
        );
        assert!(
            text.contains(
                "((NIL \"@relay.example\" \"ann\" \"example.org\")(NIL NIL \"bob\" \"example.net\"))"
            ),
            "{text}"
        );
    }

    use super::*;

    #[test]
    fn strings() {
        let mut o = Vec::new();
        string(&mut o, b"a \"b\"\\");
        assert_eq!(o, b"\"a \\\"b\\\"\\\\\"");
        let mut o = Vec::new();
        string(&mut o, "ü".as_bytes());
        assert_eq!(o, "{2}\r\nü".as_bytes());
    }

    #[test]
    fn envelope_and_structure() {
        let raw = b"From: Ann <ann@example.com>\r\nTo: bob@example.com, \"C D\" <cd@x.test>\r\nSubject: Hi\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n--b--\r\n";
        let meta = tern_store::meta::analyze(raw);
        let mut o = Vec::new();
        envelope(&mut o, &meta);
        let s = String::from_utf8(o).unwrap();
        assert_eq!(
            s,
            "(NIL \"Hi\" ((\"Ann\" NIL \"ann\" \"example.com\")) ((\"Ann\" NIL \"ann\" \"example.com\")) ((\"Ann\" NIL \"ann\" \"example.com\")) ((NIL NIL \"bob\" \"example.com\")(\"C D\" NIL \"cd\" \"x.test\")) NIL NIL NIL NIL)"
        );
        let mut o = Vec::new();
        body_structure(&mut o, &meta, raw, 0, false);
        let s = String::from_utf8(o).unwrap();
        assert!(
            s.starts_with("((\"text\" \"plain\" (\"CHARSET\" \"utf-8\") NIL NIL \"7BIT\" "),
            "{s}"
        );
        assert!(s.ends_with(" \"mixed\")"), "{s}");
    }
}
