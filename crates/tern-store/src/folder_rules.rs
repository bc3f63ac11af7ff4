//! The mailbox rules every backend applies the same way: valid names, how
//! flags are stored, which moves teach the spam filter.

use crate::{Result, StoreError};

/// Flags are stored as one space-separated string, system flags first,
/// each once (ASCII case-insensitively).
pub(crate) fn join_flags(flags: &[String]) -> String {
    let mut v: Vec<&str> = flags.iter().map(String::as_str).collect();
    v.sort_by_key(|f| (!f.starts_with('\\'), f.to_ascii_lowercase()));
    v.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    v.join(" ")
}

/// The flags of a stored flag string.
pub(crate) fn split_flags(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

/// A mailbox name as stored: `/`-separated levels, none empty, no
/// wildcards or control characters, INBOX in upper case (RFC 9051 §5.1).
pub(crate) fn normalize_name(name: &str) -> Result<String> {
    let name = name.trim_matches('/');
    if name.is_empty() || name.split('/').any(str::is_empty) || name.len() > 512 {
        return Err(StoreError::Invalid(format!(
            "invalid mailbox name {name:?}"
        )));
    }
    if name.chars().any(|c| c.is_control() || c == '*' || c == '%') {
        return Err(StoreError::Invalid(
            "mailbox names cannot contain *, % or control characters".into(),
        ));
    }
    Ok(if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".into()
    } else {
        name.to_string()
    })
}

/// The ancestors of `a/b/c` (`a`, `a/b`), which CREATE makes too (RFC 9051
/// §6.3.4).
pub(crate) fn parents(name: &str) -> Vec<String> {
    let parts: Vec<&str> = name.split('/').collect();
    (1..parts.len()).map(|i| parts[..i].join("/")).collect()
}

/// What a copy or move between folders with these special uses teaches the
/// spam filter: into Junk is spam, moved out of Junk is ham.
pub(crate) fn training_verdict(
    from_use: Option<&str>,
    to_use: Option<&str>,
    remove: bool,
) -> Option<bool> {
    let junk = |u: Option<&str>| u == Some("\\Junk");
    if junk(to_use) && !junk(from_use) {
        Some(true)
    } else if junk(from_use) && !junk(to_use) && remove {
        Some(false)
    } else {
        None
    }
}

/// The special use a delivery role files into (`Junk` → `\Junk`, `Sent` →
/// `\Sent`), found by attribute whatever a client renamed the folder to.
pub(crate) fn special_use_of(role: &str) -> Option<&'static str> {
    match role {
        "Junk" => Some("\\Junk"),
        "Sent" => Some("\\Sent"),
        _ => None,
    }
}
