//! DNS for Tern: the one caching resolver every other crate uses
//! ([`resolver`]: hickory, nameservers from `tern.toml`, never `/etc/hosts`;
//! MX, TXT, addresses, PTR and forward-confirmed reverse DNS; DNSSEC-validated
//! MX, address and TLSA answers for DANE), and the
//! records a domain must publish ([`records`]): MX, SPF (RFC 7208), DKIM keys
//! (RFC 6376, RFC 8463), DMARC (RFC 7489), MTA-STS (RFC 8461) and TLS-RPT
//! (RFC 8460), as zone-file lines — and whether the world sees them
//! ([`check`]).

pub mod check;
pub mod records;
pub mod resolver;

pub use resolver::{DnsError, Mx, Resolver, Security, Tlsa, Validated};
