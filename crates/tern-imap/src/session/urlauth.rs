//! URLAUTH (RFC 4467): URLs that let someone else fetch a message or part —
//! a submission server forwarding without download — signed with a secret
//! of the mailbox: GENURLAUTH signs, URLFETCH fetches, RESETKEY revokes.
//! The only mechanism is INTERNAL: the token is HMAC-SHA256 of the URL up
//! to its access identifier, keyed with the mailbox's 32-byte key.

use super::tokens::{Token, tokens};
use super::url::{self, ImapUrl};
use super::{Session, store_err};
use crate::section;
use crate::write;
use hmac::{Hmac, Mac};
use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
use sha2::Sha256;
use tern_core::Address;
use tern_store::{AccountId, Recipient};

/// The URLAUTH commands (not known to imap-codec).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    Other,
    Bad(String, String),
    /// `GENURLAUTH (url mechanism)+`
    Gen(String, Vec<(String, String)>),
    /// `URLFETCH url+`
    Fetch(String, Vec<String>),
    /// `RESETKEY [mailbox [mechanism+]]`
    Reset(String, Option<String>),
}

fn word(t: &Token) -> Option<String> {
    match t {
        Token::Atom(a) | Token::Quoted(a) | Token::Literal(a, _) => {
            Some(String::from_utf8_lossy(a).into_owned())
        }
        _ => None,
    }
}

pub(super) fn parse(bytes: &[u8]) -> Parsed {
    let name: Vec<u8> = bytes
        .split(|&b| b == b' ' || b == b'\r')
        .nth(1)
        .unwrap_or_default()
        .to_ascii_uppercase();
    if !matches!(&name[..], b"GENURLAUTH" | b"URLFETCH" | b"RESETKEY") {
        return Parsed::Other;
    }
    let Some(toks) = tokens(bytes) else {
        return Parsed::Other;
    };
    let tag = toks.first().and_then(word).unwrap_or_else(|| "*".into());
    let Some(args) = toks[2..].iter().map(word).collect::<Option<Vec<String>>>() else {
        return Parsed::Bad(tag, "Syntax error".into());
    };
    match &name[..] {
        b"GENURLAUTH" if !args.is_empty() && args.len() % 2 == 0 => Parsed::Gen(
            tag,
            args.chunks(2)
                .map(|p| (p[0].clone(), p[1].clone()))
                .collect(),
        ),
        b"URLFETCH" if !args.is_empty() => Parsed::Fetch(tag, args),
        b"RESETKEY" => {
            if args
                .iter()
                .skip(1)
                .any(|m| !m.eq_ignore_ascii_case("INTERNAL"))
            {
                Parsed::Bad(tag, "Only the INTERNAL mechanism exists".into())
            } else {
                Parsed::Reset(tag, args.first().cloned())
            }
        }
        _ => Parsed::Bad(tag, "Syntax error".into()),
    }
}

/// The INTERNAL token of a rump URL.
fn token(key: &[u8], rump: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(rump.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `user` (the one logged in) may use a URL with access `access`
/// (RFC 4467 §3): anyone, any logged-in user, or one named user. A
/// submission entity (`submit+`) is the named user's own session here.
fn access_allows(access: &str, user: &str) -> bool {
    let a = access.to_ascii_lowercase();
    a == "anonymous"
        || a == "authuser"
        || a.strip_prefix("user+")
            .or_else(|| a.strip_prefix("submit+"))
            .is_some_and(|who| who.eq_ignore_ascii_case(user))
}

impl Session {
    /// The account a URL's `user@` names (the session's own without one).
    async fn url_owner(&self, u: &ImapUrl) -> Option<AccountId> {
        let Some(user) = &u.user else {
            return Some(self.account_id());
        };
        if self
            .account
            .as_ref()
            .is_some_and(|(_, me)| me.eq_ignore_ascii_case(user))
        {
            return Some(self.account_id());
        }
        let address = Address::parse(user).ok()?;
        match self.server.store.resolve(&address, false).await.ok()? {
            Recipient::Local(r) => Some(r.account),
            _ => None,
        }
    }

    /// The bytes a URL names in `owner`'s mailbox, section applied.
    pub(super) async fn url_message(&self, owner: AccountId, u: &ImapUrl) -> Option<Vec<u8>> {
        let m = self
            .server
            .store
            .find_mailbox(owner, &u.mailbox, false)
            .await
            .ok()?;
        if u.uidvalidity.is_some_and(|v| v != m.uidvalidity) {
            return None;
        }
        let row = self
            .server
            .store
            .messages_in(m.id, u.uid, u.uid)
            .await
            .ok()?
            .into_iter()
            .next()?;
        let raw = self.server.store.read_blob(row.blob).await.ok()?;
        let Some(spec) = &u.section else {
            return Some(raw);
        };
        // The section grammar is FETCH's (RFC 5092 §6): the codec parses it.
        let probe = format!("x FETCH 1 BODY.PEEK[{spec}]\r\n");
        let (_, cmd) = CommandCodec::default().decode(probe.as_bytes()).ok()?;
        let CommandBody::Fetch {
            macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(items),
            ..
        } = cmd.body
        else {
            return None;
        };
        let Some(MessageDataItemName::BodyExt { section, .. }) = items.first() else {
            return None;
        };
        let meta = match self.server.store.read_meta(row.blob).await {
            Ok(m) => m,
            Err(_) => tern_store::meta::analyze(&raw),
        };
        Some(section::extract(&raw, &meta, section.as_ref()))
    }

    /// The bytes of a URL this session may read: its own mailboxes, or an
    /// authorized URL (valid token, not expired, access allowing it).
    pub(super) async fn readable_url(&self, text: &str) -> Option<Vec<u8>> {
        let u = url::parse(text)?;
        let owner = self.url_owner(&u).await?;
        if u.access.is_some() || owner != self.account_id() {
            let (Some(access), Some(mech), Some(given)) = (&u.access, &u.mechanism, &u.token)
            else {
                return None;
            };
            let me = self.account.as_ref().map(|a| a.1.as_str()).unwrap_or("");
            if !mech.eq_ignore_ascii_case("INTERNAL")
                || !access_allows(access, me)
                || u.expire.is_some_and(|e| e <= tern_core::now_unix())
            {
                return None;
            }
            let key = self
                .server
                .store
                .urlauth_key(owner, &u.mailbox, false)
                .await
                .ok()??;
            let want = token(&key, &u.rump);
            // Compared in constant time: the token is a secret.
            let same = want.len() == given.len()
                && want
                    .bytes()
                    .zip(given.to_ascii_lowercase().bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            if !same {
                return None;
            }
        }
        self.url_message(owner, &u).await
    }

    /// GENURLAUTH (RFC 4467 §7): signs URLs of the session's own mailboxes.
    pub(super) async fn genurlauth(&mut self, tag: &str, pairs: Vec<(String, String)>) {
        let mut signed = Vec::new();
        for (text, mech) in pairs {
            if !mech.eq_ignore_ascii_case("INTERNAL") {
                self.tagged(tag, "NO", "Only the INTERNAL mechanism exists");
                return;
            }
            let Some(u) = url::parse(&text) else {
                self.tagged(tag, "BAD", &format!("Invalid URL {text}"));
                return;
            };
            let mine = u.user.is_some() && self.url_owner(&u).await == Some(self.account_id());
            if !mine || u.access.is_none() || u.token.is_some() {
                self.tagged(
                    tag,
                    "NO",
                    "The URL must be absolute, of your own mailbox, and end in ;URLAUTH=access",
                );
                return;
            }
            let key = match self
                .server
                .store
                .urlauth_key(self.account_id(), &u.mailbox, true)
                .await
            {
                Ok(Some(k)) => k,
                Ok(None) => return self.tagged(tag, "NO", "[SERVERBUG] No key"),
                Err(e) => return self.tagged(tag, "NO", &format!("{} {e}", store_err(&e))),
            };
            signed.push(format!("{}:internal:{}", u.rump, token(&key, &u.rump)));
        }
        self.out.extend_from_slice(b"* GENURLAUTH");
        for s in signed {
            self.out.push(b' ');
            write::string(&mut self.out, s.as_bytes());
        }
        self.out.extend_from_slice(b"\r\n");
        self.tagged(tag, "OK", "GENURLAUTH completed");
    }

    /// URLFETCH (RFC 4467 §8): each URL's data, or NIL when it is not one
    /// this session may read.
    pub(super) async fn urlfetch(&mut self, tag: &str, urls: Vec<String>) {
        for text in urls {
            let data = self.readable_url(&text).await;
            self.out.extend_from_slice(b"* URLFETCH ");
            write::string(&mut self.out, text.as_bytes());
            self.out.push(b' ');
            match data {
                Some(d) => write::binary_literal(&mut self.out, &d),
                None => self.out.extend_from_slice(b"NIL"),
            }
            self.out.extend_from_slice(b"\r\n");
        }
        self.tagged(tag, "OK", "URLFETCH completed");
    }

    /// RESETKEY (RFC 4467 §6): revokes the URLs of one mailbox, or all.
    pub(super) async fn resetkey(&mut self, tag: &str, mailbox: Option<String>) {
        let account = self.account_id();
        if let Some(m) = &mailbox
            && self.find_mailbox(m, false).await.is_err()
        {
            self.tagged(tag, "NO", "[NONEXISTENT] No such mailbox");
            return;
        }
        match self
            .server
            .store
            .reset_urlauth_keys(account, mailbox.as_deref())
            .await
        {
            Ok(()) => self.tagged(tag, "OK", "RESETKEY completed"),
            Err(e) => self.tagged(tag, "NO", &format!("{} {e}", store_err(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_access() {
        assert_eq!(
            parse(b"a GENURLAUTH \"imap://joe@h/INBOX/;UID=1;URLAUTH=anonymous\" INTERNAL\r\n"),
            Parsed::Gen(
                "a".into(),
                vec![(
                    "imap://joe@h/INBOX/;UID=1;URLAUTH=anonymous".into(),
                    "INTERNAL".into()
                )]
            )
        );
        assert_eq!(parse(b"b RESETKEY\r\n"), Parsed::Reset("b".into(), None));
        assert!(matches!(
            parse(b"c RESETKEY INBOX XSAMPLE\r\n"),
            Parsed::Bad(..)
        ));
        assert!(matches!(parse(b"d URLFETCH\r\n"), Parsed::Bad(..)));
        assert_eq!(parse(b"e NOOP\r\n"), Parsed::Other);
        assert!(access_allows("anonymous", "x@y"));
        assert!(access_allows("user+fred@h", "FRED@h"));
        assert!(!access_allows("user+fred@h", "joe@h"));
        assert!(!access_allows("other", "joe@h"));
        assert_eq!(token(b"k", "r").len(), 64);
    }
}
