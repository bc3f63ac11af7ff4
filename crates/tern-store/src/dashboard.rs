//! The dashboard's users and their sessions. Admin users see everything;
//! a user with domains (a domain owner) sees only those domains' mail.
//! Passwords are argon2 hashes ([`crate::password`]); a session is kept
//! as the SHA-256 of its cookie value, so a copy of the database does not
//! log anyone in.

use crate::Result;
use async_trait::async_trait;

/// A dashboard user.
#[derive(Debug, Clone, PartialEq)]
pub struct WebUser {
    /// The login (an email address), lower case.
    pub email: String,
    /// Argon2 hash of the password.
    pub password_hash: String,
    /// The domains the user may see; empty: all (an admin).
    pub domains: Vec<String>,
    /// When the user was added (Unix seconds).
    pub created: i64,
}

/// A logged-in session.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSession {
    /// SHA-256 (hex) of the cookie value.
    pub id_hash: String,
    /// Whose.
    pub email: String,
    /// The CSRF token every form of the session carries.
    pub csrf: String,
    /// When it ends (Unix seconds).
    pub expires: i64,
}

/// Storage of dashboard users and sessions.
#[async_trait]
pub trait Dashboard: Send + Sync {
    /// Adds a user, or replaces its password and domains.
    async fn put_web_user(&self, user: WebUser) -> Result<()>;
    /// A user.
    async fn web_user(&self, email: &str) -> Result<Option<WebUser>>;
    /// Every user, by email.
    async fn web_users(&self) -> Result<Vec<WebUser>>;
    /// Removes a user and its sessions.
    async fn remove_web_user(&self, email: &str) -> Result<bool>;
    /// Stores a session.
    async fn add_web_session(&self, session: WebSession) -> Result<()>;
    /// A session that has not ended at `now`.
    async fn web_session(&self, id_hash: &str, now: i64) -> Result<Option<WebSession>>;
    /// Ends a session.
    async fn remove_web_session(&self, id_hash: &str) -> Result<()>;
    /// Forgets sessions that ended before `now`; how many.
    async fn prune_web_sessions(&self, now: i64) -> Result<usize>;
}
