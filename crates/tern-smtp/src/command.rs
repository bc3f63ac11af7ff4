//! Reading one SMTP command line (RFC 5321 §4.1.1) with `smtp-proto`, and
//! turning parse failures into replies with enhanced status codes.

use crate::reply::{Reply, reply};
use crate::session::sanitize;
use smtp_proto::{Error as ProtoError, Request};

/// Parses one complete command line, CRLF included. Lines must end in CRLF
/// and contain no NUL; everything else is up to `smtp-proto`.
pub fn parse(line: &[u8]) -> Result<Request<String>, Reply> {
    if !line.ends_with(b"\r\n") {
        return Err(reply!(
            500,
            "5.5.2",
            "Syntax error: command lines must end with CRLF"
        ));
    }
    if line.contains(&0) {
        return Err(reply!(500, "5.5.2", "Syntax error: NUL byte in command"));
    }
    if std::str::from_utf8(line).is_err() {
        // RFC 6531 §3.2: with SMTPUTF8, addresses are UTF-8; anything else
        // was never a valid address and must not be stored as U+FFFD.
        let verb = line.get(..5).unwrap_or_default().to_ascii_uppercase();
        return Err(match &verb[..] {
            b"MAIL " => reply!(553, "5.6.7", "Sender address is not valid UTF-8"),
            b"RCPT " => reply!(553, "5.6.7", "Recipient address is not valid UTF-8"),
            _ => reply!(500, "5.5.2", "Syntax error: command is not valid UTF-8"),
        });
    }
    check_bdat_size(line)?;
    Request::parse(&mut line.iter())
        .map(|r| r.into_owned())
        .map_err(protocol_error)
}

/// RFC 3030 §2: `BDAT SP chunk-size [SP LAST]`, `chunk-size = 1*DIGIT`.
/// `smtp-proto` 0.2 wraps chunk sizes past its digit limit (`BDAT
/// 99999999999999999999999` came out as 999), so the number is read here
/// first: one that does not fit in 64 bits is a syntax error, never a
/// different size.
fn check_bdat_size(line: &[u8]) -> Result<(), Reply> {
    let Some(verb) = line.get(..5) else {
        return Ok(());
    };
    if !verb.eq_ignore_ascii_case(b"BDAT ") {
        return Ok(());
    }
    let digits: Vec<u8> = line[5..]
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    let fits = std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| d.parse::<u64>().ok())
        .is_some_and(|n| usize::try_from(n).is_ok());
    if fits {
        Ok(())
    } else {
        Err(reply!(
            501,
            "5.5.4",
            "Syntax: BDAT chunk-size [LAST] (chunk size too large)"
        ))
    }
}

fn protocol_error(e: ProtoError) -> Reply {
    match e {
        ProtoError::UnknownCommand => reply!(500, "5.5.1", "Unknown command"),
        ProtoError::InvalidSenderAddress => reply!(501, "5.1.7", "Bad sender address syntax"),
        ProtoError::InvalidRecipientAddress => reply!(501, "5.1.3", "Bad recipient address syntax"),
        ProtoError::SyntaxError { syntax } => reply!(501, "5.5.4", "Syntax: {syntax}"),
        ProtoError::InvalidParameter { param } => reply!(501, "5.5.4", "Invalid parameter {param}"),
        ProtoError::UnsupportedParameter { param } => {
            reply!(555, "5.5.4", "Unsupported parameter {}", sanitize(&param))
        }
        ProtoError::ResponseTooLong
        | ProtoError::NeedsMoreData { .. }
        | ProtoError::InvalidResponse { .. } => reply!(500, "5.5.2", "Syntax error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert!(matches!(parse(b"EHLO x\r\n"), Ok(Request::Ehlo { .. })));
        assert_eq!(parse(b"EHLO x\n").unwrap_err().code, 500);
        assert_eq!(parse(b"EH\0LO x\r\n").unwrap_err().code, 500);
        assert_eq!(parse(b"MAIL FROM:<a@b> FOO=bar\r\n").unwrap_err().code, 555);
        assert_eq!(parse(b"XYZZY\r\n").unwrap_err().status, "5.5.1");
        assert!(matches!(
            parse(b"BDAT 1000 LAST\r\n"),
            Ok(Request::Bdat {
                chunk_size: 1000,
                is_last: true
            })
        ));
        let e = parse(b"MAIL FROM:<j\xf6rg@example.com> SMTPUTF8\r\n").unwrap_err();
        assert_eq!((e.code, e.status), (553, "5.6.7"));
        let e = parse(b"RCPT TO:<\xc3@example.com>\r\n").unwrap_err();
        assert_eq!((e.code, e.status), (553, "5.6.7"));
        assert!(parse("MAIL FROM:<jörg@example.com> SMTPUTF8\r\n".as_bytes()).is_ok());
        for l in [
            &b"BDAT 99999999999999999999999 LAST\r\n"[..],
            b"bdat 18446744073709551616\r\n",
            b"BDAT -1\r\n",
            b"BDAT\r\n",
        ] {
            assert_eq!(parse(l).unwrap_err().code, 501, "{l:?}");
        }
    }
}
