//! Delivery status notifications (RFC 3464): the `multipart/report`
//! (RFC 6522) sent to a message's envelope sender when recipients fail or
//! wait too long. Built with `mail-builder`; the machine-readable parts are
//! written field by field as RFC 3464 §2 lays them out.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use tern_core::rfc5322_date;

/// Largest original message returned whole; beyond it only the headers
/// go back (RFC 3461 §4.3 lets the MTA decide).
pub const MAX_RETURNED: usize = 256 * 1024;

/// What happened to one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Given up (RFC 3464 §2.3.3 `failed`).
    Failed,
    /// Still trying (`delayed`).
    Delayed,
}

/// One recipient's line in the report.
#[derive(Debug, Clone)]
pub struct RecipientReport {
    /// The address we tried.
    pub address: String,
    /// ORCPT, as given by the submitter (`rfc822;addr`).
    pub original: Option<String>,
    /// Failed or delayed.
    pub action: Action,
    /// Enhanced status code (RFC 3463).
    pub status: String,
    /// The remote host that answered, if one did.
    pub remote_mta: Option<String>,
    /// The remote reply, or our own explanation.
    pub diagnostic: String,
    /// For delays: until when we keep trying (Unix seconds).
    pub will_retry_until: Option<i64>,
}

/// The message a report is about.
pub struct Original<'a> {
    /// Queue id (for the operator).
    pub queue_id: &'a str,
    /// When it arrived (Unix seconds).
    pub arrival: i64,
    /// ENVID from MAIL FROM, if given.
    pub envid: Option<&'a str>,
    /// `RET=HDRS`: return headers only.
    pub headers_only: bool,
    /// The message as queued.
    pub message: &'a [u8],
}

/// Builds the DSN. `reporting_mta` is this server's host name; `to` the
/// original envelope sender.
pub fn build(
    reporting_mta: &str,
    to: &str,
    original: &Original<'_>,
    recipients: &[RecipientReport],
    now: i64,
) -> Vec<u8> {
    let delayed = recipients.iter().all(|r| r.action == Action::Delayed);
    let subject = if delayed {
        "Delivery delayed: message not yet delivered"
    } else {
        "Undelivered mail returned to sender"
    };
    let mut human = String::new();
    human.push_str(&format!(
        "This is the mail system at {reporting_mta}.\r\n\r\n"
    ));
    if delayed {
        human.push_str(
            "Your message has not been delivered yet to the recipients below.\r\n\
             Delivery will be retried; you do not need to send it again.\r\n\r\n",
        );
    } else {
        human.push_str(
            "Your message could not be delivered to the recipients below.\r\n\
             The reason is given for each one.\r\n\r\n",
        );
    }
    for r in recipients {
        human.push_str(&format!("<{}>: {}\r\n", r.address, r.diagnostic));
        if let Some(until) = r.will_retry_until {
            human.push_str(&format!("  (retrying until {})\r\n", rfc5322_date(until)));
        }
    }

    let mut status = String::from("Content-Type: message/delivery-status\r\n\r\n");
    status.push_str(&format!("Reporting-MTA: dns; {reporting_mta}\r\n"));
    status.push_str(&format!("X-Tern-Queue-ID: {}\r\n", original.queue_id));
    if let Some(envid) = original.envid {
        status.push_str(&format!("Original-Envelope-Id: {}\r\n", one_line(envid)));
    }
    status.push_str(&format!(
        "Arrival-Date: {}\r\n",
        rfc5322_date(original.arrival)
    ));
    for r in recipients {
        status.push_str("\r\n");
        status.push_str(&format!("Final-Recipient: rfc822; {}\r\n", r.address));
        if let Some(o) = &r.original {
            let o = one_line(o);
            if o.contains(';') {
                status.push_str(&format!("Original-Recipient: {o}\r\n"));
            } else {
                status.push_str(&format!("Original-Recipient: rfc822; {o}\r\n"));
            }
        }
        status.push_str(&format!(
            "Action: {}\r\n",
            match r.action {
                Action::Failed => "failed",
                Action::Delayed => "delayed",
            }
        ));
        status.push_str(&format!("Status: {}\r\n", r.status));
        if let Some(mta) = &r.remote_mta {
            status.push_str(&format!("Remote-MTA: dns; {mta}\r\n"));
            status.push_str(&format!(
                "Diagnostic-Code: smtp; {}\r\n",
                one_line(&r.diagnostic)
            ));
        } else {
            status.push_str(&format!(
                "Diagnostic-Code: X-Tern; {}\r\n",
                one_line(&r.diagnostic)
            ));
        }
        status.push_str(&format!("Last-Attempt-Date: {}\r\n", rfc5322_date(now)));
        if let Some(until) = r.will_retry_until {
            status.push_str(&format!("Will-Retry-Until: {}\r\n", rfc5322_date(until)));
        }
    }

    let headers_end = find_header_end(original.message);
    let returned = if original.headers_only || original.message.len() > MAX_RETURNED {
        let mut part = b"Content-Type: text/rfc822-headers\r\n\r\n".to_vec();
        part.extend_from_slice(&original.message[..headers_end]);
        part
    } else {
        let mut part = b"Content-Type: message/rfc822\r\n\r\n".to_vec();
        part.extend_from_slice(original.message);
        part
    };
    let returned = String::from_utf8_lossy(&returned).into_owned();

    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", human),
            MimePart::raw(status),
            MimePart::raw(returned),
        ],
    );
    let host = reporting_mta.to_string();
    MessageBuilder::new()
        .from((
            "Mail Delivery System".to_string(),
            format!("MAILER-DAEMON@{host}"),
        ))
        .to(to.to_string())
        .subject(subject)
        .date(Date::new(now))
        .message_id(MessageId::new(format!(
            "{}.{:x}.dsn@{host}",
            original.queue_id,
            rand::random::<u32>()
        )))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(report)
        .write_to_vec()
        .unwrap_or_default()
}

/// Keeps a field value on one line.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// Length of the header block including the blank line (or all of it).
fn find_header_end(m: &[u8]) -> usize {
    m.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(m.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders;

    #[test]
    fn report_structure() {
        let msg = b"From: a@example.com\r\nTo: b@remote.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let out = build(
            "mail.example.com",
            "a@example.com",
            &Original {
                queue_id: "Q1",
                arrival: 1_700_000_000,
                envid: Some("E1"),
                headers_only: false,
                message: msg,
            },
            &[RecipientReport {
                address: "b@remote.test".into(),
                original: Some("rfc822;b@remote.test".into()),
                action: Action::Failed,
                status: "5.1.1".into(),
                remote_mta: Some("mx.remote.test".into()),
                diagnostic: "550 5.1.1 no such user".into(),
                will_retry_until: None,
            }],
            1_700_000_100,
        );
        let parsed = mail_parser::MessageParser::new().parse(&out).unwrap();
        let ct = parsed.parts[0].content_type().unwrap();
        assert_eq!(ct.ctype(), "multipart");
        assert_eq!(ct.subtype(), Some("report"));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("Action: failed"), "{text}");
        assert!(text.contains("Status: 5.1.1"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user"));
        assert!(text.contains("Original-Envelope-Id: E1"));
        assert!(text.contains("Content-Type: message/rfc822"));
        assert!(text.contains("Auto-Submitted: auto-replied"));
        assert_eq!(parsed.parts.len(), 4, "multipart + 3 parts");
    }
}
