//! Command framing (RFC 9051 §2.2, literals RFC 7888): bytes in, whole
//! commands out, with the literal policy applied before any literal byte
//! is buffered. Wraps `imap-codec`'s `Fragmentizer`.

use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer};
use imap_codec::imap_types::core::LiteralMode;

/// What the reader needs from the session next.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// More bytes are needed.
    NeedMore,
    /// A synchronizing literal was announced and accepted: send `+`.
    Continue,
    /// A literal over the limit was announced; the command (tag given if
    /// known) is refused and skipped. For a synchronizing literal nothing of
    /// it will arrive; a non-synchronizing one is read and dropped.
    TooBig(Option<String>),
    /// A complete command (raw bytes, literals included).
    Command(Vec<u8>),
    /// A command whose bytes were dropped because it was too large.
    Dropped(Option<String>),
}

/// Frames commands out of a byte stream.
pub struct Reader {
    frag: Fragmentizer,
    max: u32,
}

impl Reader {
    /// A reader refusing commands (and literals) larger than `max` bytes.
    pub fn new(max: u32) -> Self {
        Self {
            frag: Fragmentizer::new(max),
            max,
        }
    }

    /// Whether no part of a command is waiting (the client is between
    /// commands, so unsolicited responses cannot interleave with one).
    pub fn between_commands(&self) -> bool {
        self.frag.message_bytes().is_empty()
    }

    /// Adds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.frag.enqueue_bytes(bytes);
    }

    fn tag(&self) -> Option<String> {
        self.frag.decode_tag().map(|t| t.as_ref().to_string())
    }

    /// Advances; call until it returns [`Event::NeedMore`].
    pub fn next_event(&mut self) -> Event {
        loop {
            match self.frag.progress() {
                None => return Event::NeedMore,
                Some(FragmentInfo::Line {
                    announcement: Some(a),
                    ..
                }) => {
                    if a.length > self.max {
                        let tag = self.tag();
                        if a.mode == LiteralMode::Sync {
                            self.frag.skip_message();
                            return Event::TooBig(tag);
                        }
                        self.frag.poison_message();
                        continue;
                    }
                    if a.mode == LiteralMode::Sync {
                        return Event::Continue;
                    }
                }
                Some(_) => {}
            }
            if self.frag.is_message_complete() {
                if self.frag.is_max_message_size_exceeded() || self.frag.is_message_poisoned() {
                    return Event::Dropped(self.tag());
                }
                return Event::Command(self.frag.message_bytes().to_vec());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let mut r = Reader::new(100);
        r.push(b"a LOGIN {3}\r\n");
        assert_eq!(r.next_event(), Event::Continue);
        assert_eq!(r.next_event(), Event::NeedMore);
        r.push(b"bob pw\r\nb NOOP\r\n");
        assert_eq!(
            r.next_event(),
            Event::Command(b"a LOGIN {3}\r\nbob pw\r\n".to_vec())
        );
        assert_eq!(r.next_event(), Event::Command(b"b NOOP\r\n".to_vec()));
        r.push(b"c APPEND INBOX {4294967295}\r\nd NOOP\r\n");
        assert_eq!(r.next_event(), Event::TooBig(Some("c".into())));
        assert_eq!(r.next_event(), Event::Command(b"d NOOP\r\n".to_vec()));
    }
}
