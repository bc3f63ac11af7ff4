//! SMTP replies with enhanced status codes (RFC 3463).

/// A reply: code, enhanced status and text.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Three-digit reply code (RFC 5321 §4.2).
    pub code: u16,
    /// Enhanced status code (RFC 3463), empty for replies without one.
    pub status: &'static str,
    /// Human-readable text.
    pub text: String,
}

impl Reply {
    /// A reply with an enhanced status code.
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Self {
        Self {
            code,
            status,
            text: text.into(),
        }
    }

    /// Whether the reply reports a client error (counts toward the error limit).
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Wire form, CRLF-terminated.
    pub fn to_bytes(&self) -> Vec<u8> {
        if self.status.is_empty() {
            format!("{} {}\r\n", self.code, self.text).into_bytes()
        } else {
            format!("{} {} {}\r\n", self.code, self.status, self.text).into_bytes()
        }
    }
}

/// Builds a [`Reply`] with `format!` arguments.
macro_rules! reply {
    ($code:expr, $status:expr, $($arg:tt)*) => {
        $crate::reply::Reply::new($code, $status, format!($($arg)*))
    };
}
pub(crate) use reply;

impl Reply {
    /// HELO replies carry no enhanced code (RFC 2034 applies after EHLO).
    pub fn without_status(self) -> Self {
        Self { status: "", ..self }
    }
}
