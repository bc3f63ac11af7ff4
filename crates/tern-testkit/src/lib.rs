//! Test-only helpers shared by Tern's integration tests: a throw-away data
//! folder whose listeners use ephemeral loopback ports, and small SMTP and
//! POP3 clients that speak over real sockets (optionally TLS) and hand back
//! the server's replies verbatim, so tests can check exact codes.
//!
//! The simulated internet lives here too: an authoritative DNS server with
//! programmable zones ([`dns`]) and scripted remote SMTP hosts, each on its
//! own loopback address at port 25 ([`remote`]).

pub mod dns;
pub mod mime;
pub mod pg;
pub mod pki;
pub mod remote;
pub mod s3;
pub mod webhook;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A data folder in a temporary directory, removed on drop.
pub struct DataDir {
    dir: tempfile::TempDir,
}

impl DataDir {
    /// Writes `tern.toml` (all listeners on `127.0.0.1:0`, a self-signed
    /// certificate for `mail.example.test`) plus `extra` TOML appended to it.
    pub fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("tls")).expect("mkdir");
        let (cert, key) = tern_core::tls::self_signed("mail.example.test").expect("cert");
        std::fs::write(dir.path().join("tls/cert.pem"), cert).expect("write cert");
        std::fs::write(dir.path().join("tls/key.pem"), key).expect("write key");
        let mut toml = String::from(
            "[server]\nhostname = \"mail.example.test\"\n\n[listen]\nsmtp = [\"127.0.0.1:0\"]\npop3 = [\"127.0.0.1:0\"]\npop3s = [\"127.0.0.1:0\"]\nhttp = [\"127.0.0.1:0\"]\nhttps = [\"127.0.0.1:0\"]\nimap = [\"127.0.0.1:0\"]\nimaps = [\"127.0.0.1:0\"]\nsubmission = [\"127.0.0.1:0\"]\nsubmissions = [\"127.0.0.1:0\"]\n",
        );
        toml.push_str(extra);
        if !extra.contains("[store]")
            && let Some(url) = pg::suite_database()
        {
            // The protocol suites' second run, on PostgreSQL (test.sh).
            toml.push_str(&format!(
                "\n[store]\nbackend = \"postgres\"\nurl = \"{url}\"\n"
            ));
        }
        if !extra.contains("[dns]") {
            // Tests never ask the machine's resolvers: lookups no test
            // programmed get NXDOMAIN from a loopback responder at once.
            toml.push_str(&format!(
                "\n[dns]\nnameservers = [\"{}\"]\n",
                dns::nxdomain_server()
            ));
        }
        std::fs::write(dir.path().join("tern.toml"), toml).expect("write config");
        Self { dir }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Path of `tern.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tern.toml")
    }

    /// The self-signed certificate, for clients to trust.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("tls/cert.pem")
    }
}

/// A TLS connector trusting exactly the certificate in `cert_pem`.
pub fn tls_connector(cert_pem: &Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert_pem).expect("read cert") {
        roots.add(c.expect("cert")).expect("add root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(cfg))
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A line-protocol client: raw writes, reads of CRLF lines, optional TLS.
pub struct LineClient {
    io: Box<dyn Io>,
    buf: Vec<u8>,
    /// How long a read may wait before the test fails.
    pub timeout: Duration,
}

impl LineClient {
    /// Connects over plain TCP.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        Ok(Self {
            io: Box::new(s),
            buf: Vec::new(),
            timeout: Duration::from_secs(10),
        })
    }

    /// Connects over plain TCP from a chosen local address (so the server
    /// sees, say, 127.55.1.2 as the client: SPF, rate limits, reputation).
    pub async fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> io::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        // Ports in TIME_WAIT from earlier connections may be chosen again.
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(source, 0))?;
        let s = socket.connect(addr).await?;
        Ok(Self {
            io: Box::new(s),
            buf: Vec::new(),
            timeout: Duration::from_secs(10),
        })
    }

    /// Connects with implicit TLS.
    pub async fn connect_tls(addr: SocketAddr, cert: &Path) -> io::Result<Self> {
        let s = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("mail.example.test").expect("name");
        let tls = tls_connector(cert).connect(name, s).await?;
        Ok(Self {
            io: Box::new(tls),
            buf: Vec::new(),
            timeout: Duration::from_secs(10),
        })
    }

    /// Upgrades the connection to TLS (after STARTTLS/STLS was accepted).
    pub async fn start_tls(self, cert: &Path) -> io::Result<Self> {
        // Only plain TCP streams are upgraded in tests; re-wrap via a duplex
        // copy is unnecessary because the box holds the TcpStream itself.
        let name = ServerName::try_from("mail.example.test").expect("name");
        let tls = tls_connector(cert).connect(name, self.io).await?;
        Ok(Self {
            io: Box::new(tls),
            buf: Vec::new(),
            timeout: self.timeout,
        })
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Sends a line, adding CRLF.
    pub async fn cmd(&mut self, line: &str) -> io::Result<()> {
        self.send(format!("{line}\r\n").as_bytes()).await
    }

    /// Reads one line without its CRLF; `Ok(None)` at end of stream.
    pub async fn line(&mut self) -> io::Result<Option<String>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                let s = String::from_utf8_lossy(&line);
                return Ok(Some(s.trim_end_matches(['\r', '\n']).to_string()));
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(self.timeout, self.io.read(&mut chunk))
                .await
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::TimedOut, "test client read timeout")
                })??;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads a complete SMTP reply (all continuation lines); returns the
    /// code and the lines. Code 0 means the connection closed.
    pub async fn reply(&mut self) -> io::Result<(u16, Vec<String>)> {
        let mut lines = Vec::new();
        loop {
            let Some(l) = self.line().await? else {
                return Ok((0, lines));
            };
            let code = l.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            let more = l.as_bytes().get(3) == Some(&b'-');
            lines.push(l);
            if !more {
                return Ok((code, lines));
            }
        }
    }

    /// Sends a command and returns the reply code and text.
    pub async fn smtp(&mut self, line: &str) -> io::Result<(u16, String)> {
        self.cmd(line).await?;
        let (c, l) = self.reply().await?;
        Ok((c, l.join("\n")))
    }

    /// Reads a POP3 multi-line body up to the lone "." (dot-unstuffed,
    /// lines joined with CRLF).
    pub async fn pop3_multiline(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let Some(l) = self.line().await? else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "eof in multi-line",
                ));
            };
            if l == "." {
                return Ok(out);
            }
            let l = l.strip_prefix('.').unwrap_or(&l);
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Whether the server closed the connection (reads until EOF or timeout).
    pub async fn closed(&mut self) -> bool {
        matches!(self.line().await, Ok(None) | Err(_))
    }
}

/// Sends one message over an open session (after EHLO); returns the final reply.
pub async fn send_message(
    c: &mut LineClient,
    from: &str,
    to: &[&str],
    data: &[u8],
) -> io::Result<(u16, String)> {
    let (code, text) = c.smtp(&format!("MAIL FROM:<{from}>")).await?;
    if code != 250 {
        return Ok((code, text));
    }
    for r in to {
        let (code, text) = c.smtp(&format!("RCPT TO:<{r}>")).await?;
        if code != 250 {
            return Ok((code, text));
        }
    }
    let (code, text) = c.smtp("DATA").await?;
    if code != 354 {
        return Ok((code, text));
    }
    c.send(data).await?;
    // The CRLF ending the last line is the first half of the terminator.
    let end: &[u8] = if data.is_empty() || data.ends_with(b"\r\n") {
        b".\r\n"
    } else {
        b"\r\n.\r\n"
    };
    c.send(end).await?;
    let (code, lines) = c.reply().await?;
    Ok((code, lines.join("\n")))
}

/// Base64 of a SASL PLAIN response (RFC 4616).
pub fn sasl_plain(user: &str, pass: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

/// Every file under `dir`, at any depth (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}
