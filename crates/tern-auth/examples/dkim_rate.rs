//! DKIM signing rate on one core, next to the crypto library's raw RSA
//! signing rate (the issue's target: signing within 20% of raw RSA).
//!
//!     cargo run --release -p tern-auth --example dkim_rate [SECONDS]
//!
//! Raw: aws-lc-rs RSA-2048 PKCS#1 v1.5 SHA-256 over 32 bytes. DKIM: Tern's
//! signer on a 5 KiB message (relaxed/relaxed, 13 header names, body hash),
//! one signature per message with an RSA-2048 key, then with Ed25519.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use std::time::{Duration, Instant};
use tern_auth::{DkimAlgorithm, DkimKey, DomainSigner};

fn rate(secs: f64, mut f: impl FnMut()) -> f64 {
    for _ in 0..20 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        f();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let rsa = DkimKey::generate("r", DkimAlgorithm::Rsa2048).unwrap();
    let ed = DkimKey::generate("e", DkimAlgorithm::Ed25519).unwrap();
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(rsa.private_pem.as_bytes())
        .map(|d: rustls_pki_types::PrivatePkcs8KeyDer<'static>| d.secret_pkcs8_der().to_vec())
        .unwrap();
    let pair = RsaKeyPair::from_pkcs8(&der).unwrap();
    let rng = SystemRandom::new();
    let mut sig = vec![0u8; pair.public_modulus_len()];
    let digest = [7u8; 32];
    let raw = rate(secs, || {
        pair.sign(&RSA_PKCS1_SHA256, &rng, &digest, &mut sig)
            .unwrap();
    });

    let mut message = b"From: Alice <alice@example.com>\r\nTo: bob@example.org\r\nSubject: rate\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    while message.len() < 5 * 1024 {
        message.extend_from_slice(
            b"The quick brown fox jumps over the lazy dog, again and again.\r\n",
        );
    }
    let rsa_signer = DomainSigner::new("example.com", std::slice::from_ref(&rsa)).unwrap();
    let dkim_rsa = rate(secs, || {
        rsa_signer.sign(&message).unwrap();
    });
    let ed_signer = DomainSigner::new("example.com", std::slice::from_ref(&ed)).unwrap();
    let dkim_ed = rate(secs, || {
        ed_signer.sign(&message).unwrap();
    });
    let both = DomainSigner::new("example.com", &[rsa, ed]).unwrap();
    let dkim_both = rate(secs, || {
        both.sign(&message).unwrap();
    });
    let _ = pair.public_key();
    println!("raw RSA-2048 sign (aws-lc-rs):      {raw:>8.0}/s per core");
    println!(
        "DKIM rsa-sha256, 5 KiB message:      {dkim_rsa:>8.0}/s per core  ({:.1}% of raw)",
        100.0 * dkim_rsa / raw
    );
    println!("DKIM ed25519-sha256, 5 KiB message:  {dkim_ed:>8.0}/s per core");
    println!("DKIM both (Tern's default):          {dkim_both:>8.0}/s per core");
}
