//! Differential: IMAP LIST pattern matching (the table in
//! `tern_imap::pattern`) against the rule written the obvious way, a
//! backtracking matcher, on short inputs where backtracking is affordable.
//! Long inputs check only that the table answers (no recursion, no blow-up).
#![no_main]
use libfuzzer_sys::fuzz_target;

/// RFC 9051 §6.3.9, literally: `*` any run, `%` any run without `/`,
/// other bytes themselves ignoring ASCII case.
fn reference(p: &[u8], n: &[u8]) -> bool {
    match p.split_first() {
        None => n.is_empty(),
        Some((b'*', rest)) => (0..=n.len()).any(|i| reference(rest, &n[i..])),
        Some((b'%', rest)) => (0..=n.len())
            .take_while(|&i| i == 0 || n[i - 1] != b'/')
            .any(|i| reference(rest, &n[i..])),
        Some((c, rest)) => n.first().is_some_and(|b| b.eq_ignore_ascii_case(c)) && reference(rest, &n[1..]),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&cut, rest)) = input.split_first() else { return };
    let cut = (cut as usize).min(rest.len());
    // A small alphabet so that matches happen: a, b, /, *, %.
    let map = |b: &u8| [b'a', b'B', b'/', b'*', b'%', b'b'][(*b % 6) as usize];
    let pattern: Vec<u8> = rest[..cut].iter().map(map).collect();
    let name: Vec<u8> = rest[cut..].iter().map(map).filter(|&b| b != b'*' && b != b'%').collect();
    let got = tern_imap::pattern::matches(&pattern, &name);
    if pattern.len() <= 10 && name.len() <= 12 {
        assert_eq!(got, reference(&pattern, &name), "{:?} {:?}", String::from_utf8_lossy(&pattern), String::from_utf8_lossy(&name));
    }
});
