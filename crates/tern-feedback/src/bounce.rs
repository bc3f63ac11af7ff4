//! Reading a bounce that arrived by mail: a delivery status notification
//! (RFC 3464, `multipart/report; report-type=delivery-status`, and its
//! internationalized form, RFC 6533 `message/global-delivery-status`), a
//! non-standard bounce (a text from a mail system that ignores RFC 3464),
//! or an automatic reply (RFC 3834) that went to the return path.
//!
//! Bounded: at most [`MAX_REPORTS`] recipients are read from one DSN and
//! each field is cut at [`MAX_FIELD`] characters.

use mail_parser::{MessageParser, MimeHeaders};

/// Most per-recipient reports read from one DSN.
pub const MAX_REPORTS: usize = 100;
/// Longest field value kept.
pub const MAX_FIELD: usize = 1000;

/// What kind of message it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An RFC 3464 delivery status notification.
    Dsn,
    /// A bounce in free text.
    NonStandard,
    /// An automatic reply (out of office, vacation).
    AutoReply,
    /// None of these.
    Other,
}

/// RFC 3464 §2.3.3 `Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Could not be delivered.
    Failed,
    /// Not yet delivered; still trying.
    Delayed,
    /// Delivered.
    Delivered,
    /// Passed on to a system that sends no DSNs.
    Relayed,
    /// Delivered and forwarded to more recipients.
    Expanded,
}

/// What the bounce says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What happened.
    pub action: Action,
    /// `Final-Recipient` (or `Original-Recipient`), the address alone.
    pub recipient: Option<String>,
    /// RFC 3463 status (`5.1.1`).
    pub status: Option<String>,
    /// The remote server's reply (`Diagnostic-Code`, its type removed).
    pub diagnostic: Option<String>,
    /// The server that gave it (`Remote-MTA`).
    pub remote_mta: Option<String>,
}

/// A bounce, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// Its kind.
    pub kind: Kind,
    /// The recipients it reports on (none for automatic replies).
    pub reports: Vec<Report>,
}

fn cut(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(MAX_FIELD) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Reads a message that arrived at a return path. `null_sender`: it came
/// with the null reverse-path, as bounces must (RFC 5321 §4.5.5).
pub fn parse(raw: &[u8], null_sender: bool) -> Bounce {
    let Some(msg) = MessageParser::default().parse(raw) else {
        return Bounce {
            kind: Kind::Other,
            reports: Vec::new(),
        };
    };
    // RFC 3464: the delivery-status part of a multipart/report.
    for part in msg.parts.iter() {
        let is_status = part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct.subtype().is_some_and(|s| {
                    s.eq_ignore_ascii_case("delivery-status")
                        || s.eq_ignore_ascii_case("global-delivery-status")
                })
        });
        if is_status {
            let reports = delivery_status(part.contents());
            if !reports.is_empty() {
                return Bounce {
                    kind: Kind::Dsn,
                    reports,
                };
            }
        }
    }
    let header = |name: &str| {
        msg.header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default()
    };
    let subject = msg.subject().unwrap_or("").to_ascii_lowercase();
    // RFC 3834 §5: automatic responses say so.
    let auto = header("Auto-Submitted");
    if (auto.starts_with("auto-replied") || auto.starts_with("auto-generated"))
        && !looks_like_bounce(&subject)
        || !header("X-Autoreply").is_empty()
        || !header("X-Autorespond").is_empty()
        || header("Precedence") == "auto_reply"
        || AUTO_SUBJECTS.iter().any(|s| subject.starts_with(s))
    {
        return Bounce {
            kind: Kind::AutoReply,
            reports: Vec::new(),
        };
    }
    let from = msg
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .unwrap_or("")
        .to_ascii_lowercase();
    let daemon = from.starts_with("mailer-daemon@")
        || from.starts_with("postmaster@")
        || from.starts_with("mail-daemon@");
    if !(looks_like_bounce(&subject) || daemon && null_sender) {
        return Bounce {
            kind: Kind::Other,
            reports: Vec::new(),
        };
    }
    // A free-text bounce: the first status code and the line it is on.
    let text = msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
    let text = match text.char_indices().nth(64 * 1024) {
        Some((i, _)) => text[..i].to_string(),
        None => text,
    };
    let status = crate::classify::find_status(&text).map(str::to_string);
    let diagnostic = text
        .lines()
        .map(str::trim)
        .find(|l| {
            status.as_deref().is_some_and(|s| l.contains(s))
                || l.len() > 4
                    && matches!(l.as_bytes()[0], b'4' | b'5')
                    && l.as_bytes()[1].is_ascii_digit()
                    && l.as_bytes()[2].is_ascii_digit()
                    && matches!(l.as_bytes()[3], b' ' | b'-')
        })
        .map(cut);
    let temporary = status.as_deref().is_some_and(|s| s.starts_with('4'))
        || subject.contains("delay")
        || subject.contains("warning");
    Bounce {
        kind: Kind::NonStandard,
        reports: vec![Report {
            action: if temporary {
                Action::Delayed
            } else {
                Action::Failed
            },
            recipient: None,
            status,
            diagnostic,
            remote_mta: None,
        }],
    }
}

/// Subjects of automatic replies (as Exchange, Gmail and vacation(1)
/// write them).
const AUTO_SUBJECTS: &[&str] = &[
    "out of office",
    "automatic reply",
    "auto reply",
    "autoreply",
    "auto-reply",
    "auto:",
    "vacation",
    "abwesenheitsnotiz",
    "réponse automatique",
];

fn looks_like_bounce(subject: &str) -> bool {
    [
        "undeliver",
        "undelivered",
        "delivery status notification",
        "delivery failure",
        "delivery has failed",
        "delivery failed",
        "returned mail",
        "failure notice",
        "mail delivery failed",
        "mail delivery failure",
        "mail delivery system",
        "could not be delivered",
        "non-deliver",
        "nondeliver",
        "mail system error",
        "delivery problem",
    ]
    .iter()
    .any(|s| subject.contains(s))
}

/// RFC 3464 §2.1: the per-message fields, then one group per recipient,
/// groups separated by empty lines; fields as in RFC 5322, folded.
fn delivery_status(body: &[u8]) -> Vec<Report> {
    let text = String::from_utf8_lossy(&body[..body.len().min(256 * 1024)]);
    let mut groups: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if !groups.last().is_some_and(Vec::is_empty) {
                if groups.len() > MAX_REPORTS + 1 {
                    break;
                }
                groups.push(Vec::new());
            }
            continue;
        }
        let group = groups.last_mut().expect("one group at least");
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = group.last_mut()
                && v.len() < MAX_FIELD
            {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':')
            && group.len() < 64
        {
            group.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let typed = |v: &str| -> String {
        // `type; value` (RFC 3464 §2.1.2): the value alone.
        cut(v.split_once(';').map_or(v, |(_, rest)| rest))
    };
    groups
        .iter()
        .skip(1)
        .filter_map(|g| {
            let get = |n: &str| g.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
            let action = match get("action")?
                .split_whitespace()
                .next()?
                .to_ascii_lowercase()
                .as_str()
            {
                "failed" => Action::Failed,
                "delayed" => Action::Delayed,
                "delivered" => Action::Delivered,
                "relayed" => Action::Relayed,
                "expanded" => Action::Expanded,
                _ => return None,
            };
            let recipient = get("final-recipient")
                .or_else(|| get("original-recipient"))
                .map(typed)
                .map(|r| r.trim_matches(['<', '>']).to_string())
                .filter(|r| !r.is_empty());
            Some(Report {
                action,
                recipient,
                status: get("status")
                    .and_then(|s| s.split_whitespace().next())
                    .map(cut),
                diagnostic: get("diagnostic-code").map(typed),
                remote_mta: get("remote-mta").map(typed),
            })
        })
        .take(MAX_REPORTS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSN: &str = "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n\
To: bounce+x@example.com\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
\r\n\
--B\r\n\
Content-Type: text/plain\r\n\
\r\n\
I'm sorry to have to inform you that your message could not be delivered.\r\n\
--B\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.net\r\n\
Arrival-Date: Fri, 4 Dec 2026 01:00:00 +0000\r\n\
\r\n\
Final-Recipient: rfc822; ann@example.net\r\n\
Original-Recipient: rfc822;ann@example.net\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Remote-MTA: dns; mail.example.net\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <ann@example.net>: Recipient address\r\n\
\x20   rejected: User unknown in local recipient table\r\n\
\r\n\
Final-Recipient: rfc822; bob@example.net\r\n\
Action: delayed\r\n\
Status: 4.4.1\r\n\
\r\n\
--B\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: shop@example.com\r\n\
--B--\r\n";

    #[test]
    fn reads_an_rfc3464_report() {
        let b = parse(DSN.as_bytes(), true);
        assert_eq!(b.kind, Kind::Dsn);
        assert_eq!(b.reports.len(), 2);
        let r = &b.reports[0];
        assert_eq!(r.action, Action::Failed);
        assert_eq!(r.recipient.as_deref(), Some("ann@example.net"));
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(r.remote_mta.as_deref(), Some("mail.example.net"));
        assert_eq!(
            r.diagnostic.as_deref(),
            Some(
                "550 5.1.1 <ann@example.net>: Recipient address rejected: User unknown in local recipient table"
            )
        );
        assert_eq!(b.reports[1].action, Action::Delayed);
    }

    #[test]
    fn reads_a_free_text_bounce() {
        let m = "From: postmaster@legacy.example\r\nSubject: failure notice\r\n\r\n\
Hi. This is the qmail-send program at legacy.example.\r\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\r\n\
\r\n\
<ann@legacy.example>:\r\n\
Sorry, no mailbox here by that name. (#5.1.1)\r\n";
        let b = parse(m.as_bytes(), true);
        assert_eq!(b.kind, Kind::NonStandard);
        assert_eq!(b.reports[0].action, Action::Failed);
        assert_eq!(b.reports[0].status.as_deref(), Some("5.1.1"));
        assert_eq!(
            b.reports[0].diagnostic.as_deref(),
            Some("Sorry, no mailbox here by that name. (#5.1.1)")
        );
    }

    #[test]
    fn automatic_replies_and_other_mail() {
        let m = "From: ann@example.net\r\nAuto-Submitted: auto-replied\r\nSubject: Out of Office: Receipt\r\n\r\nI am away.\r\n";
        assert_eq!(parse(m.as_bytes(), true).kind, Kind::AutoReply);
        let m = "From: ann@example.net\r\nSubject: hello\r\n\r\nhi\r\n";
        assert_eq!(parse(m.as_bytes(), false).kind, Kind::Other);
        assert_eq!(parse(b"", true).kind, Kind::Other);
    }
}
