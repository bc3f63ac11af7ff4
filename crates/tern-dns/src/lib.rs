//! DNS for Tern. This first part generates the records a domain must
//! publish for Tern to receive and (soon) send its mail: MX, SPF (RFC 7208),
//! DKIM keys (RFC 6376, RFC 8463), DMARC (RFC 7489), MTA-STS (RFC 8461) and
//! TLS-RPT (RFC 8460), as zone-file lines. The resolver every other crate
//! will use (hickory, nameservers from `tern.toml`) lands here next.

pub mod records;
pub mod resolver;

pub use resolver::{DnsError, Mx, Resolver};
