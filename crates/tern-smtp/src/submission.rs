//! Message submission (RFC 6409): what port 587/465 adds to the SMTP
//! session — SASL authentication (RFC 4954; PLAIN, RFC 4616; LOGIN), the
//! rule that a user sends only as itself, per-account rate limits, and the
//! fixes an MSA makes to a message (RFC 6409 §8: `Date`, `Message-ID`)
//! before DKIM signing.

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
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
    limits: SendLimits,
}

/// Each account's hourly and daily message allowance.
pub struct SendLimits {
    hourly: Option<DefaultKeyedRateLimiter<AccountId>>,
    daily: Option<DefaultKeyedRateLimiter<AccountId>>,
}

impl SendLimits {
    /// The allowances `[submission]` sets.
    pub fn new(config: &SubmissionConfig) -> Self {
        let limiter = |n: u32, per: Duration| {
            NonZeroU32::new(n).map(|n| {
                let quota = Quota::with_period(per / n.get())
                    .unwrap_or_else(|| Quota::per_second(n))
                    .allow_burst(n);
                RateLimiter::keyed(quota)
            })
        };
        Self {
            hourly: limiter(config.max_messages_per_hour, Duration::from_secs(3600)),
            daily: limiter(config.max_messages_per_day, Duration::from_secs(86400)),
        }
    }

    /// Takes one message from the account's allowances; `Err` names the
    /// limit that is used up.
    pub fn take(&self, account: AccountId) -> Result<(), &'static str> {
        if let Some(h) = &self.hourly
            && h.check_key(&account).is_err()
        {
            return Err("hourly");
        }
        if let Some(d) = &self.daily
            && d.check_key(&account).is_err()
        {
            return Err("daily");
        }
        Ok(())
    }
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
            limits: SendLimits::new(&config),
            config,
            auth,
            guard,
            intake,
        }
    }

    /// Takes one message from the account's hourly and daily allowance;
    /// `Err` names the limit that is used up.
    pub fn take_message(&self, account: AccountId) -> Result<(), &'static str> {
        self.limits.take(account)
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

    #[test]
    fn limits() {
        let cfg = SubmissionConfig {
            max_messages_per_hour: 2,
            ..Default::default()
        };
        let s = SendLimits::new(&cfg);
        assert!(s.take(1).is_ok());
        assert!(s.take(1).is_ok());
        assert_eq!(s.take(1), Err("hourly"));
        assert!(s.take(2).is_ok(), "per account");
    }
}
