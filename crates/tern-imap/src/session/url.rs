//! IMAP URLs (RFC 5092) naming a message or a part of one on this server,
//! as CATENATE (RFC 4469) and URLAUTH (RFC 4467) use them:
//! `imap://user@host/mailbox;UIDVALIDITY=n/;UID=n/;SECTION=s;EXPIRE=t;URLAUTH=access:mech:token`
//! or the same path relative to the server (`/mailbox…`).

/// A parsed IMAP URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ImapUrl {
    /// The `user@` of an absolute URL (the mailbox's owner).
    pub user: Option<String>,
    pub mailbox: String,
    pub uidvalidity: Option<u32>,
    pub uid: u32,
    pub section: Option<String>,
    /// `;EXPIRE=`: Unix seconds.
    pub expire: Option<i64>,
    /// `;URLAUTH=access` (RFC 4467 §3): who may fetch it.
    pub access: Option<String>,
    /// `:mechanism:token`, once authorized.
    pub mechanism: Option<String>,
    pub token: Option<String>,
    /// The URL up to and including `;URLAUTH=access` (the "rump" the
    /// token signs, RFC 4467 §2.1).
    pub rump: String,
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Splits `k=v`, the key compared without case.
fn param<'a>(piece: &'a str, key: &str) -> Option<&'a str> {
    let (k, v) = piece.split_once('=')?;
    k.eq_ignore_ascii_case(key).then_some(v)
}

/// Parses an IMAP URL; `None` for anything else (or PARTIAL, not
/// supported here).
pub(super) fn parse(url: &str) -> Option<ImapUrl> {
    let mut u = ImapUrl::default();
    let path = match url
        .strip_prefix("imap://")
        .or_else(|| url.strip_prefix("IMAP://"))
    {
        Some(rest) => {
            let slash = rest.find('/')?;
            let authority = &rest[..slash];
            if let Some((user, _host)) = authority.rsplit_once('@') {
                let user = user.split(';').next()?;
                u.user = Some(percent_decode(user)?);
            }
            &rest[slash..]
        }
        None => url,
    };
    let path = path.strip_prefix('/')?;
    // The URLAUTH part closes the URL (RFC 4467 §3): split it off first.
    let lower = path.to_ascii_lowercase();
    let (body, auth) = match lower.find(";urlauth=") {
        Some(at) => (&path[..at], Some(&path[at + 9..])),
        None => (path, None),
    };
    let (body, expire) = match body.to_ascii_lowercase().find(";expire=") {
        Some(at) => (&body[..at], Some(&body[at + 8..])),
        None => (body, None),
    };
    if let Some(e) = expire {
        u.expire = Some(chrono::DateTime::parse_from_rfc3339(e).ok()?.timestamp());
    }
    if let Some(a) = auth {
        let mut parts = a.splitn(3, ':');
        u.access = Some(parts.next()?.to_string());
        u.mechanism = parts.next().map(str::to_string);
        u.token = parts.next().map(str::to_string);
        let rump_len = url.len() - a.len() + u.access.as_ref()?.len();
        u.rump = url[..rump_len].to_string();
    }
    let (mailbox_part, rest) = body.split_once("/;")?;
    let mut m = mailbox_part.split(';');
    u.mailbox = percent_decode(m.next()?)?;
    for extra in m {
        u.uidvalidity = Some(param(extra, "UIDVALIDITY")?.parse().ok()?);
    }
    let mut uid = None;
    for piece in rest.split("/;") {
        if let Some(v) = param(piece, "UID") {
            uid = Some(v.parse().ok()?);
        } else if let Some(v) = param(piece, "SECTION") {
            u.section = Some(percent_decode(v)?);
        } else {
            return None;
        }
    }
    u.uid = uid?;
    Some(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4467 §7's example URL, and RFC 5092 forms.
    #[test]
    fn urls() {
        let u = parse("imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred:internal:91354a473744909de610943775f92038").unwrap();
        assert_eq!(u.user.as_deref(), Some("joe"));
        assert_eq!((u.mailbox.as_str(), u.uid), ("INBOX", 20));
        assert_eq!(u.section.as_deref(), Some("1.2"));
        assert_eq!(u.access.as_deref(), Some("submit+fred"));
        assert_eq!(u.mechanism.as_deref(), Some("internal"));
        assert_eq!(u.token.as_deref(), Some("91354a473744909de610943775f92038"));
        assert_eq!(
            u.rump,
            "imap://joe@example.com/INBOX/;uid=20/;section=1.2;urlauth=submit+fred"
        );
        let u = parse("imap://a%40b.test@h/Sent%20Items;UIDVALIDITY=4/;UID=20;EXPIRE=2030-01-01T00:00:00Z;URLAUTH=anonymous").unwrap();
        assert_eq!(u.user.as_deref(), Some("a@b.test"));
        assert_eq!((u.mailbox.as_str(), u.uidvalidity), ("Sent Items", Some(4)));
        assert_eq!(u.expire, Some(1_893_456_000));
        assert_eq!(u.token, None);
        assert_eq!(parse("/INBOX/;UID=3").map(|u| u.uid), Some(3));
        for bad in [
            "/INBOX/;UID=x",
            "/INBOX/;UID=3/;PARTIAL=0.10",
            "INBOX/;UID=3",
            "/INBOX",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
