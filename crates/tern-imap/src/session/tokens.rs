//! The tokens of a command's arguments (RFC 9051 §4, §9), for the commands
//! Tern parses itself (LIST-EXTENDED, MULTIAPPEND, CATENATE, REPLACE):
//! atoms, quoted strings, literals (synchronizing or not, and `literal8`)
//! and parentheses.

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    /// `(`
    Open,
    /// `)`
    Close,
    /// An atom (`%`, `*`, `\` and `[`…`]` included).
    Atom(Vec<u8>),
    /// A quoted string, unescaped.
    Quoted(Vec<u8>),
    /// A literal's data; `true` for a `literal8` (`~{n}`, may hold NUL).
    Literal(Vec<u8>, bool),
}

/// Splits `s` into tokens; `None` when it is malformed (an unterminated
/// string, a literal shorter than announced, a bare CR or LF before the
/// end).
pub(super) fn tokens(mut s: &[u8]) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    loop {
        while let Some(rest) = s.strip_prefix(b" ") {
            s = rest;
        }
        let Some(&c) = s.first() else {
            return Some(out);
        };
        match c {
            b'\r' | b'\n' => return s.iter().all(|b| matches!(b, b'\r' | b'\n')).then_some(out),
            b'(' => {
                out.push(Token::Open);
                s = &s[1..];
            }
            b')' => {
                out.push(Token::Close);
                s = &s[1..];
            }
            b'"' => {
                let mut v = Vec::new();
                let mut i = 1;
                loop {
                    match *s.get(i)? {
                        b'"' => break,
                        b'\\' => {
                            v.push(*s.get(i + 1)?);
                            i += 2;
                        }
                        b'\r' | b'\n' => return None,
                        b => {
                            v.push(b);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Quoted(v));
                s = &s[i + 1..];
            }
            b'{' | b'~' => {
                // {n} or {n+} (or ~{n} for literal8), CRLF, n bytes.
                let eight = c == b'~';
                let start = if eight { 2 } else { 1 };
                if eight && s.get(1) != Some(&b'{') {
                    return None;
                }
                let close = s.iter().position(|&b| b == b'}')?;
                let digits = s.get(start..close)?;
                let digits = digits.strip_suffix(b"+").unwrap_or(digits);
                let n: usize = std::str::from_utf8(digits).ok()?.parse().ok()?;
                let data = s.get(close + 1..)?.strip_prefix(b"\r\n")?;
                out.push(Token::Literal(data.get(..n)?.to_vec(), eight));
                s = &data[n..];
            }
            _ => {
                let mut end = 0;
                while end < s.len() && !matches!(s[end], b' ' | b'(' | b')' | b'\r' | b'\n' | b'"')
                {
                    if s[end] == b'[' {
                        // A section spec: spaces and parentheses inside.
                        end += s[end..]
                            .iter()
                            .position(|&b| b == b']')
                            .unwrap_or(s.len() - end);
                    }
                    end += 1;
                }
                let end = end.min(s.len());
                out.push(Token::Atom(s[..end].to_vec()));
                s = &s[end..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Token, tokens};

    #[test]
    fn every_kind() {
        let t = tokens(b"INBOX (\\Seen $x) \"a \\\"b\\\"\" {3}\r\nabc ~{2}\r\n\0z {1+}\r\n)\r\n")
            .unwrap();
        assert_eq!(
            t,
            vec![
                Token::Atom(b"INBOX".to_vec()),
                Token::Open,
                Token::Atom(b"\\Seen".to_vec()),
                Token::Atom(b"$x".to_vec()),
                Token::Close,
                Token::Quoted(b"a \"b\"".to_vec()),
                Token::Literal(b"abc".to_vec(), false),
                Token::Literal(b"\0z".to_vec(), true),
                Token::Literal(b")".to_vec(), false),
            ]
        );
        for bad in [&b"\"open"[..], b"{5}\r\nab", b"{x}\r\n", b"a\rb", b"~x"] {
            assert!(tokens(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
