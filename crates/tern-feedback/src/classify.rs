//! Failure replies, classified: every reply a remote server gives to a
//! message it did not take (at once, or later in a DSN) gets a category a
//! sender can act on, whether it is hard (the address will never work) or
//! soft, and the blocklist it names.
//!
//! The texts large providers actually send come first (Gmail's 4.7.28 and
//! 5.7.26, Microsoft's S3150 and 5.7.606–5.7.708, Yahoo's TSS04 and TS0x,
//! blocklist listings), because providers reuse generic status codes for
//! specific reasons (Microsoft's `5.4.1` for an unknown recipient; Yahoo's
//! `5.7.9` for policy). When no text rule matches, the RFC 3463 status code
//! decides (with the IANA registry's later additions: X.7.25–X.7.30 of
//! RFC 7372/8098/8617/8689), then the basic reply code. Operators add rules
//! of their own in `[feedback] rules`; theirs are tried before the built-in
//! ones.

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What kind of failure a reply reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The mailbox does not exist (or the address is malformed).
    BadMailbox,
    /// The mailbox exists but is disabled, closed or abandoned.
    Inactive,
    /// The mailbox is over its quota.
    MailboxFull,
    /// The message is larger than the receiver takes.
    MessageTooLarge,
    /// The content was refused (virus, attachment type, a URL).
    Content,
    /// Refused as spam, or because the sending IP or domain is on a blocklist.
    SpamBlock,
    /// Refused or slowed because of the sender's reputation (complaints,
    /// volume).
    Reputation,
    /// Too many messages or connections: try more slowly.
    RateLimited,
    /// A DNS problem: the recipient's domain does not exist, or the
    /// sender's reverse DNS or domain does not resolve.
    Dns,
    /// TLS was required and failed, or a certificate was refused.
    Tls,
    /// SPF, DKIM or DMARC failed at the receiver.
    Authentication,
    /// The receiver's local policy (relaying denied, greylisting, rules).
    Policy,
    /// Anything else.
    Other,
}

impl Category {
    /// Every category.
    pub const ALL: [Category; 13] = [
        Self::BadMailbox,
        Self::Inactive,
        Self::MailboxFull,
        Self::MessageTooLarge,
        Self::Content,
        Self::SpamBlock,
        Self::Reputation,
        Self::RateLimited,
        Self::Dns,
        Self::Tls,
        Self::Authentication,
        Self::Policy,
        Self::Other,
    ];

    /// The name in events, config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadMailbox => "bad_mailbox",
            Self::Inactive => "inactive",
            Self::MailboxFull => "mailbox_full",
            Self::MessageTooLarge => "message_too_large",
            Self::Content => "content",
            Self::SpamBlock => "spam_block",
            Self::Reputation => "reputation",
            Self::RateLimited => "rate_limited",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Authentication => "authentication",
            Self::Policy => "policy",
            Self::Other => "other",
        }
    }

    /// The category named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether a permanent failure of this kind means the address will
    /// never work: a mailbox that does not exist or is closed. Everything
    /// else is about this message, this sender or this moment.
    fn hard_by_default(self) -> bool {
        matches!(self, Self::BadMailbox | Self::Inactive)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a reply means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// Its category.
    pub category: Category,
    /// A permanent failure for the address (suppress it), not just for
    /// this message. Never true for a temporary (4xx) reply.
    pub hard: bool,
    /// The blocklist the reply names, if any.
    pub blocklist: Option<String>,
}

/// A rule: replies matching `pattern` (a case-insensitive regular
/// expression over the whole reply, code and status included) have this
/// category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The expression.
    pub pattern: String,
    /// The category.
    pub category: Category,
    /// Hard or soft; when absent, what the category says (hard for
    /// `bad_mailbox` and `inactive`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard: Option<bool>,
    /// The blocklist such replies name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocklist: Option<String>,
}

/// A rule that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("feedback rule {pattern:?}: {error}")]
pub struct RuleError {
    /// The rule's pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub error: regex::Error,
}

struct Compiled {
    re: Regex,
    category: Category,
    hard: Option<bool>,
    blocklist: Option<&'static str>,
    own_blocklist: Option<String>,
}

/// The rule table: the operator's rules, then Tern's.
pub struct Classifier {
    rules: Vec<Compiled>,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Classifier({} rules)", self.rules.len())
    }
}

impl Default for Classifier {
    fn default() -> Self {
        Self::new(&[]).expect("the built-in rules compile")
    }
}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
}

impl Classifier {
    /// The built-in table with `extra` rules tried first.
    pub fn new(extra: &[Rule]) -> Result<Self, RuleError> {
        let mut rules = Vec::with_capacity(extra.len() + BUILT_IN.len());
        for r in extra {
            rules.push(Compiled {
                re: compile(&r.pattern).map_err(|error| RuleError {
                    pattern: r.pattern.clone(),
                    error,
                })?,
                category: r.category,
                hard: r.hard,
                blocklist: None,
                own_blocklist: r.blocklist.clone(),
            });
        }
        for (pattern, category, hard, blocklist) in BUILT_IN {
            rules.push(Compiled {
                re: compile(pattern).map_err(|error| RuleError {
                    pattern: pattern.to_string(),
                    error,
                })?,
                category: *category,
                hard: *hard,
                blocklist: *blocklist,
                own_blocklist: None,
            });
        }
        Ok(Self { rules })
    }

    /// Classifies a reply: `code` the basic reply code (550), `status` its
    /// RFC 3463 enhanced code when there is one, `text` the reply (the
    /// whole of it may be given, code and status included).
    pub fn classify(&self, code: u16, status: Option<&str>, text: &str) -> Classification {
        let permanent = code >= 500
            || (code == 0 && status.is_some_and(|s| s.starts_with('5')))
            || (code < 400 && status.is_some_and(|s| s.starts_with('5')));
        let finish =
            |category: Category, hard: Option<bool>, blocklist: Option<String>| Classification {
                category,
                hard: permanent && hard.unwrap_or_else(|| category.hard_by_default()),
                blocklist,
            };
        // Long texts (a DSN's whole diagnostic) are cut: the reason is
        // near the start, and the expressions stay linear anyway.
        let text = match text.char_indices().nth(2048) {
            Some((i, _)) => &text[..i],
            None => text,
        };
        for r in &self.rules {
            if r.re.is_match(text) {
                let blocklist = r
                    .own_blocklist
                    .clone()
                    .or_else(|| r.blocklist.map(str::to_string));
                return finish(r.category, r.hard, blocklist);
            }
        }
        let status = status
            .map(str::to_string)
            .or_else(|| find_status(text).map(str::to_string));
        if let Some(s) = status.as_deref()
            && let Some((category, hard)) = by_status(s)
        {
            return finish(category, hard, None);
        }
        finish(by_code(code), None, None)
    }
}

/// The first RFC 3463 status code (`5.1.1`) in a text.
pub fn find_status(text: &str) -> Option<&str> {
    static RE: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b").expect("status expression")
    });
    RE.find(text).map(|m| m.as_str())
}

/// RFC 3463 §3 classes and subjects, with the IANA "SMTP Enhanced Status
/// Codes" registry's detail codes where they decide the category.
fn by_status(status: &str) -> Option<(Category, Option<bool>)> {
    let mut parts = status.split('.');
    let class = parts.next()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    if !matches!(class, "4" | "5") {
        return None;
    }
    use Category::*;
    Some(match (subject, detail) {
        // X.1: addressing.
        (1, 1) | (1, 3) => (BadMailbox, None),
        (1, 2) => (Dns, Some(true)), // bad destination system: no such domain
        (1, 4) => (BadMailbox, Some(false)), // ambiguous
        (1, 6) => (Inactive, None),  // mailbox has moved
        (1, 10) => (Dns, Some(true)), // RFC 7505: null MX
        (1, 7) | (1, 8) => (Dns, None), // the sender's address or domain
        (1, _) => (BadMailbox, Some(false)),
        // X.2: mailbox.
        (2, 1) => (Inactive, None),
        (2, 2) => (MailboxFull, None),
        (2, 3) => (MessageTooLarge, None),
        (2, _) => (Other, None),
        // X.3: mail system.
        (3, 4) => (MessageTooLarge, None),
        (3, _) => (Other, None),
        // X.4: network and routing.
        (4, 3) | (4, 4) => (Dns, None),
        (4, 5) => (RateLimited, None),
        (4, _) => (Other, None),
        // X.5: protocol.
        (5, 3) => (RateLimited, None), // too many recipients
        (5, _) => (Other, None),
        // X.6: content.
        (6, _) => (Content, None),
        // X.7: security and policy.
        (7, 1) | (7, 0) | (7, 2) => (Policy, None),
        (7, 5) | (7, 10) | (7, 11) | (7, 30) => (Tls, None),
        (7, 7) => (Content, None),
        (7, 13) | (7, 17) | (7, 18) => (Inactive, None),
        (7, 20..=24) | (7, 26) | (7, 29) => (Authentication, None),
        (7, 25) | (7, 27) => (Dns, None),
        (7, 28) => (RateLimited, None), // mail flood detected
        (7, _) => (Policy, None),
        _ => return None,
    })
}

fn by_code(code: u16) -> Category {
    match code {
        452 | 552 => Category::MailboxFull,
        421 | 450 | 451 => Category::Other,
        553 => Category::BadMailbox,
        _ => Category::Other,
    }
}

type BuiltIn = (&'static str, Category, Option<bool>, Option<&'static str>);

/// Tern's rules, most specific first. Each was written from replies the
/// providers publish (the sources are in `tests/replies.txt`, one per test
/// reply).
const BUILT_IN: &[BuiltIn] = &[
    // Addresses whose domain cannot take mail: before the mailbox rules,
    // which the same replies would match.
    (r"null mx", Category::Dns, Some(true), None),
    (
        r"recipient address rejected: domain not found|5\.4\.310|dns domain \S+ does not exist",
        Category::Dns,
        Some(true),
        None,
    ),
    (
        r"sender address rejected: domain not found|sender verify failed",
        Category::Dns,
        Some(false),
        None,
    ),
    (r"greylist|graylist", Category::Policy, None, None),
    // Blocklists named in the reply.
    (r"spamhaus", Category::SpamBlock, None, Some("Spamhaus")),
    (r"barracuda", Category::SpamBlock, None, Some("Barracuda")),
    (r"spamcop", Category::SpamBlock, None, Some("SpamCop")),
    (r"\bsorbs\b", Category::SpamBlock, None, Some("SORBS")),
    (r"uceprotect", Category::SpamBlock, None, Some("UCEPROTECT")),
    (
        r"\bpsbl\b|surriel\.com",
        Category::SpamBlock,
        None,
        Some("PSBL"),
    ),
    (r"mailspike", Category::SpamBlock, None, Some("Mailspike")),
    (
        r"spamrats|\brats-",
        Category::SpamBlock,
        None,
        Some("SpamRATS"),
    ),
    (r"abusix", Category::SpamBlock, None, Some("Abusix")),
    (r"cloudmark", Category::SpamBlock, None, Some("Cloudmark")),
    (r"\bsurbl\b", Category::SpamBlock, None, Some("SURBL")),
    (r"\buribl\b", Category::SpamBlock, None, Some("URIBL")),
    (
        r"invaluement",
        Category::SpamBlock,
        None,
        Some("invaluement"),
    ),
    (
        r"\bS3150\b|\bS3140\b|\bS3115\b",
        Category::SpamBlock,
        None,
        Some("Microsoft"),
    ),
    (
        r"5\.7\.606|5\.7\.511|banned sending ip",
        Category::SpamBlock,
        None,
        Some("Microsoft"),
    ),
    (
        r"proofpoint|\bpdr\b|ppe hygiene",
        Category::Reputation,
        None,
        Some("Proofpoint"),
    ),
    // Microsoft (Exchange Online, Outlook.com): reused status codes.
    (
        r"5\.4\.1 .*(recipient address rejected|access denied)",
        Category::BadMailbox,
        None,
        None,
    ),
    (
        r"5\.1\.10\b|recipient not found by smtp address lookup",
        Category::BadMailbox,
        None,
        None,
    ),
    (
        r"5\.7\.70[0-9]|tenant has exceeded threshold|not accepted from this ip",
        Category::Reputation,
        None,
        None,
    ),
    (
        r"5\.7\.750|unregistered domain",
        Category::Policy,
        None,
        None,
    ),
    (
        r"4\.7\.65[01]|temporarily rate limited due to ip reputation",
        Category::Reputation,
        None,
        None,
    ),
    (
        r"5\.7\.509|5\.7\.515|doesn't meet the required authentication level|does not pass dmarc",
        Category::Authentication,
        None,
        None,
    ),
    (
        r"5\.7\.23\b|5\.7\.57\b",
        Category::Authentication,
        None,
        None,
    ),
    (
        r"4\.7\.500|server busy\. please try again later from",
        Category::RateLimited,
        None,
        None,
    ),
    (
        r"5\.7\.1 .*\b(delivery not authorized|not authorized to send)|5\.7\.1[23][0-9]|RESOLVER\.RST\.(NotAuthorized|SenderNotAuthenticated)",
        Category::Policy,
        None,
        None,
    ),
    // Yahoo and AOL.
    (
        r"\[TSS0[49]\]|\[TS0[1-3]\]|user complaints|excessive (user )?complaints",
        Category::Reputation,
        None,
        None,
    ),
    (
        r"\[BL21\]|\[BL22\]|\[BL23\]",
        Category::SpamBlock,
        None,
        None,
    ),
    (
        r"this user doesn'?t have an? \S+ account",
        Category::BadMailbox,
        None,
        None,
    ),
    (
        r"unresolvable rfc\.?5321 from domain",
        Category::Dns,
        None,
        None,
    ),
    (
        r"message not accepted for policy reasons",
        Category::Policy,
        None,
        None,
    ),
    (
        r"max message per connection|too many (messages|connections|concurrent|recipients from)",
        Category::RateLimited,
        None,
        None,
    ),
    // Gmail.
    (
        r"4\.7\.28|unusual rate of unsolicited mail|very low reputation|low reputation|bad reputation|poor reputation|reputation of the sending",
        Category::Reputation,
        None,
        None,
    ),
    (
        r"likely (unsolicited|suspicious)|unsolicited (mail|bulk)|\bspam\b|junk mail|bulk mail",
        Category::SpamBlock,
        None,
        None,
    ),
    (
        r"5\.7\.26|unauthenticated|requires all senders to authenticate|dmarc policy|\bdmarc\b|\bdkim\b|\bspf\b|sender policy framework|authentication (failed|check|results|required)|not authenticated",
        Category::Authentication,
        None,
        None,
    ),
    (
        r"5\.7\.25|ptr record|reverse (dns|hostname|lookup)|rdns|cannot find your hostname|client host rejected: cannot find",
        Category::Dns,
        None,
        None,
    ),
    (
        r"tls (is )?required|requires? (tls|starttls|encryption)|starttls|certificate|\btls\b",
        Category::Tls,
        None,
        None,
    ),
    (
        r"receiving mail (too quickly|at a rate)|rate limit|ratelimit|rate-limit|throttl|sending (rate|limit)|too many|slow down|try again later|temporarily deferred|exceeded the rate|daily (sending )?(quota|limit)|(relay|sending|send|message) limit exceeded",
        Category::RateLimited,
        None,
        None,
    ),
    (
        r"virus|malware|infected|illegal attachment|attachment|security issue|prohibited (content|file)|content (rejected|filter|policy)|blocked content|phish|(blocked|malicious|suspicious|prohibited|blacklisted|blocklisted) (url|link|domain in)",
        Category::Content,
        None,
        None,
    ),
    // Mailboxes: not there, closed, full.
    (
        r"(account|mailbox|user|address)\b.{0,40}\b(disabled|inactive|deactivated|suspended|expired|closed|locked|blocked by the administrator|no longer (active|available|in use|exists))|(disabled|inactive|deactivated|suspended) (account|mailbox|user)",
        Category::Inactive,
        None,
        None,
    ),
    (
        r"over ?quota|quota (exceeded|full)|(mailbox|inbox|storage|mail ?box|disk) (is |space )?(full|exceeded)|insufficient (system )?storage|out of storage|exceeded (its|their|the)? ?storage|full mailbox|mailbox size limit",
        Category::MailboxFull,
        None,
        None,
    ),
    (
        r"(message|mail|email) (is |was )?too (big|large)|size (limit|exceeds|exceeded)|exceeds? .{0,30}size|message length exceeds|message size",
        Category::MessageTooLarge,
        None,
        None,
    ),
    (
        r"user unknown|unknown (user|recipient|mailbox|local part|address)|no such (user|mailbox|recipient|address|person|account)|(mailbox|account|address|user|recipient) (does not|doesn'?t) exist|(mailbox|recipient|user|address) (not found|unknown|unavailable|invalid)|invalid (recipient|mailbox|address|user)|not a valid (mailbox|recipient|address|user)|mailbox name not allowed|recipient address rejected|address rejected|undeliverable address|unrouteable address|user not found|no mailbox|not our customer|mailbox not found|doesn'?t have a|does not have an? \S+ account|bad destination mailbox|no longer valid",
        Category::BadMailbox,
        None,
        None,
    ),
    (
        r"host (or domain name )?not found|domain (not found|does not exist)|nxdomain|no mx|name service error|dns (error|failure|problem|lookup)|unable to resolve|unroutable",
        Category::Dns,
        None,
        None,
    ),
    (
        r"relay(ing)? (access )?(denied|not permitted)|not permitted|policy|policies|prohibited|prohibition|not allowed|access denied|envelope blocked|rejected (due to|by)",
        Category::Policy,
        None,
        None,
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_decide_when_no_text_does() {
        let c = Classifier::default();
        assert_eq!(
            c.classify(550, Some("5.1.1"), "nope").category,
            Category::BadMailbox
        );
        assert!(c.classify(550, Some("5.1.1"), "nope").hard);
        assert_eq!(
            c.classify(552, Some("5.2.2"), "nope").category,
            Category::MailboxFull
        );
        assert!(!c.classify(552, Some("5.2.2"), "nope").hard);
        // A temporary reply is never hard.
        let t = c.classify(450, Some("4.1.1"), "nope");
        assert_eq!((t.category, t.hard), (Category::BadMailbox, false));
        assert_eq!(
            c.classify(554, None, "whatever happened").category,
            Category::Other
        );
        assert_eq!(
            c.classify(550, None, "5.7.26 nope").category,
            Category::Authentication
        );
    }

    #[test]
    fn operator_rules_come_first() {
        let c = Classifier::new(&[Rule {
            pattern: "acme filter".into(),
            category: Category::Content,
            hard: None,
            blocklist: Some("ACME".into()),
        }])
        .unwrap();
        let r = c.classify(550, Some("5.1.1"), "550 5.1.1 refused by ACME filter");
        assert_eq!(r.category, Category::Content);
        assert_eq!(r.blocklist.as_deref(), Some("ACME"));
        assert!(
            Classifier::new(&[Rule {
                pattern: "(".into(),
                category: Category::Other,
                hard: None,
                blocklist: None,
            }])
            .is_err()
        );
    }

    #[test]
    fn long_texts_are_cut_not_scanned_whole() {
        let c = Classifier::default();
        let long = format!("550 5.1.1 {}", "x".repeat(1 << 20));
        assert_eq!(c.classify(550, None, &long).category, Category::BadMailbox);
    }
}
