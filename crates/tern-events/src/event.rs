//! The event: one thing that happened to one message (and, for most types,
//! one recipient), with what a person or a program needs to act on it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What happened. Names as SES, Postmark and SendGrid users know them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// An incoming message was stored for a local recipient.
    Received,
    /// An incoming message (or one recipient of it) was refused.
    Rejected,
    /// An outgoing message was queued for a recipient.
    Accepted,
    /// The recipient's server accepted the message.
    Delivered,
    /// A temporary failure; the queue tries again.
    Deferred,
    /// A permanent failure: the message is returned.
    Bounced,
    /// The queue gave up after retrying for the configured time.
    Expired,
    /// The recipient is on a suppression list; nothing was sent.
    Suppressed,
    /// The recipient reported the message as spam (feedback loop).
    Complained,
    /// The recipient unsubscribed.
    Unsubscribed,
    /// The recipient opened the message.
    Opened,
    /// The recipient clicked a link.
    Clicked,
}

impl EventType {
    /// Every type, in the order above.
    pub const ALL: [EventType; 12] = [
        Self::Received,
        Self::Rejected,
        Self::Accepted,
        Self::Delivered,
        Self::Deferred,
        Self::Bounced,
        Self::Expired,
        Self::Suppressed,
        Self::Complained,
        Self::Unsubscribed,
        Self::Opened,
        Self::Clicked,
    ];

    /// The name used in JSON, URLs and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Rejected => "rejected",
            Self::Accepted => "accepted",
            Self::Delivered => "delivered",
            Self::Deferred => "deferred",
            Self::Bounced => "bounced",
            Self::Expired => "expired",
            Self::Suppressed => "suppressed",
            Self::Complained => "complained",
            Self::Unsubscribed => "unsubscribed",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
        }
    }

    /// The type named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The recipient's state once this event happened, for types that
    /// change it.
    pub fn state(self) -> Option<RecipientState> {
        Some(match self {
            Self::Accepted => RecipientState::Queued,
            Self::Deferred => RecipientState::Deferred,
            Self::Delivered => RecipientState::Delivered,
            Self::Bounced => RecipientState::Bounced,
            Self::Expired => RecipientState::Expired,
            Self::Suppressed => RecipientState::Suppressed,
            Self::Received => RecipientState::Delivered,
            Self::Rejected => RecipientState::Rejected,
            _ => return None,
        })
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a recipient of a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecipientState {
    /// Waiting for its first attempt.
    Queued,
    /// Tried, failed temporarily, waiting for the next attempt.
    Deferred,
    /// Accepted by the recipient's server (or stored in a local mailbox).
    Delivered,
    /// Failed permanently.
    Bounced,
    /// Given up after the queue's lifetime.
    Expired,
    /// Not sent: the address is suppressed.
    Suppressed,
    /// Refused on arrival.
    Rejected,
}

impl RecipientState {
    /// Where a recipient stands after its events (in time order): the
    /// last that changes the state. A `suppressed` event after the
    /// recipient was queued records the address joining a list (a hard
    /// bounce, a complaint), not this message's fate.
    pub fn of(events: &[Event]) -> Self {
        let queued = events.iter().any(|e| e.event_type == EventType::Accepted);
        events
            .iter()
            .rev()
            .filter(|e| !(queued && e.event_type == EventType::Suppressed))
            .find_map(|e| e.event_type.state())
            .unwrap_or(Self::Queued)
    }
}

/// Whether a bounce is for good (the address does not work) or for this
/// message only (too big, refused as spam, mailbox full).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BounceType {
    /// The address does not exist or will never accept mail.
    Hard,
    /// This message failed; the address may still work.
    Soft,
}

impl BounceType {
    /// The class of an RFC 3463 status code: `5.1.x` (addressing: bad
    /// mailbox, bad domain, …) and `5.2.1` (mailbox disabled) are hard;
    /// everything else (policy, content, size, full mailbox) is soft.
    pub fn of_status(status: &str) -> Self {
        let mut parts = status.split('.');
        let (class, subject, detail) = (parts.next(), parts.next(), parts.next());
        match (class, subject, detail) {
            (Some("5"), Some("1"), _) | (Some("5"), Some("2"), Some("1")) => Self::Hard,
            _ => Self::Soft,
        }
    }
}

/// One event. The common fields come first; the rest are present for the
/// types they concern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Sortable unique id (a ULID); the cursor of `GET /v1/events` and the
    /// `webhook-id` of its webhook POSTs.
    pub id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When, as RFC 3339 UTC with milliseconds.
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub time: i64,
    /// The message's id (its queue id, as in logs and `Received:`).
    pub message_id: String,
    /// The recipient this event is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// The recipient's domain, lower case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The envelope sender (empty for bounces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Where the message came from: `smtp`, `submission`, `api`, `forward`,
    /// `dsn`, `report`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The connecting client's IP address (inbound and submission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The local address a delivery attempt left from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_ip: Option<String>,
    /// `transactional` or `broadcast`, for mail sent through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Tags given when the message was sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Metadata given when the message was sent.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The remote server's reply (delivered, deferred, bounced), or the
    /// reply Tern gave (rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// RFC 3463 enhanced status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The MX host the attempt went to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mx_host: Option<String>,
    /// Its IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    /// The TLS version of the connection (`TLSv1.3`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<String>,
    /// Which attempt this was (1 for the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// When the next attempt is due (deferred).
    #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt: Option<i64>,
    /// Hard or soft (bounced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bounce_type: Option<BounceType>,
    /// What kind of failure (bounced, deferred): `bad_mailbox`,
    /// `inactive`, `mailbox_full`, `message_too_large`, `content`,
    /// `spam_block`, `reputation`, `rate_limited`, `dns`, `tls`,
    /// `authentication`, `policy` or `other`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The blocklist a refusal named (bounced, deferred).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocklist: Option<String>,
    /// How the event was learnt (bounced: `smtp` during delivery, `dsn`
    /// from a bounce that arrived later; complained: `arf`; unsubscribed:
    /// `one_click`, `link`, `mailto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// The link's URL (clicked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A machine, not a person, opened or clicked (Apple Mail Privacy
    /// Protection, a link scanner): left out of human rates; `reason` says
    /// which.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<bool>,
    /// The user agent of a feedback report or an unsubscribe request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Why, in a sentence (rejected, suppressed, expired).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Spam score (received, rejected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spam_score: Option<f64>,
    /// Authentication results (received, rejected): the
    /// `Authentication-Results` value Tern wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<String>,
    /// The folder a received message was filed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
}

/// Tags of an event counted for the overview's tag filter.
pub const MAX_COUNTED_TAGS: usize = 5;

impl Event {
    /// A new event of `event_type` about `message_id`, now, with a fresh id.
    pub fn new(event_type: EventType, message_id: &str) -> Self {
        // The time is the id's own, so filtering by time and paging by id
        // agree (two clock readings could straddle a millisecond).
        let id = crate::id::new_id();
        let time = crate::id::time_of(&id).unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        Self {
            id,
            event_type,
            time,
            message_id: message_id.to_string(),
            recipient: None,
            domain: None,
            sender: None,
            source: None,
            source_ip: None,
            sending_ip: None,
            stream: None,
            tags: Vec::new(),
            metadata: serde_json::Map::new(),
            reply: None,
            status: None,
            mx_host: None,
            remote_ip: None,
            tls: None,
            attempt: None,
            next_attempt: None,
            bounce_type: None,
            category: None,
            blocklist: None,
            via: None,
            url: None,
            machine: None,
            user_agent: None,
            reason: None,
            spam_score: None,
            authentication: None,
            folder: None,
        }
    }

    /// The same event about `recipient` (its domain taken from it).
    pub fn to(mut self, recipient: &str) -> Self {
        self.domain = recipient
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase());
        self.recipient = Some(recipient.to_string());
        self
    }

    /// Where the event counts in the hourly counters: (Unix hour, domain,
    /// detail). The domain is the sending domain for outbound events and
    /// the recipient's (ours) for inbound ones; the detail is the failure
    /// category (bounced, deferred), `human` or `machine` (opened,
    /// clicked), else empty.
    pub fn counter_key(&self) -> (i64, String, String) {
        let domain = match self.event_type {
            EventType::Received | EventType::Rejected => self.domain.clone().unwrap_or_default(),
            _ => self
                .sender
                .as_deref()
                .and_then(|s| s.rsplit_once('@'))
                .map(|(_, d)| d.to_string())
                .unwrap_or_default(),
        }
        .to_ascii_lowercase();
        let detail = match self.event_type {
            EventType::Bounced | EventType::Deferred => self.category.clone().unwrap_or_default(),
            EventType::Received if self.folder.as_deref() == Some("Junk") => "junk".to_string(),
            EventType::Opened | EventType::Clicked => if self.machine == Some(true) {
                "machine"
            } else {
                "human"
            }
            .to_string(),
            _ => String::new(),
        };
        (self.time.div_euclid(3_600_000), domain, detail)
    }

    /// The other ways its counter is kept besides the domain's total
    /// (`""`): `stream:NAME`, `ip:ADDRESS` (the sending address), and
    /// `tag:NAME` for its first [`MAX_COUNTED_TAGS`] tags — the overview's
    /// filters.
    pub fn counter_dims(&self) -> Vec<String> {
        let mut dims = Vec::with_capacity(2 + self.tags.len().min(MAX_COUNTED_TAGS));
        if let Some(s) = &self.stream {
            dims.push(format!("stream:{s}"));
        }
        if let Some(ip) = &self.sending_ip {
            dims.push(format!("ip:{ip}"));
        }
        for t in self.tags.iter().take(MAX_COUNTED_TAGS) {
            dims.push(format!("tag:{t}"));
        }
        dims
    }

    /// The event as stored and sent: its JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// An event read back from [`Event::to_json`].
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

mod rfc3339_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_time(&s).ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time"))
    }
}

mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match ms {
            Some(ms) => s.serialize_str(&super::format_time(*ms)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(s) => super::parse_time(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 time")),
            None => Ok(None),
        }
    }
}

/// Unix milliseconds as RFC 3339 UTC, e.g. `2026-12-03T22:40:00.123Z`.
pub fn format_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// An RFC 3339 time as Unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipient_that_bounced_stays_bounced_when_its_address_is_suppressed() {
        let e = |t| Event::new(t, "Q1").to("ann@example.net");
        use EventType::*;
        assert_eq!(
            RecipientState::of(&[e(Accepted), e(Delivered), e(Bounced), e(Suppressed)]),
            RecipientState::Bounced
        );
        assert_eq!(
            RecipientState::of(&[e(Suppressed)]),
            RecipientState::Suppressed
        );
        assert_eq!(
            RecipientState::of(&[e(Accepted), e(Opened)]),
            RecipientState::Queued
        );
        assert_eq!(RecipientState::of(&[]), RecipientState::Queued);
    }

    #[test]
    fn json_round_trip() {
        let mut e = Event::new(EventType::Deferred, "Q1").to("Ann@Example.NET");
        e.reply = Some("451 4.7.1 try later".into());
        e.next_attempt = Some(1_800_000_000_000);
        e.tags = vec!["receipt".into()];
        let json = e.to_json();
        assert!(json.contains(r#""type":"deferred""#), "{json}");
        assert!(json.contains(r#""domain":"example.net""#), "{json}");
        assert!(!json.contains("bounce_type"), "{json}");
        assert_eq!(Event::from_json(&json).unwrap(), e);
    }

    #[test]
    fn bounce_classes() {
        assert_eq!(BounceType::of_status("5.1.1"), BounceType::Hard);
        assert_eq!(BounceType::of_status("5.2.1"), BounceType::Hard);
        assert_eq!(BounceType::of_status("5.2.2"), BounceType::Soft);
        assert_eq!(BounceType::of_status("5.7.1"), BounceType::Soft);
        assert_eq!(BounceType::of_status("4.4.7"), BounceType::Soft);
    }

    #[test]
    fn type_names() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{t}\""));
        }
    }
}
