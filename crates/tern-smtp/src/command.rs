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
    Request::parse(&mut line.iter())
        .map(|r| r.into_owned())
        .map_err(protocol_error)
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
    }
}
