//! Complaints from feedback loops: Abuse Reporting Format reports
//! (RFC 5965) that mailbox providers send when a recipient marks a message
//! as spam. Parsed with mail-auth's ARF reader; what is needed to find the
//! message and recipient is taken from the report and the returned message
//! (its headers, which providers keep even when they redact the body).

use mail_auth::report::{Feedback, FeedbackType};
use mail_parser::MessageParser;

/// A complaint, read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Complaint {
    /// RFC 5965 §3.5 `Feedback-Type` (`abuse`, `fraud`, `virus`, `other`,
    /// `not-spam`, RFC 6650 `auth-failure`).
    pub feedback_type: String,
    /// `User-Agent` of the reporting system.
    pub user_agent: Option<String>,
    /// `Original-Rcpt-To`, when the provider discloses it.
    pub original_rcpt_to: Option<String>,
    /// `Original-Mail-From` (often our return path).
    pub original_mail_from: Option<String>,
    /// The returned message's `Return-Path`.
    pub return_path: Option<String>,
    /// The returned message's `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    /// The returned message's `Feedback-ID` (Gmail's format).
    pub feedback_id: Option<String>,
    /// The returned message's `To`, when it has one address.
    pub to: Option<String>,
    /// `Arrival-Date` (Unix seconds).
    pub arrival: Option<i64>,
}

impl Complaint {
    /// Whether the recipient reported the message as unwanted (rather than
    /// a report on authentication or a "not spam" vote).
    pub fn is_complaint(&self) -> bool {
        matches!(
            self.feedback_type.as_str(),
            "abuse" | "fraud" | "virus" | "other"
        )
    }
}

fn clip(s: &str) -> String {
    s.trim().chars().take(998).collect()
}

/// Reads an ARF report, or `None` when the message is not one.
pub fn parse(raw: &[u8]) -> Option<Complaint> {
    let f = Feedback::parse_rfc5322(raw).ok()?;
    let feedback_type = match f.feedback_type() {
        FeedbackType::Abuse => "abuse",
        FeedbackType::AuthFailure => "auth-failure",
        FeedbackType::Fraud => "fraud",
        FeedbackType::NotSpam => "not-spam",
        FeedbackType::Other => "other",
        FeedbackType::Virus => "virus",
    };
    let mut c = Complaint {
        feedback_type: feedback_type.into(),
        user_agent: f.user_agent().map(clip),
        original_rcpt_to: f
            .original_rcpt_to()
            .map(|s| clip(s).trim_matches(['<', '>']).to_string()),
        original_mail_from: f
            .original_mail_from()
            .map(|s| clip(s).trim_matches(['<', '>']).to_string()),
        arrival: f.arrival_date(),
        ..Default::default()
    };
    // The returned message or its headers (RFC 5965 §2 (d)).
    let returned = f.message().or(f.headers()).unwrap_or("");
    let end = returned
        .find("\r\n\r\n")
        .or_else(|| returned.find("\n\n"))
        .map_or(returned.len(), |i| i + 2);
    let head = &returned.as_bytes()[..end.min(64 * 1024)];
    if let Some(h) = MessageParser::default().parse_headers(head) {
        let raw = |name: &str| h.header_raw(name).map(clip);
        c.return_path = raw("Return-Path").map(|s| s.trim_matches(['<', '>', ' ']).to_string());
        c.message_id = h.message_id().map(clip);
        c.feedback_id = raw("Feedback-ID");
        c.to = h
            .to()
            .and_then(|t| {
                let mut all = t.iter();
                let first = all.next()?;
                all.next().is_none().then_some(first)
            })
            .and_then(|a| a.address())
            .map(clip);
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5965 appendix B.1's example, with our headers in the returned
    /// message.
    const ARF: &str = "From: <abusedesk@example.com>\r\n\
Date: Thu, 8 Mar 2005 17:40:36 EDT\r\n\
Subject: FW: Earn money\r\n\
To: <abuse@example.net>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report;\r\n\
\x20    boundary=\"part1_13d.2e68ed54_boundary\"\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: text/plain; charset=\"US-ASCII\"\r\n\
Content-Transfer-Encoding: 7bit\r\n\
\r\n\
This is an email abuse report for an email message received from IP\r\n\
192.0.2.1 on Thu, 8 Mar 2005 14:00:00 EDT.\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: SomeGenerator/1.0\r\n\
Version: 1\r\n\
Original-Mail-From: <bounce+0k6r4g2m9q1zx3a-abcdefghijklmn@example.net>\r\n\
Original-Rcpt-To: <user@example.com>\r\n\
Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\r\n\
Reporting-MTA: dns; mail.example.com\r\n\
Source-IP: 192.0.2.1\r\n\
\r\n\
--part1_13d.2e68ed54_boundary\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: inline\r\n\
\r\n\
Return-Path: <bounce+0k6r4g2m9q1zx3a-abcdefghijklmn@example.net>\r\n\
From: <somespammer@example.net>\r\n\
To: <user@example.com>\r\n\
Subject: Earn money\r\n\
Feedback-ID: receipt:example.net:broadcast:tern\r\n\
Message-ID: <0K6R4G2M9Q1ZX3A.1234@mx.example.net>\r\n\
Date: Thu, 02 Sep 2004 12:31:03 -0500\r\n\
\r\n\
Spam Spam Spam\r\n\
--part1_13d.2e68ed54_boundary--\r\n";

    #[test]
    fn reads_an_arf_report() {
        let c = parse(ARF.as_bytes()).expect("an ARF report");
        assert!(c.is_complaint());
        assert_eq!(c.feedback_type, "abuse");
        assert_eq!(c.user_agent.as_deref(), Some("SomeGenerator/1.0"));
        assert_eq!(c.original_rcpt_to.as_deref(), Some("user@example.com"));
        assert_eq!(
            c.return_path.as_deref(),
            Some("bounce+0k6r4g2m9q1zx3a-abcdefghijklmn@example.net")
        );
        assert_eq!(
            c.message_id.as_deref(),
            Some("0K6R4G2M9Q1ZX3A.1234@mx.example.net")
        );
        assert_eq!(
            c.feedback_id.as_deref(),
            Some("receipt:example.net:broadcast:tern")
        );
        assert_eq!(c.to.as_deref(), Some("user@example.com"));
    }

    #[test]
    fn other_mail_is_not_a_complaint() {
        assert_eq!(parse(b"From: a@b\r\nSubject: hi\r\n\r\nhello\r\n"), None);
        assert_eq!(parse(b""), None);
    }
}
