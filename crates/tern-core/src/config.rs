//! `tern.toml`: the one configuration file, written by `tern init`.
//!
//! Every key has a default, so a file may name only what it changes. Paths
//! that are relative are resolved against the data folder (the directory that
//! holds `tern.toml`). [`template`] produces the commented file `tern init`
//! writes; a unit test checks that it parses back to the defaults.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Errors loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown/mistyped keys.
    #[error("invalid configuration in {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error, with line and column.
        source: Box<toml::de::Error>,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: identity.
    pub server: ServerConfig,
    /// `[listen]`: socket addresses per service.
    pub listen: ListenConfig,
    /// `[tls]`: certificate and key.
    pub tls: TlsConfig,
    /// `[store]`: where data lives.
    pub store: StoreConfig,
    /// `[smtp]`: SMTP receiving limits.
    pub smtp: SmtpConfig,
    /// `[pop3]`: POP3 settings.
    pub pop3: Pop3Config,
    /// `[imap]`: IMAP settings.
    pub imap: ImapConfig,
    /// `[auth]`: login policy.
    pub auth: AuthConfig,
    /// Directory holding `tern.toml`; not read from the file.
    #[serde(skip)]
    pub data_dir: PathBuf,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// The host name this server announces in greetings and `Received` headers.
    pub hostname: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            hostname: "localhost".into(),
        }
    }
}

/// `[listen]`: each service listens on every address in its list; an empty
/// list disables the service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// SMTP for mail from the internet (MX), port 25.
    pub smtp: Vec<SocketAddr>,
    /// POP3 with STLS, port 110.
    pub pop3: Vec<SocketAddr>,
    /// POP3 over implicit TLS, port 995.
    pub pop3s: Vec<SocketAddr>,
    /// HTTP: `/metrics` and `/healthz`, port 80.
    pub http: Vec<SocketAddr>,
    /// IMAP with STARTTLS, port 143.
    pub imap: Vec<SocketAddr>,
    /// IMAP over implicit TLS, port 993.
    pub imaps: Vec<SocketAddr>,
    /// Message submission (587), reserved: not served by this version.
    pub submission: Vec<SocketAddr>,
    /// Submission over implicit TLS (465), reserved.
    pub submissions: Vec<SocketAddr>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self::standard(None)
    }
}

impl ListenConfig {
    /// Standard ports on all interfaces (`port_base = None`) or, for tests and
    /// demos, `127.0.0.1:(base + standard port)`.
    pub fn standard(port_base: Option<u16>) -> Self {
        let at = |port: u16| -> Vec<SocketAddr> {
            match port_base {
                Some(base) => vec![SocketAddr::from(([127, 0, 0, 1], base + port))],
                None => vec![SocketAddr::from(([0, 0, 0, 0], port))],
            }
        };
        Self {
            smtp: at(25),
            pop3: at(110),
            pop3s: at(995),
            http: at(80),
            submission: at(587),
            submissions: at(465),
            imap: at(143),
            imaps: at(993),
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (relative to the data folder unless absolute).
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: "tls/cert.pem".into(),
            key: "tls/key.pem".into(),
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite database file.
    pub database: PathBuf,
    /// Default quota for new accounts, in bytes (0 = unlimited).
    pub default_quota: u64,
    /// Largest number of writes batched into one commit (one fsync).
    pub max_batch: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            database: "tern.db".into(),
            default_quota: 1 << 30,
            max_batch: 256,
        }
    }
}

/// `[smtp]`: limits for SMTP receiving. Timeouts follow RFC 5321 §4.5.3.2.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// Largest message accepted, in bytes (announced in `SIZE`).
    pub max_message_size: usize,
    /// Recipients per transaction (RFC 5321 §4.5.3.1.8 requires at least 100).
    pub max_recipients: usize,
    /// Longest command line, in bytes including CRLF.
    pub max_command_line: usize,
    /// Longest line inside DATA, in bytes including CRLF. RFC 5321 allows
    /// 1000; longer lines from careless generators are tolerated up to this.
    pub max_data_line: usize,
    /// Seconds to wait for a command (RFC: at least 5 minutes).
    pub command_timeout: u64,
    /// Seconds to wait for each block of message data (RFC: 3 minutes).
    pub data_block_timeout: u64,
    /// Seconds allowed for a whole DATA/BDAT transfer (RFC: 10 minutes for the terminator).
    pub data_total_timeout: u64,
    /// Simultaneous connections, in total.
    pub max_connections: usize,
    /// Simultaneous connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Protocol errors tolerated per session before `421` and disconnect.
    pub max_errors: u32,
    /// Domains whose unknown recipients are accepted into the domain's
    /// catch-all account are configured per domain (`tern domain add
    /// --catch-all`); this switch disables catch-alls globally.
    pub allow_catch_all: bool,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            max_message_size: 50 * 1024 * 1024,
            max_recipients: 100,
            max_command_line: 4096,
            max_data_line: 10_000,
            command_timeout: 300,
            data_block_timeout: 180,
            data_total_timeout: 600,
            max_connections: 2000,
            max_connections_per_ip: 50,
            max_errors: 10,
            allow_catch_all: true,
        }
    }
}

/// `[pop3]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Config {
    /// Idle seconds before the server closes the session (RFC 1939 §3: at least 600).
    pub timeout: u64,
    /// Simultaneous POP3 connections in total.
    pub max_connections: usize,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Self {
            timeout: 600,
            max_connections: 1000,
        }
    }
}

/// `[imap]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// Seconds an authenticated session may be idle (RFC 9051 §5.4: at least 30 minutes).
    pub timeout: u64,
    /// Seconds allowed before login.
    pub login_timeout: u64,
    /// Largest command, literals included, in bytes; bigger APPENDs get `NO [TOOBIG]`
    /// before any of the literal is read.
    pub max_command: u32,
    /// Simultaneous IMAP connections in total.
    pub max_connections: usize,
}

impl Default for ImapConfig {
    fn default() -> Self {
        Self {
            timeout: 30 * 60,
            login_timeout: 60,
            max_command: 64 * 1024 * 1024,
            max_connections: 5000,
        }
    }
}

/// `[auth]`: password logins (POP3 today; IMAP and submission later).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Allow plaintext logins before TLS from loopback addresses (127.0.0.0/8, ::1).
    /// From anywhere else a password is accepted only over TLS.
    pub plaintext_on_loopback: bool,
    /// Failures (per IP and per account) after which each attempt is delayed.
    pub slow_after: u32,
    /// Failures after which further attempts are refused outright.
    pub block_after: u32,
    /// Seconds a failure is remembered (and a block lasts).
    pub window: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            plaintext_on_loopback: true,
            slow_after: 3,
            block_after: 10,
            window: 900,
        }
    }
}

impl Config {
    /// Loads `path` and remembers its directory as the data folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })?;
        config.data_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(config)
    }

    /// Resolves a configured path against the data folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.data_dir.join(path)
        }
    }
}

fn list(addrs: &[SocketAddr]) -> String {
    let items: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", items.join(", "))
}

/// The commented `tern.toml` that `tern init` writes. Every key is present
/// with its default value and a comment saying what it does.
pub fn template(hostname: &str, port_base: Option<u16>) -> String {
    let l = ListenConfig::standard(port_base);
    let s = SmtpConfig::default();
    let st = StoreConfig::default();
    let p = Pop3Config::default();
    let a = AuthConfig::default();
    let i = ImapConfig::default();
    format!(
        r#"# Tern configuration. Every key is shown with its default value.
# Relative paths are relative to the folder holding this file (the data folder).
# Accounts, domains and aliases live in the database: manage them with
# `tern account|alias|domain ... --data DIR`; changes apply to a running server at once.

[server]
# Host name announced in SMTP greetings and Received headers; should match the MX record.
hostname = "{hostname}"

[listen]
# Addresses each service listens on. An empty list turns the service off.
smtp = {smtp}                 # inbound mail (MX), port 25
pop3 = {pop3}                 # POP3 with STLS, port 110
pop3s = {pop3s}               # POP3 over TLS, port 995
imap = {imap}                 # IMAP with STARTTLS, port 143
imaps = {imaps}               # IMAP over TLS, port 993
http = {http}                 # /metrics (Prometheus) and /healthz, port 80
# Reserved for services later versions add (not opened by this version):
submission = {submission}     # 587
submissions = {submissions}   # 465

[tls]
# PEM files. `tern init` writes a self-signed certificate for the host name;
# point these at real certificates (e.g. from Let's Encrypt) for production.
cert = "tls/cert.pem"
key = "tls/key.pem"

[store]
# SQLite database (WAL mode). Message bodies are stored in it, content-addressed.
database = "tern.db"
# Quota given to new accounts, in bytes (0 = unlimited). `tern account add --quota` overrides.
default_quota = {quota}
# Most writes committed together under one fsync (group commit).
max_batch = {max_batch}

[smtp]
# Largest message accepted, bytes (announced with SIZE; RFC 1870).
max_message_size = {max_message_size}
# Recipients per transaction (RFC 5321 4.5.3.1.8 requires accepting at least 100).
max_recipients = {max_recipients}
# Longest command line in bytes, CRLF included.
max_command_line = {max_command_line}
# Longest line in message data, CRLF included (RFC 5321 says 1000; longer is tolerated up to this).
max_data_line = {max_data_line}
# Timeouts in seconds (RFC 5321 4.5.3.2): waiting for a command, for each data block,
# and for a whole DATA or BDAT transfer.
command_timeout = {command_timeout}
data_block_timeout = {data_block_timeout}
data_total_timeout = {data_total_timeout}
# Simultaneous connections in total and per client IP address.
max_connections = {max_connections}
max_connections_per_ip = {max_connections_per_ip}
# Protocol errors tolerated in one session before "421" and disconnect.
max_errors = {max_errors}
# Honour per-domain catch-all accounts (`tern domain add --catch-all ADDRESS`).
allow_catch_all = {allow_catch_all}
# Line endings: the message ends only at CRLF "." CRLF. A bare LF or bare CR inside the
# data is normalised to CRLF and never ends the message (no SMTP smuggling). NUL bytes
# are refused with 554 5.6.0.

[pop3]
# Seconds of inactivity before the server ends a session (RFC 1939: at least 600).
timeout = {pop3_timeout}
max_connections = {pop3_max}

[imap]
# Seconds an authenticated session may stay silent (RFC 9051: at least 30 minutes; IDLE too).
timeout = {imap_timeout}
# Seconds allowed before login.
login_timeout = {imap_login_timeout}
# Largest command in bytes, literals (APPEND) included; larger ones are refused before upload.
max_command = {imap_max_command}
max_connections = {imap_max}

[auth]
# Accept passwords before TLS from loopback clients only (elsewhere TLS is required).
plaintext_on_loopback = {plaintext}
# After this many failed logins (per IP and per account) each attempt is slowed down,
slow_after = {slow_after}
# and after this many it is refused,
block_after = {block_after}
# for this many seconds after the last failure.
window = {window}
"#,
        smtp = list(&l.smtp),
        pop3 = list(&l.pop3),
        pop3s = list(&l.pop3s),
        http = list(&l.http),
        submission = list(&l.submission),
        submissions = list(&l.submissions),
        imap = list(&l.imap),
        imaps = list(&l.imaps),
        quota = st.default_quota,
        max_batch = st.max_batch,
        max_message_size = s.max_message_size,
        max_recipients = s.max_recipients,
        max_command_line = s.max_command_line,
        max_data_line = s.max_data_line,
        command_timeout = s.command_timeout,
        data_block_timeout = s.data_block_timeout,
        data_total_timeout = s.data_total_timeout,
        max_connections = s.max_connections,
        max_connections_per_ip = s.max_connections_per_ip,
        max_errors = s.max_errors,
        allow_catch_all = s.allow_catch_all,
        pop3_timeout = p.timeout,
        pop3_max = p.max_connections,
        imap_timeout = i.timeout,
        imap_login_timeout = i.login_timeout,
        imap_max_command = i.max_command,
        imap_max = i.max_connections,
        plaintext = a.plaintext_on_loopback,
        slow_after = a.slow_after,
        block_after = a.block_after,
        window = a.window,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_defaults() {
        let c: Config = toml::from_str(&template("mail.example.com", Some(10000))).unwrap();
        assert_eq!(c.server.hostname, "mail.example.com");
        assert_eq!(c.listen.smtp, vec!["127.0.0.1:10025".parse().unwrap()]);
        let d = SmtpConfig::default();
        assert_eq!(c.smtp.max_message_size, d.max_message_size);
        assert_eq!(c.smtp.max_errors, d.max_errors);
        assert_eq!(c.store.default_quota, StoreConfig::default().default_quota);
        assert_eq!(c.auth.block_after, AuthConfig::default().block_after);
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Config>("[smtp]\nmax_mesage_size = 1\n").is_err());
    }
}
