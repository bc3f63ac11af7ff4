//! Differential: the DKIM body hash Tern's signer computes (mail-auth's
//! relaxed body canonicalization, patched in vendor/mail-auth) equals the
//! hash of RFC 6376 §3.4.4's relaxed canonicalization written from the
//! RFC's text, for any body of CRLF-terminated lines (bare CR and LF are
//! not SMTP: the input is turned into CRLF lines first).
#![no_main]
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use sha2::Digest;
use std::sync::LazyLock;
use tern_auth::dkim_keys::{DkimAlgorithm, DkimKey};
use tern_auth::dkim_sign::DomainSigner;

static SIGNER: LazyLock<DomainSigner> = LazyLock::new(|| {
    let keys = [DkimKey::generate("f1", DkimAlgorithm::Ed25519).expect("key")];
    DomainSigner::new("example.com", &keys).expect("signer")
});

/// RFC 6376 §3.4.4: WSP runs become one SP, WSP at line ends goes, empty
/// lines at the end go, a non-empty body ends with CRLF.
fn relaxed(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<Vec<u8>> = lines
        .iter()
        .map(|line| {
            let mut l = Vec::new();
            let mut wsp = false;
            for &b in line {
                if b == b' ' || b == b'\t' {
                    wsp = true;
                } else {
                    if wsp {
                        l.push(b' ');
                    }
                    wsp = false;
                    l.push(b);
                }
            }
            l
        })
        .collect();
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.into_iter().flat_map(|l| [l, b"\r\n".to_vec()]).flatten().collect()
}

fuzz_target!(|data: &[u8]| {
    let lines: Vec<Vec<u8>> = data
        .split(|&b| b == b'\n')
        .map(|l| l.iter().copied().filter(|&b| b != b'\r').collect())
        .collect();
    let mut body = Vec::new();
    for l in &lines {
        body.extend_from_slice(l);
        body.extend_from_slice(b"\r\n");
    }
    let mut msg = b"From: a@example.com\r\nSubject: f\r\n\r\n".to_vec();
    msg.extend_from_slice(&body);
    let sig = SIGNER.sign(&msg).expect("sign");
    let bh: String = sig
        .split("bh=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let want = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(relaxed(&lines)));
    assert_eq!(bh, want, "body {:?}", String::from_utf8_lossy(&body));
});
