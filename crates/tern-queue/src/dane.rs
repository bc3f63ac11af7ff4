//! DANE for SMTP (RFC 7672): a rustls certificate verifier fed by the
//! DNSSEC-validated TLSA records of an MX host.
//!
//! Only the usages RFC 7672 §3.1 keeps for SMTP count: DANE-EE(3) — the
//! server's own certificate or key matches, names and dates do not matter
//! (§3.1.1) — and DANE-TA(2) — a certificate in the server's chain matches
//! and the chain from it to the server's certificate is valid for one of
//! the reference identifiers, the MX host name or the next-hop domain
//! (§3.1.2, §3.2.2). PKIX-TA(0) and PKIX-EE(1) are unusable (§3.1.3); a
//! TLSA RRset with no usable record still requires TLS but authenticates
//! nothing (§2.2).

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256, Sha512};
use std::sync::Arc;
use tern_dns::Tlsa;
use tokio_rustls::TlsConnector;

/// Whether RFC 7672 lets SMTP use this record.
pub fn usable(t: &Tlsa) -> bool {
    matches!(t.usage, 2 | 3) && t.selector <= 1 && t.matching <= 2
}

/// Whether `cert` matches the record's selector and matching type.
fn matches(t: &Tlsa, cert: &CertificateDer<'_>) -> bool {
    let content: Vec<u8> = match t.selector {
        0 => cert.as_ref().to_vec(),
        _ => match webpki::anchor_from_trusted_cert(cert) {
            Ok(anchor) => webpki::spki_for_anchor(&anchor).as_ref().to_vec(),
            Err(_) => return false,
        },
    };
    match t.matching {
        0 => content == t.data,
        1 => Sha256::digest(&content)[..] == t.data[..],
        2 => Sha512::digest(&content)[..] == t.data[..],
        _ => false,
    }
}

/// The SHA-256 digest of a certificate's SubjectPublicKeyInfo: the data of
/// a `TLSA 3 1 1` record for a server presenting it.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let anchor = webpki::anchor_from_trusted_cert(cert).ok()?;
    Some(Sha256::digest(webpki::spki_for_anchor(&anchor).as_ref()).to_vec())
}

/// Checks a server's certificate chain against an MX host's TLSA records.
#[derive(Debug)]
pub struct DaneVerifier {
    tlsa: Vec<Tlsa>,
    /// Reference identifiers for DANE-TA: the MX host, then the domain.
    names: Vec<String>,
    provider: Arc<CryptoProvider>,
}

impl DaneVerifier {
    /// A verifier for a host publishing `tlsa`, reached as `host` for mail
    /// to `domain`.
    pub fn new(tlsa: Vec<Tlsa>, host: &str, domain: &str) -> Self {
        let mut names = vec![host.to_string()];
        if !domain.eq_ignore_ascii_case(host) {
            names.push(domain.to_string());
        }
        Self {
            tlsa,
            names,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        }
    }

    /// A TLS connector using this verifier.
    pub fn connector(self) -> Result<TlsConnector, rustls::Error> {
        let provider = self.provider.clone();
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(self))
            .with_no_client_auth();
        Ok(TlsConnector::from(Arc::new(cfg)))
    }

    /// DANE-TA: `anchor` (from the server's own chain) as the only root,
    /// the usual path and name checks against each reference identifier.
    fn verify_from_anchor(
        &self,
        anchor: &CertificateDer<'_>,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> bool {
        let mut roots = RootCertStore::empty();
        if roots.add(anchor.clone().into_owned()).is_err() {
            return false;
        }
        let Ok(verifier) =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
        else {
            return false;
        };
        self.names.iter().any(|n| {
            ServerName::try_from(n.as_str()).is_ok_and(|name| {
                verifier
                    .verify_server_cert(end_entity, intermediates, &name, &[], now)
                    .is_ok()
            })
        })
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let usable: Vec<&Tlsa> = self.tlsa.iter().filter(|t| usable(t)).collect();
        if usable.is_empty() {
            // RFC 7672 §2.2: encrypt, authenticate nothing.
            return Ok(ServerCertVerified::assertion());
        }
        for t in &usable {
            match t.usage {
                3 if matches(t, end_entity) => return Ok(ServerCertVerified::assertion()),
                2 => {
                    for anchor in intermediates.iter().chain(std::iter::once(end_entity)) {
                        if matches(t, anchor)
                            && self.verify_from_anchor(anchor, end_entity, intermediates, now)
                        {
                            return Ok(ServerCertVerified::assertion());
                        }
                    }
                }
                _ => {}
            }
        }
        Err(rustls::Error::General(
            "DANE: no TLSA record matches the server's certificate chain".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
