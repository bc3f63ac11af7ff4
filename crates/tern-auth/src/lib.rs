//! Mail authentication for Tern: the DKIM keys a
//! domain signs with (RFC 6376 RSA, RFC 8463 Ed25519) and the public-key
//! records they need in DNS, and DKIM signing; verification, SPF, DMARC and ARC
//! arrive with the inbound checks.

pub mod dkim_keys;

pub use dkim_keys::{DkimAlgorithm, DkimKey};
pub mod dkim_sign;

pub use dkim_sign::{DomainSigner, SignError, SignerCache};
