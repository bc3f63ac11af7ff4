//! The DATA reader: whatever arrives, in whatever pieces, the message ends
//! at the same place, never ends without CRLF.CRLF, and is stored with CRLF
//! line endings only.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tern_smtp::data::DataReader;

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else { return };
    let mut whole = DataReader::data(1 << 20, 1 << 20);
    let end_whole = whole.feed(data);
    // The same bytes in two reads.
    let cut = (split as usize).min(data.len());
    let mut parts = DataReader::data(1 << 20, 1 << 20);
    let end_parts = match parts.feed(&data[..cut]) {
        Some(n) => Some(n),
        None => parts.feed(&data[cut..]).map(|n| n + cut),
    };
    assert_eq!(end_whole, end_parts);
    if let Some(n) = end_whole {
        // The terminator is really there, and it is the first one.
        assert!(n >= 3 && &data[n - 3..n] == b".\r\n");
        assert!(n == 3 || &data[n - 5..n] == b"\r\n.\r\n");
    }
    let (a, b) = (whole.into_message(), parts.into_message());
    assert_eq!(a, b);
    if let Ok(msg) = a {
        for (i, &c) in msg.iter().enumerate() {
            if c == b'\r' {
                assert_eq!(msg.get(i + 1), Some(&b'\n'), "bare CR stored");
            }
            if c == b'\n' {
                assert!(i > 0 && msg[i - 1] == b'\r', "bare LF stored");
            }
        }
    }
});
