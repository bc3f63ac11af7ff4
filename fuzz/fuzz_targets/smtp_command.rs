//! The SMTP command reader: any bytes give a request or a reply with an
//! enhanced status code, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Split the input into lines as the session does and parse each.
    for line in data.split_inclusive(|&b| b == b'\n') {
        match tern_smtp::command::parse(line) {
            Ok(_) => {}
            Err(reply) => {
                assert!((400..600).contains(&reply.code));
                assert!(!reply.status.is_empty());
                let wire = reply.to_bytes();
                assert!(wire.ends_with(b"\r\n"));
                assert!(!wire[..wire.len() - 2].contains(&b'\n'), "one line");
            }
        }
    }
});
