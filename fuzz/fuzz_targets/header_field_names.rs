//! The field-name index of a header block (what header searches prefilter
//! on): any bytes in, never a panic; every name is lower case, once, without
//! a newline, and every field line's name is among them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let names = tern_store::meta::field_names(data);
    assert!(names.starts_with('\n') && names.ends_with('\n'));
    let list: Vec<&str> = names.trim_matches('\n').split('\n').filter(|n| !n.is_empty()).collect();
    let mut seen = std::collections::HashSet::new();
    for n in &list {
        assert!(seen.insert(*n), "{n:?} twice");
        assert_eq!(*n, n.to_ascii_lowercase());
    }
    for line in data.split(|&b| b == b'\n') {
        if line.first().is_some_and(|b| !matches!(b, b' ' | b'\t' | b'\r'))
            && let Some(colon) = line.iter().position(|&b| b == b':')
        {
            let name = String::from_utf8_lossy(&line[..colon]).trim_end().to_ascii_lowercase();
            if !name.is_empty() {
                assert!(seen.contains(name.as_str()), "{name:?} missing");
            }
        }
    }
});
