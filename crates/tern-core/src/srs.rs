//! The Sender Rewriting Scheme (SRS0, as libsrs2 and postsrsd write it):
//! mail Tern forwards to another domain leaves with an envelope sender in
//! one of our domains, so the destination's SPF check sees our server as
//! the sender's domain permits; bounces come back to that address and are
//! reversed to the original sender.
//!
//! `SRS0=HHHH=TT=orig-domain=orig-local@our-domain`: `TT` is the day
//! (base32, two characters, modulo 1024) and `HHHH` the first four base32
//! characters of an HMAC-SHA256 over the day, domain and local part, so
//! nobody can use the address as an open bounce relay and it expires.

use aws_lc_rs::hmac;

/// How long a rewritten address is honoured for bounces (days).
pub const MAX_AGE_DAYS: u64 = 21;

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn day(now: i64) -> u64 {
    (now.max(0) as u64 / 86400) % 1024
}

fn timestamp(day: u64) -> String {
    [B32[(day >> 5) as usize & 31], B32[day as usize & 31]]
        .iter()
        .map(|&b| b as char)
        .collect()
}

fn parse_timestamp(t: &str) -> Option<u64> {
    let b = t.as_bytes();
    if b.len() != 2 {
        return None;
    }
    let v = |c: u8| {
        B32.iter()
            .position(|&x| x == c.to_ascii_uppercase())
            .map(|p| p as u64)
    };
    Some((v(b[0])? << 5) | v(b[1])?)
}

fn hash(secret: &[u8], ts: &str, domain: &str, local: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let data = format!(
        "{}{}{}",
        ts.to_ascii_uppercase(),
        domain.to_ascii_lowercase(),
        local.to_ascii_lowercase()
    );
    let tag = hmac::sign(&key, data.as_bytes());
    // Four base32 characters: the first 20 bits of the tag.
    let t = tag.as_ref();
    let bits = (u32::from(t[0]) << 12) | (u32::from(t[1]) << 4) | (u32::from(t[2]) >> 4);
    (0..4)
        .rev()
        .map(|i| B32[((bits >> (i * 5)) & 31) as usize] as char)
        .collect()
}

/// The rewritten envelope sender for `sender` (`local@domain`) forwarded
/// by `our_domain`. The null sender and addresses already rewritten by us
/// stay as they are.
pub fn forward(sender: &str, our_domain: &str, secret: &[u8], now: i64) -> String {
    let Some((local, domain)) = sender.rsplit_once('@') else {
        return sender.to_string();
    };
    // A domain with '=' (no DNS name has one) could not be told apart
    // from the fields when the address is reversed.
    if domain.eq_ignore_ascii_case(our_domain) || is_srs(local) || domain.contains('=') {
        return sender.to_string();
    }
    let ts = timestamp(day(now));
    let h = hash(secret, &ts, domain, local);
    format!("SRS0={h}={ts}={domain}={local}@{our_domain}")
}

/// Whether a local part is an SRS0 address (worth [`reverse`]-ing).
pub fn is_srs(local: &str) -> bool {
    // Bytes, not a str slice: a hostile local part may be UTF-8 (SMTPUTF8).
    local.len() > 5 && local.as_bytes()[..5].eq_ignore_ascii_case(b"SRS0=")
}

/// The original sender of a rewritten local part, if its hash is ours
/// and it is at most [`MAX_AGE_DAYS`] old.
pub fn reverse(local: &str, secret: &[u8], now: i64) -> Option<String> {
    if !is_srs(local) {
        return None;
    }
    let mut parts = local[5..].splitn(4, '=');
    let (h, ts, domain, orig_local) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if domain.is_empty() || orig_local.is_empty() {
        return None;
    }
    let then = parse_timestamp(ts)?;
    let age = (day(now) + 1024 - then) % 1024;
    if age > MAX_AGE_DAYS {
        return None;
    }
    let expected = hash(secret, ts, domain, orig_local);
    // Compared in constant time: the hash is what keeps this from being an
    // open relay.
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        expected.as_bytes(),
        h.to_ascii_uppercase().as_bytes(),
    )
    .is_err()
    {
        return None;
    }
    Some(format!("{orig_local}@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_800_000;

    #[test]
    fn round_trip_and_forgeries() {
        let s = forward("Alice@Example.com", "fwd.test", b"secret", NOW);
        assert!(
            s.starts_with("SRS0=") && s.ends_with("=Example.com=Alice@fwd.test"),
            "{s}"
        );
        let local = s.rsplit_once('@').unwrap().0;
        assert_eq!(
            reverse(local, b"secret", NOW + 86400).as_deref(),
            Some("Alice@Example.com")
        );
        assert_eq!(reverse(local, b"other", NOW), None, "another secret");
        assert_eq!(reverse(local, b"secret", NOW + 30 * 86400), None, "too old");
        let forged = local.replacen("SRS0=", "SRS0=AAAA", 1);
        assert_eq!(reverse(&forged, b"secret", NOW), None);
        assert_eq!(reverse("bob", b"secret", NOW), None);
        assert_eq!(reverse("SRS0=x", b"secret", NOW), None);
        // Found by cargo fuzz (fuzz/fuzz_targets/srs_address.rs): non-ASCII
        // local parts must not be sliced inside a character.
        assert!(!is_srs("SRS\u{e9}=x"));
        assert_eq!(reverse("abcd\u{e9}xyz", b"secret", NOW), None);
        let s = forward("abcd\u{e9}@x.test", "fwd.test", b"secret", NOW);
        let local = s.rsplit_once('@').unwrap().0;
        assert_eq!(
            reverse(local, b"secret", NOW).as_deref(),
            Some("abcd\u{e9}@x.test")
        );
        // Not rewritten twice, nor the null sender, nor our own.
        assert_eq!(forward(&s, "fwd.test", b"secret", NOW), s);
        assert_eq!(forward("", "fwd.test", b"secret", NOW), "");
        assert_eq!(
            forward("a@fwd.test", "fwd.test", b"secret", NOW),
            "a@fwd.test"
        );
    }
}
