//! "Parse once": what IMAP and the filters need from a message, computed at
//! delivery with `mail-parser` and stored beside the blob as JSON.
//!
//! IMAP (RFC 9051 §7.5.2) returns ENVELOPE fields as they appear on the wire
//! and BODYSTRUCTURE from the MIME tree, so both are kept here: raw header
//! values for the envelope, and one [`PartMeta`] per MIME part with its byte
//! offsets in the stored message. A message that does not parse is still
//! stored byte-exact; its metadata then has `parsed = false`.

use mail_parser::{MessageParser, MimeHeaders, PartType};
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
}

/// Analyses a message. Never fails: unparseable input gives `parsed = false`
/// and a body offset found by scanning for the first empty line.
pub fn analyze(raw: &[u8]) -> MessageMeta {
    let fallback_body = find_body_offset(raw);
    let Some(msg) = MessageParser::default().parse(raw) else {
        return MessageMeta {
            parsed: false,
            body_offset: fallback_body,
            ..MessageMeta::default()
        };
    };
    let raw_value = |name: &str| -> Option<String> {
        msg.header_raw(name)
            .map(|v| v.trim().replace("\r\n", "").replace('\n', ""))
    };
    let envelope = Envelope {
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
    let parts = msg
        .parts
        .iter()
        .map(|p| {
            let (ctype, subtype, params) = match p.content_type() {
                Some(ct) => (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or_default().to_ascii_lowercase(),
                    attrs(ct.attributes()),
                ),
                None => ("text".into(), "plain".into(), vec![]),
            };
            let body = raw
                .get(p.offset_body as usize..p.offset_end as usize)
                .unwrap_or_default();
            let children = match &p.body {
                PartType::Multipart(ids) => ids.clone(),
                _ => vec![],
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
                lines: body.iter().filter(|&&b| b == b'\n').count() as u32,
                children,
            }
        })
        .collect();
    MessageMeta {
        parsed: true,
        body_offset: root.offset_body.min(raw.len() as u32),
        envelope,
        headers,
        parts,
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

    #[test]
    fn garbage_is_kept() {
        let m = analyze(b"\x00\x01 not a message");
        assert_eq!(m.body_offset as usize, 16);
    }
}
