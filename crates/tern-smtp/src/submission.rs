//! Message submission (RFC 6409): what port 587/465 adds to the SMTP
//! session — SASL authentication (RFC 4954; PLAIN, RFC 4616; LOGIN), the
//! rule that a user sends only as itself, per-account rate limits, and the
//! fixes an MSA makes to a message (RFC 6409 §8: `Date`, `Message-ID`)
//! before DKIM signing.

use std::sync::Arc;
use tern_core::authguard::AuthGuard;
use tern_core::config::{AuthConfig, SubmissionConfig};
use tern_queue::intake::Intake;
use tern_store::{AccountId, Recipient, SharedStore};

/// Settings and shared state of the submission listeners.
pub struct Submission {
    /// `[submission]` settings.
    pub config: SubmissionConfig,
    /// Password policy (`[auth]`).
    pub auth: AuthConfig,
    /// Failed-login throttling, shared with IMAP and POP3.
    pub guard: Arc<AuthGuard>,
    /// The queue's intake: submitted mail is signed, checked against the
    /// suppression lists and queued there.
    pub intake: Arc<Intake>,
}

impl Submission {
    /// Submission with the given settings.
    pub fn new(
        config: SubmissionConfig,
        auth: AuthConfig,
        guard: Arc<AuthGuard>,
        intake: Arc<Intake>,
    ) -> Self {
        Self {
            config,
            auth,
            guard,
            intake,
        }
    }

    /// Takes one message from the account's hourly and daily allowances,
    /// counted across every node of the store; `Ok(Err(…))` names the
    /// limit that is used up.
    pub async fn take_message(
        &self,
        store: &SharedStore,
        account: AccountId,
    ) -> Result<Result<(), &'static str>, tern_store::StoreError> {
        let now = tern_core::now_unix();
        let limits = [
            ("hourly", self.config.max_messages_per_hour, 3600),
            ("daily", self.config.max_messages_per_day, 86_400),
        ];
        for (name, limit, period) in limits {
            if limit == 0 {
                continue;
            }
            let key = format!("submission:{name}:{account}");
            if !store.take_allowance(&key, limit, period, now).await? {
                return Ok(Err(name));
            }
        }
        Ok(Ok(()))
    }
}

/// Whether `account` may use `address` as a sender: its own address or one
/// of its aliases (catch-alls do not count).
pub async fn may_send_as(
    store: &SharedStore,
    account: AccountId,
    address: &str,
) -> Result<bool, tern_store::StoreError> {
    let Ok(parsed) = tern_core::Address::parse(address) else {
        return Ok(false);
    };
    Ok(matches!(
        store.resolve(&parsed, false).await?,
        Recipient::Local(l) if l.account == account
    ))
}

/// What the header block says, for the submission checks.
pub struct HeaderFacts {
    /// Addresses in `From:` (and `Sender:` when present).
    pub senders: Vec<String>,
    /// The domain to sign for: that of the first `From:` address.
    pub from_domain: Option<String>,
    /// Whether `Date:` is present.
    pub has_date: bool,
    /// Whether `Message-ID:` is present.
    pub has_message_id: bool,
}

/// Reads the header block of a submitted message.
pub fn header_facts(message: &[u8]) -> HeaderFacts {
    // Parse only what is looked at: the address fields; Date and
    // Message-ID are only checked for presence (raw).
    static PARSER: std::sync::LazyLock<mail_parser::MessageParser> =
        std::sync::LazyLock::new(|| {
            use mail_parser::HeaderName;
            mail_parser::MessageParser::default()
                .default_header_ignore()
                .header_address(HeaderName::From)
                .header_address(HeaderName::Sender)
                .header_raw(HeaderName::Date)
                .header_raw(HeaderName::MessageId)
        });
    let parsed = PARSER.parse_headers(message);
    let mut senders = Vec::new();
    let mut has_date = false;
    let mut has_message_id = false;
    if let Some(m) = &parsed {
        for h in m.headers() {
            match &h.name {
                mail_parser::HeaderName::From | mail_parser::HeaderName::Sender => {
                    if let Some(list) = h.value.as_address() {
                        senders.extend(
                            list.iter()
                                .filter_map(|a| a.address.as_deref())
                                .map(str::to_string),
                        );
                    }
                }
                mail_parser::HeaderName::Date => has_date = true,
                mail_parser::HeaderName::MessageId => has_message_id = true,
                _ => {}
            }
        }
    }
    let from_domain = parsed
        .as_ref()
        .and_then(|m| m.from())
        .and_then(|f| f.first())
        .and_then(|a| a.address.as_deref())
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase());
    HeaderFacts {
        senders,
        from_domain,
        has_date,
        has_message_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts() {
        let f = header_facts(
            b"From: Alice <alice@Example.com>\r\nSender: bob@example.com\r\nSubject: x\r\n\r\nbody\r\n",
        );
        assert_eq!(f.senders, vec!["alice@Example.com", "bob@example.com"]);
        assert_eq!(f.from_domain.as_deref(), Some("example.com"));
        assert!(!f.has_date && !f.has_message_id);
    }
}
