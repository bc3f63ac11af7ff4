//! What every backend does to a message before its write: hash it, analyse
//! its MIME structure, index its header's field names, decide each
//! account's folder, and encode its events and logs. It runs in the
//! caller's task, so the write itself (a writer thread, a database
//! transaction) only writes.

use crate::platform::MessageLog;
use crate::{AccountId, Appended, NewMessage, Result, StoreError, meta};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tern_events::Event;

/// An event with its JSON.
pub(crate) struct EncodedEvent {
    pub event: Event,
    pub json: String,
}

/// Encodes events for a backend's insert.
pub(crate) fn encode_events(events: Vec<Event>) -> Vec<EncodedEvent> {
    events
        .into_iter()
        .map(|event| EncodedEvent {
            json: event.to_json(),
            event,
        })
        .collect()
}

/// An hourly counter's key: hour, domain (`*` for all), dimension (`''`
/// for the total, `stream:…`, `tag:…`), event type, detail.
pub(crate) type CounterKey = (i64, String, String, &'static str, String);

/// The counters of every domain together.
pub(crate) const ALL_DOMAINS: &str = "*";

/// Adds `event` to the hourly counters it counts in: its (sending or our)
/// domain's and all domains', each as a total and per stream and tag.
/// Sorted keys: writers lock counter rows in one order.
pub(crate) fn count_event(counts: &mut std::collections::BTreeMap<CounterKey, i64>, e: &Event) {
    let (hour, domain, detail) = e.counter_key();
    let t = e.event_type.as_str();
    for dim in std::iter::once(String::new()).chain(e.counter_dims()) {
        for d in [domain.as_str(), ALL_DOMAINS] {
            *counts
                .entry((hour, d.to_string(), dim.clone(), t, detail.clone()))
                .or_default() += 1;
        }
    }
}

/// A message log with its JSON.
pub(crate) struct EncodedLog {
    pub message_id: String,
    pub time: i64,
    pub json: String,
}

/// Encodes message logs for a backend's insert.
pub(crate) fn encode_logs(logs: &[MessageLog]) -> Result<Vec<EncodedLog>> {
    logs.iter()
        .map(|l| {
            Ok(EncodedLog {
                message_id: l.message_id.clone(),
                time: l.time,
                json: serde_json::to_string(l).map_err(|e| StoreError::Invalid(e.to_string()))?,
            })
        })
        .collect()
}

/// The content key of a body: its SHA-256, hex ([`crate::Blobs`] keys).
pub(crate) fn body_hash(raw: &[u8]) -> String {
    hex::encode(Sha256::digest(raw))
}

/// A body analysed for IMAP and POP3: its metadata (JSON), the length of
/// its header block and the header's field names.
pub(crate) struct Analysed {
    pub meta: String,
    pub header_len: usize,
    pub field_names: String,
}

impl Analysed {
    pub(crate) fn of(raw: &[u8]) -> Result<Self> {
        let analysed = meta::analyze(raw);
        let header_len = (analysed.body_offset as usize).min(raw.len());
        Ok(Self {
            meta: serde_json::to_string(&analysed)
                .map_err(|e| StoreError::Invalid(e.to_string()))?,
            header_len,
            field_names: meta::field_names(&raw[..header_len]),
        })
    }
}

/// A message ready to store.
pub(crate) struct Prepared {
    pub message: NewMessage,
    pub hash: String,
    /// Metadata, header length and field names; `None` for a body that
    /// only waits in the queue (never read by IMAP or POP3).
    pub analysed: Option<Analysed>,
    /// Each account and the folder role it gets the message in (`INBOX`,
    /// `Junk`), each account once.
    pub recipients: Vec<(AccountId, &'static str)>,
    /// Accounts whose mailboxes change.
    pub notify: Vec<AccountId>,
    pub events: Vec<EncodedEvent>,
    pub logs: Vec<EncodedLog>,
}

impl Prepared {
    pub(crate) fn new(mut message: NewMessage) -> Result<Self> {
        let events = encode_events(std::mem::take(&mut message.events));
        let logs = encode_logs(&std::mem::take(&mut message.logs))?;
        let hash = body_hash(&message.raw);
        let queue_only =
            message.recipients.is_empty() && message.junk.is_empty() && message.sent_copy.is_none();
        let analysed = if queue_only {
            None
        } else {
            Some(Analysed::of(&message.raw)?)
        };
        // Each account once: in `mailbox`, or in Junk if it is only there.
        let mut recipients: Vec<(AccountId, &'static str)> = message
            .recipients
            .iter()
            .map(|&a| (a, message.mailbox))
            .chain(message.junk.iter().map(|&a| (a, "Junk")))
            .collect();
        let mut seen = std::collections::HashSet::new();
        recipients.retain(|(a, _)| seen.insert(*a));
        let mut notify: Vec<AccountId> = recipients.iter().map(|(a, _)| *a).collect();
        notify.extend(message.sent_copy);
        Ok(Self {
            message,
            hash,
            analysed,
            recipients,
            notify,
            events,
            logs,
        })
    }

    /// The body and its key, for the blob store.
    pub(crate) fn body(&self) -> (String, Arc<Vec<u8>>) {
        (self.hash.clone(), self.message.raw.clone())
    }

    /// When its queued recipients are first tried and until when they are
    /// leased, and to whom: leased to `node` until `lease_until` when the
    /// message asks (the delivery engine takes them at once), else free
    /// from its arrival or `not_before`.
    pub(crate) fn queue_schedule<'n>(&self, node: &'n str) -> (i64, i64, &'n str) {
        let m = &self.message;
        if m.lease_until > 0 {
            (m.lease_until, m.lease_until, node)
        } else {
            (m.received_at.max(m.not_before), 0, "")
        }
    }

    /// The queued recipient `rcpt` as stored: row `id` of queued message
    /// `message_id`, body `blob`.
    pub(crate) fn queued(
        &self,
        rcpt: &crate::OutboundRcpt,
        id: i64,
        message_id: i64,
        blob: crate::BlobId,
        node: &str,
    ) -> crate::QueuedRcpt {
        let m = &self.message;
        let (next_attempt, leased_until, _) = self.queue_schedule(node);
        crate::QueuedRcpt {
            id,
            message_id,
            queue_id: m.queue_id.clone(),
            blob,
            mail_from: m.mail_from.clone(),
            message_params: m.envelope_params.clone(),
            size: m.raw.len() as u64,
            address: rcpt.address.clone(),
            domain: rcpt.domain.clone(),
            params: rcpt.params.clone(),
            attempts: 0,
            created_at: m.received_at,
            expires_at: m.expires_at,
            next_attempt,
            last_error: None,
            delay_noticed: false,
            leased_until,
        }
    }

    /// The MIME metadata as stored (`{}` for a queue-only body).
    pub(crate) fn meta(&self) -> &str {
        self.analysed.as_ref().map_or("{}", |a| &a.meta)
    }
}

/// A message to APPEND, ready to store.
pub(crate) struct PreparedAppend {
    pub raw: Arc<Vec<u8>>,
    pub hash: String,
    pub analysed: Analysed,
    /// Flags as stored ([`crate::folder_rules::join_flags`]).
    pub flags: String,
    pub internaldate: i64,
}

impl PreparedAppend {
    pub(crate) fn new(m: Appended) -> Result<Self> {
        Ok(Self {
            hash: body_hash(&m.raw),
            analysed: Analysed::of(&m.raw)?,
            flags: crate::folder_rules::join_flags(&m.flags),
            internaldate: m.internaldate,
            raw: Arc::new(m.raw),
        })
    }

    /// The header block.
    pub(crate) fn header(&self) -> &[u8] {
        &self.raw[..self.analysed.header_len]
    }
}
