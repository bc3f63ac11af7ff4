//! LIST and LSUB mailbox patterns (RFC 9051 §6.3.9).

/// LIST pattern matching (RFC 9051 §6.3.9): `*` matches anything, `%`
/// anything but the hierarchy separator; other characters match
/// themselves, ignoring ASCII case.
///
/// Patterns come from the network, so this is a table over (pattern
/// position, name position), one row at a time: time is the product of the
/// two lengths at most, never exponential in the wildcards, and nothing
/// recurses. A pattern with more literal characters than the name cannot
/// match and is refused before any work.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let literals = pattern.iter().filter(|&&c| c != b'*' && c != b'%').count();
    if literals > name.len() {
        return false;
    }
    // row[j]: the pattern so far matches name[..j].
    let mut row = vec![false; name.len() + 1];
    row[0] = true;
    let mut next = vec![false; name.len() + 1];
    for &c in pattern {
        match c {
            b'*' => {
                let mut any = false;
                for j in 0..=name.len() {
                    any |= row[j];
                    next[j] = any;
                }
            }
            b'%' => {
                next[0] = row[0];
                for j in 1..=name.len() {
                    next[j] = row[j] || (next[j - 1] && name[j - 1] != b'/');
                }
            }
            _ => {
                next[0] = false;
                for j in 1..=name.len() {
                    next[j] = row[j - 1] && name[j - 1].eq_ignore_ascii_case(&c);
                }
            }
        }
        std::mem::swap(&mut row, &mut next);
    }
    row[name.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_patterns() {
        assert!(matches(b"*", b"a/b/c"));
        assert!(matches(b"%", b"INBOX"));
        assert!(!matches(b"%", b"a/b"));
        assert!(matches(b"a/%", b"a/b"));
        assert!(matches(b"A*", b"archive/x"));
        assert!(matches(b"a%c", b"abbc"));
        assert!(!matches(b"a%c", b"ab/c"));
        assert!(matches(b"%/%", b"a/b"));
        assert!(!matches(b"a", b"ab"));
        assert!(matches(b"", b""));
        // Hostile patterns: deep (100,000 characters) and backtracking-heavy.
        let long = "a".repeat(100_000);
        assert!(!matches(long.as_bytes(), b"a"));
        assert!(matches("*".repeat(100_000).as_bytes(), b"a/b"));
        let stars = "*a".repeat(50_000) + "b";
        assert!(!matches(stars.as_bytes(), "a".repeat(60).as_bytes()));
        assert!(matches("*%*%*".repeat(20_000).as_bytes(), b"x/y"));
    }
}
