//! Tern storage.
//!
//! Services talk to storage only through the traits here: [`Directory`]
//! (domains, accounts, aliases, passwords) and [`MailStore`] (delivering and
//! reading messages). The embedded backend ([`sqlite::SqliteStore`]) keeps
//! metadata in one SQLite database in WAL mode; a single writer task batches
//! the writes of all sessions into one transaction and one fsync (group
//! commit). Message bodies are in the same database by default, or in a
//! [`Blobs`] store (fsynced files, an S3-compatible bucket) by content hash.
//! A PostgreSQL backend can implement the same traits without touching the
//! protocol crates.
//!
//! Durability contract: when [`MailStore::deliver`] or [`MailStore::expunge`]
//! returns `Ok`, the change is committed and fsynced, and a body it refers
//! to was stored durably before the commit.

pub mod allowances;
pub mod blobs;
pub mod cache;
pub mod dashboard;
mod folder_rules;
mod intake;
pub mod meta;
pub mod migrate;
pub mod nodes;
pub mod password;
pub mod platform;
pub mod postgres;
pub mod sqlite;
pub mod verify_jobs;

pub use allowances::Allowances;
pub use blobs::{Blobs, BodyStore};
pub use cache::SharedCache;
pub use dashboard::{Dashboard, WebSession, WebUser};
pub use nodes::{NodeInfo, Nodes};
pub use platform::*;
pub use tern_core::tally::Tallies;
pub use tern_events::{Event, EventType};
pub use verify_jobs::{VerifyItem, VerifyJob, VerifyJobs};

use async_trait::async_trait;
use std::sync::Arc;
use tern_core::Address;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error (the backend's own error inside).
    #[error("database error: {0}")]
    Db(Box<dyn std::error::Error + Send + Sync>),
    /// The blob store (files or an S3-compatible service) failed.
    #[error("blob storage error: {0}")]
    Blob(String),
    /// A named object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A named object already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// The account's quota would be exceeded.
    #[error("quota exceeded")]
    OverQuota,
    /// A request is not valid (bad address, unknown domain…).
    #[error("{0}")]
    Invalid(String),
    /// The writer task has stopped (the server is shutting down).
    #[error("store writer is not running")]
    WriterGone,
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Password(String),
    /// Filesystem error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for storage calls.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Database id of an account.
pub type AccountId = i64;

/// Id of a stored message body.
pub type BlobId = i64;

/// A local domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainInfo {
    /// Lower-cased domain name.
    pub name: String,
    /// Account that receives mail for unknown local parts, if any.
    pub catch_all: Option<String>,
}

/// An account (a mailbox owner who can log in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// Account id.
    pub id: AccountId,
    /// Primary address, the login name.
    pub address: String,
    /// Quota in bytes (0 = unlimited).
    pub quota: u64,
    /// Bytes currently stored.
    pub used: u64,
    /// Messages currently stored across all folders.
    pub messages: u64,
}

/// An alias: mail to `address` goes to `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasInfo {
    /// The alias address.
    pub address: String,
    /// The account address it delivers to, or the external address it
    /// forwards to.
    pub target: String,
}

/// A stored DKIM key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKeyRow {
    /// Domain it signs for.
    pub domain: String,
    /// Selector.
    pub selector: String,
    /// `rsa` or `ed25519`.
    pub algorithm: String,
    /// PKCS#8 PEM.
    pub private_key: String,
    /// `active` (signs), `pending` (generated, waiting for its DNS record)
    /// or `retired` (kept published for a while after a rotation).
    pub status: String,
}

/// Where mail for an envelope recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A local account.
    Local(LocalRecipient),
    /// A forwarding alias: mail for it goes on to this address in
    /// another domain.
    Forward(String),
    /// The domain is local but nobody has this address.
    UnknownUser,
    /// The domain is not one of ours: accepting would be relaying.
    NotLocal,
}

/// A domain name to add, normalised, checked with its catch-all account
/// (which must be in the same domain): the rule every backend applies.
pub(crate) fn new_domain_name(name: &str, catch_all: Option<&Address>) -> Result<String> {
    let name = tern_core::address::normalize_domain(name)
        .ok_or_else(|| StoreError::Invalid(format!("invalid domain name: {name}")))?;
    if catch_all.is_some_and(|c| c.domain() != name) {
        return Err(StoreError::Invalid(
            "the catch-all account must be in the same domain".into(),
        ));
    }
    Ok(name)
}

/// A directory lookup's row, as both backends' resolve query returns it:
/// the account reached (id, address, quota, used) and the forwarding
/// target, if any; `None` when the domain is not local.
pub type LookupRow = Option<(
    Option<AccountId>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<String>,
)>;

impl Recipient {
    /// Where a lookup row says the mail goes: an account comes first, then a
    /// forwarding alias; a local domain with neither has no such user.
    pub fn from_lookup(row: LookupRow) -> Self {
        match row {
            None => Recipient::NotLocal,
            Some((Some(account), Some(address), quota, used, _)) => {
                Recipient::Local(LocalRecipient {
                    account,
                    address,
                    quota: quota.unwrap_or(0) as u64,
                    used: used.unwrap_or(0) as u64,
                })
            }
            Some((_, _, _, _, Some(target))) => Recipient::Forward(target),
            Some(_) => Recipient::UnknownUser,
        }
    }
}

/// A resolved local recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRecipient {
    /// The account the mail is delivered to.
    pub account: AccountId,
    /// The account's primary address.
    pub address: String,
    /// Quota in bytes (0 = unlimited).
    pub quota: u64,
    /// Bytes in use.
    pub used: u64,
}

/// A message to deliver to local mailboxes.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The queue id shown in logs and in the `Received` header.
    pub queue_id: String,
    /// The full message as stored (trace headers included), CRLF line endings.
    pub raw: Arc<Vec<u8>>,
    /// Envelope sender (empty for the null reverse-path).
    pub mail_from: String,
    /// Accounts to deliver to; duplicates are delivered once.
    pub recipients: Vec<AccountId>,
    /// The folder they get it in: `INBOX`, or `Junk` for suspected spam.
    pub mailbox: &'static str,
    /// Accounts that get it in their Junk folder instead (their own spam
    /// thresholds said so); the same stored copy as `recipients`.
    pub junk: Vec<AccountId>,
    /// Arrival time (Unix seconds), the IMAP INTERNALDATE.
    pub received_at: i64,
    /// SMTP parameters (DSN ENVID/RET/NOTIFY/ORCPT…) as JSON, kept for later use.
    pub envelope_params: String,
    /// Remote recipients, queued for delivery in the same commit.
    pub outbound: Vec<OutboundRcpt>,
    /// When queued recipients give up (Unix seconds).
    pub expires_at: i64,
    /// Also file the message, `\Seen`, in this account's Sent folder.
    pub sent_copy: Option<AccountId>,
    /// Queue the remote recipients already leased until then (0: free), for
    /// a delivery engine that takes them straight from [`Queue::enqueue`].
    pub lease_until: i64,
    /// Hold the remote recipients until then (Unix seconds; 0: send now).
    pub not_before: i64,
    /// Events recording this message's arrival (`received`, `accepted`,
    /// `suppressed`), written in the same commit.
    pub events: Vec<Event>,
    /// What is kept of the message after its queue rows go (and of others
    /// recorded in the same commit).
    pub logs: Vec<MessageLog>,
    /// The response an idempotent API request gets again, kept in the same
    /// commit.
    pub idempotency: Option<IdempotentResponse>,
}

impl NewMessage {
    /// A message for local accounts only.
    pub fn local(
        queue_id: String,
        raw: Vec<u8>,
        mail_from: String,
        recipients: Vec<AccountId>,
        received_at: i64,
        envelope_params: String,
    ) -> Self {
        Self {
            queue_id,
            raw: Arc::new(raw),
            mail_from,
            recipients,
            mailbox: "INBOX",
            junk: Vec::new(),
            received_at,
            envelope_params,
            outbound: Vec::new(),
            expires_at: 0,
            sent_copy: None,
            lease_until: 0,
            not_before: 0,
            events: Vec::new(),
            logs: Vec::new(),
            idempotency: None,
        }
    }
}

/// The outcomes of delivery attempts and what follows from them, recorded
/// in one commit: recipients done or rescheduled, DSNs queued, their
/// events, and addresses suppressed after hard bounces.
#[derive(Debug, Default)]
pub struct Completion {
    /// Each attempted recipient (row id) and its outcome.
    pub outcomes: Vec<(i64, RcptOutcome)>,
    /// Messages to queue (DSNs).
    pub new: Vec<NewMessage>,
    /// The attempts' events.
    pub events: Vec<Event>,
    /// Addresses to suppress.
    pub suppress: Vec<Suppression>,
}

/// A remote recipient to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRcpt {
    /// The address, as given in RCPT TO.
    pub address: String,
    /// Its domain, lower case (the delivery destination).
    pub domain: String,
    /// DSN parameters (NOTIFY, ORCPT) as JSON.
    pub params: String,
}

/// One queued recipient with its message's envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRcpt {
    /// Row id of the recipient.
    pub id: i64,
    /// Row id of the queued message.
    pub message_id: i64,
    /// Queue id (logs, `Received`).
    pub queue_id: String,
    /// The stored body.
    pub blob: BlobId,
    /// Envelope sender; empty for the null reverse-path (bounces).
    pub mail_from: String,
    /// Message SMTP parameters (ENVID, RET, body type, SMTPUTF8) as JSON.
    pub message_params: String,
    /// Size of the body in bytes.
    pub size: u64,
    /// Recipient address.
    pub address: String,
    /// Recipient domain.
    pub domain: String,
    /// Recipient parameters (NOTIFY, ORCPT) as JSON.
    pub params: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the message was queued (Unix seconds).
    pub created_at: i64,
    /// When it gives up.
    pub expires_at: i64,
    /// Next attempt.
    pub next_attempt: i64,
    /// The last failure, as the remote host or the resolver said it.
    pub last_error: Option<String>,
    /// Whether the sender has been told of the delay.
    pub delay_noticed: bool,
    /// A delivery worker holds the recipient until then (0: nobody).
    pub leased_until: i64,
}

/// What happened to a recipient after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptOutcome {
    /// Accepted by the next hop: leaves the queue.
    Delivered,
    /// Temporary failure: try again at `next_attempt`.
    Deferred {
        /// Unix seconds.
        next_attempt: i64,
        /// What went wrong.
        error: String,
        /// A delay notice was sent in the same commit.
        delay_noticed: bool,
    },
    /// Permanent failure or expiry: leaves the queue (its DSN, if any, is
    /// queued in the same commit).
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// A message as listed in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEntry {
    /// Unique id within the mailbox (RFC 9051 §2.3.1.1).
    pub uid: u32,
    /// Size of the stored message in bytes.
    pub size: u64,
    /// The stored body (see [`MailStore::read_blob`]).
    pub blob: BlobId,
}

/// Identity of a mailbox, for stable POP3 UIDLs and IMAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxInfo {
    /// Database id.
    pub id: i64,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// Next UID to be assigned.
    pub uidnext: u32,
    /// Highest MODSEQ (RFC 7162).
    pub highest_modseq: u64,
}

/// Domains, accounts, aliases and passwords.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Adds a local domain.
    async fn add_domain(&self, name: &str, catch_all: Option<&Address>) -> Result<()>;
    /// Removes a domain; refuses while accounts or aliases use it.
    async fn remove_domain(&self, name: &str) -> Result<()>;
    /// Lists local domains.
    async fn list_domains(&self) -> Result<Vec<DomainInfo>>;
    /// Creates an account with INBOX and the special-use folders.
    async fn add_account(&self, address: &Address, password: &str, quota: u64)
    -> Result<AccountId>;
    /// Deletes an account and all its mail.
    async fn remove_account(&self, address: &Address) -> Result<()>;
    /// Changes a password.
    async fn set_password(&self, address: &Address, password: &str) -> Result<()>;
    /// Lists accounts, optionally of one domain.
    async fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<AccountInfo>>;
    /// Adds an alias to an existing local account.
    async fn add_alias(&self, address: &Address, target: &Address) -> Result<()>;
    /// Removes an alias.
    async fn remove_alias(&self, address: &Address) -> Result<()>;
    /// Lists aliases.
    async fn list_aliases(&self) -> Result<Vec<AliasInfo>>;
    /// Resolves an envelope recipient (account, alias, then catch-all).
    async fn resolve(&self, address: &Address, allow_catch_all: bool) -> Result<Recipient>;
    /// Checks a password; `None` when the account is unknown or the password wrong.
    async fn authenticate(&self, login: &str, password: &str) -> Result<Option<AccountId>>;
    /// Stores a DKIM key for a local domain.
    async fn add_dkim_key(&self, key: DkimKeyRow) -> Result<()>;
    /// DKIM keys of a domain, oldest first.
    async fn dkim_keys(&self, domain: &str) -> Result<Vec<DkimKeyRow>>;
    /// Makes `selector` the domain's active key for its algorithm; the
    /// previously active key of that algorithm becomes `retired`.
    async fn activate_dkim_key(&self, domain: &str, selector: &str) -> Result<()>;
}

/// Message storage.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// Stores one copy of the message and adds it to each recipient's INBOX.
    /// Returns once the delivery is durable.
    async fn deliver(&self, message: NewMessage) -> Result<()> {
        self.deliver_all(vec![message]).await
    }
    /// Delivers several messages in one transaction: all or none, one
    /// fsync (an incoming message and the copy it is forwarded as).
    async fn deliver_all(&self, messages: Vec<NewMessage>) -> Result<()>;
    /// The named mailbox of an account.
    async fn mailbox(&self, account: AccountId, name: &str) -> Result<MailboxInfo>;
    /// Messages in a mailbox, in UID order.
    async fn list(&self, account: AccountId, mailbox: &str) -> Result<Vec<MessageEntry>>;
    /// The stored bytes of a message.
    async fn read_blob(&self, blob: BlobId) -> Result<Vec<u8>>;
    /// Removes messages from a mailbox durably.
    async fn expunge(&self, account: AccountId, mailbox: &str, uids: &[u32]) -> Result<()>;
}

/// A mailbox (folder) of an account, with its counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxRow {
    /// Database id.
    pub id: i64,
    /// Full name; `/` separates levels.
    pub name: String,
    /// RFC 6154 attribute (`\Sent`, `\Junk`…).
    pub special_use: Option<String>,
    /// Its name is subscribed (LSUB, LIST SUBSCRIBED).
    pub subscribed: bool,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// UIDNEXT.
    pub uidnext: u32,
    /// HIGHESTMODSEQ.
    pub highest_modseq: u64,
    /// Messages in it.
    pub messages: u32,
    /// Messages without `\Seen`.
    pub unseen: u32,
    /// Total size in bytes.
    pub size: u64,
}

/// A message in a mailbox, as IMAP sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageRow {
    /// UID.
    pub uid: u32,
    /// System flags and keywords, as written (`\Seen`, `$Forwarded`…).
    pub flags: Vec<String>,
    /// MODSEQ of the last change (RFC 7162).
    pub modseq: u64,
    /// INTERNALDATE, Unix seconds.
    pub internaldate: i64,
    /// Size in bytes.
    pub size: u64,
    /// The stored body.
    pub blob: BlobId,
}

/// A message to append.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appended {
    /// Its bytes.
    pub raw: Vec<u8>,
    /// Its flags and keywords.
    pub flags: Vec<String>,
    /// INTERNALDATE, Unix seconds.
    pub internaldate: i64,
}

/// How STORE changes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagMode {
    /// `+FLAGS`
    Add,
    /// `-FLAGS`
    Remove,
    /// `FLAGS`
    Replace,
}

/// Result of a flag change on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagUpdate {
    /// UID.
    pub uid: u32,
    /// Flags after the change.
    pub flags: Vec<String>,
    /// New MODSEQ.
    pub modseq: u64,
    /// False when UNCHANGEDSINCE stopped the change (RFC 7162 §3.1.3).
    pub applied: bool,
}

/// Folder operations for IMAP.
#[async_trait]
pub trait Folders: Send + Sync {
    /// All mailboxes of an account, by name, with their counters.
    async fn mailboxes(&self, account: AccountId) -> Result<Vec<MailboxRow>>;
    /// One mailbox by name; with `counters` false, `messages`, `unseen` and
    /// `size` are left at 0 (no scan of the mailbox's messages).
    async fn find_mailbox(
        &self,
        account: AccountId,
        name: &str,
        counters: bool,
    ) -> Result<MailboxRow>;
    /// Creates a mailbox (and missing parents).
    async fn create_mailbox(&self, account: AccountId, name: &str) -> Result<()>;
    /// Deletes a mailbox and its messages; INBOX cannot be deleted.
    async fn delete_mailbox(&self, account: AccountId, name: &str) -> Result<()>;
    /// Renames a mailbox and its children. Renaming INBOX moves its messages
    /// into a new mailbox and leaves INBOX empty (RFC 9051 §6.3.6).
    async fn rename_mailbox(&self, account: AccountId, from: &str, to: &str) -> Result<()>;
    /// Subscribes an existing mailbox, or unsubscribes a name (which may
    /// name a mailbox deleted since: DELETE keeps the subscription).
    async fn subscribe(&self, account: AccountId, name: &str, on: bool) -> Result<()>;
    /// The subscribed names, INBOX first, whether the mailboxes exist or not.
    async fn subscriptions(&self, account: AccountId) -> Result<Vec<String>>;
    /// Claims the mailbox's recent messages up to (not including) UID
    /// `upto` for one session (RFC 3501 §2.3.2): returns the first UID that
    /// was still recent, and no other session gets those messages as recent.
    async fn claim_recent(&self, mailbox: i64, upto: u32) -> Result<u32>;
    /// How many messages no session has claimed as recent yet (STATUS
    /// RECENT), and the first UID that is still recent.
    async fn recent(&self, mailbox: i64) -> Result<(u32, u32)>;
    /// When messages with UIDs in `first..=last` were saved into the
    /// mailbox (RFC 8514 SAVEDATE), Unix seconds; `None` where unknown
    /// (stored before Tern kept it). In UID order.
    async fn saved_dates(
        &self,
        mailbox: i64,
        first: u32,
        last: u32,
    ) -> Result<Vec<(u32, Option<i64>)>>;
    /// The URLAUTH key of a mailbox (RFC 4467 §4), made (32 random bytes)
    /// when there is none and `create`; `None` when there is none.
    async fn urlauth_key(
        &self,
        account: AccountId,
        mailbox: &str,
        create: bool,
    ) -> Result<Option<Vec<u8>>>;
    /// RESETKEY: forgets the URLAUTH keys of one mailbox, or all of the
    /// account's, which revokes the URLs issued with them.
    async fn reset_urlauth_keys(&self, account: AccountId, mailbox: Option<&str>) -> Result<()>;
    /// Annotations (RFC 5464) of a mailbox, or of the server with `""`:
    /// entry names (`/private/comment`) and values, by name.
    async fn metadata(&self, account: AccountId, mailbox: &str) -> Result<Vec<(String, Vec<u8>)>>;
    /// Sets (a value) or removes (`None`) annotations, all or none; more
    /// than `max_entries` on the mailbox afterwards is [`StoreError::Invalid`]
    /// ("too many"), and nothing changes.
    async fn set_metadata(
        &self,
        account: AccountId,
        mailbox: &str,
        changes: Vec<(String, Option<Vec<u8>>)>,
        max_entries: usize,
    ) -> Result<()>;
    /// Every message of a mailbox, in UID order.
    async fn messages(&self, mailbox: i64) -> Result<Vec<MessageRow>>;
    /// Messages with UIDs in `first..=last`, in UID order.
    async fn messages_in(&self, mailbox: i64, first: u32, last: u32) -> Result<Vec<MessageRow>>;
    /// Messages whose MODSEQ is above `modseq` (new or changed), in UID order.
    async fn changed_since(&self, mailbox: i64, modseq: u64) -> Result<Vec<MessageRow>>;
    /// UIDs expunged from a mailbox after `modseq` (RFC 7162 VANISHED).
    async fn vanished_since(&self, mailbox: i64, modseq: u64) -> Result<Vec<u32>>;
    /// All UIDs of a mailbox, ascending.
    async fn uids(&self, mailbox: i64) -> Result<Vec<u32>>;
    /// `(HIGHESTMODSEQ, number of messages)` of a mailbox: a cheap "did
    /// anything change" probe.
    async fn mailbox_state(&self, mailbox: i64) -> Result<(u64, u32)>;
    /// The keywords (flags not starting with `\`) set on any message of a
    /// mailbox, sorted.
    async fn mailbox_keywords(&self, mailbox: i64) -> Result<Vec<String>>;
    /// The header block of a stored message (up to and including the blank
    /// line), without reading the rest into memory.
    async fn read_header(&self, blob: BlobId) -> Result<Vec<u8>>;
    /// Header blocks of the messages with UIDs in `first..=last`, in one
    /// pass (for header searches over a whole mailbox).
    async fn headers_in(&self, mailbox: i64, first: u32, last: u32) -> Result<Vec<(u32, Vec<u8>)>>;
    /// Like [`Folders::headers_in`], but only messages whose header has a
    /// field named `field` (ASCII case-insensitive): a cheap prefilter that
    /// runs inside the database, for searches every match of which needs
    /// that field.
    async fn headers_with_field(
        &self,
        mailbox: i64,
        first: u32,
        last: u32,
        field: &str,
    ) -> Result<Vec<(u32, Vec<u8>)>>;
    /// Parsed metadata of a stored body.
    async fn read_meta(&self, blob: BlobId) -> Result<meta::MessageMeta>;
    /// Changes flags of the given UIDs; returns the messages that exist.
    async fn set_flags(
        &self,
        mailbox: i64,
        uids: &[u32],
        mode: FlagMode,
        flags: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<Vec<FlagUpdate>>;
    /// Copies (or moves) messages; returns the target UIDVALIDITY and
    /// `(source uid, new uid)` pairs. Moves into or out of a `\Junk`
    /// mailbox are recorded for the spam filter to learn from.
    async fn copy(
        &self,
        from: i64,
        uids: &[u32],
        to: i64,
        remove: bool,
    ) -> Result<(u32, Vec<(u32, u32)>)>;
    /// Removes messages by UID.
    async fn expunge_uids(&self, mailbox: i64, uids: &[u32]) -> Result<()>;
    /// Adds messages to a mailbox (IMAP APPEND, MULTIAPPEND): all of them or
    /// none (RFC 3502 §3), and with `replace` the message it names (mailbox,
    /// UID) expunged in the same commit (RFC 8508 REPLACE). Returns the
    /// mailbox's UIDVALIDITY and the new UIDs, in order.
    async fn append(
        &self,
        account: AccountId,
        mailbox: i64,
        messages: Vec<Appended>,
        replace: Option<(i64, u32)>,
    ) -> Result<(u32, Vec<u32>)>;
    /// Changes to `account`'s mail, made on any node, from now on (an IMAP
    /// IDLE or NOTIFY session). On several nodes, only the accounts someone
    /// watches are listened to.
    async fn watch_account(&self, account: AccountId) -> AccountWatch;
}

/// Changes to one account's mail, as they are committed
/// ([`Folders::watch_account`]); stops being listened to when dropped.
pub struct AccountWatch {
    account: AccountId,
    changes: tokio::sync::broadcast::Receiver<AccountId>,
    _release: Option<Box<dyn Send + Sync>>,
}

impl AccountWatch {
    /// A watch over `changes` (every account's, filtered here); `release`
    /// is dropped with it (the backend's unsubscription).
    pub fn new(
        account: AccountId,
        changes: tokio::sync::broadcast::Receiver<AccountId>,
        release: Option<Box<dyn Send + Sync>>,
    ) -> Self {
        Self {
            account,
            changes,
            _release: release,
        }
    }

    /// Waits for the next change to the account (`false` once no change
    /// can come any more: the store is closing). A burst of changes may
    /// be told once; a session resynchronises on each.
    pub async fn changed(&mut self) -> bool {
        loop {
            match self.changes.recv().await {
                Ok(a) if a != self.account => continue,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return true,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
            }
        }
    }
}

/// The outbound queue. Recipients are *claimed* by a delivery worker (a
/// lease, so two workers never send the same recipient) and *completed*
/// with their outcome; both are committed like every other write.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Stores a message like [`MailStore::deliver`] and returns its queued
    /// recipients (leased when the message says so), so the caller can hand
    /// them to the delivery engine without reading them back.
    async fn enqueue(&self, message: NewMessage) -> Result<Vec<QueuedRcpt>>;
    /// Claims up to `limit` recipients due at `now`, leased to this node
    /// until `lease_until`: no other claim gets them before then.
    async fn claim_due(&self, now: i64, limit: usize, lease_until: i64) -> Result<Vec<QueuedRcpt>>;
    /// Records outcomes, queues the given messages (DSNs) and writes the
    /// events and suppressions, in one commit.
    async fn complete(&self, completion: Completion) -> Result<()>;
    /// The queued recipients of one message.
    async fn queued_message(&self, queue_id: &str) -> Result<Vec<QueuedRcpt>>;
    /// Every queued recipient, oldest message first (for `tern queue list`).
    async fn queue_list(&self) -> Result<Vec<QueuedRcpt>>;
    /// Makes recipients due now: those of `queue_id`, or all. Returns how many.
    async fn queue_retry(&self, queue_id: Option<&str>, now: i64) -> Result<usize>;
    /// Removes a message from the queue without notice. Returns recipients removed.
    async fn queue_delete(&self, queue_id: &str) -> Result<usize>;
    /// Frees this node's leases ([`Nodes::node`]; at startup, when none of
    /// its workers runs). Other nodes' leases are theirs until they end.
    async fn release_leases(&self) -> Result<()>;
    /// The earliest `next_attempt` of a free recipient, if any.
    async fn next_due(&self) -> Result<Option<i64>>;
    /// Signalled whenever recipients are queued or made due by this process.
    fn queue_wakeup(&self) -> Arc<tokio::sync::Notify>;
}

/// A user's verdict on a message, recorded when it was moved into or out
/// of Junk, waiting for the spam filter to learn from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingRecord {
    /// Row id.
    pub id: i64,
    /// Whose verdict.
    pub account: AccountId,
    /// The message.
    pub blob: BlobId,
    /// Moved into Junk (`true`) or out of it.
    pub is_spam: bool,
}

/// The spam filter's learnt data: token counts per scope (an account id,
/// or 0 for everyone) and the users' pending verdicts.
#[async_trait]
pub trait SpamData: Send + Sync {
    /// `(spam, ham)` counts of `tokens` (hashes) in `scope`; absent ones are left out.
    async fn bayes_counts(
        &self,
        scope: i64,
        tokens: &[i64],
    ) -> Result<std::collections::HashMap<i64, (u32, u32)>>;
    /// `(spam, ham)` messages learnt in `scope`.
    async fn bayes_totals(&self, scope: i64) -> Result<(u32, u32)>;
    /// Learns one message's tokens as spam or ham in every scope given, in one commit.
    async fn bayes_learn(&self, scopes: &[i64], tokens: &[i64], spam: bool) -> Result<()>;
    /// Up to `limit` pending verdicts, oldest first.
    async fn training_pending(&self, limit: usize) -> Result<Vec<TrainingRecord>>;
    /// Forgets verdicts once learnt.
    async fn training_done(&self, ids: &[i64]) -> Result<()>;
    /// Sets (or with both `None`, removes) the thresholds of a domain or account.
    async fn set_filter_policy(&self, policy: FilterPolicy) -> Result<()>;
    /// Every domain's and account's thresholds.
    async fn filter_policies(&self) -> Result<Vec<FilterPolicy>>;
    /// Stores greylist triplets (replacing those with the same key) and
    /// forgets the ones stale before `stale_before`.
    async fn save_greylist(&self, entries: Vec<GreylistRow>, stale_before: i64) -> Result<()>;
    /// Every stored greylist triplet.
    async fn load_greylist(&self) -> Result<Vec<GreylistRow>>;
}

/// Spam thresholds for a domain or an account; `None` inherits (the
/// account's domain, then `[filter]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    /// `example.com` or `alice@example.com`.
    pub target: String,
    /// Score from which mail goes to Junk.
    pub junk_score: Option<f64>,
    /// Score from which mail is refused.
    pub reject_score: Option<f64>,
}

/// A greylist triplet's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreylistRow {
    /// The client network (its first address).
    pub network: String,
    /// Envelope sender.
    pub sender: String,
    /// Recipient.
    pub rcpt: String,
    /// First attempt (Unix seconds).
    pub first_seen: i64,
    /// Passes until then (0: not yet).
    pub passed_until: i64,
}

/// A DMARC aggregate report received for one of our domains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcReportRow {
    /// The domain reported on.
    pub domain: String,
    /// The reporting organisation.
    pub org: String,
    /// Its report id.
    pub report_id: String,
    /// Period covered (Unix seconds).
    pub begin: i64,
    /// End of the period.
    pub end: i64,
    /// Messages counted.
    pub messages: u64,
    /// Of which failed DMARC.
    pub failed: u64,
    /// The parsed report, JSON.
    pub report: String,
}

/// A TLS report (RFC 8460) received for one of our domains, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsReportRow {
    /// The policy domain reported on.
    pub domain: String,
    /// The reporting organisation.
    pub org: String,
    /// Its report id.
    pub report_id: String,
    /// Period covered (Unix seconds).
    pub begin: i64,
    /// End of the period.
    pub end: i64,
    /// Sessions that negotiated TLS as the policy required.
    pub successes: u64,
    /// Sessions that failed to.
    pub failures: u64,
    /// The parsed report, JSON.
    pub report: String,
}

/// One counted row of an aggregate report Tern will send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportCount {
    /// The domain reported on.
    pub domain: String,
    /// The row (JSON).
    pub key: String,
    /// What the report needs besides its rows (JSON).
    pub meta: String,
    /// How many times it was counted.
    pub count: u64,
    /// When it was first counted (Unix seconds).
    pub first_at: i64,
}

/// Reports received (DMARC aggregate, TLS-RPT), for the dashboard and
/// `tern reports`, and the counters behind the reports Tern sends.
#[async_trait]
pub trait Reports: Send + Sync {
    /// Stores a report; a report already stored (same org and id) is kept once.
    async fn add_dmarc_report(&self, report: DmarcReportRow, received_at: i64) -> Result<()>;
    /// The latest reports, newest period first.
    async fn dmarc_reports(&self, limit: usize) -> Result<Vec<DmarcReportRow>>;
    /// Stores a TLS report; one already stored (same org and id) is kept once.
    async fn add_tls_report(&self, report: TlsReportRow, received_at: i64) -> Result<()>;
    /// The latest TLS reports, newest period first.
    async fn tls_reports(&self, limit: usize) -> Result<Vec<TlsReportRow>>;
    /// Adds counts (of `kind`: "dmarc", "tls") to the stored ones.
    async fn add_report_counts(&self, kind: &str, counts: Vec<ReportCount>) -> Result<()>;
    /// Takes every count of `kind`, leaving none.
    async fn take_report_counts(&self, kind: &str) -> Result<Vec<ReportCount>>;
}

/// How long a hand-off or claim holds a recipient: longer than any single
/// delivery attempt. A lease that is never completed (the worker died)
/// makes the recipient due again when it ends.
pub const LEASE_SECS: i64 = 3600;

/// The mail roles: what SMTP, IMAP, POP3 and delivery need (directory,
/// mailboxes, queue, nodes, shared allowances). Every backend has them; the conformance suite
/// (`tests/conformance.rs`) checks their invariants on each.
pub trait MailBackend:
    Directory + MailStore + Folders + Queue + Nodes + Allowances + Tallies + SharedCache
{
}
impl<T: Directory + MailStore + Folders + Queue + Nodes + Allowances + Tallies + SharedCache>
    MailBackend for T
{
}

/// Everything a running server needs from storage: the mail roles, the
/// bodies role ([`BodyStore`]) and the platform's (events, API objects, spam data, reports, verification jobs,
/// dashboard users).
pub trait Store:
    MailBackend + BodyStore + SpamData + Reports + Platform + VerifyJobs + Dashboard
{
}
impl<T: MailBackend + BodyStore + SpamData + Reports + Platform + VerifyJobs + Dashboard> Store
    for T
{
}

/// Shared handle to the configured backend.
pub type SharedStore = Arc<dyn Store>;

/// The folders every account gets, with their RFC 6154 special-use attribute.
pub const DEFAULT_MAILBOXES: &[(&str, Option<&str>)] = &[
    ("INBOX", None),
    ("Sent", Some("\\Sent")),
    ("Drafts", Some("\\Drafts")),
    ("Junk", Some("\\Junk")),
    ("Trash", Some("\\Trash")),
    ("Archive", Some("\\Archive")),
];
