//! What comes back after a message leaves: the replies remote servers give
//! (classified into categories a sender can act on), bounces that arrive
//! hours later (DSNs and the non-standard kind, matched through a signed
//! per-recipient return path), complaints from feedback loops (ARF) and
//! unsubscribes (RFC 8058 one-click and mailto).
//!
//! A crate of its own because three rooms read it: the queue classifies
//! the replies it gets and writes the return paths, the SMTP server
//! consumes bounces, complaints and unsubscribe mails arriving over MX, and
//! the HTTP API serves the unsubscribe links. Everything here is a pure
//! function of its input (no I/O): parsers and decisions, tested without
//! sockets.

pub mod bounce;
pub mod classify;
pub mod complaint;
pub mod token;
pub mod tracking;
pub mod unsubscribe;

pub use classify::{Category, Classification, Classifier, Rule};
pub use token::{Keys, TokenError};

/// How feedback is handled, shared by the queue, the SMTP server and the
/// HTTP API (built from `[feedback]`).
#[derive(Debug)]
pub struct Settings {
    /// The token keys.
    pub keys: Keys,
    /// Per-recipient return paths for mail from our domains.
    pub verp: bool,
    /// How many days a return path takes bounces.
    pub bounce_window_days: u64,
    /// Local parts taking ARF reports, lower case.
    pub complaint_addresses: Vec<String>,
    /// Base of unsubscribe links (`https://mail.example.com`).
    pub public_url: String,
    /// The reply classifier.
    pub classifier: Classifier,
    /// Sending domains whose API mail is tracked, lower case.
    pub track_domains: Vec<String>,
    /// Streams whose API mail is tracked.
    pub track_streams: Vec<String>,
    /// The tracking host label (`track` → `https://track.example.com`);
    /// empty: `public_url`.
    pub tracking_host: String,
}

/// What an address at one of our domains is for feedback, by its local
/// part alone (tokens are verified later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Address {
    /// A return path (`bounce+…`).
    ReturnPath,
    /// An unsubscribe address (`unsubscribe+…`).
    Unsubscribe,
    /// A complaint (feedback loop) address.
    Complaints,
}

impl Settings {
    /// Settings with `secret` and the defaults of `[feedback]`.
    pub fn new(secret: &[u8]) -> Self {
        Self {
            keys: Keys::new(secret),
            verp: true,
            bounce_window_days: 30,
            complaint_addresses: vec!["fbl".into(), "abuse".into()],
            public_url: String::new(),
            classifier: Classifier::default(),
            track_domains: Vec::new(),
            track_streams: Vec::new(),
            tracking_host: String::new(),
        }
    }

    /// Where tracking links of mail from `domain` point.
    pub fn tracking_base(&self, domain: &str) -> String {
        if self.tracking_host.is_empty() {
            self.public_url.clone()
        } else {
            format!("https://{}.{domain}", self.tracking_host)
        }
    }

    /// Whether mail from `domain` in `stream` is tracked by default.
    pub fn tracks(&self, domain: &str, stream: &str) -> bool {
        self.track_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
            || self.track_streams.iter().any(|s| s == stream)
    }

    /// What `local` (a local part) is, if it is one of feedback's.
    pub fn address_kind(&self, local: &str) -> Option<Address> {
        let lower = local.to_ascii_lowercase();
        if lower.starts_with(token::BOUNCE_PREFIX) {
            Some(Address::ReturnPath)
        } else if lower.starts_with(token::UNSUBSCRIBE_PREFIX) {
            Some(Address::Unsubscribe)
        } else if self.complaint_addresses.contains(&lower) {
            Some(Address::Complaints)
        } else {
            None
        }
    }
}
