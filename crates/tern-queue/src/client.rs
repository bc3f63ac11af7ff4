//! The SMTP client that delivers queued mail (RFC 5321 §3, §4).
//!
//! Written here rather than taken from `mail-send`: delivery needs command
//! pipelining (RFC 2920), byte-exact message data (the stored message is
//! sent as is, dot-stuffed or in one BDAT chunk, RFC 3030), a per-recipient
//! result for every transaction, a chosen source address and TLS verifier
//! per connection, and hard limits on what a remote server may send back.
//! Replies are parsed here: a reply is at most [`MAX_REPLY_LINES`] lines of
//! at most [`MAX_LINE`] bytes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

/// Longest reply line accepted from a server.
pub const MAX_LINE: usize = 4096;
/// Most lines in one (multi-line) reply.
pub const MAX_REPLY_LINES: usize = 128;

/// Connection-level failures: the transaction's outcome is unknown or
/// never started, so every recipient in it is retried later.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or reading/writing failed.
    #[error("{0}")]
    Io(String),
    /// The server did not answer in time.
    #[error("timeout {0}")]
    Timeout(&'static str),
    /// The server broke the protocol (unparseable or oversized reply).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The TLS handshake failed.
    #[error("TLS handshake failed: {0}")]
    Tls(String, TlsFailure),
}

/// Why a TLS handshake failed, as far as the certificate goes (what TLS
/// reports, RFC 8460 §4.3, tell apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The certificate is not valid for the name asked for.
    HostMismatch,
    /// The certificate has expired (or is not yet valid).
    Expired,
    /// No trusted chain (unknown issuer, bad signature).
    NotTrusted,
    /// Anything else: the verifier refused it, or the handshake broke.
    Other,
}

impl TlsFailure {
    /// Classifies the error a TLS handshake returned.
    fn of(e: &std::io::Error) -> Self {
        use rustls::CertificateError as C;
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(c)) => match c {
                C::NotValidForName | C::NotValidForNameContext { .. } => Self::HostMismatch,
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => Self::Expired,
                C::UnknownIssuer | C::BadSignature | C::BadEncoding => Self::NotTrusted,
                _ => Self::Other,
            },
            _ => Self::Other,
        }
    }
}

/// An SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// Text of all lines (without codes), joined by spaces.
    pub text: String,
}

impl Reply {
    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The enhanced status code (RFC 3463) at the start of the text, if any.
    pub fn enhanced(&self) -> Option<&str> {
        let first = self.text.split_whitespace().next()?;
        let mut parts = first.split('.');
        let class = parts.next()?;
        let ok = matches!(class, "2" | "4" | "5")
            && parts.clone().count() == 2
            && parts
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()));
        ok.then_some(first)
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.text)
    }
}

/// What the server announced in its EHLO reply (RFC 5321 §4.1.1.1).
#[derive(Debug, Clone, Default)]
pub struct Capabilities {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 3030 (BDAT).
    pub chunking: bool,
    /// RFC 6152.
    pub eightbitmime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 1870: the largest message accepted (0: not announced or unlimited).
    pub size: u64,
    /// AUTH PLAIN offered (RFC 4954).
    pub auth_plain: bool,
    /// RFC 3461 delivery status notifications.
    pub dsn: bool,
}

impl Capabilities {
    fn parse(text_lines: &[String]) -> Self {
        let mut c = Self::default();
        // The first line is the greeting; each further line one keyword.
        for line in text_lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => c.pipelining = true,
                "STARTTLS" => c.starttls = true,
                "CHUNKING" => c.chunking = true,
                "8BITMIME" => c.eightbitmime = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "SIZE" => c.size = words.next().and_then(|n| n.parse().ok()).unwrap_or(0),
                "AUTH" => c.auth_plain = words.any(|m| m.eq_ignore_ascii_case("PLAIN")),
                "DSN" => c.dsn = true,
                _ => {}
            }
        }
        c
    }
}

/// Assembles a reply from its lines (RFC 5321 §4.2: `ddd-text` continues,
/// `ddd text` or `ddd` ends; every line carries the same code). Bounded:
/// at most [`MAX_REPLY_LINES`] lines.
#[derive(Debug, Default)]
pub struct ReplyParser {
    code: u16,
    /// Text of each line so far (after the code and separator).
    pub lines: Vec<String>,
}

impl ReplyParser {
    /// Adds one line (without CRLF); `Some` once the reply is complete.
    pub fn push(&mut self, line: &[u8]) -> Result<Option<Reply>, ClientError> {
        if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
            return Err(ClientError::Protocol(format!(
                "bad reply line {:?}",
                String::from_utf8_lossy(&line[..line.len().min(80)])
            )));
        }
        let code = u16::from(line[0] - b'0') * 100
            + u16::from(line[1] - b'0') * 10
            + u16::from(line[2] - b'0');
        if self.code != 0 && code != self.code {
            return Err(ClientError::Protocol(
                "reply codes differ between lines".into(),
            ));
        }
        if !(200..600).contains(&code) {
            return Err(ClientError::Protocol(format!(
                "unexpected reply code {code}"
            )));
        }
        self.code = code;
        let more = match line.get(3) {
            None | Some(b' ') => false,
            Some(b'-') => true,
            Some(_) => {
                return Err(ClientError::Protocol(
                    "reply code not followed by a space or hyphen".into(),
                ));
            }
        };
        let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default())
            .trim()
            .to_string();
        self.lines.push(text);
        if more {
            if self.lines.len() >= MAX_REPLY_LINES {
                return Err(ClientError::Protocol("reply has too many lines".into()));
            }
            return Ok(None);
        }
        Ok(Some(Reply {
            code,
            text: self.lines.join(" "),
        }))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Timeouts of one connection (RFC 5321 §4.5.3.2 gives the minimums).
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// TCP connect plus greeting.
    pub connect: Duration,
    /// Each command's reply.
    pub command: Duration,
    /// The reply after the message data.
    pub data: Duration,
}

/// One SMTP connection to a remote host.
pub struct SmtpClient {
    io: Box<dyn Io>,
    rbuf: Vec<u8>,
    /// The remote address.
    pub peer: SocketAddr,
    /// The local address the connection left from.
    pub local: Option<SocketAddr>,
    /// Capabilities from the last EHLO.
    pub caps: Capabilities,
    /// Whether the connection is encrypted.
    pub tls: bool,
    /// The TLS version negotiated (`TLSv1.3`), if encrypted.
    pub tls_version: Option<&'static str>,
    timeouts: Timeouts,
    lines: Vec<String>,
}

/// The outcome of one mail transaction.
#[derive(Debug, Clone)]
pub struct TransactionResult {
    /// Set when MAIL FROM was refused: every recipient gets this reply.
    pub mail: Option<Reply>,
    /// One reply per recipient, in order (after a refused MAIL: empty).
    pub rcpts: Vec<Reply>,
    /// The reply to the message data, if it was sent.
    pub data: Option<Reply>,
}

/// What to send in one transaction.
pub struct Envelope<'a> {
    /// Reverse-path (empty for the null sender).
    pub mail_from: &'a str,
    /// Forward-paths.
    pub rcpts: &'a [&'a str],
    /// `BODY=8BITMIME` requested by the submitter.
    pub eightbit: bool,
    /// `SMTPUTF8` required (non-ASCII addresses).
    pub smtputf8: bool,
    /// The message, CRLF line endings, not dot-stuffed.
    pub message: &'a [u8],
    /// RFC 3461 MAIL parameters (` RET=… ENVID=…`), sent when the server offers DSN.
    pub dsn_mail: &'a str,
    /// RFC 3461 RCPT parameters per recipient (` NOTIFY=… ORCPT=…`).
    pub dsn_rcpts: &'a [String],
}

/// xtext (RFC 3461 §4): `+` followed by two hex digits for `+`, `=`,
/// and anything outside printable ASCII.
pub fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

impl SmtpClient {
    /// Connects to `peer` (from `source` if given) and reads the greeting.
    /// `Ok(Err(reply))`: the server answered with a non-220 greeting.
    pub async fn connect(
        peer: SocketAddr,
        source: Option<IpAddr>,
        timeouts: Timeouts,
    ) -> Result<(Self, Reply), ClientError> {
        let connect = async {
            let socket = if peer.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }?;
            if let Some(ip) = source.filter(|ip| ip.is_ipv4() == peer.is_ipv4()) {
                // Binding picks a port before the destination is known; let it
                // reuse ports still in TIME_WAIT, or a busy sender runs out.
                socket.set_reuseaddr(true)?;
                socket.bind(SocketAddr::new(ip, 0))?;
            }
            socket.connect(peer).await
        };
        let tcp: TcpStream = tokio::time::timeout(timeouts.connect, connect)
            .await
            .map_err(|_| ClientError::Timeout("connecting"))?
            .map_err(|e| ClientError::Io(format!("connect to {peer}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        let mut client = Self {
            io: Box::new(tcp),
            rbuf: Vec::with_capacity(4096),
            peer,
            local,
            caps: Capabilities::default(),
            tls: false,
            tls_version: None,
            timeouts,
            lines: Vec::new(),
        };
        let greeting = client.read_reply(timeouts.connect).await?;
        Ok((client, greeting))
    }

    /// Reads one complete reply.
    async fn read_reply(&mut self, timeout: Duration) -> Result<Reply, ClientError> {
        let mut parser = ReplyParser::default();
        loop {
            let line = self.read_line(timeout).await?;
            if let Some(reply) = parser.push(&line)? {
                self.lines = parser.lines;
                return Ok(reply);
            }
        }
    }

    async fn read_line(&mut self, timeout: Duration) -> Result<Vec<u8>, ClientError> {
        loop {
            if let Some(pos) = self.rbuf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.rbuf.drain(..=pos).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.rbuf.len() > MAX_LINE {
                return Err(ClientError::Protocol("reply line too long".into()));
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(timeout, self.io.read(&mut chunk))
                .await
                .map_err(|_| ClientError::Timeout("waiting for a reply"))?
                .map_err(|e| ClientError::Io(format!("read: {e}")))?;
            if n == 0 {
                return Err(ClientError::Io("connection closed by the server".into()));
            }
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let io = &mut self.io;
        tokio::time::timeout(self.timeouts.command, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout("sending"))?
        .map_err(|e| ClientError::Io(format!("write: {e}")))
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> Result<Reply, ClientError> {
        self.write(format!("{line}\r\n").as_bytes()).await?;
        self.read_reply(self.timeouts.command).await
    }

    /// Sends several commands in one write and reads a reply to each, in
    /// order: only for a server that offered PIPELINING (RFC 2920 §3.1).
    pub async fn pipeline(&mut self, lines: &[String]) -> Result<Vec<Reply>, ClientError> {
        let mut batch = String::new();
        for l in lines {
            batch.push_str(l);
            batch.push_str("\r\n");
        }
        self.write(batch.as_bytes()).await?;
        let mut replies = Vec::with_capacity(lines.len());
        for _ in lines {
            replies.push(self.read_reply(self.timeouts.command).await?);
        }
        Ok(replies)
    }

    /// EHLO, falling back to HELO when EHLO is refused (RFC 5321 §3.2).
    pub async fn ehlo(&mut self, name: &str) -> Result<Reply, ClientError> {
        let r = self.command(&format!("EHLO {name}")).await?;
        if r.is_positive() {
            self.caps = Capabilities::parse(&self.lines);
            return Ok(r);
        }
        self.caps = Capabilities::default();
        self.command(&format!("HELO {name}")).await
    }

    /// STARTTLS (RFC 3207) and the handshake. The EHLO that must follow is
    /// left to the caller. `Ok(Err(reply))`: the server refused STARTTLS.
    pub async fn starttls(
        mut self,
        connector: &TlsConnector,
        name: rustls_pki_types::ServerName<'static>,
    ) -> Result<Result<Self, (Self, Reply)>, ClientError> {
        let r = self.command("STARTTLS").await?;
        if r.code != 220 {
            return Ok(Err((self, r)));
        }
        if !self.rbuf.is_empty() {
            return Err(ClientError::Protocol(
                "server sent data after its STARTTLS reply".into(),
            ));
        }
        let tls = tokio::time::timeout(self.timeouts.connect, connector.connect(name, self.io))
            .await
            .map_err(|_| ClientError::Timeout("in the TLS handshake"))?
            .map_err(|e| ClientError::Tls(e.to_string(), TlsFailure::of(&e)))?;
        let tls_version = match tls.get_ref().1.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLSv1.3"),
            Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLSv1.2"),
            Some(_) => Some("TLS"),
            None => None,
        };
        Ok(Ok(Self {
            io: Box::new(tls),
            rbuf: Vec::with_capacity(4096),
            peer: self.peer,
            local: self.local,
            caps: Capabilities::default(),
            tls: true,
            tls_version,
            timeouts: self.timeouts,
            lines: Vec::new(),
        }))
    }

    /// AUTH PLAIN with an initial response (RFC 4954, RFC 4616).
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<Reply, ClientError> {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{password}").as_bytes());
        self.command(&format!("AUTH PLAIN {token}")).await
    }

    /// One mail transaction: MAIL, RCPT…, then DATA or BDAT. With
    /// PIPELINING the envelope commands (and DATA) go out in one write
    /// (RFC 2920 §3.1); the message goes only if a recipient was accepted.
    pub async fn send(&mut self, env: &Envelope<'_>) -> Result<TransactionResult, ClientError> {
        let mut mail = format!("MAIL FROM:<{}>", env.mail_from);
        if self.caps.size > 0 || self.caps.pipelining {
            mail.push_str(&format!(" SIZE={}", env.message.len()));
        }
        if env.eightbit && self.caps.eightbitmime {
            mail.push_str(" BODY=8BITMIME");
        }
        if env.smtputf8 && self.caps.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            mail.push_str(env.dsn_mail);
        }
        let dsn = self.caps.dsn;
        let rcpt_line = |i: usize, r: &str| {
            let extra = if dsn {
                env.dsn_rcpts.get(i).map(String::as_str).unwrap_or("")
            } else {
                ""
            };
            format!("RCPT TO:<{r}>{extra}")
        };
        mail.push_str("\r\n");
        let use_bdat = self.caps.chunking;
        let mut result = TransactionResult {
            mail: None,
            rcpts: Vec::with_capacity(env.rcpts.len()),
            data: None,
        };
        let data_pipelined = self.caps.pipelining && !use_bdat;
        if self.caps.pipelining {
            let mut batch = mail;
            for (i, r) in env.rcpts.iter().enumerate() {
                batch.push_str(&rcpt_line(i, r));
                batch.push_str("\r\n");
            }
            if data_pipelined {
                batch.push_str("DATA\r\n");
            }
            self.write(batch.as_bytes()).await?;
            let m = self.read_reply(self.timeouts.command).await?;
            if !m.is_positive() {
                result.mail = Some(m);
            }
            for _ in env.rcpts {
                let r = self.read_reply(self.timeouts.command).await?;
                result.rcpts.push(r);
            }
            if result.mail.is_some() {
                result.rcpts.clear();
            }
        } else {
            self.write(mail.as_bytes()).await?;
            let m = self.read_reply(self.timeouts.command).await?;
            if !m.is_positive() {
                result.mail = Some(m);
                return Ok(result);
            }
            let lines: Vec<String> = env
                .rcpts
                .iter()
                .enumerate()
                .map(|(i, r)| rcpt_line(i, r))
                .collect();
            for line in lines {
                let reply = self.command(&line).await?;
                result.rcpts.push(reply);
            }
        }
        let accepted = result.mail.is_none() && result.rcpts.iter().any(Reply::is_positive);
        if use_bdat {
            if accepted {
                self.write(format!("BDAT {} LAST\r\n", env.message.len()).as_bytes())
                    .await?;
                self.write_body(env.message).await?;
                result.data = Some(self.read_reply(self.timeouts.data).await?);
            } else if result.mail.is_none() {
                self.command("RSET").await?;
            }
            return Ok(result);
        }
        let go = if data_pipelined {
            self.read_reply(self.timeouts.command).await?
        } else if accepted {
            self.command("DATA").await?
        } else {
            if result.mail.is_none() {
                self.command("RSET").await?;
            }
            return Ok(result);
        };
        if go.code != 354 {
            if accepted {
                result.data = Some(go);
            }
            return Ok(result);
        }
        if !accepted {
            // RFC 2920 §3.1: a server must refuse DATA when no recipient
            // was accepted; if it did not, send an empty message and ignore it.
            self.write(b".\r\n").await?;
            self.read_reply(self.timeouts.data).await?;
            return Ok(result);
        }
        self.write_body(&dot_stuff(env.message)).await?;
        self.write(b".\r\n").await?;
        result.data = Some(self.read_reply(self.timeouts.data).await?);
        Ok(result)
    }

    async fn write_body(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let io = &mut self.io;
        tokio::time::timeout(self.timeouts.data, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout("sending the message"))?
        .map_err(|e| ClientError::Io(format!("write: {e}")))
    }

    /// RSET between transactions on a reused connection.
    pub async fn rset(&mut self) -> Result<Reply, ClientError> {
        self.command("RSET").await
    }

    /// QUIT, ignoring errors: the connection is finished either way.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = self.io.write_all(b"QUIT\r\n").await;
            let _ = self.io.flush().await;
            let mut buf = [0u8; 512];
            let _ = self.io.read(&mut buf).await;
            let _ = self.io.shutdown().await;
        })
        .await;
    }
}

/// Dot-stuffs a message for DATA (RFC 5321 §4.5.2) and makes sure it ends
/// with CRLF, so the terminator can follow.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 64);
    let mut at_line_start = true;
    for &b in message {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A TLS configuration for opportunistic STARTTLS: encrypts, accepts any
/// certificate (RFC 7435; without MTA-STS or DANE there is nothing to check
/// the name against that an attacker could not also strip).
pub fn opportunistic_tls() -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(AnyCert(provider.clone()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        });
    match cfg {
        Ok(c) => TlsConnector::from(Arc::new(c)),
        Err(e) => {
            tracing::error!(error = %e, "queue: TLS client setup failed");
            TlsConnector::from(Arc::new(
                rustls::ClientConfig::builder()
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCert(Arc::new(
                        rustls::crypto::aws_lc_rs::default_provider(),
                    ))))
                    .with_no_client_auth(),
            ))
        }
    }
}

/// A TLS connector that checks certificates against the system's trust
/// store (and `extra` roots), for `tls = "required"` and MTA-STS.
pub fn verified_tls(
    extra: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<TlsConnector, String> {
    Ok(TlsConnector::from(Arc::new(verified_tls_config(extra)?)))
}

/// The client configuration behind [`verified_tls`].
pub fn verified_tls_config(
    extra: &[rustls_pki_types::CertificateDer<'static>],
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = if extra.is_empty() {
        rustls_platform_verifier::Verifier::new(provider.clone())
    } else {
        rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra.iter().cloned(),
            provider.clone(),
        )
    }
    .map_err(|e| e.to_string())?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        assert_eq!(dot_stuff(b".a\r\nb\r\n..c\r\n"), b"..a\r\nb\r\n...c\r\n");
        assert_eq!(dot_stuff(b"x"), b"x\r\n");
    }

    #[test]
    fn xtext_encoding() {
        assert_eq!(xtext("rfc822;a+b=c@x.test"), "rfc822;a+2Bb+3Dc@x.test");
        assert_eq!(xtext("id 1"), "id+201");
    }

    #[test]
    fn enhanced_codes() {
        let r = |t: &str| Reply {
            code: 550,
            text: t.into(),
        };
        assert_eq!(r("5.1.1 no such user").enhanced(), Some("5.1.1"));
        assert_eq!(r("no such user").enhanced(), None);
        assert_eq!(r("5.1 x").enhanced(), None);
    }

    #[test]
    fn replies() {
        let mut p = ReplyParser::default();
        assert!(p.push(b"250-mx hello").unwrap().is_none());
        let r = p.push(b"250 SIZE 10").unwrap().unwrap();
        assert_eq!((r.code, r.text.as_str()), (250, "mx hello SIZE 10"));
        assert!(ReplyParser::default().push(b"25").is_err());
        assert!(ReplyParser::default().push(b"999 x").is_err());
        assert!(ReplyParser::default().push(b"250x").is_err());
        let mut p = ReplyParser::default();
        p.push(b"250-a").unwrap();
        assert!(p.push(b"550 b").is_err(), "codes must agree");
        assert_eq!(
            ReplyParser::default().push(b"220").unwrap().unwrap().code,
            220
        );
    }

    #[test]
    fn capabilities() {
        let lines: Vec<String> = [
            "mx.example Hello",
            "PIPELINING",
            "SIZE 1000",
            "AUTH LOGIN PLAIN",
            "STARTTLS",
            "CHUNKING",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let c = Capabilities::parse(&lines);
        assert!(c.pipelining && c.starttls && c.chunking && c.auth_plain);
        assert_eq!(c.size, 1000);
        assert!(!c.smtputf8);
    }
}
