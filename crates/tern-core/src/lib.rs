//! Shared types for Tern: configuration, e-mail addresses, TLS setup, login
//! throttling and small helpers used by every service crate.
//!
//! Dependencies point one way: every other Tern crate may depend on this one;
//! this crate depends on no other Tern crate.

pub mod address;
pub mod authguard;
pub mod config;
pub mod conn;
pub mod connlimit;
pub mod deflate;
pub mod id;
pub mod memory;
pub mod sasl;
pub mod srs;
pub mod tally;
pub mod tls;

pub use address::{Address, AddressError};
pub use config::Config;

/// The current time as seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Formats a Unix timestamp as an RFC 5322 §3.3 date-time in UTC,
/// e.g. `Fri, 27 Nov 2026 12:00:00 +0000`.
pub fn rfc5322_date(ts: i64) -> String {
    mail_parser::DateTime::from_timestamp(ts).to_rfc822()
}

/// This machine's own addresses, 127.0.0.1 and ::1: local software (content
/// filters, monitoring, the admin's tools) that rate limits and greylisting
/// must never slow down. Other loopback addresses are not included, so
/// tests can play remote hosts on 127.x.y.z.
pub fn is_local_host(ip: std::net::IpAddr) -> bool {
    ip == std::net::IpAddr::from([127, 0, 0, 1])
        || ip == std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
}
