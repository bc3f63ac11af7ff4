//! Signed tokens that bring feedback back to the message and recipient it
//! is about, so that nobody can forge or enumerate them:
//!
//! - the **return path** (VERP) each recipient's copy leaves with:
//!   `bounce+{queue id}-{day}{recipient tag}{mac}@domain`. Bounces arrive
//!   there. It expires (like SRS, RFC-less but as libsrs2 does it: a day
//!   number modulo 1024), so an address harvested from an old bounce stops
//!   working; the recipient tag picks the recipient among the message's.
//! - the **unsubscribe address** of `List-Unsubscribe` (RFC 2369 §3.2):
//!   `unsubscribe+{queue id}-{recipient tag}{mac}@domain`, which does not
//!   expire (an unsubscribe must work whenever it is asked for).
//! - the **unsubscribe link** of `List-Unsubscribe` (RFC 8058): it carries
//!   the recipient and domain themselves, so it keeps working after the
//!   message's history is pruned.
//!
//! Local parts are lower case base32 (receivers may change their case) and
//! stay well under RFC 5321's 64 octets. Each kind has its own key,
//! derived from one secret kept in the data folder.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// The alphabet of queue ids (`tern_core::id::queue_id`).
const QUEUE_ID_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const QUEUE_ID_LEN: usize = 15;

/// The local part prefix of return paths.
pub const BOUNCE_PREFIX: &str = "bounce+";
/// The local part prefix of unsubscribe addresses.
pub const UNSUBSCRIBE_PREFIX: &str = "unsubscribe+";

/// Why a token was not honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not one of ours: wrong shape.
    #[error("not a token Tern made")]
    Malformed,
    /// The signature does not verify: forged or altered.
    #[error("the token's signature does not verify")]
    Forged,
    /// Too old.
    #[error("the token expired")]
    Expired,
}

/// The keys, derived from the data folder's secret.
#[derive(Clone)]
pub struct Keys {
    verp: [u8; 32],
    unsubscribe: [u8; 32],
    link: [u8; 32],
    track: [u8; 32],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

fn derive(secret: &[u8], purpose: &str) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"tern-feedback/");
    m.update(purpose.as_bytes());
    m.finalize().into_bytes().into()
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p);
    }
    m
}

/// The first `chars * 5` bits (≤ 60) of `bytes` as base32 characters.
fn b32(bytes: &[u8], chars: usize) -> String {
    let mut acc: u64 = 0;
    for b in bytes.iter().take(8) {
        acc = (acc << 8) | u64::from(*b);
    }
    acc <<= 8 * (8 - bytes.len().min(8)) as u32;
    (0..chars)
        .map(|i| B32[((acc >> (59 - 5 * i)) & 31) as usize] as char)
        .collect()
}

fn b32_value(c: u8) -> Option<u64> {
    B32.iter()
        .position(|&x| x == c.to_ascii_lowercase())
        .map(|p| p as u64)
}

/// Base32 characters back to bytes (`chars * 5` bits, left aligned).
fn unb32(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() > 12 {
        return None;
    }
    let mut acc: u64 = 0;
    for c in s.bytes() {
        acc = (acc << 5) | b32_value(c)?;
    }
    let bits = s.len() * 5;
    acc <<= 64 - bits;
    Some(acc.to_be_bytes()[..bits / 8].to_vec())
}

fn day(now: i64) -> u64 {
    (now.max(0) as u64 / 86_400) % 1024
}

fn valid_queue_id(q: &str) -> bool {
    q.len() == QUEUE_ID_LEN && q.bytes().all(|b| QUEUE_ID_ALPHABET.contains(&b))
}

/// A return path that verified: the message it left with, and a tag
/// naming one of its recipients ([`Keys::bounce_is_for`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BounceToken {
    /// The message's queue id.
    pub queue_id: String,
    tag: String,
}

/// An unsubscribe address that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailToken {
    /// The message's queue id.
    pub queue_id: String,
    tag: String,
}

/// An unsubscribe link that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkToken {
    /// The message's queue id.
    pub queue_id: String,
    /// The recipient, lower case.
    pub recipient: String,
    /// The sending domain whose mail it stops.
    pub domain: String,
}

impl Keys {
    /// Keys derived from `secret` (at least 16 random bytes).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            verp: derive(secret, "verp"),
            unsubscribe: derive(secret, "unsubscribe"),
            link: derive(secret, "link"),
            track: derive(secret, "track"),
        }
    }

    fn recipient_tag(&self, key: &[u8; 32], queue_id: &str, recipient: &str) -> String {
        let t = mac(
            key,
            &[
                b"r",
                queue_id.as_bytes(),
                recipient.to_lowercase().as_bytes(),
            ],
        )
        .finalize()
        .into_bytes();
        b32(&t, 4)
    }

    /// `{prefix}{queue id}-{fields}{mac}`: the queue id in lower case, then
    /// `fields` (base32), then 8 base32 characters (40 bits) of the MAC of
    /// `purpose`, the queue id and the fields under `key`.
    fn local_part(
        &self,
        key: &[u8; 32],
        purpose: &[u8],
        prefix: &str,
        queue_id: &str,
        fields: &str,
    ) -> String {
        let q = queue_id.to_ascii_uppercase();
        let m = mac(key, &[purpose, q.as_bytes(), fields.as_bytes()])
            .finalize()
            .into_bytes();
        format!("{prefix}{}-{fields}{}", q.to_ascii_lowercase(), b32(&m, 8))
    }

    /// Reads a [`Keys::local_part`] with `fields_len` characters of fields
    /// (any case): the queue id (upper case) and the fields (lower case).
    fn read_local_part(
        &self,
        key: &[u8; 32],
        purpose: &[u8],
        prefix: &str,
        local: &str,
        fields_len: usize,
    ) -> Result<(String, String), TokenError> {
        let rest = strip_prefix_ci(local, prefix).ok_or(TokenError::Malformed)?;
        let (q, t) = rest.split_once('-').ok_or(TokenError::Malformed)?;
        let q = q.to_ascii_uppercase();
        if !valid_queue_id(&q) || t.len() != fields_len + 8 || !t.is_ascii() {
            return Err(TokenError::Malformed);
        }
        let t = t.to_ascii_lowercase();
        let (fields, sig) = t.split_at(fields_len);
        if !fields.bytes().all(|c| b32_value(c).is_some()) {
            return Err(TokenError::Malformed);
        }
        let sig = unb32(sig).ok_or(TokenError::Malformed)?;
        mac(key, &[purpose, q.as_bytes(), fields.as_bytes()])
            .verify_truncated_left(&sig)
            .map_err(|_| TokenError::Forged)?;
        Ok((q, fields.to_string()))
    }

    /// The return path for `recipient`'s copy of message `queue_id`, sent
    /// from `domain`, at `now` (Unix seconds): fields are the day (2) and
    /// the recipient tag (4).
    pub fn return_path(&self, queue_id: &str, recipient: &str, domain: &str, now: i64) -> String {
        let tag = self.recipient_tag(&self.verp, &queue_id.to_ascii_uppercase(), recipient);
        let fields = format!("{}{tag}", day_chars(day(now)));
        let local = self.local_part(&self.verp, b"b", BOUNCE_PREFIX, queue_id, &fields);
        format!("{local}@{domain}")
    }

    /// Reads a return path's local part (`bounce+…`): valid for
    /// `max_age_days` after the day it was made.
    pub fn read_return_path(
        &self,
        local: &str,
        now: i64,
        max_age_days: u64,
    ) -> Result<BounceToken, TokenError> {
        let (queue_id, fields) = self.read_local_part(&self.verp, b"b", BOUNCE_PREFIX, local, 6)?;
        let made = read_day(&fields[..2]).ok_or(TokenError::Malformed)?;
        if (day(now) + 1024 - made) % 1024 > max_age_days {
            return Err(TokenError::Expired);
        }
        Ok(BounceToken {
            queue_id,
            tag: fields[2..].to_string(),
        })
    }

    /// Whether a verified return path was `recipient`'s.
    pub fn bounce_is_for(&self, token: &BounceToken, recipient: &str) -> bool {
        self.recipient_tag(&self.verp, &token.queue_id, recipient) == token.tag
    }

    /// The `mailto:` unsubscribe address for `recipient`'s copy: the field
    /// is the recipient tag (4).
    pub fn unsubscribe_address(&self, queue_id: &str, recipient: &str, domain: &str) -> String {
        let tag = self.recipient_tag(&self.unsubscribe, &queue_id.to_ascii_uppercase(), recipient);
        let local = self.local_part(&self.unsubscribe, b"u", UNSUBSCRIBE_PREFIX, queue_id, &tag);
        format!("{local}@{domain}")
    }

    /// Reads an unsubscribe address's local part (`unsubscribe+…`).
    pub fn read_unsubscribe_address(&self, local: &str) -> Result<MailToken, TokenError> {
        let (queue_id, tag) =
            self.read_local_part(&self.unsubscribe, b"u", UNSUBSCRIBE_PREFIX, local, 4)?;
        Ok(MailToken { queue_id, tag })
    }

    /// Whether a verified unsubscribe address was `recipient`'s.
    pub fn unsubscribe_is_for(&self, token: &MailToken, recipient: &str) -> bool {
        self.recipient_tag(&self.unsubscribe, &token.queue_id, recipient) == token.tag
    }

    /// `payload` and 16 bytes of its MAC under `key`, both base64url: the
    /// form of tokens in URLs (they carry what they stand for).
    fn seal(&self, key: &[u8; 32], payload: &str) -> String {
        let m = mac(key, &[payload.as_bytes()]).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload.as_bytes()),
            URL_SAFE_NO_PAD.encode(&m[..16])
        )
    }

    /// The payload of a [`Keys::seal`]ed token that verifies under `key`.
    fn open_sealed(&self, key: &[u8; 32], token: &str) -> Result<String, TokenError> {
        if token.len() > MAX_TRACKING_TOKEN {
            return Err(TokenError::Malformed);
        }
        let (p, s) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| TokenError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed)?;
        if sig.len() != 16 {
            return Err(TokenError::Malformed);
        }
        mac(key, &[&payload])
            .verify_truncated_left(&sig)
            .map_err(|_| TokenError::Forged)?;
        String::from_utf8(payload).map_err(|_| TokenError::Malformed)
    }

    /// The path segment of the unsubscribe link for `recipient`'s copy.
    pub fn unsubscribe_link(&self, queue_id: &str, recipient: &str, domain: &str) -> String {
        let payload = format!(
            "{}\n{}\n{}",
            queue_id.to_ascii_uppercase(),
            recipient.to_lowercase(),
            domain.to_ascii_lowercase()
        );
        self.seal(&self.link, &payload)
    }

    /// Reads an unsubscribe link's token.
    pub fn read_unsubscribe_link(&self, token: &str) -> Result<LinkToken, TokenError> {
        let payload = self.open_sealed(&self.link, token)?;
        let mut f = payload.split('\n');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some(q), Some(r), Some(d), None) => Ok(LinkToken {
                queue_id: q.to_string(),
                recipient: r.to_string(),
                domain: d.to_string(),
            }),
            _ => Err(TokenError::Malformed),
        }
    }
}

/// What a tracking token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tracked {
    /// The open pixel of a message.
    Open {
        /// The message's queue id.
        queue_id: String,
        /// Its recipient.
        recipient: String,
    },
    /// A link in a message.
    Click {
        /// The message's queue id.
        queue_id: String,
        /// Its recipient.
        recipient: String,
        /// Where the link goes: only this URL, which was in the message.
        url: String,
    },
}

/// Longest tracking token (URLs longer than fit are left as they are).
pub const MAX_TRACKING_TOKEN: usize = 4096;

impl Keys {
    /// The token of `recipient`'s open pixel in message `queue_id`.
    pub fn open_token(&self, queue_id: &str, recipient: &str) -> String {
        self.seal(
            &self.track,
            &format!("o\n{queue_id}\n{}", recipient.to_lowercase()),
        )
    }

    /// The token of a link to `url` in `recipient`'s copy of `queue_id`.
    pub fn click_token(&self, queue_id: &str, recipient: &str, url: &str) -> String {
        self.seal(
            &self.track,
            &format!("c\n{queue_id}\n{}\n{url}", recipient.to_lowercase()),
        )
    }

    /// Reads a tracking token.
    pub fn read_tracking(&self, token: &str) -> Result<Tracked, TokenError> {
        let payload = self.open_sealed(&self.track, token)?;
        let mut f = payload.splitn(4, '\n');
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some("o"), Some(q), Some(r), None) => Ok(Tracked::Open {
                queue_id: q.into(),
                recipient: r.into(),
            }),
            (Some("c"), Some(q), Some(r), Some(u)) => Ok(Tracked::Click {
                queue_id: q.into(),
                recipient: r.into(),
                url: u.into(),
            }),
            _ => Err(TokenError::Malformed),
        }
    }
}

/// A day number (10 bits) as two base32 characters.
fn day_chars(day: u64) -> String {
    [B32[(day >> 5) as usize & 31], B32[day as usize & 31]]
        .iter()
        .map(|&b| b as char)
        .collect()
}

fn read_day(d: &str) -> Option<u64> {
    let b = d.as_bytes();
    Some((b32_value(b[0])? << 5) | b32_value(b[1])?)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "0K6R4G2M9Q1ZX3A";

    #[test]
    fn return_paths_verify_expire_and_name_their_recipient() {
        let k = Keys::new(b"0123456789abcdef0123456789abcdef");
        let now = 1_800_000_000;
        let rp = k.return_path(Q, "Ann@Example.net", "example.com", now);
        let (local, domain) = rp.rsplit_once('@').unwrap();
        assert_eq!(domain, "example.com");
        assert!(local.len() <= 64, "{local}");
        assert_eq!(local, local.to_ascii_lowercase());
        let t = k.read_return_path(local, now + 86_400 * 3, 30).unwrap();
        assert_eq!(t.queue_id, Q);
        assert!(k.bounce_is_for(&t, "ann@example.net"));
        assert!(!k.bounce_is_for(&t, "bob@example.net"));
        // Receivers may change the case of a local part.
        assert!(
            k.read_return_path(&local.to_ascii_uppercase(), now, 30)
                .is_ok()
        );
        assert_eq!(
            k.read_return_path(local, now + 86_400 * 31, 30),
            Err(TokenError::Expired)
        );
        // Any change to any character is caught.
        for i in BOUNCE_PREFIX.len()..local.len() {
            let mut b = local.as_bytes().to_vec();
            if b[i] == b'-' {
                continue;
            }
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            let forged = String::from_utf8(b).unwrap();
            assert!(k.read_return_path(&forged, now, 30).is_err(), "{forged}");
        }
        // Another installation's keys do not verify it.
        let other = Keys::new(b"another secret, another server!!");
        assert_eq!(
            other.read_return_path(local, now, 30),
            Err(TokenError::Forged)
        );
        assert_eq!(
            k.read_return_path("bounce+nonsense", now, 30),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            k.read_return_path("bounce+", now, 30),
            Err(TokenError::Malformed)
        );
        assert_eq!(k.read_return_path("b", now, 30), Err(TokenError::Malformed));
        assert_eq!(
            k.read_return_path("bounce+0k6r4g2m9q1zx3a-é234567890123", now, 30),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn days_wrap_around() {
        let k = Keys::new(b"0123456789abcdef0123456789abcdef");
        // Made on day 1023 of the cycle, read on day 2 of the next.
        let made = 1023 * 86_400;
        let rp = k.return_path(Q, "a@b.c", "d.e", made);
        let local = rp.rsplit_once('@').unwrap().0;
        assert!(k.read_return_path(local, 1026 * 86_400, 30).is_ok());
        assert_eq!(
            k.read_return_path(local, (1023 + 40) * 86_400, 30),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tracking_tokens_carry_their_url_and_nothing_else() {
        let k = Keys::new(b"0123456789abcdef0123456789abcdef");
        let t = k.click_token(Q, "Ann@example.net", "https://shop.example/a?b=c&d=e");
        assert_eq!(
            k.read_tracking(&t),
            Ok(Tracked::Click {
                queue_id: Q.into(),
                recipient: "ann@example.net".into(),
                url: "https://shop.example/a?b=c&d=e".into()
            })
        );
        // Another URL under the same signature is refused: no open redirect.
        let (_, sig) = t.split_once('.').unwrap();
        let evil =
            URL_SAFE_NO_PAD.encode(format!("c\n{Q}\nann@example.net\nhttps://evil.example/"));
        assert_eq!(
            k.read_tracking(&format!("{evil}.{sig}")),
            Err(TokenError::Forged)
        );
        let o = k.open_token(Q, "ann@example.net");
        assert!(matches!(k.read_tracking(&o), Ok(Tracked::Open { .. })));
        // Unsubscribe links are not tracking tokens (another key).
        let u = k.unsubscribe_link(Q, "ann@example.net", "example.com");
        assert!(k.read_tracking(&u).is_err());
        assert!(
            k.read_tracking(&"a".repeat(MAX_TRACKING_TOKEN + 1))
                .is_err()
        );
    }

    #[test]
    fn unsubscribe_tokens() {
        let k = Keys::new(b"0123456789abcdef0123456789abcdef");
        let a = k.unsubscribe_address(Q, "ann@example.net", "example.com");
        let local = a.rsplit_once('@').unwrap().0;
        assert!(local.len() <= 64);
        let t = k.read_unsubscribe_address(local).unwrap();
        assert!(k.unsubscribe_is_for(&t, "Ann@example.net"));
        assert!(!k.unsubscribe_is_for(&t, "bob@example.net"));
        // A return path is not an unsubscribe address, nor the reverse.
        let rp = k.return_path(Q, "ann@example.net", "example.com", 0);
        assert!(
            k.read_unsubscribe_address(rp.rsplit_once('@').unwrap().0)
                .is_err()
        );
        let link = k.unsubscribe_link(Q, "Ann@Example.net", "Example.com");
        let l = k.read_unsubscribe_link(&link).unwrap();
        assert_eq!(
            (l.queue_id.as_str(), l.recipient.as_str(), l.domain.as_str()),
            (Q, "ann@example.net", "example.com")
        );
        let (p, s) = link.split_once('.').unwrap();
        let other = URL_SAFE_NO_PAD.encode(format!("{Q}\nbob@example.net\nexample.com"));
        assert_eq!(
            k.read_unsubscribe_link(&format!("{other}.{s}")),
            Err(TokenError::Forged)
        );
        assert_eq!(k.read_unsubscribe_link(p), Err(TokenError::Malformed));
        assert_eq!(k.read_unsubscribe_link("..."), Err(TokenError::Malformed));
    }
}
