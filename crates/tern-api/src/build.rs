//! Turning a send request into a message (mail-builder) after checking
//! every field: addresses parse, nothing that becomes a header carries a
//! line break, attachments decode, the sizes hold.

use crate::Problem;
use crate::body::header_safe;
use base64::Engine;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address as MbAddress;
use mail_builder::headers::text::Text;
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A message to send.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The author, `shop@example.com` or `Shop <shop@example.com>`; its
    /// domain must be one of this server's.
    pub from: String,
    /// Recipients (to, cc and bcc together at most `[api] max_recipients`).
    #[serde(default)]
    pub to: Vec<String>,
    /// Copy recipients.
    #[serde(default)]
    pub cc: Vec<String>,
    /// Blind copy recipients (not shown in the headers).
    #[serde(default)]
    pub bcc: Vec<String>,
    /// Where replies go.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The subject (or the template's).
    #[serde(default)]
    pub subject: Option<String>,
    /// Plain-text body.
    #[serde(default)]
    pub text: Option<String>,
    /// HTML body.
    #[serde(default)]
    pub html: Option<String>,
    /// Files: attached, or inline when `content_id` is given (referred to
    /// as `cid:ID` from the HTML).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// More header fields (`List-Unsubscribe`, `X-Campaign`, …).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Tags, copied into every event of the message.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Metadata, copied into every event of the message.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// A stored template for subject, text and HTML (`/v1/templates`).
    #[serde(default)]
    pub template: Option<String>,
    /// The template's variables.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, serde_json::Value>,
    /// `transactional` (default) or `broadcast`.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub stream: Option<tern_queue::intake::Stream>,
    /// When to send (RFC 3339); now if absent. At most 30 days ahead.
    #[serde(default)]
    pub send_at: Option<String>,
    /// Add an open pixel to the HTML part (default: `[feedback]
    /// track_domains` and `track_streams` decide). One recipient only.
    #[serde(default)]
    pub track_opens: Option<bool>,
    /// Rewrite the HTML part's links to signed redirects (default as for
    /// `track_opens`). One recipient only.
    #[serde(default)]
    pub track_clicks: Option<bool>,
}

/// A file sent with the message.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// Its file name.
    pub filename: String,
    /// Its MIME type; guessed from nothing: `application/octet-stream` if absent.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The content, base64.
    pub content: String,
    /// Makes the file inline, referred to as `cid:THIS` from the HTML.
    #[serde(default)]
    pub content_id: Option<String>,
}

/// A parsed mailbox: display name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Display name, if any.
    pub name: Option<String>,
    /// The address.
    pub address: String,
}

impl Mailbox {
    fn to_mb(&self) -> MbAddress<'static> {
        match &self.name {
            Some(n) => MbAddress::new_address(Some(n.clone()), self.address.clone()),
            None => MbAddress::new_address(None::<String>, self.address.clone()),
        }
    }

    /// Its domain, lower case.
    pub fn domain(&self) -> String {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default()
    }
}

/// Parses `addr@example.com` or `Name <addr@example.com>` (field `field`).
pub fn mailbox(field: &str, s: &str) -> Result<Mailbox, Problem> {
    header_safe(field, s)?;
    let s = s.trim();
    let (name, addr) = match s.rfind('<') {
        Some(i) if s.ends_with('>') => {
            let name = s[..i].trim().trim_matches('"').trim();
            (
                (!name.is_empty()).then(|| name.to_string()),
                &s[i + 1..s.len() - 1],
            )
        }
        _ => (None, s),
    };
    let parsed = tern_core::Address::parse(addr.trim())
        .map_err(|e| Problem::invalid(field, format!("{addr:?} is not an address: {e}")))?;
    Ok(Mailbox {
        name,
        address: parsed.to_string(),
    })
}

/// Header fields a request may not set: the API sets them itself, or they
/// would change the message's structure or trace.
const RESERVED: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "received",
    "return-path",
    "dkim-signature",
    "reply-to",
    "sender",
];

/// The message's content after templates were applied.
#[derive(Debug, Clone)]
pub struct Content {
    /// Subject.
    pub subject: String,
    /// Plain text.
    pub text: Option<String>,
    /// HTML.
    pub html: Option<String>,
}

/// What a checked request becomes.
#[derive(Debug)]
pub struct Built {
    /// The author.
    pub from: Mailbox,
    /// Envelope recipients, deduplicated (case-insensitively), in order.
    pub recipients: Vec<String>,
    /// The message, CRLF line endings.
    pub message: Vec<u8>,
}

/// Checks a request (content already rendered) and builds its message.
pub fn build(
    req: &SendRequest,
    content: Content,
    message_id: &str,
    now: i64,
    max_recipients: usize,
) -> Result<Built, Problem> {
    let from = mailbox("from", &req.from)?;
    let mut all = Vec::new();
    let mut lists: [(&str, &Vec<String>, Vec<Mailbox>); 3] = [
        ("to", &req.to, Vec::new()),
        ("cc", &req.cc, Vec::new()),
        ("bcc", &req.bcc, Vec::new()),
    ];
    for (field, input, parsed) in lists.iter_mut() {
        for (i, s) in input.iter().enumerate() {
            let m = mailbox(&format!("{field}[{i}]"), s)?;
            all.push(m.address.clone());
            parsed.push(m);
        }
    }
    if all.is_empty() {
        return Err(Problem::invalid("to", "at least one recipient is needed"));
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|a| seen.insert(a.to_lowercase()));
    if all.len() > max_recipients {
        return Err(Problem::invalid(
            "to",
            format!(
                "{} recipients; at most {max_recipients} per message",
                all.len()
            ),
        ));
    }
    header_safe("subject", &content.subject)?;
    if content.text.is_none() && content.html.is_none() && req.attachments.is_empty() {
        return Err(Problem::invalid(
            "text",
            "the message needs text, html or an attachment",
        ));
    }
    let mut b = MessageBuilder::new()
        .from(from.to_mb())
        .subject(content.subject)
        .message_id(message_id.to_string())
        .date(now);
    let [(_, _, to), (_, _, cc), _] = lists;
    if !to.is_empty() {
        b = b.to(to.iter().map(Mailbox::to_mb).collect::<Vec<_>>());
    }
    if !cc.is_empty() {
        b = b.cc(cc.iter().map(Mailbox::to_mb).collect::<Vec<_>>());
    }
    if let Some(r) = &req.reply_to {
        b = b.reply_to(mailbox("reply_to", r)?.to_mb());
    }
    for (name, value) in &req.headers {
        let field = format!("headers.{name}");
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_graphic() && c != b':') {
            return Err(Problem::invalid(field, "is not a header field name"));
        }
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(Problem::invalid(
                field,
                "is set by the API from the request's own fields",
            ));
        }
        header_safe(&field, value)?;
        b = b.header(name.clone(), Text::new(value.clone()));
    }
    if let Some(t) = content.text {
        b = b.text_body(t);
    }
    if let Some(h) = content.html {
        b = b.html_body(h);
    }
    for (i, a) in req.attachments.iter().enumerate() {
        let field = format!("attachments[{i}]");
        header_safe(&format!("{field}.filename"), &a.filename)?;
        let ct = a
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        header_safe(&format!("{field}.content_type"), &ct)?;
        if !ct.contains('/') || ct.contains(';') {
            return Err(Problem::invalid(
                format!("{field}.content_type"),
                "is not a MIME type (type/subtype)",
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.content.trim())
            .map_err(|e| {
                Problem::invalid(format!("{field}.content"), format!("is not base64: {e}"))
            })?;
        b = match &a.content_id {
            Some(cid) => {
                header_safe(&format!("{field}.content_id"), cid)?;
                b.inline(ct, cid.clone(), bytes)
            }
            None => b.attachment(ct, a.filename.clone(), bytes),
        };
    }
    let message = b
        .write_to_vec()
        .map_err(|e| Problem::invalid("body", format!("cannot build the message: {e}")))?;
    Ok(Built {
        from,
        recipients: all,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> SendRequest {
        serde_json::from_str(json).unwrap()
    }

    fn content(s: &str) -> Content {
        Content {
            subject: s.into(),
            text: Some("hello".into()),
            html: None,
        }
    }

    #[test]
    fn builds_and_dedupes() {
        let r = req(
            r#"{"from":"Shop <shop@example.com>","to":["a@x.net","A@X.net"],"bcc":["b@y.net"]}"#,
        );
        let b = build(&r, content("Hi"), "<id@h>", 0, 10).unwrap();
        assert_eq!(b.recipients, vec!["a@x.net", "b@y.net"]);
        let text = String::from_utf8(b.message).unwrap();
        assert!(
            text.contains("From: \"Shop\" <shop@example.com>\r\n"),
            "{text}"
        );
        assert!(!text.to_lowercase().contains("bcc"), "{text}");
    }

    #[test]
    fn refuses_injection() {
        let r = req(r#"{"from":"shop@example.com","to":["a@x.net"]}"#);
        let p = build(&r, content("Hi\r\nBcc: evil@x.net"), "<i@h>", 0, 10).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].field, "subject");
        let r =
            req(r#"{"from":"shop@example.com","to":["a@x.net"],"headers":{"X-A":"1\nBcc: e@x"}}"#);
        assert_eq!(
            build(&r, content("s"), "<i@h>", 0, 10).unwrap_err().status,
            422
        );
        let r = req(r#"{"from":"shop@example.com","to":["a@x.net"],"headers":{"From":"x@y"}}"#);
        assert_eq!(
            build(&r, content("s"), "<i@h>", 0, 10).unwrap_err().status,
            422
        );
        let r = req(r#"{"from":"shop@example.com","to":["not an address"]}"#);
        assert_eq!(
            build(&r, content("s"), "<i@h>", 0, 10).unwrap_err().errors[0].field,
            "to[0]"
        );
        assert!(serde_json::from_str::<SendRequest>(r#"{"from":"a@b","sender":"x"}"#).is_err());
    }
}
