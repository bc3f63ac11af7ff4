//! SRS addresses arrive as RCPT TO local parts (bounces to mail Tern
//! forwarded): reversed or refused, never a panic; an address Tern wrote
//! reverses to its original.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tern_core::srs;

const SECRET: &[u8] = b"fuzz secret";
const NOW: i64 = 1_795_800_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = srs::reverse(&text, SECRET, NOW);
    // Round trip for anything shaped like an address.
    if let Some((local, domain)) = text.rsplit_once('@')
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !srs::is_srs(local)
    {
        let out = srs::forward(&text, "fwd.test", SECRET, NOW);
        if let Some((l, _)) = out.rsplit_once('@')
            && srs::is_srs(l)
        {
            assert_eq!(srs::reverse(l, SECRET, NOW).as_deref(), Some(&*text));
        }
    }
});
