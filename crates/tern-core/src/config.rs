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
    /// A value is out of range or inconsistent.
    #[error("invalid configuration in {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
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
    /// `[blobs]`: where message bodies are stored.
    pub blobs: BlobsConfig,
    /// `[node]`: this server among several sharing a store.
    pub node: NodeConfig,
    /// `[smtp]`: SMTP receiving limits.
    pub smtp: SmtpConfig,
    /// `[pop3]`: POP3 settings.
    pub pop3: Pop3Config,
    /// `[imap]`: IMAP settings.
    pub imap: ImapConfig,
    /// `[auth]`: login policy.
    pub auth: AuthConfig,
    /// `[submission]`: authenticated sending on 587/465.
    pub submission: SubmissionConfig,
    /// `[queue]`: outbound delivery.
    pub queue: QueueConfig,
    /// `[dns]`: the resolver everything uses.
    pub dns: DnsConfig,
    /// `[inbound]`: checks on mail from the internet.
    pub inbound: InboundConfig,
    /// `[filter]`: the spam filter.
    pub filter: FilterConfig,
    /// `[events]`: the history of every message.
    pub events: EventsConfig,
    /// `[api]`: the HTTP API.
    pub api: ApiConfig,
    /// `[webhooks]`: event delivery to applications.
    pub webhooks: WebhooksConfig,
    /// `[feedback]`: bounces, complaints and unsubscribes coming back.
    pub feedback: FeedbackConfig,
    /// `[verify]`: email-address verification (`tern verify`).
    pub verify: VerifyConfig,
    /// `[web]`: the dashboard.
    pub web: WebConfig,
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
    /// HTTP: the API (`/v1`), `/metrics` and `/healthz`, port 80.
    pub http: Vec<SocketAddr>,
    /// The same over TLS with `[tls]`'s certificate, port 443 (none when
    /// the key is absent, so older configurations do not start binding 443).
    #[serde(default)]
    pub https: Vec<SocketAddr>,
    /// IMAP with STARTTLS, port 143.
    pub imap: Vec<SocketAddr>,
    /// IMAP over implicit TLS, port 993.
    pub imaps: Vec<SocketAddr>,
    /// Message submission with STARTTLS (RFC 6409), port 587.
    pub submission: Vec<SocketAddr>,
    /// Message submission over implicit TLS (RFC 8314), port 465.
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
            https: at(443),
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

/// Where metadata, the queue and events are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// One SQLite database in the data folder (`[store] database`): one node.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`[store] url`), shared by every node.
    Postgres,
}

/// `[store]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (the default) or `postgres`.
    pub backend: StoreBackend,
    /// SQLite database file.
    pub database: PathBuf,
    /// PostgreSQL connection URL (`postgres://user:password@host:5432/db`;
    /// `?sslmode=require` or `verify-full` for TLS to the database).
    pub url: String,
    /// Most pooled connections to PostgreSQL per node (the group-commit
    /// writer has 2 more of its own, 5 with a blob store).
    pub max_connections: u32,
    /// Default quota for new accounts, in bytes (0 = unlimited).
    pub default_quota: u64,
    /// Largest number of writes batched into one commit (one fsync).
    pub max_batch: usize,
    /// Bytes of the database mapped into memory for bulk reads (IMAP fetches and
    /// searches, message bodies); 0 = none. Mapped pages count in RSS as page cache.
    pub read_mmap_size: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Sqlite,
            database: "tern.db".into(),
            url: String::new(),
            max_connections: 32,
            default_quota: 1 << 30,
            max_batch: 256,
            read_mmap_size: 256 << 20,
        }
    }
}

/// `[node]`: this server's identity among nodes sharing a store.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique per node; empty: the machine's host name.
    pub name: String,
    /// How often the node says it is alive (`10s`); the other nodes take
    /// over the queue work of a node silent for three times as long.
    pub heartbeat: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            heartbeat: "10s".into(),
        }
    }
}

impl NodeConfig {
    /// The heartbeat interval in seconds (at least 1).
    pub fn heartbeat_secs(&self) -> Result<i64, String> {
        Ok(parse_duration(&self.heartbeat)?.as_secs().max(1) as i64)
    }

    /// The name to use: the configured one, else the machine's host name
    /// (`/proc/sys/kernel/hostname`), else `fallback`.
    pub fn resolved(&self, fallback: &str) -> String {
        if !self.name.trim().is_empty() {
            return self.name.trim().to_string();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| fallback.to_string())
    }
}

/// Where message bodies go (`[blobs] backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobBackend {
    /// In the database, written in the same commit as their metadata.
    #[default]
    Local,
    /// One fsynced file per body under `[blobs] path`.
    Files,
    /// An S3-compatible bucket.
    S3,
}

/// `[blobs]`: message bodies, stored once each by content hash.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsConfig {
    /// Where new bodies go.
    pub backend: BlobBackend,
    /// Folder of the `files` backend.
    pub path: PathBuf,
    /// Bucket of the `s3` backend (it must exist).
    pub bucket: String,
    /// The S3 service's URL; empty: AWS for `region`.
    pub endpoint: String,
    /// Region requests are signed for.
    pub region: String,
    /// Access key id; empty: from the environment (`AWS_ACCESS_KEY_ID`).
    pub access_key_id: String,
    /// Secret key; empty: from the environment (`AWS_SECRET_ACCESS_KEY`).
    pub secret_access_key: String,
    /// Bucket in the URL's path rather than its host name.
    pub path_style: bool,
    /// Prefix of every object's name.
    pub prefix: String,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        Self {
            backend: BlobBackend::Local,
            path: "blobs".into(),
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            path_style: true,
            prefix: String::new(),
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
    /// Bytes of message data all sessions together may hold while receiving (at least
    /// `max_message_size`); a message that finds none left is read, discarded and
    /// refused with `452 4.3.1` (the sender retries).
    pub max_data_memory: usize,
    /// Protocol errors tolerated per session before `421` and disconnect.
    pub max_errors: u32,
    /// New connections per minute from one client network (0 = unlimited).
    pub connections_per_minute_per_network: u32,
    /// Messages per minute from one client network (0 = unlimited).
    pub messages_per_minute_per_network: u32,
    /// IPv4 prefix length that makes a "network" for the rate limits.
    pub rate_limit_ipv4_prefix: u8,
    /// IPv6 prefix length that makes a "network" for the rate limits.
    pub rate_limit_ipv6_prefix: u8,
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
            max_data_memory: 256 * 1024 * 1024,
            max_errors: 10,
            connections_per_minute_per_network: 600,
            messages_per_minute_per_network: 3000,
            rate_limit_ipv4_prefix: 24,
            rate_limit_ipv6_prefix: 64,
            allow_catch_all: true,
        }
    }
}

/// `[pop3]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pop3Config {
    /// Seconds the server waits for each command line before closing the session
    /// (RFC 1939 §3: at least 600). A deadline for the whole line, not per byte.
    pub timeout: u64,
    /// Seconds allowed from connecting to a successful login (all of it).
    pub login_timeout: u64,
    /// Simultaneous POP3 connections in total.
    pub max_connections: usize,
    /// Simultaneous POP3 connections from one client IP address.
    pub max_connections_per_ip: usize,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Self {
            timeout: 600,
            login_timeout: 60,
            max_connections: 1000,
            max_connections_per_ip: 20,
        }
    }
}

/// `[imap]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImapConfig {
    /// Seconds an authenticated session may be idle (RFC 9051 §5.4: at least 30 minutes):
    /// a deadline for each whole command, literals included, not per byte.
    pub timeout: u64,
    /// Seconds allowed from connecting to a successful login (all of it).
    pub login_timeout: u64,
    /// Largest command, literals included, in bytes; bigger APPENDs get `NO [TOOBIG]`
    /// before any of the literal is read.
    pub max_command: u32,
    /// Simultaneous IMAP connections in total.
    pub max_connections: usize,
    /// Simultaneous IMAP connections from one client IP address.
    pub max_connections_per_ip: usize,
    /// Largest METADATA annotation value (RFC 5464), in bytes.
    pub metadata_max_size: u32,
    /// Annotations at most on one mailbox (and on the server).
    pub metadata_max_entries: u32,
}

impl Default for ImapConfig {
    fn default() -> Self {
        Self {
            timeout: 30 * 60,
            login_timeout: 60,
            max_command: 64 * 1024 * 1024,
            max_connections: 5000,
            max_connections_per_ip: 50,
            metadata_max_size: 64 * 1024,
            metadata_max_entries: 200,
        }
    }
}

/// `[auth]`: password logins (SMTP AUTH, IMAP, POP3), throttled by counts kept in the
/// store (on a shared store, one count for every node).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Allow plaintext logins before TLS from loopback addresses (127.0.0.0/8, ::1).
    /// From anywhere else a password is accepted only over TLS.
    pub plaintext_on_loopback: bool,
    /// Failures (from one address, or for one account) after which each attempt is delayed.
    pub slow_after: u32,
    /// Failures (attempts in progress included) from one address after which its further
    /// attempts are refused. An account itself is never locked: its owner logs in from
    /// an address that is not refused.
    pub block_after: u32,
    /// Failures from one network (IPv4 /24, IPv6 /64) after which it is refused as a whole.
    pub network_block_after: u32,
    /// Seconds a failure is remembered (and a refusal lasts).
    pub window: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            plaintext_on_loopback: true,
            slow_after: 3,
            block_after: 10,
            network_block_after: 50,
            window: 900,
        }
    }
}

/// `[submission]`: mail from authenticated users (RFC 6409). Size and
/// timeout limits are shared with `[smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubmissionConfig {
    /// Messages one account may send per hour (0 = unlimited).
    pub max_messages_per_hour: u32,
    /// Messages one account may send per day (0 = unlimited).
    pub max_messages_per_day: u32,
    /// Recipients per message.
    pub max_recipients: usize,
    /// Also store a copy of each submitted message in the sender's Sent folder.
    /// Off by default: mail clients usually APPEND their own copy.
    pub save_sent: bool,
    /// Networks (`127.0.0.0/8`, `10.1.2.3`, `::1/128`) whose clients may send
    /// without AUTH, like Postfix's `mynetworks`: applications on this host or a
    /// private network. Their senders are not checked. Empty by default.
    pub trusted_networks: Vec<IpNet>,
}

impl Default for SubmissionConfig {
    fn default() -> Self {
        Self {
            max_messages_per_hour: 500,
            max_messages_per_day: 2000,
            max_recipients: 100,
            save_sent: false,
            trusted_networks: Vec::new(),
        }
    }
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    /// The network address.
    pub addr: std::net::IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl IpNet {
    /// The network of `ip` with the given prefix lengths (IPv4-mapped IPv6
    /// counts as IPv4): `containing(192.0.2.9, 24, 64)` is 192.0.2.0/24.
    pub fn containing(ip: std::net::IpAddr, v4_prefix: u8, v6_prefix: u8) -> Self {
        use std::net::IpAddr;
        match unmap(ip) {
            IpAddr::V4(a) => {
                let prefix = v4_prefix.min(32);
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                Self {
                    addr: IpAddr::V4((u32::from(a) & mask).into()),
                    prefix,
                }
            }
            IpAddr::V6(a) => {
                let prefix = v6_prefix.min(128);
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                Self {
                    addr: IpAddr::V6((u128::from(a) & mask).into()),
                    prefix,
                }
            }
        }
    }

    /// Whether `ip` is inside the network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = unmap(ip);
        ip.is_ipv4() == self.addr.is_ipv4()
            && Self::containing(ip, self.prefix, self.prefix).addr
                == Self::containing(self.addr, self.prefix, self.prefix).addr
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn unmap(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: std::net::IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network like 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{s:?}: bad prefix length"))?
        };
        Ok(Self { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// TLS policy towards a remote host.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Never use TLS.
    None,
    /// STARTTLS when offered, any certificate (RFC 7435); plaintext otherwise.
    Opportunistic,
    /// STARTTLS with a valid certificate for the host name, or defer.
    Required,
}

/// A transport rule: mail for `domain` goes to `host:port` instead of the
/// domain's MX hosts. `domain = "*"` makes a smarthost for everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transport {
    /// Recipient domain (exact, lower case), or `*` for all.
    pub domain: String,
    /// Host name or IP address.
    pub host: String,
    /// Port (default 25).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// TLS policy (default opportunistic).
    #[serde(default = "default_tls_policy")]
    pub tls: TlsPolicy,
    /// AUTH PLAIN user name (needs TLS unless the host is on loopback).
    #[serde(default)]
    pub username: Option<String>,
    /// AUTH PLAIN password.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_smtp_port() -> u16 {
    25
}

fn default_tls_policy() -> TlsPolicy {
    TlsPolicy::Opportunistic
}

/// `[queue]`: the outbound queue and MX delivery (RFC 5321 §4.5.4, §5).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Waits between attempts: `30s`, `5m`, `1h`, `2d`. The last one repeats
    /// until the message expires.
    pub retry: Vec<String>,
    /// How long a message is retried before it is returned to its sender.
    pub expire: String,
    /// Send a "delayed" notice (RFC 3464) once a message has waited this
    /// long; `0` never does.
    pub delay_notice: String,
    /// Simultaneous outgoing connections in total.
    pub max_connections: usize,
    /// Simultaneous outgoing connections per destination domain.
    pub max_connections_per_domain: usize,
    /// Messages sent over one connection before it is closed.
    pub messages_per_connection: usize,
    /// Messages per minute to one destination domain (0 = unlimited).
    pub max_messages_per_domain_per_minute: u32,
    /// Seconds to wait for a TCP connection and the greeting.
    pub connect_timeout: u64,
    /// Seconds to wait for a reply to a command (RFC 5321 §4.5.3.2: 5 minutes).
    pub command_timeout: u64,
    /// Seconds to wait for the reply after the message data (RFC: 10 minutes).
    pub data_timeout: u64,
    /// Name sent in EHLO; empty means `[server] hostname`.
    pub helo_name: String,
    /// Local addresses to send from, used in turn; empty lets the system choose.
    pub source_ips: Vec<std::net::IpAddr>,
    /// Port of remote MX hosts. Only tests change this.
    pub mx_port: u16,
    /// TLS towards MX hosts without MTA-STS or DANE.
    pub tls: TlsPolicy,
    /// Honour destinations' MTA-STS policies (RFC 8461).
    pub mta_sts: bool,
    /// Honour destinations' DANE TLSA records (RFC 7672), validated with
    /// DNSSEC against `[dns] trust_anchor`.
    pub dane: bool,
    /// Send TLS reports (RFC 8460) to destinations that ask for them.
    pub tls_reports: bool,
    /// How often TLS reports are sent (RFC 8460 §4.1: daily).
    pub tls_report_interval: String,
    /// Extra trusted CA certificates (PEM file) for verified TLS — MTA-STS
    /// hosts and `tls = "required"` hops — besides the system's; "" for none.
    pub tls_ca_file: PathBuf,
    /// Transport rules, checked in order (`[[queue.transport]]`).
    pub transport: Vec<Transport>,
    /// How long DMARC and TLS reports are retried (they are stale after a
    /// day or two).
    pub report_expire: String,
    /// Put an address on the global suppression list when its own server
    /// refuses it permanently (a hard bounce: RFC 3463 5.1.x, 5.2.1).
    pub suppress_hard_bounces: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            retry: ["5m", "10m", "30m", "1h", "2h", "4h", "8h"]
                .map(String::from)
                .to_vec(),
            expire: "5d".into(),
            delay_notice: "4h".into(),
            max_connections: 200,
            max_connections_per_domain: 20,
            messages_per_connection: 100,
            max_messages_per_domain_per_minute: 0,
            connect_timeout: 30,
            command_timeout: 300,
            data_timeout: 600,
            helo_name: String::new(),
            source_ips: Vec::new(),
            mx_port: 25,
            tls: TlsPolicy::Opportunistic,
            mta_sts: true,
            dane: true,
            tls_reports: true,
            tls_report_interval: "24h".into(),
            tls_ca_file: PathBuf::new(),
            transport: Vec::new(),
            report_expire: "2d".into(),
            suppress_hard_bounces: true,
        }
    }
}

/// `[feedback]`: what comes back after delivery — bounces, complaints,
/// unsubscribes — and how failure replies are classified.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedbackConfig {
    /// Send each recipient's copy of API mail with its own signed return
    /// path (`bounce+TOKEN@domain`) when the sender's domain is one of ours.
    pub verp: bool,
    /// How long a return path takes bounces.
    pub bounce_window: String,
    /// Local parts that take ARF complaint reports at each of our domains.
    pub complaint_addresses: Vec<String>,
    /// Where unsubscribe links point (Tern's HTTPS listener as the world
    /// reaches it); empty: `https://` and the server's host name.
    pub public_url: String,
    /// Classification rules tried before Tern's own.
    pub rules: Vec<FeedbackRule>,
    /// Sending domains whose API mail is tracked (opens and clicks).
    pub track_domains: Vec<String>,
    /// Streams (`transactional`, `broadcast`) whose API mail is tracked.
    pub track_streams: Vec<String>,
    /// Tracking links go to `https://{tracking_host}.{sending domain}`
    /// (publish the CNAME `tern dns records` prints); empty: `public_url`.
    pub tracking_host: String,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        Self {
            verp: true,
            bounce_window: "30d".into(),
            complaint_addresses: vec!["fbl".into(), "abuse".into()],
            public_url: String::new(),
            rules: Vec::new(),
            track_domains: Vec::new(),
            track_streams: Vec::new(),
            tracking_host: String::new(),
        }
    }
}

/// `[[feedback.rules]]`: replies matching `pattern` (a case-insensitive
/// regular expression) get `category`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRule {
    /// The expression, over the whole reply.
    pub pattern: String,
    /// `bad_mailbox`, `inactive`, `mailbox_full`, `message_too_large`,
    /// `content`, `spam_block`, `reputation`, `rate_limited`, `dns`, `tls`,
    /// `authentication`, `policy` or `other`.
    pub category: String,
    /// Hard (suppress the address) or soft; default: hard for
    /// `bad_mailbox` and `inactive`.
    #[serde(default)]
    pub hard: Option<bool>,
    /// The blocklist such replies name.
    #[serde(default)]
    pub blocklist: Option<String>,
}

/// `[verify]`: how `tern verify` probes mail servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyConfig {
    /// EHLO name; empty: `[server] hostname`.
    pub helo_name: String,
    /// MAIL FROM of probes; empty: `verify@` and the host name.
    pub mail_from: String,
    /// Seconds to connect to a host.
    pub connect_timeout: u64,
    /// Seconds to wait for each reply.
    pub command_timeout: u64,
    /// How long to wait before trying a greylisted address again.
    pub greylist_wait: String,
    /// How many times to try again after greylisting.
    pub greylist_retries: u32,
    /// MX hosts tried per domain.
    pub max_hosts: usize,
    /// Domains probed at once (one connection each).
    pub concurrency: usize,
    /// Most connections to one MX host at once (domains sharing a host).
    pub connections_per_host: usize,
    /// How long a domain's MX hosts and catch-all test are remembered.
    pub cache_ttl: String,
    /// Local addresses probes connect from (one IPv4, one IPv6; empty: the
    /// system's choice).
    pub source_addresses: Vec<std::net::IpAddr>,
    /// How long bulk jobs (`POST /v1/verify/jobs`) and their answers stay.
    pub job_retention: String,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            helo_name: String::new(),
            mail_from: String::new(),
            connect_timeout: 10,
            command_timeout: 30,
            greylist_wait: "60s".into(),
            greylist_retries: 1,
            max_hosts: 3,
            concurrency: 10,
            connections_per_host: 2,
            cache_ttl: "1h".into(),
            source_addresses: Vec::new(),
            job_retention: "30d".into(),
        }
    }
}

/// `[web]`: the dashboard at `/` on the HTTP listeners.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Serve the dashboard.
    pub enabled: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// `[events]`: the event log.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// How long events (and what is kept of sent messages) stay.
    pub retention: String,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            retention: "30d".into(),
        }
    }
}

/// `[api]`: the HTTP API under `/v1` on the `[listen] http` addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API.
    pub enabled: bool,
    /// Requests per second one API key may make (bursts of twice that).
    pub requests_per_second: u32,
    /// Largest request body in bytes.
    pub max_body_size: usize,
    /// Most recipients (to, cc and bcc together) of one message.
    pub max_recipients: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            requests_per_second: 100,
            max_body_size: 30 << 20,
            max_recipients: 1000,
        }
    }
}

/// `[webhooks]`: POSTing events to applications.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Allow `http://` endpoints and endpoints on loopback or private
    /// networks (off: only `https://` to public addresses, verified TLS).
    pub allow_http: bool,
    /// How long an event is retried before it goes to the dead-letter list.
    pub retry_for: String,
    /// Seconds to wait for an endpoint's answer.
    pub timeout: u64,
    /// Endpoints POSTed to at once.
    pub max_concurrent: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_http: false,
            retry_for: "3d".into(),
            timeout: 10,
            max_concurrent: 16,
        }
    }
}

/// `[inbound]`: authentication of mail from the internet (SPF, DKIM, ARC,
/// DMARC) and what DMARC failures do.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InboundConfig {
    /// Run the checks and add `Authentication-Results`.
    pub authenticate: bool,
    /// Refuse (`550 5.7.1`) mail that fails DMARC under `p=reject`, and file
    /// mail failing under `p=quarantine` as junk.
    pub enforce_dmarc: bool,
    /// Networks whose mail is never refused or quarantined for DMARC
    /// (forwarders and backup MX hosts that break SPF and DKIM).
    pub trusted_forwarders: Vec<IpNet>,
    /// Send DMARC aggregate reports to domains that ask for them (`rua`).
    pub dmarc_reports: bool,
    /// How often reports are sent (RFC 7489: daily).
    pub dmarc_report_interval: String,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            authenticate: true,
            enforce_dmarc: true,
            trusted_forwarders: Vec::new(),
            dmarc_reports: true,
            dmarc_report_interval: "24h".into(),
        }
    }
}

/// `[filter]`: spam scoring of mail from the internet.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Score messages (rules, DNSBLs, Bayes) and add `X-Spam-Status`.
    pub enabled: bool,
    /// From this score the message goes to Junk.
    pub junk_score: f64,
    /// From this score the message is refused (`550 5.7.1`) before `250`.
    pub reject_score: f64,
    /// DNS blocklist zones queried with the client's IPv4 address.
    pub dnsbl: Vec<String>,
    /// Score of a listing in one of them.
    pub dnsbl_score: f64,
    /// Spam and ham messages each the classifier must have learnt before it counts.
    pub bayes_min_trained: u32,
    /// Greylist unknown (network, sender, recipient) triplets (RFC 6647).
    pub greylist: bool,
    /// How long a new triplet is deferred.
    pub greylist_delay: String,
    /// How long the sender has to retry before the triplet starts over.
    pub greylist_retry_window: String,
    /// How long a triplet that passed keeps passing.
    pub greylist_pass_lifetime: String,
    /// Networks never greylisted.
    pub greylist_pass_list: Vec<IpNet>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            junk_score: 5.0,
            reject_score: 15.0,
            dnsbl: Vec::new(),
            dnsbl_score: 3.0,
            bayes_min_trained: 20,
            greylist: false,
            greylist_delay: "5m".into(),
            greylist_retry_window: "4h".into(),
            greylist_pass_lifetime: "36d".into(),
            greylist_pass_list: Vec::new(),
        }
    }
}

/// `[dns]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Recursive resolvers (`IP:port`); empty uses the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// DNSSEC trust anchors (a file of root DNSKEY records in zone-file
    /// syntax) for the answers DANE relies on; empty uses the IANA root keys.
    pub trust_anchor: PathBuf,
    /// DNS blocklists `tern dns check` looks the sending addresses up in.
    pub check_blocklists: Vec<String>,
    /// DNS blocklists of domains `tern dns check` looks the domain up in.
    pub check_domain_blocklists: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            trust_anchor: PathBuf::new(),
            check_blocklists: [
                "zen.spamhaus.org",
                "bl.spamcop.net",
                "b.barracudacentral.org",
            ]
            .map(String::from)
            .to_vec(),
            check_domain_blocklists: vec!["dbl.spamhaus.org".into()],
        }
    }
}

/// Parses a duration such as `90s`, `5m`, `1h`, `5d` or a bare number of
/// seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 5m, 1h or 2d"))?;
    let mult = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    Ok(std::time::Duration::from_secs(n.saturating_mul(mult)))
}

impl QueueConfig {
    /// The retry waits, parsed.
    pub fn retry_schedule(&self) -> Result<Vec<std::time::Duration>, String> {
        let v: Vec<_> = self
            .retry
            .iter()
            .map(|s| parse_duration(s))
            .collect::<Result<_, _>>()?;
        if v.is_empty() {
            return Err("queue.retry must list at least one wait".into());
        }
        Ok(v)
    }
}

impl Config {
    /// Checks values that TOML types alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        self.queue.retry_schedule()?;
        parse_duration(&self.queue.expire).map_err(|e| format!("queue.expire: {e}"))?;
        parse_duration(&self.queue.report_expire)
            .map_err(|e| format!("queue.report_expire: {e}"))?;
        parse_duration(&self.events.retention).map_err(|e| format!("events.retention: {e}"))?;
        parse_duration(&self.webhooks.retry_for).map_err(|e| format!("webhooks.retry_for: {e}"))?;
        parse_duration(&self.queue.delay_notice).map_err(|e| format!("queue.delay_notice: {e}"))?;
        parse_duration(&self.inbound.dmarc_report_interval)
            .map_err(|e| format!("inbound.dmarc_report_interval: {e}"))?;
        for (k, v) in [
            ("filter.greylist_delay", &self.filter.greylist_delay),
            (
                "filter.greylist_retry_window",
                &self.filter.greylist_retry_window,
            ),
            (
                "filter.greylist_pass_lifetime",
                &self.filter.greylist_pass_lifetime,
            ),
            ("verify.greylist_wait", &self.verify.greylist_wait),
            ("verify.cache_ttl", &self.verify.cache_ttl),
            ("verify.job_retention", &self.verify.job_retention),
        ] {
            parse_duration(v).map_err(|e| format!("{k}: {e}"))?;
        }
        if self.blobs.backend == BlobBackend::S3 && self.blobs.bucket.is_empty() {
            return Err("blobs.bucket: the s3 backend needs a bucket".into());
        }
        for t in &self.queue.transport {
            if t.username.is_some() != t.password.is_some() {
                return Err(format!(
                    "queue.transport for {}: give both username and password, or neither",
                    t.domain
                ));
            }
        }
        Ok(())
    }

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
        config.validate().map_err(|e| ConfigError::Invalid {
            path: path.into(),
            message: e,
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
pub fn template(hostname: &str, port_base: Option<u16>, nameservers: &[SocketAddr]) -> String {
    let l = ListenConfig::standard(port_base);
    let sub = SubmissionConfig::default();
    let q = QueueConfig::default();
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
http = {http}                 # the API (/v1), /metrics (Prometheus) and /healthz, port 80
https = {https}               # the same over TLS ([tls] certificate), port 443
submission = {submission}     # mail from users: AUTH after STARTTLS, port 587
submissions = {submissions}   # mail from users over TLS, port 465

[tls]
# PEM files. `tern init` writes a self-signed certificate for the host name;
# point these at real certificates (e.g. from Let's Encrypt) for production.
cert = "tls/cert.pem"
key = "tls/key.pem"

[store]
# Where accounts, mailboxes, the queue and events are kept:
#   "sqlite"    one SQLite database in this folder (WAL mode, group commit): one node
#   "postgres"  a PostgreSQL database at `url`, shared by several nodes (each runs this same
#               config with its own [node] name); with [blobs] "local" the bodies are in it
#               too, else in the files or bucket every node shares
backend = "sqlite"
# SQLite database file. Message bodies are stored in it by default, content-addressed.
database = "tern.db"
# PostgreSQL: "postgres://user:password@host:5432/dbname"; add "?sslmode=verify-full" for TLS
# to the database. The schema is created and migrated at start.
url = ""
# PostgreSQL: most pooled connections per node (the group-commit writer has 2 more of its
# own, 5 with a blob store).
max_connections = 32
# Quota given to new accounts, in bytes (0 = unlimited). `tern account add --quota` overrides.
default_quota = {quota}
# Most writes committed together under one fsync (group commit).
max_batch = {max_batch}
# Bytes of the database mapped into memory for bulk reads (IMAP FETCH and SEARCH, message
# bodies): reads come straight from the page cache. Mapped pages count in the process's
# RSS, as page cache the kernel takes back when it needs memory. 0 = read by copying.
read_mmap_size = {read_mmap_size}

[blobs]
# Where message bodies are stored, each once by its SHA-256 however many copies refer to it:
#   "local"  in the database (SQLite or PostgreSQL): one flush covers body and metadata
#   "files"  one file per body under `path`, fsynced with its folder before the commit
#   "s3"     an S3-compatible bucket (AWS S3, MinIO, Ceph, Garage, R2…); it must exist
# A body stays where it was written. Files and objects share one layout (ab/cd/<sha256>): moving
# from "files" to "s3" is copying the folder into the bucket (aws s3 sync blobs/ s3://BUCKET/PREFIX).
backend = "local"
path = "blobs"
bucket = ""
endpoint = ""                 # e.g. "https://s3.example.net"; "" = AWS S3 in `region`
region = "us-east-1"
access_key_id = ""            # "" = from the environment (AWS_ACCESS_KEY_ID)
secret_access_key = ""        # "" = from the environment (AWS_SECRET_ACCESS_KEY)
path_style = true             # bucket in the URL path, as most S3-compatible services want
prefix = ""                   # put before every object name, e.g. "mail/"

[node]
# This server's name among nodes sharing one store (`tern node list`; the owner of the queue
# leases it takes). Unique per node; "" = the machine's host name.
name = ""
# How often the node says it is alive; the other nodes take over the queue work of a node
# silent for three times as long (delivery is at least once: a node that was only slow may
# repeat a delivery another node then makes).
heartbeat = "10s"

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
# and for a whole DATA or BDAT transfer. Each is a deadline for the whole line, block or
# transfer: a client sending a byte at a time does not extend it.
command_timeout = {command_timeout}
data_block_timeout = {data_block_timeout}
data_total_timeout = {data_total_timeout}
# Simultaneous connections in total and per client IP address.
max_connections = {max_connections}
max_connections_per_ip = {max_connections_per_ip}
# Memory, in bytes, that all sessions together may hold for messages being received (at
# least max_message_size). A message finding none left is read to its end, discarded and
# refused with "452 4.3.1" (senders retry), so many large or oversized messages at once
# cannot exhaust memory. A message over max_message_size is discarded as it streams.
max_data_memory = {max_data_memory}
# Protocol errors tolerated in one session before "421" and disconnect.
max_errors = {max_errors}
# New connections and messages per minute from one client network (an IPv4 /24 and an
# IPv6 /64 by default; 0 = unlimited). Beyond them: 421 4.7.0 / 451 4.7.1. 127.0.0.1 and
# ::1 are exempt. Counted in the store: on a shared store, one allowance for every node.
connections_per_minute_per_network = {conn_rate}
messages_per_minute_per_network = {msg_rate}
rate_limit_ipv4_prefix = {v4p}
rate_limit_ipv6_prefix = {v6p}
# Honour per-domain catch-all accounts (`tern domain add --catch-all ADDRESS`).
allow_catch_all = {allow_catch_all}
# Line endings: the message ends only at CRLF "." CRLF. A bare LF or bare CR inside the
# data is normalised to CRLF and never ends the message (no SMTP smuggling). NUL bytes
# are refused with 554 5.6.0.

[pop3]
# Seconds to wait for each command line before ending the session (RFC 1939: at least 600).
# Every timeout here is a deadline for the whole line: a client sending a byte at a time
# does not extend it.
timeout = {pop3_timeout}
# Seconds from connecting to a successful login, all of it.
login_timeout = {pop3_login_timeout}
# Simultaneous connections in total and per client IP address.
max_connections = {pop3_max}
max_connections_per_ip = {pop3_max_ip}

[imap]
# Seconds an authenticated session may take for each command, or stay silent (RFC 9051:
# at least 30 minutes; IDLE too). A deadline for the whole command, literals included.
timeout = {imap_timeout}
# Seconds from connecting to a successful login, all of it.
login_timeout = {imap_login_timeout}
# Largest command in bytes, literals (APPEND) included; larger ones are refused before upload.
max_command = {imap_max_command}
# Simultaneous connections in total and per client IP address.
max_connections = {imap_max}
max_connections_per_ip = {imap_max_ip}
# METADATA (RFC 5464): largest annotation value in bytes, annotations per mailbox (and server).
metadata_max_size = {imap_meta_size}
metadata_max_entries = {imap_meta_entries}

[auth]
# Accept passwords before TLS from loopback clients only (elsewhere TLS is required).
plaintext_on_loopback = {plaintext}
# Password guessing is stopped where it comes from; an account is never locked (its owner
# logs in from an address that is not refused). After this many failed logins from one
# address, or for one account, each attempt is slowed down (1 s, growing to 5 s),
slow_after = {slow_after}
# after this many from one address (attempts in progress count) the address is refused,
block_after = {block_after}
# and after this many from one network (IPv4 /24, IPv6 /64) the whole network is,
network_block_after = {network_block_after}
# for this many seconds after the last failure. Counted in the store: on a shared store an
# address refused on one node is refused on every node.
window = {window}

[submission]
# Authenticated users and applications sending mail (RFC 6409). AUTH needs TLS
# (STARTTLS on 587, implicit on 465), except from loopback if [auth] allows it.
# A user may send only from its own address and its aliases.
# Messages per account per hour and per day (0 = unlimited).
max_messages_per_hour = {sub_hour}
max_messages_per_day = {sub_day}
# Recipients per message.
max_recipients = {sub_rcpts}
# Also file a copy in the sender's Sent folder (mail clients usually do it themselves).
save_sent = {sub_sent}
# Networks whose clients may send through 587/465 without AUTH (like Postfix's
# mynetworks), e.g. ["127.0.0.0/8", "::1"] for applications on this host. Their
# sender addresses are not checked: list only networks you control.
trusted_networks = []

[queue]
# Outbound delivery to other domains' MX hosts. Waits between attempts; the
# last one repeats until the message expires and is returned to its sender.
retry = [{retry}]
expire = "{expire}"
# Tell the sender a message is delayed once it has waited this long ("0" = never).
delay_notice = "{delay_notice}"
# Simultaneous outgoing connections in total and per destination domain.
max_connections = {q_conns}
max_connections_per_domain = {q_conns_domain}
# Messages sent over one connection before it is closed.
messages_per_connection = {q_per_conn}
# Messages per minute to one destination domain (0 = unlimited); the rest wait their turn.
max_messages_per_domain_per_minute = 0
# Seconds: TCP connect plus greeting, each command, and the reply after the data.
connect_timeout = {q_connect}
command_timeout = {q_command}
data_timeout = {q_data}
# Name given in EHLO ("" = [server] hostname).
helo_name = ""
# Local IP addresses to send from, in turn ([] = the system chooses).
source_ips = []
# TLS towards MX hosts: "opportunistic" (STARTTLS when offered), "required" or "none".
# DANE and MTA-STS policies published by the destination take precedence.
tls = "opportunistic"
# Honour DANE (RFC 7672): when a destination's MX host publishes TLSA records in a
# DNSSEC-signed zone, deliver to it only over TLS with a certificate those records match.
# Tern validates DNSSEC itself (from [dns] trust_anchor); the resolvers must pass
# signatures through. A forged (bogus) answer defers the mail instead of weakening TLS.
dane = true
# Honour MTA-STS (RFC 8461): deliver only to the MX hosts a domain's policy names, over
# TLS with a valid certificate, when the policy says "enforce". DANE wins when both exist.
mta_sts = true
# TLS reporting (RFC 8460): count each delivery session's TLS outcome per destination and
# policy, and every tls_report_interval send a JSON report (gzipped) to the destinations
# that publish a _smtp._tls TXT record (rua=mailto: through the queue, or https: POST).
tls_reports = true
tls_report_interval = "24h"
# Extra CA certificates (PEM) trusted for verified TLS, besides the system's ("" = none).
tls_ca_file = ""
# How long DMARC and TLS reports are retried before they are dropped.
report_expire = "2d"
# Suppress an address (global list) when its server refuses it permanently (5.1.x, 5.2.1).
suppress_hard_bounces = true
# Transport rules send a domain's mail somewhere other than its MX hosts;
# domain = "*" makes a smarthost for all mail. Example:
# [[queue.transport]]
# domain = "*"
# host = "smtp.relay.example"
# port = 587
# tls = "required"
# username = "user"
# password = "secret"

[inbound]
# Check SPF (HELO and MAIL FROM), DKIM, ARC and DMARC on mail from the internet and add one
# Authentication-Results header (authserv-id: [server] hostname); forged ones are removed.
authenticate = true
# Refuse mail failing DMARC under p=reject (550 5.7.1, before 250) and file mail failing
# under p=quarantine in Junk. SPF alone never refuses anything.
enforce_dmarc = true
# Networks exempt from DMARC refusal/quarantine (forwarders, backup MX), e.g. ["192.0.2.0/24"].
trusted_forwarders = []
# Send DMARC aggregate reports (gzipped XML, RFC 7489 section 7.2) to the rua addresses of
# the domains whose mail was evaluated, every dmarc_report_interval, through the queue.
dmarc_reports = true
dmarc_report_interval = "24h"

[filter]
# Score mail from the internet: fixed rules (GTUBE, authentication failures, header
# sanity, executable attachments...), DNS blocklists and a Bayesian classifier that
# learns from users (moves into and out of Junk; `tern spam train`). Adds X-Spam-Status.
enabled = true
# At this score a message goes to Junk; at reject_score it is refused before 250.
junk_score = 5.0
reject_score = 15.0
# DNS blocklist zones for the client's address, e.g. ["zen.spamhaus.org"], and the score
# of a listing.
dnsbl = []
dnsbl_score = 3.0
# Spam and ham messages each the classifier must have learnt before its opinion counts.
bayes_min_trained = 20
# Greylisting (RFC 6647), off by default: the first attempt of an unknown (client /24
# or /64, sender, recipient) triplet gets 451 4.7.1; a retry after greylist_delay and
# within greylist_retry_window passes, and the triplet keeps passing for
# greylist_pass_lifetime. Networks in greylist_pass_list are never greylisted.
greylist = false
greylist_delay = "5m"
greylist_retry_window = "4h"
greylist_pass_lifetime = "36d"
greylist_pass_list = []

[events]
# Every message's history (received, accepted, delivered, deferred, bounced, ...): read it
# with GET /v1/events and /v1/messages/ID, receive it by webhook. Kept this long.
retention = "30d"

[web]
# The dashboard at / on the [listen] http and https addresses: delivery analytics, message
# timelines, the queue, domains with their DNS check, suppressions. Users: `tern admin add`.
# Over plain HTTP only on a trusted network; its cookies are Secure over HTTPS.
enabled = true

[api]
# The HTTP API under /v1 on the [listen] http addresses (OpenAPI at /v1/openapi.json).
# Keys: `tern apikey create --scope send|read|admin --data DIR`.
enabled = true
# Requests per second per API key (bursts of twice that); more get 429 with Retry-After.
# Counted in the store: on a shared store, one allowance for every node.
requests_per_second = 100
# Largest request body in bytes, and most recipients of one message.
max_body_size = 31457280
max_recipients = 1000

[webhooks]
# Endpoints (`tern webhook add URL`, POST /v1/webhooks) get events as signed JSON POSTs
# (Standard Webhooks). Only https:// to public addresses unless allow_http = true (which
# also allows loopback and private networks: for development).
allow_http = false
# Retry a failing endpoint with exponential backoff this long, then dead-letter the events.
retry_for = "3d"
# Seconds to wait for an endpoint's answer, and endpoints POSTed to at once.
timeout = 10
max_concurrent = 16

[feedback]
# Each recipient's copy of mail sent through the API leaves with its own signed return path
# (bounce+TOKEN@domain), so a bounce that arrives hours later over MX is matched to the
# message and recipient, recorded as `bounced` and, when hard, suppresses the address.
# (Mail people submit keeps their own address: their bounces reach their inbox.)
verp = true
# How long such a return path takes bounces; older or forged ones are refused at RCPT.
bounce_window = "30d"
# Local parts at each of our domains that take ARF complaint reports (RFC 5965) from
# feedback loops: recorded as `complained`, the recipient suppressed. Other mail to them is
# delivered when the address exists, refused when it does not.
complaint_addresses = ["fbl", "abuse"]
# Where the one-click unsubscribe links of broadcast mail point: this server's HTTPS
# listener as the world reaches it. "" = https://<server hostname>.
public_url = ""
# Failure replies get a category (bad_mailbox, inactive, mailbox_full, message_too_large,
# content, spam_block, reputation, rate_limited, dns, tls, authentication, policy, other)
# from Tern's rule table; rules of your own come first:
# [[feedback.rules]]
# pattern = "blocked by acme filter"      # case-insensitive regular expression
# category = "spam_block"
# hard = false                            # optional: suppress the address?
# blocklist = "ACME"                      # optional
# Engagement tracking (opens and clicks of API mail with an HTML part and one recipient):
# off unless asked for per message ("track_opens"/"track_clicks") or here, per sending
# domain or stream (e.g. ["broadcast"]). Links become signed redirects to the original URL
# only; opens and clicks by machines (Apple Mail Privacy Protection, link scanners) are
# flagged `machine` on their events.
track_domains = []
track_streams = []
# Tracking links at https://<tracking_host>.<sending domain> (then publish the CNAME that
# `tern dns records` prints); "" = at public_url.
tracking_host = ""

[verify]
# `tern verify ADDRESS…` asks each domain's MX whether the mailboxes exist (EHLO, MAIL FROM,
# RCPT TO, a random address to find catch-alls, RSET, QUIT — never DATA).
# Our EHLO name and the MAIL FROM of probes ("" = [server] hostname, verify@hostname).
helo_name = ""
mail_from = ""
# Seconds to connect, and to wait for each reply (a tarpit cannot hold a job longer).
connect_timeout = 10
command_timeout = 30
# Greylisted addresses are tried again after the wait the reply asks for ("try again in 5
# minutes"), at most greylist_wait (and greylist_wait when it does not say), this many times.
greylist_wait = "60s"
greylist_retries = 1
# Local addresses probes connect from, one IPv4 and/or one IPv6 (an address whose reverse DNS
# names helo_name fares best); [] = the system's choice.
source_addresses = []
# MX hosts tried per domain (in preference order, while they are down or fail temporarily),
# and domains probed at once (one connection each, reused for all its addresses).
max_hosts = 3
concurrency = 10
# Most connections to one MX host at once (many domains share a provider's MX).
connections_per_host = 2
# A domain's MX hosts and whether it accepts every address are remembered this long, so a
# list (or the API) meeting the domain again asks once ("0s" = never remembered).
cache_ttl = "1h"
# Bulk jobs of the API (POST /v1/verify/jobs) are kept this long with their answers.
job_retention = "30d"
# Disposable domains: the list shipped with Tern (see `tern verify --update-disposable`).

[dns]
# Recursive resolvers, "IP:port"; [] uses the system's (/etc/resolv.conf).
nameservers = [{nameservers}]
# DNSSEC trust anchors for DANE: a file of root DNSKEY records ("" = the IANA root keys).
trust_anchor = ""
# Blocklists `tern dns check` looks this server's sending addresses and the domain up in
# (Spamhaus refuses queries that come through large public resolvers: use your own).
check_blocklists = ["zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org"]
check_domain_blocklists = ["dbl.spamhaus.org"]
"#,
        smtp = list(&l.smtp),
        pop3 = list(&l.pop3),
        pop3s = list(&l.pop3s),
        http = list(&l.http),
        https = list(&l.https),
        submission = list(&l.submission),
        submissions = list(&l.submissions),
        imap = list(&l.imap),
        imaps = list(&l.imaps),
        quota = st.default_quota,
        max_batch = st.max_batch,
        read_mmap_size = st.read_mmap_size,
        max_message_size = s.max_message_size,
        max_recipients = s.max_recipients,
        max_command_line = s.max_command_line,
        max_data_line = s.max_data_line,
        command_timeout = s.command_timeout,
        data_block_timeout = s.data_block_timeout,
        data_total_timeout = s.data_total_timeout,
        max_connections = s.max_connections,
        max_connections_per_ip = s.max_connections_per_ip,
        max_data_memory = s.max_data_memory,
        max_errors = s.max_errors,
        conn_rate = s.connections_per_minute_per_network,
        msg_rate = s.messages_per_minute_per_network,
        v4p = s.rate_limit_ipv4_prefix,
        v6p = s.rate_limit_ipv6_prefix,
        allow_catch_all = s.allow_catch_all,
        pop3_timeout = p.timeout,
        pop3_max = p.max_connections,
        pop3_login_timeout = p.login_timeout,
        pop3_max_ip = p.max_connections_per_ip,
        imap_max_ip = i.max_connections_per_ip,
        imap_meta_size = i.metadata_max_size,
        imap_meta_entries = i.metadata_max_entries,
        imap_timeout = i.timeout,
        imap_login_timeout = i.login_timeout,
        imap_max_command = i.max_command,
        imap_max = i.max_connections,
        plaintext = a.plaintext_on_loopback,
        slow_after = a.slow_after,
        block_after = a.block_after,
        network_block_after = a.network_block_after,
        window = a.window,
        sub_hour = sub.max_messages_per_hour,
        sub_day = sub.max_messages_per_day,
        sub_rcpts = sub.max_recipients,
        sub_sent = sub.save_sent,
        retry = q
            .retry
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", "),
        expire = q.expire,
        delay_notice = q.delay_notice,
        q_conns = q.max_connections,
        q_conns_domain = q.max_connections_per_domain,
        q_per_conn = q.messages_per_connection,
        q_connect = q.connect_timeout,
        q_command = q.command_timeout,
        q_data = q.data_timeout,
        nameservers = nameservers
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_parses_to_defaults() {
        let ns: SocketAddr = "127.0.0.53:53".parse().unwrap();
        let c: Config = toml::from_str(&template("mail.example.com", Some(10000), &[ns])).unwrap();
        c.validate().unwrap();
        assert_eq!(c.dns.nameservers, vec![ns]);
        assert_eq!(c.queue.retry, QueueConfig::default().retry);
        assert_eq!(c.queue.tls, TlsPolicy::Opportunistic);
        assert_eq!(
            c.submission.max_messages_per_day,
            SubmissionConfig::default().max_messages_per_day
        );
        assert_eq!(c.server.hostname, "mail.example.com");
        assert_eq!(c.listen.smtp, vec!["127.0.0.1:10025".parse().unwrap()]);
        let d = SmtpConfig::default();
        assert_eq!(c.smtp.max_message_size, d.max_message_size);
        assert_eq!(c.smtp.max_errors, d.max_errors);
        assert_eq!(c.store.default_quota, StoreConfig::default().default_quota);
        assert_eq!(c.auth.block_after, AuthConfig::default().block_after);
    }

    #[test]
    fn networks() {
        let n: IpNet = "127.0.0.0/8".parse().unwrap();
        assert!(n.contains("127.1.2.3".parse().unwrap()));
        assert!(n.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!n.contains("128.0.0.1".parse().unwrap()));
        let one: IpNet = "::1".parse().unwrap();
        assert!(one.contains("::1".parse().unwrap()) && !one.contains("::2".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("nonsense".parse::<IpNet>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("5m").unwrap().as_secs(), 300);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172_800);
        assert_eq!(parse_duration("0").unwrap().as_secs(), 0);
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Config>("[smtp]\nmax_mesage_size = 1\n").is_err());
    }
}
