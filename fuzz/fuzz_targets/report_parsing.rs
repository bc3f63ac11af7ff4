//! Reports from other servers (DMARC aggregate, TLS-RPT) and the TLSRPT
//! DNS record: hostile bytes from the network, read or ignored, never a
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tern_auth::dmarc_report::received_report(data);
    if let Some(d) = tern_queue::tlsrpt::parse_record(&String::from_utf8_lossy(data)) {
        assert!(d.mailto.iter().all(|a| a.contains('@')));
        assert!(d.https.iter().all(|u| u.starts_with("https://")));
    }
});
