//! DANE: a server's certificate chain (hostile bytes) checked against TLSA
//! records (DNS data): accepted or refused, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rustls::client::danger::ServerCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tern_dns::Tlsa;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (head, rest) = data.split_at(4);
    let split = rest.len() / 2;
    let (tlsa_data, cert) = rest.split_at(split);
    let tlsa = Tlsa {
        usage: head[0] % 4,
        selector: head[1] % 3,
        matching: head[2] % 4,
        data: tlsa_data.to_vec(),
    };
    let verifier = tern_queue::dane::DaneVerifier::new(vec![tlsa], "mx.example.com", "example.com");
    let chain = [CertificateDer::from(cert.to_vec())];
    let _ = verifier.verify_server_cert(
        &chain[0],
        &chain[..usize::from(head[3] % 2)],
        &ServerName::try_from("mx.example.com").unwrap(),
        &[],
        UnixTime::now(),
    );
    let _ = tern_queue::dane::spki_sha256(&chain[0]);
});
