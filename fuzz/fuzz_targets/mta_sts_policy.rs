//! MTA-STS TXT records and policy files (fetched from the network): parsed
//! or refused, never a panic; a parsed policy is sane.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tern_queue::mta_sts::{Mode, parse_policy, parse_txt};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(id) = parse_txt(&text) {
        assert!(!id.is_empty() && id.len() <= 32);
    }
    if let Ok(p) = parse_policy("1", &text) {
        assert!(p.max_age <= 31_557_600);
        assert!(p.mode == Mode::None || !p.mx.is_empty());
        let _ = p.matches("mx.example.com");
    }
});
