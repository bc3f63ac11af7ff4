//! The mailbox rules every backend applies the same way: valid names, how
//! flags are stored, which moves teach the spam filter.

use crate::{FlagMode, FlagUpdate, Result, StoreError};

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

/// What STORE does to one message (RFC 9051 §6.4.6) whose stored flags are
/// `stored` at MODSEQ `modseq`: the update to report and, when the flags
/// change, the flag string to store. A change takes the next MODSEQ after
/// `highest` (which it advances); UNCHANGEDSINCE below the message's MODSEQ
/// refuses it (RFC 7162 §3.1.3); a change to the same flags is no change.
pub(crate) fn flag_update(
    uid: u32,
    stored: &str,
    modseq: u64,
    mode: FlagMode,
    flags: &[String],
    unchanged_since: Option<u64>,
    highest: &mut u64,
) -> (FlagUpdate, Option<String>) {
    let current = split_flags(stored);
    if unchanged_since.is_some_and(|u| modseq > u) {
        let update = FlagUpdate {
            uid,
            flags: current,
            modseq,
            applied: false,
        };
        return (update, None);
    }
    let new: Vec<String> = match mode {
        FlagMode::Replace => flags.to_vec(),
        FlagMode::Add => current.iter().chain(flags.iter()).cloned().collect(),
        FlagMode::Remove => current
            .iter()
            .filter(|f| !flags.iter().any(|r| r.eq_ignore_ascii_case(f)))
            .cloned()
            .collect(),
    };
    let new_s = join_flags(&new);
    if join_flags(&current) == new_s {
        let update = FlagUpdate {
            uid,
            flags: split_flags(&new_s),
            modseq,
            applied: true,
        };
        return (update, None);
    }
    *highest += 1;
    let update = FlagUpdate {
        uid,
        flags: split_flags(&new_s),
        modseq: *highest,
        applied: true,
    };
    (update, Some(new_s))
}
