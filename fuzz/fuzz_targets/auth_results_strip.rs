//! Removing forged Authentication-Results from hostile header blocks: any
//! bytes in, never a panic; what comes out is never longer, and keeps the body.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(out) = tern_auth::inbound::strip_forged_results(data, "mx.example.com") {
        assert!(out.len() < data.len());
        if let Some(p) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(out.ends_with(&data[p + 2..]));
        }
    }
});
