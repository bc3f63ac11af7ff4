//! Commands and items imap-codec does not know, handled before it parses:
//! NOTIFY, URLAUTH, CANCELUPDATE, MULTIAPPEND/CATENATE/REPLACE and
//! LIST-EXTENDED are answered here; SEARCH RETURN options, SEARCHRES `$`,
//! OBJECTID/SAVEDATE/PREVIEW items and the search keys the codec lacks are
//! taken off or rewritten into what it parses.

use super::{Session, State, append, esearch, extra_items, list, notify, tag_of, urlauth};

impl Session {
    /// Answers `bytes` if it is one of the commands above (`None`), or
    /// returns it, rewritten where needed, for the codec.
    pub(super) async fn local_grammar(&mut self, bytes: Vec<u8>) -> Option<Vec<u8>> {
        match notify::parse(&bytes) {
            notify::Parsed::Other => {}
            _ if matches!(self.state, State::NotAuthenticated) => {
                self.tagged(&tag_of(&bytes), "BAD", "NOTIFY requires authentication");
                self.errors += 1;
                return None;
            }
            notify::Parsed::Bad(tag, why) => {
                self.tagged(&tag, "BAD", &why);
                self.errors += 1;
                return None;
            }
            notify::Parsed::BadEvent(tag) => {
                let text = format!("[BADEVENT ({})] Event not supported", notify::SUPPORTED);
                self.tagged(&tag, "NO", &text);
                return None;
            }
            notify::Parsed::None(tag) => {
                self.notify_none(&tag);
                return None;
            }
            notify::Parsed::Set {
                tag,
                status,
                groups,
            } => {
                self.notify_set(&tag, status, groups).await;
                return None;
            }
        }
        match urlauth::parse(&bytes) {
            urlauth::Parsed::Other => {}
            _ if matches!(self.state, State::NotAuthenticated) => {
                self.tagged(&tag_of(&bytes), "BAD", "Authentication required");
                self.errors += 1;
                return None;
            }
            urlauth::Parsed::Bad(tag, why) => {
                self.tagged(&tag, "BAD", &why);
                self.errors += 1;
                return None;
            }
            urlauth::Parsed::Gen(tag, pairs) => {
                self.genurlauth(&tag, pairs).await;
                return None;
            }
            urlauth::Parsed::Fetch(tag, urls) => {
                self.urlfetch(&tag, urls).await;
                return None;
            }
            urlauth::Parsed::Reset(tag, mailbox) => {
                self.resetkey(&tag, mailbox).await;
                return None;
            }
        }
        if let Some((tag, tags)) = esearch::cancel_update(&bytes) {
            self.cancel_update(&tag, tags);
            return None;
        }
        // MULTIAPPEND, CATENATE and REPLACE are parsed here (RFC 3502,
        // 4469, 8508); a plain APPEND goes to the codec.
        match append::parse(&bytes) {
            append::Parsed::Other => {}
            append::Parsed::Bad(tag, why) => {
                self.tagged(&tag, "BAD", &why);
                self.errors += 1;
                return None;
            }
            append::Parsed::Append {
                tag,
                mailbox,
                messages,
            } => {
                if matches!(self.state, State::NotAuthenticated) {
                    self.tagged(&tag, "BAD", "APPEND requires authentication");
                    self.errors += 1;
                } else {
                    self.append_messages(&tag, &mailbox, messages, None).await;
                }
                return None;
            }
            append::Parsed::Replace {
                tag,
                uid,
                number,
                mailbox,
                message,
            } => {
                self.replace(&tag, uid, number, &mailbox, message).await;
                return None;
            }
        }
        let (bytes, esearch) = match esearch::strip_return(&bytes) {
            Some((stripped, options)) => (stripped, Some(options)),
            None => (bytes, None),
        };
        self.esearch = esearch;
        // LIST is parsed here in full (RFC 5258); imap-codec knows only
        // its basic form.
        match list::parse(&bytes) {
            list::Parsed::Other => {}
            list::Parsed::Bad(tag, why) => {
                self.tagged(&tag, "BAD", &why);
                self.errors += 1;
                return None;
            }
            list::Parsed::List(tag, cmd) => {
                if matches!(self.state, State::NotAuthenticated) {
                    self.tagged(&tag, "BAD", "LIST requires authentication");
                    self.errors += 1;
                } else {
                    self.list(&tag, cmd, false).await;
                }
                return None;
            }
        }
        let bytes = self.substitute_saved(bytes);
        // OBJECTID, SAVEDATE and PREVIEW items (the codec knows none).
        let bytes = match extra_items::take_fetch_extras(&bytes) {
            Some((b, extras)) => {
                self.fetch_extras = extras;
                b
            }
            None => {
                self.fetch_extras = Default::default();
                bytes
            }
        };
        let bytes = match extra_items::take_status_mailboxid(&bytes) {
            Some((b, stand_in)) => {
                self.status_mailboxid = Some(stand_in);
                b
            }
            None => {
                self.status_mailboxid = None;
                bytes
            }
        };
        Some(self.rewrite_search_extras(bytes).await)
    }
}
