//! The IMAP command reader: framing (literals, limits), Tern's rewrites
//! before decoding (LIST, OBJECTID/SAVEDATE/PREVIEW items) and decoding of any
//! bytes, split anywhere, never panics and never yields a command bigger
//! than the limit.
#![no_main]
use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use libfuzzer_sys::fuzz_target;
use tern_imap::reader::{Event, Reader};

fuzz_target!(|input: &[u8]| {
    let Some((&split, data)) = input.split_first() else { return };
    let cut = (split as usize).min(data.len());
    let mut r = Reader::new(1024);
    let mut commands = 0;
    for chunk in [&data[..cut], &data[cut..]] {
        r.push(chunk);
        loop {
            match r.next_event() {
                Event::NeedMore => break,
                Event::Command(bytes) => {
                    assert!(bytes.len() <= 1024);
                    tern_imap::pre_decode_rewrites(&bytes);
                    let _ = CommandCodec::default().decode(&bytes);
                    commands += 1;
                }
                Event::Continue | Event::TooBig(_) | Event::Dropped(_) => {}
            }
            assert!(commands <= data.len() + 1);
        }
    }
});
