//! "Parse once": what IMAP and the filters need from a message, computed at
//! delivery with `mail-parser` and stored beside the blob as JSON.
//!
//! IMAP (RFC 9051 §7.5.2) returns ENVELOPE fields as they appear on the wire
//! and BODYSTRUCTURE from the MIME tree, so both are kept here: raw header
//! values for the envelope, and one [`PartMeta`] per MIME part with its byte
//! offsets in the stored message. A message that does not parse is still
//! stored byte-exact; its metadata then has `parsed = false`.

use mail_parser::{Encoding, Message, MessageParser, MessagePart, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

/// Metadata kept for every stored message.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessageMeta {
    /// Whether `mail-parser` understood the message.
    pub parsed: bool,
    /// Offset of the first body byte (after the blank line ending the header).
    pub body_offset: u32,
    /// Raw values of the header fields IMAP's ENVELOPE is built from.
    pub envelope: Envelope,
    /// Top-level header fields: name and byte range of the whole field.
    pub headers: Vec<HeaderRef>,
    /// MIME parts in mail-parser order (part 0 is the message itself).
    pub parts: Vec<PartMeta>,
}

/// Raw (unfolded, undecoded) header values for IMAP ENVELOPE.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Envelope {
    /// `Date:`
    pub date: Option<String>,
    /// `Subject:`
    pub subject: Option<String>,
    /// `From:`
    pub from: Option<String>,
    /// `Sender:`
    pub sender: Option<String>,
    /// `Reply-To:`
    pub reply_to: Option<String>,
    /// `To:`
    pub to: Option<String>,
    /// `Cc:`
    pub cc: Option<String>,
    /// `Bcc:`
    pub bcc: Option<String>,
    /// `In-Reply-To:`
    pub in_reply_to: Option<String>,
    /// `Message-ID:`
    pub message_id: Option<String>,
}

/// Where a header field is in the stored bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeaderRef {
    /// Field name as written.
    pub name: String,
    /// Offset of the field name.
    pub start: u32,
    /// Offset just past the field's final CRLF.
    pub end: u32,
}

/// One MIME part.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PartMeta {
    /// Media type, lower-case (`text`, `multipart`…).
    pub ctype: String,
    /// Media subtype, lower-case.
    pub subtype: String,
    /// Content-Type parameters.
    pub params: Vec<(String, String)>,
    /// Content-ID.
    pub id: Option<String>,
    /// Content-Description.
    pub description: Option<String>,
    /// Content-Transfer-Encoding, lower-case (`7bit` when absent).
    pub encoding: String,
    /// Content-Disposition type and parameters.
    pub disposition: Option<(String, Vec<(String, String)>)>,
    /// Offset of the part's header.
    pub header_offset: u32,
    /// Offset of the part's body.
    pub body_offset: u32,
    /// Offset just past the part's body.
    pub end_offset: u32,
    /// Lines in the body (for text parts in BODYSTRUCTURE).
    pub lines: u32,
    /// Indices of child parts (multipart) or the nested message's root part.
    pub children: Vec<u32>,
    /// An embedded `message/rfc822`'s ENVELOPE fields (absent in metadata
    /// stored before embedded messages were analysed at delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envelope: Option<Box<Envelope>>,
}

/// Analyses a message. Never fails: unparseable input gives `parsed = false`
/// and a body offset found by scanning for the first empty line.
///
/// Bounded by construction: the parser stops descending at
/// [`MAX_MIME_DEPTH`] levels and splits a message into at most
/// [`MAX_MIME_PARTS`] parts (deeper or later structure is the content of an
/// opaque `application/octet-stream` leaf), and the walk here is a loop over
/// an explicit stack, so no message can make it recurse or work more than
/// linearly in its size and the part limit.
pub fn analyze(raw: &[u8]) -> MessageMeta {
    let fallback_body = find_body_offset(raw);
    let Some(msg) = MessageParser::default().parse(raw) else {
        return MessageMeta {
            parsed: false,
            body_offset: fallback_body,
            ..MessageMeta::default()
        };
    };
    let root = msg.root_part();
    let headers = root
        .headers
        .iter()
        .map(|h| HeaderRef {
            name: h.name.as_str().to_string(),
            start: h.offset_field,
            end: h.offset_end,
        })
        .collect();
    MessageMeta {
        parsed: true,
        body_offset: root.offset_body.min(raw.len() as u32),
        envelope: envelope_of(&msg),
        headers,
        parts: flatten(&msg, raw),
    }
}

/// The deepest MIME nesting described (see the vendored parser's patch).
pub use mail_parser::parsers::message::{MAX_MIME_DEPTH, MAX_MIME_PARTS};

fn envelope_of(msg: &Message<'_>) -> Envelope {
    let raw_value = |name: &str| -> Option<String> {
        msg.header_raw(name)
            .map(|v| v.trim().replace("\r\n", "").replace('\n', ""))
    };
    Envelope {
        date: raw_value("Date"),
        subject: raw_value("Subject"),
        from: raw_value("From"),
        sender: raw_value("Sender"),
        reply_to: raw_value("Reply-To"),
        to: raw_value("To"),
        cc: raw_value("Cc"),
        bcc: raw_value("Bcc"),
        in_reply_to: raw_value("In-Reply-To"),
        message_id: raw_value("Message-ID"),
    }
}

/// All parts of `msg` in one list: each message's parts in parser order,
/// an embedded `message/rfc822` (stored unencoded, so its offsets are in
/// `raw`) followed by its own parts, its `children` naming its root.
fn flatten(msg: &Message<'_>, raw: &[u8]) -> Vec<PartMeta> {
    let mut out = Vec::with_capacity(msg.parts.len());
    // (message, index of its first part in `out`, the part embedding it)
    let mut pending: Vec<(&Message<'_>, Option<usize>)> = vec![(msg, None)];
    while let Some((m, embedder)) = pending.pop() {
        let base = out.len() as u32;
        if let Some(e) = embedder {
            let p: &mut PartMeta = &mut out[e];
            p.children = vec![base];
            p.envelope = Some(Box::new(envelope_of(m)));
        }
        for p in &m.parts {
            let mut part = part_meta(p, raw);
            match &p.body {
                PartType::Multipart(ids) => {
                    part.children = ids.iter().map(|i| i + base).collect();
                }
                PartType::Message(inner) if p.encoding == Encoding::None => {
                    pending.push((inner, Some(out.len())));
                }
                _ => {}
            }
            out.push(part);
        }
    }
    into_tree(&mut out);
    out
}

impl MessageMeta {
    /// The metadata as a store keeps it (JSON), its part tree made whole
    /// (metadata stored by earlier versions may name a part twice).
    pub fn from_stored(json: &str) -> Result<Self, crate::StoreError> {
        let mut meta: MessageMeta = serde_json::from_str(json)
            .map_err(|e| crate::StoreError::Invalid(format!("stored metadata: {e}")))?;
        meta.make_tree();
        Ok(meta)
    }

    /// Makes the part graph a tree (see [`analyze`]); for metadata read back
    /// from storage, which earlier versions wrote without this guarantee.
    pub fn make_tree(&mut self) {
        into_tree(&mut self.parts);
    }
}

/// Makes the part graph a tree in which every child comes after its parent:
/// a child index pointing backwards, past the end, or at a part another
/// parent already named is dropped. The parser's lists are not always so
/// (the `mime_nesting` fuzzer found a part listed under two parents), and
/// every walk over the tree (BODYSTRUCTURE, section numbers) relies on it:
/// with shared parts a walk's work grows exponentially with the depth.
fn into_tree(parts: &mut [PartMeta]) {
    let n = parts.len();
    let mut claimed = vec![false; n];
    for (i, part) in parts.iter_mut().enumerate() {
        part.children.retain(|&c| {
            let c = c as usize;
            c > i && c < n && !std::mem::replace(&mut claimed[c], true)
        });
    }
}

fn part_meta(p: &MessagePart<'_>, raw: &[u8]) -> PartMeta {
    let (mut ctype, mut subtype, params) = match p.content_type() {
        Some(ct) => (
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or_default().to_ascii_lowercase(),
            attrs(ct.attributes()),
        ),
        None => ("text".into(), "plain".into(), vec![]),
    };
    // A container the parser did not open (past the limits, or without a
    // usable boundary) is an opaque leaf.
    let opened = match &p.body {
        PartType::Multipart(_) => ctype == "multipart",
        PartType::Message(_) => ctype == "message",
        _ => ctype != "multipart" && ctype != "message",
    };
    if !opened && (ctype == "multipart" || ctype == "message") {
        ctype = "application".into();
        subtype = "octet-stream".into();
    }
    let body = raw
        .get(p.offset_body as usize..p.offset_end as usize)
        .unwrap_or_default();
    // Lines matter for text and embedded messages only (BODYSTRUCTURE,
    // RFC 9051 §7.5.2); text parts never overlap, and embedded messages
    // nest at most MAX_MIME_DEPTH deep, so counting stays near linear.
    let lines = if ctype == "text" || ctype == "message" {
        body.iter().filter(|&&b| b == b'\n').count() as u32
    } else {
        0
    };
    PartMeta {
        ctype,
        subtype,
        params,
        id: p.content_id().map(str::to_string),
        description: p.content_description().map(str::to_string),
        encoding: p
            .content_transfer_encoding()
            .unwrap_or("7bit")
            .to_ascii_lowercase(),
        disposition: p
            .content_disposition()
            .map(|d| (d.ctype().to_ascii_lowercase(), attrs(d.attributes()))),
        header_offset: p.offset_header,
        body_offset: p.offset_body,
        end_offset: p.offset_end,
        lines,
        children: Vec::new(),
        envelope: None,
    }
}

fn attrs(a: Option<&[mail_parser::Attribute<'_>]>) -> Vec<(String, String)> {
    a.unwrap_or_default()
        .iter()
        .map(|a| (a.name.to_string(), a.value.to_string()))
        .collect()
}

/// Offset just past the first CRLFCRLF (or LFLF), or the end of the data.
pub fn find_body_offset(raw: &[u8]) -> u32 {
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(b"\r\n\r\n") {
            return (i + 4) as u32;
        }
        if raw[i..].starts_with(b"\n\n") {
            return (i + 2) as u32;
        }
        i += 1;
    }
    raw.len() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_testkit::mime::{nested_messages, nested_multipart};

    #[test]
    fn multipart() {
        let raw = b"From: A <a@example.com>\r\nSubject: =?utf-8?q?hi?=\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhello\r\n--x--\r\n";
        let m = analyze(raw);
        assert!(m.parsed);
        assert_eq!(m.envelope.subject.as_deref(), Some("=?utf-8?q?hi?="));
        assert_eq!(m.parts[0].ctype, "multipart");
        assert_eq!(m.parts[0].children, vec![1]);
        assert_eq!(m.parts[1].subtype, "plain");
        assert_eq!(
            &raw[m.body_offset as usize..m.body_offset as usize + 3],
            b"--x"
        );
    }

    fn depth_of(meta: &MessageMeta) -> usize {
        // Iterative: the test must not overflow where the code must not.
        let mut deepest = 0;
        let mut stack = vec![(0usize, 1usize)];
        while let Some((i, d)) = stack.pop() {
            deepest = deepest.max(d);
            for &c in &meta.parts[i].children {
                stack.push((c as usize, d + 1));
            }
        }
        deepest
    }

    #[test]
    fn deep_multipart_is_bounded() {
        let raw = nested_multipart(100_000);
        let m = analyze(&raw);
        assert!(m.parsed);
        assert!(m.parts.len() <= MAX_MIME_PARTS, "{}", m.parts.len());
        let d = depth_of(&m);
        assert!((MAX_MIME_DEPTH..=MAX_MIME_DEPTH + 2).contains(&d), "{d}");
        // The part at the limit is an opaque leaf holding the rest.
        let leaf = m.parts.iter().find(|p| p.ctype == "application").unwrap();
        assert_eq!(leaf.subtype, "octet-stream");
        assert!(leaf.children.is_empty());
        assert!(leaf.end_offset - leaf.body_offset > 1_000_000);
        // Stored as JSON and read back without recursion trouble.
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<MessageMeta>(&json).unwrap(), m);
        // Shallow structure is unchanged by the limit.
        let shallow = analyze(&nested_multipart(3));
        assert_eq!(depth_of(&shallow), 4);
        assert_eq!(shallow.parts.last().unwrap().subtype, "plain");
    }

    #[test]
    fn deep_embedded_messages_are_bounded() {
        let raw = nested_messages(100_000);
        let m = analyze(&raw);
        assert!(m.parsed);
        assert!(m.parts.len() <= MAX_MIME_DEPTH + 2, "{}", m.parts.len());
        assert!(depth_of(&m) <= MAX_MIME_DEPTH + 2);
        let first = &m.parts[0];
        assert_eq!(
            (first.ctype.as_str(), first.subtype.as_str()),
            ("message", "rfc822")
        );
        let inner = first.envelope.as_ref().expect("embedded envelope");
        assert_eq!(inner.subject.as_deref(), Some("level"));
    }

    #[test]
    fn many_parts_are_bounded() {
        let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
        for _ in 0..1_000_000 {
            raw.extend_from_slice(b"--b\r\n\r\nx\r\n");
        }
        raw.extend_from_slice(b"--b--\r\n");
        let m = analyze(&raw);
        assert_eq!(m.parts.len(), MAX_MIME_PARTS);
        assert_eq!(m.parts[0].children.len(), MAX_MIME_PARTS - 1);
        let last = m.parts.last().unwrap();
        assert_eq!(
            last.end_offset as usize,
            raw.len(),
            "the last part holds the rest"
        );
    }

    #[test]
    fn embedded_message_parts_are_listed() {
        let raw = b"Subject: outer\r\nContent-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n--i\r\nContent-Type: text/plain\r\n\r\nplain\r\n--i\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n--i--\r\n--o--\r\n";
        let m = analyze(raw);
        let rfc822 = &m.parts[m.parts[0].children[1] as usize];
        assert_eq!(rfc822.subtype, "rfc822");
        let env = rfc822.envelope.as_ref().unwrap();
        assert_eq!(env.subject.as_deref(), Some("inner"));
        let root = &m.parts[rfc822.children[0] as usize];
        assert_eq!(root.subtype, "alternative");
        let html = &m.parts[root.children[1] as usize];
        assert_eq!(
            &raw[html.body_offset as usize..html.end_offset as usize],
            b"<p>html</p>"
        );
    }

    /// Found by the `mime_nesting` fuzzer: a `multipart/digest` inside
    /// nested embedded messages put mail-parser in a state its debug
    /// assertions refused (a panic in debug builds, recovery in release).
    #[test]
    fn digest_inside_embedded_messages() {
        let raw = include_bytes!("testdata/digest_in_rfc822.eml");
        let m = analyze(raw);
        assert!(m.parsed);
        for p in &m.parts {
            assert!(p.end_offset as usize <= raw.len());
            for &c in &p.children {
                assert!((c as usize) < m.parts.len());
            }
        }
    }

    /// Found by the `mime_nesting` fuzzer: mail-parser can list a part
    /// among the children of two parts; a walk over such a graph visits
    /// parts many times (exponentially with depth). The stored tree names
    /// each part once, after its parent.
    #[test]
    fn every_part_has_one_parent() {
        for raw in [
            &include_bytes!("testdata/shared_parts.eml")[..],
            &include_bytes!("testdata/shared_parts_raw.bin")[..],
        ] {
            let m = analyze(raw);
            let mut parents = vec![0; m.parts.len()];
            for (i, p) in m.parts.iter().enumerate() {
                for &c in &p.children {
                    assert!(c as usize > i, "a child comes after its parent");
                    parents[c as usize] += 1;
                }
            }
            assert!(parents.iter().all(|&n| n <= 1), "{parents:?}");
        }
    }

    #[test]
    fn garbage_is_kept() {
        let m = analyze(b"\x00\x01 not a message");
        assert_eq!(m.body_offset as usize, 16);
    }
}

/// The names of a header block's fields, lower case, each between newlines
/// (`"\nfrom\nsubject\n"`), each once: what a header search looks in to
/// find the messages that have a field at all (RFC 5322 §2.2: a field name
/// ends at the colon; continuation lines start with white space).
pub fn field_names(header: &[u8]) -> String {
    let mut names: Vec<String> = Vec::new();
    for line in header.split(|&b| b == b'\n') {
        if line
            .first()
            .is_none_or(|b| matches!(b, b' ' | b'\t' | b'\r'))
        {
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon])
            .trim_end()
            .to_ascii_lowercase();
        if !name.is_empty() && !name.contains('\n') && !names.contains(&name) {
            names.push(name);
        }
    }
    let mut out = String::from("\n");
    for n in names {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod field_names_tests {
    #[test]
    fn names_once_lower_case_without_continuations() {
        let h = b"From: a@b\r\nSubject: hi\r\n  continued: not a field\r\nX-Bench-Tag : needle\r\nsubject: again\r\n\r\n";
        assert_eq!(super::field_names(h), "\nfrom\nsubject\nx-bench-tag\n");
        assert_eq!(super::field_names(b""), "\n");
    }
}
