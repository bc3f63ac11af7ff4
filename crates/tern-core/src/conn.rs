//! A buffered client connection shared by the line-based protocols (SMTP,
//! POP3): bounded reads with timeouts, batched writes (flushed before every
//! read, which is what RFC 2920 pipelining needs), and the in-place upgrade
//! to TLS for STARTTLS/STLS.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A TCP stream, plain or TLS.
pub enum Stream {
    /// Plaintext.
    Plain(TcpStream),
    /// After a TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What [`Conn::take_line`] found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, including its line ending.
    Complete(Vec<u8>),
    /// A line longer than the limit; it has been discarded up to and
    /// including its line ending.
    TooLong,
    /// More bytes are needed.
    Incomplete,
}

/// A client connection with read and write buffers.
pub struct Conn {
    // `None` only during a TLS handshake that failed; every use then errors.
    stream: Option<Stream>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The local address the client connected to.
    pub local: SocketAddr,
    discarding: bool,
    /// Compression after IMAP COMPRESS=DEFLATE (RFC 4978), inside TLS.
    deflate: Option<Box<crate::deflate::Deflate>>,
}

/// Decompressed input taken per read at most: a compressed burst is
/// inflated a piece at a time, never all at once.
const INFLATE_CHUNK: usize = 64 * 1024;

/// Initial read buffer; it doubles while a burst (message data) needs more
/// and is released when it empties, so idle connections stay small.
const READ_CHUNK: usize = 4 * 1024;

impl Conn {
    /// Wraps an accepted TCP stream.
    pub fn new(tcp: TcpStream) -> io::Result<Self> {
        let peer = tcp.peer_addr()?;
        let local = tcp.local_addr()?;
        let _ = tcp.set_nodelay(true);
        Ok(Self {
            stream: Some(Stream::Plain(tcp)),
            rbuf: Vec::new(),
            wbuf: Vec::with_capacity(512),
            peer,
            local,
            discarding: false,
            deflate: None,
        })
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    /// The negotiated TLS version and cipher, for trace headers and logs.
    pub fn tls_info(&self) -> Option<String> {
        match &self.stream {
            Some(Stream::Tls(s)) => {
                let (_, c) = s.get_ref();
                let v = c
                    .protocol_version()
                    .map(|v| format!("{v:?}"))
                    .unwrap_or_default();
                let cs = c
                    .negotiated_cipher_suite()
                    .map(|s| format!("{:?}", s.suite()))
                    .unwrap_or_default();
                Some(format!("{v} {cs}").replace('_', "."))
            }
            _ => None,
        }
    }

    /// Whether the client connects from a loopback address.
    pub fn is_loopback(&self) -> bool {
        self.peer.ip().is_loopback()
            || matches!(self.peer.ip(), std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
    }

    /// Queues bytes for sending.
    pub fn write(&mut self, bytes: &[u8]) {
        self.wbuf.extend_from_slice(bytes);
    }

    /// Bytes queued and not yet sent.
    pub fn pending_output(&self) -> usize {
        self.wbuf.len()
    }

    /// Compresses everything from now on, both ways (RFC 4978): output
    /// queued so far is sent uncompressed first; input already buffered
    /// stays as it is (the peer starts compressing only after our reply).
    pub async fn start_deflate(&mut self) -> io::Result<()> {
        self.flush().await?;
        self.deflate = Some(Box::default());
        Ok(())
    }

    /// Whether the connection is compressed.
    pub fn is_deflated(&self) -> bool {
        self.deflate.is_some()
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            if let Some(d) = self.deflate.as_mut() {
                let mut wire = Vec::with_capacity(self.wbuf.len() / 2 + 64);
                d.deflate(&self.wbuf, &mut wire)?;
                self.wbuf = wire;
            }
            let stream = self.stream.as_mut().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed")
            })?;
            stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
            // Keep memory small on idle connections.
            if self.wbuf.capacity() > 64 * 1024 {
                self.wbuf.shrink_to(512);
            }
        }
        self.stream()?.flush().await
    }

    fn stream(&mut self) -> io::Result<&mut Stream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed"))
    }

    /// Flushes queued output, then reads more input, waiting until
    /// `deadline` at the latest. Returns the number of bytes read (0 at end
    /// of stream); `TimedOut` once the deadline has passed.
    ///
    /// A deadline, not a timeout per read: callers set it once for a whole
    /// command line (or login, or message), so a client sending one byte at
    /// a time cannot keep restarting the clock.
    pub async fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        self.flush().await?;
        if self.deflate.is_some() {
            return self.fill_inflated(deadline).await;
        }
        // Read into spare capacity (no zero-filling); grow only when little is left.
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(self.rbuf.capacity().max(READ_CHUNK));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "TLS handshake failed",
            ));
        };
        let r = match tokio::time::timeout_at(deadline, stream.read_buf(&mut self.rbuf)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "timeout")),
        };
        self.quickack();
        r
    }

    /// [`Conn::fill`] on a compressed connection: inflates what is pending
    /// (a bounded piece), reading more compressed input while none is.
    async fn fill_inflated(&mut self, deadline: Instant) -> io::Result<usize> {
        let mut raw = Vec::with_capacity(READ_CHUNK);
        loop {
            let d = self.deflate.as_mut().expect("compressed connection");
            let n = d.inflate(&mut self.rbuf, INFLATE_CHUNK)?;
            if n > 0 {
                return Ok(n);
            }
            let stream = self.stream.as_mut().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotConnected, "TLS handshake failed")
            })?;
            raw.clear();
            let got = match tokio::time::timeout_at(deadline, stream.read_buf(&mut raw)).await {
                Ok(r) => r?,
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "timeout")),
            };
            self.quickack();
            if got == 0 {
                return Ok(0);
            }
            self.deflate
                .as_mut()
                .expect("compressed connection")
                .push(&raw);
        }
    }

    /// Acknowledges received data at once instead of after the delayed-ACK
    /// timer. A client that writes a literal and its closing CRLF in two
    /// writes (Nagle on) otherwise waits ~40 ms for our ACK before sending
    /// the CRLF (seen with imaplib APPEND). Linux resets the flag after use,
    /// so it is set again after every read.
    fn quickack(&self) {
        #[cfg(target_os = "linux")]
        {
            let tcp = match &self.stream {
                Some(Stream::Plain(t)) => t,
                Some(Stream::Tls(t)) => t.get_ref().0,
                None => return,
            };
            let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
        }
    }

    /// Unconsumed input.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf
    }

    /// Drops `n` bytes of consumed input.
    pub fn consume(&mut self, n: usize) {
        self.rbuf.drain(..n);
        if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * READ_CHUNK {
            self.rbuf = Vec::new();
        }
    }

    /// Takes one line (ending in LF) of at most `max` bytes from the buffer.
    pub fn take_line(&mut self, max: usize) -> Line {
        let nl = self.rbuf.iter().position(|&b| b == b'\n');
        if self.discarding {
            match nl {
                Some(i) => {
                    self.consume(i + 1);
                    self.discarding = false;
                    return Line::TooLong;
                }
                None => {
                    self.rbuf.clear();
                    return Line::Incomplete;
                }
            }
        }
        match nl {
            Some(i) if i < max => {
                let line = self.rbuf[..=i].to_vec();
                self.consume(i + 1);
                Line::Complete(line)
            }
            Some(i) => {
                self.consume(i + 1);
                Line::TooLong
            }
            None if self.rbuf.len() >= max => {
                self.rbuf.clear();
                self.discarding = true;
                Line::Incomplete
            }
            None => Line::Incomplete,
        }
    }

    /// Upgrades to TLS in place. Input buffered before the handshake is
    /// discarded: commands pipelined after STARTTLS must not be executed
    /// inside the TLS session (CVE-2011-0411, RFC 3207 §4.2).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor, timeout: Duration) -> io::Result<()> {
        self.flush().await?;
        self.rbuf.clear();
        self.discarding = false;
        let tcp = match self.stream.take() {
            Some(Stream::Plain(tcp)) => tcp,
            other => {
                self.stream = other;
                return Err(io::Error::other("already using TLS"));
            }
        };
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    /// Opens a session's connection: plain, or with the TLS handshake done
    /// first for implicit-TLS ports (993, 995, 465), which need `tls`.
    pub async fn open(
        tcp: TcpStream,
        implicit_tls: bool,
        tls: Option<&TlsAcceptor>,
    ) -> io::Result<Self> {
        match (implicit_tls, tls) {
            (true, Some(acceptor)) => {
                Self::accept_tls(tcp, acceptor, Duration::from_secs(60)).await
            }
            (true, None) => Err(io::Error::other("implicit TLS without a certificate")),
            (false, _) => Self::new(tcp),
        }
    }

    /// Performs the TLS handshake right away (implicit TLS ports).
    pub async fn accept_tls(
        tcp: TcpStream,
        acceptor: &TlsAcceptor,
        timeout: Duration,
    ) -> io::Result<Self> {
        let mut c = Self::new(tcp)?;
        c.start_tls(acceptor, timeout).await?;
        Ok(c)
    }

    /// Closes the connection after sending what is queued.
    pub async fn shutdown(&mut self) {
        let _ = self.flush().await;
        if let Some(s) = self.stream.as_mut() {
            let _ = s.shutdown().await;
        }
    }
}

/// Accepts connections on `listener` forever, running `session` for each
/// in its own task. Accept errors (file-descriptor exhaustion and the like)
/// are logged and retried after a short pause instead of spinning.
pub async fn accept_loop<S, F>(listener: tokio::net::TcpListener, service: &'static str, session: S)
where
    S: Fn(TcpStream, SocketAddr) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(session(tcp, peer));
            }
            Err(e) => {
                tracing::warn!(service, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A TLS acceptor for a rustls configuration.
pub fn acceptor(config: Arc<rustls::ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(config)
}
