//! The delivery client's reply parser: whatever a remote server sends, a
//! reply or a protocol error, never a panic, and bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tern_queue::client::{MAX_REPLY_LINES, ReplyParser};

fuzz_target!(|data: &[u8]| {
    let mut parser = ReplyParser::default();
    for line in data.split(|&b| b == b'\n') {
        match parser.push(line.strip_suffix(b"\r").unwrap_or(line)) {
            Ok(Some(reply)) => {
                assert!((200..600).contains(&reply.code));
                parser = ReplyParser::default();
            }
            Ok(None) => assert!(parser.lines.len() < MAX_REPLY_LINES),
            Err(_) => parser = ReplyParser::default(),
        }
    }
});
