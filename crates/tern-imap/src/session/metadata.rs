//! METADATA (RFC 5464): annotations on the server (mailbox `""`) and on
//! mailboxes, under `/private/…` and `/shared/…` (both the account's own:
//! mailboxes are not shared between accounts).

use super::{Session, mailbox_name, store_err};
use crate::write;
use imap_codec::imap_types::core::{NString, NString8};
use imap_codec::imap_types::extensions::metadata::{Depth, Entry, EntryValue, GetMetadataOption};
use imap_codec::imap_types::mailbox::Mailbox;
use tern_store::StoreError;

/// An entry name as RFC 5464 §3.2 allows it, lower-cased (names are
/// case-insensitive): `/private/…` or `/shared/…`, printable ASCII, no
/// `*` or `%`, no empty component, no trailing `/`.
fn entry_name(e: &[u8]) -> Option<String> {
    let name = std::str::from_utf8(e).ok()?.to_ascii_lowercase();
    let valid = (name.starts_with("/private/") || name.starts_with("/shared/"))
        && name
            .bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'*' && b != b'%')
        && !name.contains("//")
        && !name.ends_with('/');
    valid.then_some(name)
}

/// A value as bytes; `None` is NIL (remove the entry).
fn value_bytes(v: &NString8<'_>) -> Option<Vec<u8>> {
    match v {
        NString8::NString(NString(None)) => None,
        NString8::NString(NString(Some(s))) => Some(s.as_ref().to_vec()),
        NString8::Literal8(l) => Some(l.data.to_vec()),
    }
}

impl Session {
    /// SETMETADATA (RFC 5464 §4.3): all changes or none.
    pub(super) async fn set_metadata(
        &mut self,
        tag: &str,
        mailbox: &Mailbox<'_>,
        entries: &[EntryValue<'_>],
    ) {
        let name = mailbox_name(mailbox);
        let max_size = self.server.config.metadata_max_size as usize;
        let mut changes = Vec::new();
        for ev in entries {
            let Some(entry) = entry_name(ev.entry.as_ref()) else {
                self.tagged(tag, "BAD", "Invalid annotation entry name");
                return;
            };
            let value = value_bytes(&ev.value);
            if value.as_ref().is_some_and(|v| v.len() > max_size) {
                self.tagged(
                    tag,
                    "NO",
                    &format!("[METADATA MAXSIZE {max_size}] Annotation value too large"),
                );
                return;
            }
            changes.push((entry, value));
        }
        let max_entries = self.server.config.metadata_max_entries as usize;
        let account = self.account_id();
        match self
            .server
            .store
            .set_metadata(account, &name, changes, max_entries)
            .await
        {
            Ok(()) => self.tagged(tag, "OK", "SETMETADATA completed"),
            Err(StoreError::Invalid(_)) => {
                self.tagged(tag, "NO", "[METADATA TOOMANY] Too many annotations")
            }
            Err(e) => self.tagged(tag, "NO", &format!("{} {e}", store_err(&e))),
        }
    }

    /// GETMETADATA (RFC 5464 §4.2): the entries asked for (and those below
    /// them with DEPTH), values longer than MAXSIZE left out and reported
    /// as LONGENTRIES.
    pub(super) async fn get_metadata(
        &mut self,
        tag: &str,
        options: &[GetMetadataOption],
        mailbox: &Mailbox<'_>,
        entries: &[Entry<'_>],
    ) {
        let name = mailbox_name(mailbox);
        let mut max_size = None;
        let mut depth = Depth::Null;
        for o in options {
            match o {
                GetMetadataOption::MaxSize(n) => max_size = Some(*n as usize),
                GetMetadataOption::Depth(d) => depth = d.clone(),
            }
        }
        let mut wanted = Vec::new();
        for e in entries {
            match entry_name(e.as_ref()) {
                Some(n) => wanted.push(n),
                None => {
                    self.tagged(tag, "BAD", "Invalid annotation entry name");
                    return;
                }
            }
        }
        let account = self.account_id();
        let stored = match self.server.store.metadata(account, &name).await {
            Ok(s) => s,
            Err(e) => {
                self.tagged(tag, "NO", &format!("{} {e}", store_err(&e)));
                return;
            }
        };
        let selected = |entry: &str| {
            wanted.iter().any(|w| {
                entry == w
                    || entry.strip_prefix(w.as_str()).is_some_and(|rest| {
                        rest.starts_with('/')
                            && match depth {
                                Depth::Null => false,
                                Depth::One => !rest[1..].contains('/'),
                                Depth::Infinity => true,
                            }
                    })
            })
        };
        let mut longest = 0;
        let mut line = Vec::new();
        for (entry, value) in stored.iter().filter(|(e, _)| selected(e)) {
            if max_size.is_some_and(|m| value.len() > m) {
                longest = longest.max(value.len());
                continue;
            }
            line.push(if line.is_empty() { b'(' } else { b' ' });
            write::string(&mut line, entry.as_bytes());
            line.push(b' ');
            write::binary_literal_or_string(&mut line, value);
        }
        if !line.is_empty() {
            self.out.extend_from_slice(b"* METADATA ");
            write::string(&mut self.out, name.as_bytes());
            self.out.push(b' ');
            self.out.extend_from_slice(&line);
            self.out.extend_from_slice(b")\r\n");
        }
        if longest > 0 {
            let text = format!("[METADATA LONGENTRIES {longest}] GETMETADATA completed");
            self.tagged(tag, "OK", &text);
        } else {
            self.tagged(tag, "OK", "GETMETADATA completed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::entry_name;

    /// RFC 5464 §3.2's rules for entry names.
    #[test]
    fn entry_names() {
        assert_eq!(
            entry_name(b"/private/Comment").as_deref(),
            Some("/private/comment")
        );
        assert_eq!(
            entry_name(b"/shared/vendor/tern/x").as_deref(),
            Some("/shared/vendor/tern/x")
        );
        for bad in [
            &b"/private"[..],
            b"/other/comment",
            b"/private/",
            b"/private//x",
            b"/private/a*",
            b"/private/a%",
            b"/private/a b",
            b"comment",
        ] {
            assert_eq!(entry_name(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
