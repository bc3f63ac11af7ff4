//! Mail authentication for Tern: the DKIM keys a
//! domain signs with (RFC 6376 RSA, RFC 8463 Ed25519) and the public-key
//! records they need in DNS, DKIM signing, and the checks on inbound mail
//! (SPF, DKIM, ARC, DMARC; see [`inbound`]).

pub mod dkim_keys;

pub use dkim_keys::{DkimAlgorithm, DkimKey};
pub mod dkim_sign;

pub use dkim_sign::{DomainSigner, SignError, SignerCache};
pub mod inbound;

pub use inbound::{Disposition, InboundAuth, Verdict};
pub mod dmarc_report;

pub use dmarc_report::{DmarcReports, OutgoingReport};
