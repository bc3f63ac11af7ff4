//! Tern storage.
//!
//! Services talk to storage only through the traits here: [`Directory`]
//! (domains, accounts, aliases, passwords) and [`MailStore`] (delivering and
//! reading messages). The embedded backend ([`sqlite::SqliteStore`]) keeps
//! metadata and message bodies in one SQLite database in WAL mode; a single
//! writer task batches the writes of all sessions into one transaction and
//! one fsync (group commit). A PostgreSQL + S3 backend can implement the same
//! traits without touching the protocol crates.
//!
//! Durability contract: when [`MailStore::deliver`] or [`MailStore::expunge`]
//! returns `Ok`, the change is committed and fsynced.

pub mod meta;
pub mod password;
pub mod sqlite;

use async_trait::async_trait;
use std::sync::Arc;
use tern_core::Address;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// A named object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A named object already exists.
    #[error("{0} already exists")]
    Exists(String),
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
    /// The account address it delivers to.
    pub target: String,
}

/// Where mail for an envelope recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A local account.
    Local(LocalRecipient),
    /// The domain is local but nobody has this address.
    UnknownUser,
    /// The domain is not one of ours: accepting would be relaying.
    NotLocal,
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
    /// Arrival time (Unix seconds), the IMAP INTERNALDATE.
    pub received_at: i64,
    /// SMTP parameters (DSN ENVID/RET/NOTIFY/ORCPT…) as JSON, kept for later use.
    pub envelope_params: String,
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
}

/// Message storage.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// Stores one copy of the message and adds it to each recipient's INBOX.
    /// Returns once the delivery is durable.
    async fn deliver(&self, message: NewMessage) -> Result<()>;
    /// The named mailbox of an account.
    async fn mailbox(&self, account: AccountId, name: &str) -> Result<MailboxInfo>;
    /// Messages in a mailbox, in UID order.
    async fn list(&self, account: AccountId, mailbox: &str) -> Result<Vec<MessageEntry>>;
    /// The stored bytes of a message.
    async fn read_blob(&self, blob: BlobId) -> Result<Vec<u8>>;
    /// Removes messages from a mailbox durably.
    async fn expunge(&self, account: AccountId, mailbox: &str, uids: &[u32]) -> Result<()>;
}

/// Everything a running server needs from storage.
pub trait Store: Directory + MailStore {}
impl<T: Directory + MailStore> Store for T {}

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
