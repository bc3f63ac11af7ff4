//! What `tern verify` and `/v1/verify` read from outside: addresses (from
//! lists and API bodies) and disposable-domain lists (fetched over HTTP).
//! Parsed or refused, never a panic; a parsed address has an A-label,
//! lower-case domain with a dot, and the parse is stable.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((local, domain)) = tern_verify::parse(&text) {
        assert!(!local.is_empty() && local.len() <= 64);
        assert!(domain.is_ascii() && domain.contains('.'));
        assert_eq!(domain, domain.to_ascii_lowercase());
        let again = tern_verify::parse(&format!("{local}@{domain}")).expect("stable");
        assert_eq!(again.1, domain);
        let _ = tern_verify::lists::suggestion(&domain);
        let _ = tern_verify::lists::is_role(&local);
    }
    let list = tern_verify::disposable::List::parse(&text);
    for line in text.lines().take(8) {
        let _ = list.contains(line.trim());
    }
});
