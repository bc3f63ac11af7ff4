//! Mail authentication for Tern. This first part holds the DKIM keys a
//! domain signs with (RFC 6376 RSA, RFC 8463 Ed25519) and the public-key
//! records they need in DNS; signing, verification, SPF, DMARC and ARC
//! arrive with the outbound queue and inbound checks.

pub mod dkim_keys;

pub use dkim_keys::{DkimAlgorithm, DkimKey};
