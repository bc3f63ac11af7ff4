//! Feedback arriving over MX: bounces at return paths (`bounce+…`),
//! unsubscribe requests at `unsubscribe+…` addresses, ARF complaints at the
//! complaint addresses. They are consumed here, not stored in a mailbox:
//! matched to the message and recipient they are about (through the signed
//! tokens, and for complaints the returned message's headers), recorded as
//! `bounced`, `unsubscribed` or `complained` events, and the recipient
//! suppressed when that is what they mean — events and suppressions in one
//! commit, before the `250`.

use crate::reply::{Reply, reply};
use tern_events::{BounceType, Event, EventType};
use tern_feedback::Settings;
use tern_feedback::bounce::{self, Action};
use tern_feedback::complaint;
use tern_feedback::token::{BounceToken, MailToken};
use tern_store::{MessageLog, SharedStore, Suppression};

/// What a recipient of an incoming message is for feedback.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// A return path whose token verified.
    Bounce(BounceToken),
    /// An unsubscribe address whose token verified.
    Unsubscribe(MailToken),
    /// A complaint address (`local`: it is also a mailbox, which gets
    /// whatever is not an ARF report).
    Complaints {
        /// The address is an account's too.
        local: bool,
    },
}

/// What became of the message for each feedback recipient.
pub(crate) struct Consumed {
    /// Recipients (by index into those given) that still get the message
    /// as ordinary mail.
    pub deliver: Vec<usize>,
    /// What was recorded, for the log line.
    pub summary: Vec<String>,
}

/// What came in: the envelope sender and the message.
pub(crate) struct Incoming<'a> {
    pub mail_from: &'a str,
    pub message: &'a [u8],
    pub client: std::net::IpAddr,
    pub queue_id: &'a str,
}

/// Consumes `message` for the feedback recipients `rcpts` (address, kind).
pub(crate) async fn consume(
    store: &SharedStore,
    fb: &Settings,
    rcpts: &[(&str, &Kind)],
    m: &Incoming<'_>,
) -> Result<Consumed, Reply> {
    let now = tern_core::now_unix();
    let mut events = Vec::new();
    let mut suppress = Vec::new();
    let mut out = Consumed {
        deliver: Vec::new(),
        summary: Vec::new(),
    };
    let mut read_bounce = None;
    let mut read_complaint: Option<Option<complaint::Complaint>> = None;
    let lookup_failed = |e: tern_store::StoreError| {
        tracing::error!(queue_id = %m.queue_id, error = %e, "smtp: feedback lookup failed");
        reply!(451, "4.3.0", "Temporary local problem, try again later")
    };
    for (i, (address, kind)) in rcpts.iter().enumerate() {
        match kind {
            Kind::Bounce(token) => {
                let b = read_bounce
                    .get_or_insert_with(|| bounce::parse(m.message, m.mail_from.is_empty()));
                let log = store
                    .message_log(&token.queue_id)
                    .await
                    .map_err(lookup_failed)?;
                let Some(log) = log else {
                    out.summary
                        .push(format!("bounce for {} (history pruned)", token.queue_id));
                    continue;
                };
                let Some(rcpt) = log
                    .recipients
                    .iter()
                    .find(|r| fb.keys.bounce_is_for(token, r))
                else {
                    out.summary
                        .push(format!("bounce for {}: recipient unknown", token.queue_id));
                    continue;
                };
                if !matches!(b.kind, bounce::Kind::Dsn | bounce::Kind::NonStandard) {
                    out.summary.push(
                        format!("{:?} for {} to {rcpt}, discarded", b.kind, token.queue_id)
                            .to_lowercase(),
                    );
                    continue;
                }
                // The report on this recipient, or the only failure.
                let report = b
                    .reports
                    .iter()
                    .filter(|r| r.action == Action::Failed)
                    .find(|r| {
                        r.recipient
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case(rcpt))
                    })
                    .or_else(|| b.reports.iter().find(|r| r.action == Action::Failed));
                let Some(report) = report else {
                    out.summary
                        .push(format!("delay notice for {} to {rcpt}", token.queue_id));
                    continue;
                };
                let status = report.status.clone().unwrap_or_else(|| "5.0.0".into());
                let diagnostic = report
                    .diagnostic
                    .clone()
                    .unwrap_or_else(|| format!("{status} (no diagnostic given)"));
                let code = diagnostic
                    .get(..3)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(if status.starts_with('4') { 450 } else { 550 });
                let verdict = fb
                    .classifier
                    .classify(code.max(500), Some(&status), &diagnostic);
                let mut e = about(&log, EventType::Bounced, rcpt);
                e.status = Some(status);
                e.reply = Some(diagnostic.clone());
                e.mx_host = report.remote_mta.clone();
                e.bounce_type = Some(if verdict.hard {
                    BounceType::Hard
                } else {
                    BounceType::Soft
                });
                e.category = Some(verdict.category.as_str().into());
                e.blocklist = verdict.blocklist.clone();
                e.via = Some("dsn".into());
                events.push(e);
                if verdict.hard {
                    suppress.push(Suppression {
                        address: rcpt.to_lowercase(),
                        domain: String::new(),
                        reason: "hard_bounce".into(),
                        created: now,
                        expires: None,
                        detail: diagnostic.clone(),
                    });
                    let mut s = about(&log, EventType::Suppressed, rcpt);
                    s.reason = Some(format!("hard bounce: {diagnostic}"));
                    events.push(s);
                }
                out.summary.push(format!(
                    "bounced {} to {rcpt} ({})",
                    token.queue_id, verdict.category
                ));
            }
            Kind::Unsubscribe(token) => {
                let domain = address
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_ascii_lowercase())
                    .unwrap_or_default();
                let log = store
                    .message_log(&token.queue_id)
                    .await
                    .map_err(lookup_failed)?;
                // The recipient from the message's history, or — once that
                // is pruned — the sender of the request, if the token was
                // made for that address.
                let from_header = header_from(m.message);
                let rcpt = log
                    .as_ref()
                    .and_then(|l| {
                        l.recipients
                            .iter()
                            .find(|r| fb.keys.unsubscribe_is_for(token, r))
                            .cloned()
                    })
                    .or_else(|| {
                        [Some(m.mail_from.to_string()), from_header]
                            .into_iter()
                            .flatten()
                            .find(|a| fb.keys.unsubscribe_is_for(token, a))
                    });
                let Some(rcpt) = rcpt else {
                    out.summary.push(format!(
                        "unsubscribe for {}: recipient unknown",
                        token.queue_id
                    ));
                    continue;
                };
                let mut e = match &log {
                    Some(l) => about(l, EventType::Unsubscribed, &rcpt),
                    None => Event::new(EventType::Unsubscribed, &token.queue_id).to(&rcpt),
                };
                e.via = Some("mailto".into());
                e.source_ip = Some(m.client.to_string());
                e.reason = Some(format!("unsubscribed from {domain}'s broadcasts by mail"));
                events.push(e);
                suppress.push(Suppression {
                    address: rcpt.to_lowercase(),
                    domain: domain.clone(),
                    reason: "unsubscribe".into(),
                    created: now,
                    expires: None,
                    detail: format!("mailto, message {}", token.queue_id),
                });
                out.summary
                    .push(format!("{rcpt} unsubscribed from {domain}"));
            }
            Kind::Complaints { local } => {
                let c = read_complaint.get_or_insert_with(|| complaint::parse(m.message));
                let Some(c) = c else {
                    if *local {
                        out.deliver.push(i);
                        continue;
                    }
                    return Err(reply!(
                        550,
                        "5.7.1",
                        "<{address}> takes only feedback reports (RFC 5965)"
                    ));
                };
                if !c.is_complaint() {
                    out.summary
                        .push(format!("{} report, noted", c.feedback_type));
                    continue;
                }
                let Some((log, rcpt)) = complained_about(store, fb, c)
                    .await
                    .map_err(lookup_failed)?
                else {
                    out.summary
                        .push("complaint about a message not found".into());
                    continue;
                };
                let domain = log
                    .sender
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_ascii_lowercase())
                    .unwrap_or_default();
                let mut e = about(&log, EventType::Complained, &rcpt);
                e.via = Some("arf".into());
                e.user_agent = c.user_agent.clone();
                e.reason = Some(format!("feedback type {}", c.feedback_type));
                events.push(e);
                suppress.push(Suppression {
                    address: rcpt.to_lowercase(),
                    domain: domain.clone(),
                    reason: "complaint".into(),
                    created: now,
                    expires: None,
                    detail: format!(
                        "{} report from {}",
                        c.feedback_type,
                        c.user_agent.as_deref().unwrap_or("a feedback loop")
                    ),
                });
                let mut s = about(&log, EventType::Suppressed, &rcpt);
                s.reason = Some(format!("complaint ({} report)", c.feedback_type));
                events.push(s);
                out.summary
                    .push(format!("{rcpt} complained about {}", log.message_id));
            }
        }
    }
    if !events.is_empty() || !suppress.is_empty() {
        store.record_feedback(events, suppress).await.map_err(|e| {
            tracing::error!(queue_id = %m.queue_id, error = %e, "smtp: cannot record feedback");
            reply!(451, "4.3.0", "Temporary storage failure, try again later")
        })?;
    }
    Ok(out)
}

/// An event about `rcpt` of the logged message, with its context.
fn about(log: &MessageLog, t: EventType, rcpt: &str) -> Event {
    let mut e = Event::new(t, &log.message_id).to(rcpt);
    e.sender = Some(log.sender.clone());
    e.source = Some(log.source.clone());
    e.stream = Some(log.stream.clone()).filter(|s| !s.is_empty());
    e.tags = log.tags.clone();
    e.metadata = log.metadata.clone();
    e
}

/// The message and recipient a complaint is about: through the return
/// path it left with (the token names both), else its Message-ID (the
/// API's start with the queue id; the whole id must match what was sent).
async fn complained_about(
    store: &SharedStore,
    fb: &Settings,
    c: &complaint::Complaint,
) -> Result<Option<(MessageLog, String)>, tern_store::StoreError> {
    for path in [&c.return_path, &c.original_mail_from]
        .into_iter()
        .flatten()
    {
        let local = path.rsplit_once('@').map_or(path.as_str(), |(l, _)| l);
        // A complaint may come weeks later: the window is generous.
        if let Ok(token) = fb.keys.read_return_path(local, tern_core::now_unix(), 365)
            && let Some(log) = store.message_log(&token.queue_id).await?
            && let Some(r) = log
                .recipients
                .iter()
                .find(|r| fb.keys.bounce_is_for(&token, r))
        {
            let r = r.clone();
            return Ok(Some((log, r)));
        }
    }
    let Some(mid) = &c.message_id else {
        return Ok(None);
    };
    let qid = mid.split(['.', '@']).next().unwrap_or("");
    if qid.len() != 15 || !qid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    let Some(log) = store.message_log(qid).await? else {
        return Ok(None);
    };
    let sent_id = format!("<{mid}>");
    let matches = log.headers.lines().any(|l| {
        l.split_once(':').is_some_and(|(n, v)| {
            n.trim().eq_ignore_ascii_case("Message-ID") && v.trim() == sent_id
        })
    });
    if !matches {
        return Ok(None);
    }
    let named = [&c.original_rcpt_to, &c.to]
        .into_iter()
        .flatten()
        .find_map(|a| log.recipients.iter().find(|r| r.eq_ignore_ascii_case(a)))
        .cloned();
    let rcpt = match (named, log.recipients.as_slice()) {
        (Some(r), _) => r,
        (None, [only]) => only.clone(),
        _ => return Ok(None),
    };
    Ok(Some((log, rcpt)))
}

/// The `From:` address of a message.
fn header_from(message: &[u8]) -> Option<String> {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |i| i + 4);
    mail_parser::MessageParser::default()
        .parse_headers(&message[..end])?
        .from()?
        .first()?
        .address()
        .map(str::to_string)
}
