//! What an address says by itself: role accounts (RFC 2142's mailbox
//! names and the usual shared ones) and likely typos of the large
//! mailbox providers' domains.

/// Local parts that reach a team or a function, not a person.
const ROLES: &[&str] = &[
    "abuse",
    "admin",
    "administrator",
    "billing",
    "contact",
    "help",
    "helpdesk",
    "hostmaster",
    "info",
    "jobs",
    "list",
    "mail",
    "mailer-daemon",
    "marketing",
    "news",
    "noc",
    "no-reply",
    "noreply",
    "office",
    "postmaster",
    "privacy",
    "root",
    "sales",
    "security",
    "support",
    "team",
    "usenet",
    "uucp",
    "webmaster",
    "www",
];

/// Whether `local` is a role account.
pub fn is_role(local: &str) -> bool {
    let l = local.to_ascii_lowercase();
    ROLES.contains(&l.as_str())
}

/// Domains people mistype often, the large providers'.
const COMMON: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "outlook.com",
    "live.com",
    "msn.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "mail.com",
    "ymail.com",
    "rocketmail.com",
    "aol.com",
    "gmx.de",
    "gmx.net",
    "web.de",
    "proton.me",
    "protonmail.com",
    "yandex.ru",
    "mail.ru",
    "orange.fr",
    "comcast.net",
    "verizon.net",
];

/// The provider's domain `domain` is probably a typo of (one edit away:
/// a letter missing, extra, changed, or two swapped), or `None`.
pub fn suggestion(domain: &str) -> Option<&'static str> {
    let d = domain.to_ascii_lowercase();
    if COMMON.contains(&d.as_str()) {
        return None;
    }
    COMMON
        .iter()
        .copied()
        .find(|c| distance(&d, c) == 1)
        .or_else(|| {
            // A mistyped top-level domain of a provider's name (gmail.con).
            let (name, _) = d.rsplit_once('.')?;
            COMMON
                .iter()
                .copied()
                .find(|c| c.rsplit_once('.').is_some_and(|(n, _)| n == name))
        })
}

/// Optimal string alignment distance (Damerau–Levenshtein with adjacent
/// transpositions), capped: only whether it is 0, 1 or more matters.
fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > 1 || a.len() > 64 || b.len() > 64 {
        return 2;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, v) in d[0].iter_mut().enumerate() {
        *v = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos() {
        assert_eq!(suggestion("gmial.com"), Some("gmail.com"));
        assert_eq!(suggestion("gmai.com"), Some("gmail.com"));
        assert_eq!(suggestion("hotmial.com"), Some("hotmail.com"));
        assert_eq!(suggestion("gmail.con"), Some("gmail.com"));
        assert_eq!(suggestion("yahooo.com"), Some("yahoo.com"));
        assert_eq!(suggestion("gmail.com"), None);
        assert_eq!(suggestion("example.com"), None);
        assert_eq!(
            suggestion("mail.com"),
            None,
            "a real provider, two edits from gmail.com"
        );
    }

    #[test]
    fn roles() {
        assert!(is_role("Postmaster"));
        assert!(is_role("info"));
        assert!(!is_role("alice"));
    }
}
