//! Scripted remote SMTP hosts: the other side of outbound delivery.
//!
//! Each host listens on its own loopback address (127.0.0.0/8 has room for
//! millions) at port 25, as a real MX would, and records every message it
//! accepts. What it does is scripted per host ([`Behaviour`]) and per
//! recipient by local part:
//!
//! - `defer…` → `451 4.2.1` (try again later)
//! - `reject…` → `550 5.1.1` (no such user)
//! - `tlsonly…` → `530 5.7.0` unless the session is encrypted
//! - `drop…` → the connection is closed without a reply
//! - `disabled…` → `550 5.2.1`, `full…` → `552 5.2.2`
//! - `grey…` → `451 4.7.1` greylisted the first time, then `250`
//! - `ratelimit…` → `450 4.7.28` (slow down)
//! - anything else → `250`, or `550 5.1.1` if [`Behaviour::mailboxes`] is
//!   set and does not name it
//!
//! It is deliberately independent of Tern's own SMTP server code.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

/// How a host greets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// `220`.
    Accept,
    /// `554 5.3.2`: no service here (RFC 5321 §3.1).
    Refuse,
    /// Accepts the TCP connection and closes it at once.
    Drop,
    /// Accepts the TCP connection and never says anything.
    Stall,
}

/// What a host offers and how it answers.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// The greeting.
    pub greeting: Greeting,
    /// Offer STARTTLS (self-signed certificate).
    pub starttls: bool,
    /// Offer PIPELINING.
    pub pipelining: bool,
    /// Offer CHUNKING (BDAT).
    pub chunking: bool,
    /// Offer SMTPUTF8.
    pub smtputf8: bool,
    /// Offer 8BITMIME.
    pub eightbitmime: bool,
    /// Offer DSN (RFC 3461).
    pub dsn: bool,
    /// SIZE limit announced and enforced (0: none).
    pub size: u64,
    /// Reply to the end of data (default `250 2.0.0 Ok`).
    pub data_reply: Option<(u16, String)>,
    /// Host name in the greeting and certificate.
    pub name: String,
    /// Certificate chain and key (PEM) for STARTTLS; `None`: self-signed.
    pub cert: Option<(String, String)>,
    /// The mailboxes that exist (local parts); others get `550 5.1.1`.
    /// `None`: every address is accepted (a catch-all), but for the
    /// prefixes below.
    pub mailboxes: Option<Vec<String>>,
    /// The round trip to the host (a server across the internet): the
    /// greeting and the reply to a command that needed a new read wait
    /// this long; replies to commands pipelined behind it (RFC 2920)
    /// follow at once.
    pub reply_delay: Duration,
    /// A refusal of every MAIL FROM (a prober on a blocklist), instead of
    /// `250`.
    pub mail_reply: Option<(u16, String)>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            greeting: Greeting::Accept,
            starttls: true,
            pipelining: true,
            chunking: false,
            smtputf8: true,
            eightbitmime: true,
            dsn: true,
            size: 0,
            data_reply: None,
            name: "mx.remote.test".into(),
            cert: None,
            mailboxes: None,
            reply_delay: Duration::ZERO,
            mail_reply: None,
        }
    }
}

/// A message the host accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// MAIL FROM address.
    pub mail_from: String,
    /// Accepted RCPT TO addresses.
    pub rcpts: Vec<String>,
    /// Parameters after MAIL FROM:<…> (e.g. ` SIZE=… RET=HDRS`).
    pub mail_params: String,
    /// Parameters after each accepted RCPT TO:<…>.
    pub rcpt_params: Vec<String>,
    /// The message, dot-unstuffed.
    pub data: Vec<u8>,
    /// Whether it came over TLS.
    pub tls: bool,
    /// Whether it came by BDAT.
    pub bdat: bool,
}

#[derive(Default)]
struct Log {
    messages: Vec<Received>,
    connections: usize,
    transactions: usize,
    /// RCPT commands seen.
    rcpts: usize,
    /// Where each connection came from.
    peers: Vec<IpAddr>,
    /// Recipients greylisted once already (`grey…` local parts).
    greylisted: std::collections::HashSet<String>,
}

/// A running scripted host.
pub struct RemoteHost {
    /// Its address (port 25 unless started with [`RemoteHost::start_on`]).
    pub addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    changed: Arc<Notify>,
    behaviour: Arc<Mutex<Behaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback address no other test process is likely to use:
/// 127.x.y.z with x in 64..=250 chosen at random.
pub fn unique_loopback() -> IpAddr {
    let n: u32 = rand_u32();
    IpAddr::V4(Ipv4Addr::new(
        127,
        64 + (n % 187) as u8,
        1 + ((n >> 8) % 254) as u8,
        1 + ((n >> 16) % 254) as u8,
    ))
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}

impl RemoteHost {
    /// Starts a host on a fresh loopback address, port 25. Needs root or
    /// CAP_NET_BIND_SERVICE, as a real MX does.
    pub async fn start(behaviour: Behaviour) -> Self {
        for _ in 0..20 {
            match Self::start_on(SocketAddr::new(unique_loopback(), 25), behaviour.clone()).await {
                Ok(h) => return h,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => panic!(
                    "cannot listen on a loopback address at port 25 ({e}); \
                     the delivery tests need root or CAP_NET_BIND_SERVICE"
                ),
            }
        }
        panic!("no free loopback address for a remote host");
    }

    /// Starts a host on `addr`.
    pub async fn start_on(addr: SocketAddr, behaviour: Behaviour) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let acceptor = match &behaviour.cert {
            Some((cert, key)) => crate::pki::acceptor_from_pem(cert, key)?,
            None => tls_acceptor(&behaviour.name)?,
        };
        let log = Arc::new(Mutex::new(Log::default()));
        let changed = Arc::new(Notify::new());
        let behaviour = Arc::new(Mutex::new(behaviour));
        let (l2, c2, b2) = (log.clone(), changed.clone(), behaviour.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                let b = b2.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let (log, changed, acceptor) = (l2.clone(), c2.clone(), acceptor.clone());
                {
                    let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                    l.connections += 1;
                    l.peers.push(peer.ip());
                }
                tokio::spawn(async move {
                    let mut s = Session {
                        io: Box::new(tcp),
                        rbuf: Vec::new(),
                        tls: false,
                        b,
                        log,
                        changed,
                        fresh: true,
                    };
                    let _ = s.run(&acceptor).await;
                });
            }
        });
        Ok(Self {
            addr,
            log,
            changed,
            behaviour,
            task,
        })
    }

    /// The host's IP address (for DNS A records).
    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    /// Changes the behaviour for new connections.
    pub fn set_behaviour(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap_or_else(|e| e.into_inner()) = b;
    }

    /// Messages accepted so far.
    pub fn messages(&self) -> Vec<Received> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .messages
            .clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .connections
    }

    /// MAIL commands seen so far.
    pub fn transactions(&self) -> usize {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .transactions
    }

    /// The source address of each connection so far.
    pub fn peers(&self) -> Vec<IpAddr> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .peers
            .clone()
    }

    /// RCPT commands seen so far (accepted or not).
    pub fn rcpt_count(&self) -> usize {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).rcpts
    }

    /// Waits until `n` messages have arrived; panics after `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "{}: {} of {n} messages after {timeout:?}",
                    self.addr,
                    self.messages().len()
                );
            }
        }
    }
}

fn tls_acceptor(name: &str) -> std::io::Result<TlsAcceptor> {
    let (cert, key) = tern_core::tls::self_signed(name).map_err(std::io::Error::other)?;
    crate::pki::acceptor_from_pem(&cert, &key)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Session {
    io: Box<dyn Io>,
    rbuf: Vec<u8>,
    tls: bool,
    b: Behaviour,
    log: Arc<Mutex<Log>>,
    changed: Arc<Notify>,
    /// The next reply answers a command that needed a new read (a round
    /// trip), not one pipelined behind the last.
    fresh: bool,
}

impl Session {
    async fn say(&mut self, s: &str) -> std::io::Result<()> {
        if self.fresh && !self.b.reply_delay.is_zero() {
            tokio::time::sleep(self.b.reply_delay).await;
        }
        self.fresh = false;
        self.io.write_all(s.as_bytes()).await?;
        self.io.flush().await
    }

    async fn line(&mut self) -> std::io::Result<Option<String>> {
        loop {
            if let Some(p) = self.rbuf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.rbuf.drain(..=p).collect();
                return Ok(Some(String::from_utf8_lossy(&l).trim_end().to_string()));
            }
            if self.rbuf.len() > 65536 {
                return Ok(None);
            }
            if !self.fill().await? {
                return Ok(None);
            }
            self.fresh = true;
        }
    }

    async fn fill(&mut self) -> std::io::Result<bool> {
        let mut buf = [0u8; 16384];
        let n = tokio::time::timeout(Duration::from_secs(60), self.io.read(&mut buf))
            .await
            .map_err(|_| std::io::Error::other("timeout"))??;
        self.rbuf.extend_from_slice(&buf[..n]);
        Ok(n > 0)
    }

    async fn run(&mut self, acceptor: &TlsAcceptor) -> std::io::Result<()> {
        match self.b.greeting {
            Greeting::Drop => return Ok(()),
            Greeting::Stall => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return Ok(());
            }
            Greeting::Refuse => {
                let name = self.b.name.clone();
                self.say(&format!("554 5.3.2 {name} no service\r\n"))
                    .await?;
                // Keep answering 503 until QUIT, as RFC 5321 §3.1 says.
                while let Some(l) = self.line().await? {
                    if l.eq_ignore_ascii_case("QUIT") {
                        return self.say("221 2.0.0 bye\r\n").await;
                    }
                    self.say("503 5.5.1 no service\r\n").await?;
                }
                return Ok(());
            }
            Greeting::Accept => {}
        }
        let name = self.b.name.clone();
        self.say(&format!("220 {name} ESMTP test host\r\n")).await?;
        let mut from: Option<String> = None;
        let mut rcpts: Vec<String> = Vec::new();
        let mut mail_params = String::new();
        let mut rcpt_params: Vec<String> = Vec::new();
        while let Some(line) = self.line().await? {
            let upper = line.to_ascii_uppercase();
            if upper.starts_with("EHLO") {
                let mut caps = vec![format!("{name} hello")];
                if self.b.pipelining {
                    caps.push("PIPELINING".into());
                }
                if self.b.starttls && !self.tls {
                    caps.push("STARTTLS".into());
                }
                if self.b.chunking {
                    caps.push("CHUNKING".into());
                }
                if self.b.smtputf8 {
                    caps.push("SMTPUTF8".into());
                }
                if self.b.dsn {
                    caps.push("DSN".into());
                }
                if self.b.eightbitmime {
                    caps.push("8BITMIME".into());
                }
                caps.push("ENHANCEDSTATUSCODES".into());
                if self.b.size > 0 {
                    caps.push(format!("SIZE {}", self.b.size));
                }
                let n = caps.len();
                let mut out = String::new();
                for (i, c) in caps.iter().enumerate() {
                    out.push_str(&format!("250{}{c}\r\n", if i + 1 == n { ' ' } else { '-' }));
                }
                self.say(&out).await?;
            } else if upper.starts_with("HELO") {
                self.say(&format!("250 {name}\r\n")).await?;
            } else if upper == "STARTTLS" && self.b.starttls && !self.tls {
                self.say("220 2.0.0 go ahead\r\n").await?;
                let io = std::mem::replace(&mut self.io, Box::new(tokio::io::duplex(1).0));
                let tls = acceptor.accept(io).await?;
                self.io = Box::new(tls);
                self.tls = true;
                self.rbuf.clear();
                from = None;
                rcpts.clear();
            } else if upper.starts_with("MAIL FROM:")
                && let Some((code, text)) = &self.b.mail_reply
            {
                let reply = format!("{code} {text}\r\n");
                self.say(&reply).await?;
            } else if upper.starts_with("MAIL FROM:") {
                self.log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .transactions += 1;
                from = Some(angle(&line[10..]));
                mail_params = after_angle(&line[10..]);
                rcpts.clear();
                rcpt_params.clear();
                self.say("250 2.1.0 ok\r\n").await?;
            } else if upper.starts_with("RCPT TO:") {
                self.log.lock().unwrap_or_else(|e| e.into_inner()).rcpts += 1;
                let to = angle(&line[8..]);
                let local = to.split('@').next().unwrap_or("").to_ascii_lowercase();
                if from.is_none() {
                    self.say("503 5.5.1 MAIL first\r\n").await?;
                } else if local.starts_with("defer") {
                    self.say("451 4.2.1 mailbox busy, try later\r\n").await?;
                } else if local.starts_with("ratelimit") {
                    self.say(
                        "450 4.7.28 rate limited: too many recipients from your IP, slow down\r\n",
                    )
                    .await?;
                } else if local.starts_with("reject") {
                    self.say("550 5.1.1 no such user here\r\n").await?;
                } else if local.starts_with("tlsonly") && !self.tls {
                    self.say("530 5.7.0 must issue STARTTLS first\r\n").await?;
                } else if local.starts_with("drop") {
                    return Ok(());
                } else if local.starts_with("disabled") {
                    self.say("550 5.2.1 mailbox disabled\r\n").await?;
                } else if local.starts_with("full") {
                    self.say("552 5.2.2 mailbox full\r\n").await?;
                } else if local.starts_with("grey")
                    && self
                        .log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .greylisted
                        .insert(to.to_ascii_lowercase())
                {
                    self.say("451 4.7.1 Greylisted, please try again later\r\n")
                        .await?;
                } else if self
                    .b
                    .mailboxes
                    .as_ref()
                    .is_some_and(|m| !m.iter().any(|x| x.eq_ignore_ascii_case(&local)))
                    && !local.starts_with("grey")
                {
                    self.say("550 5.1.1 no such user here\r\n").await?;
                } else {
                    rcpts.push(to);
                    rcpt_params.push(after_angle(&line[8..]));
                    self.say("250 2.1.5 ok\r\n").await?;
                }
            } else if upper == "DATA" {
                if rcpts.is_empty() {
                    self.say("554 5.5.1 no valid recipients\r\n").await?;
                    continue;
                }
                self.say("354 go ahead\r\n").await?;
                let data = loop {
                    if let Some(p) = find(&self.rbuf, b"\r\n.\r\n")
                        .or_else(|| self.rbuf.starts_with(b".\r\n").then_some(usize::MAX))
                    {
                        let (body, used) = if p == usize::MAX {
                            (Vec::new(), 3)
                        } else {
                            (self.rbuf[..p + 2].to_vec(), p + 5)
                        };
                        self.rbuf.drain(..used);
                        break unstuff(&body);
                    }
                    if !self.fill().await? {
                        return Ok(());
                    }
                };
                let params = (mail_params.clone(), std::mem::take(&mut rcpt_params));
                self.accept_message(&mut from, &mut rcpts, data, false, params)
                    .await?;
            } else if upper.starts_with("BDAT ") {
                let mut words = upper.split_whitespace().skip(1);
                let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                let last = words.next() == Some("LAST");
                while self.rbuf.len() < n {
                    if !self.fill().await? {
                        return Ok(());
                    }
                }
                let chunk: Vec<u8> = self.rbuf.drain(..n).collect();
                if !last {
                    self.say("551 5.5.1 only single LAST chunks in this test host\r\n")
                        .await?;
                    continue;
                }
                if rcpts.is_empty() {
                    self.say("554 5.5.1 no valid recipients\r\n").await?;
                    continue;
                }
                let params = (mail_params.clone(), std::mem::take(&mut rcpt_params));
                self.accept_message(&mut from, &mut rcpts, chunk, true, params)
                    .await?;
            } else if upper == "RSET" {
                from = None;
                rcpts.clear();
                self.say("250 2.0.0 ok\r\n").await?;
            } else if upper == "NOOP" {
                self.say("250 2.0.0 ok\r\n").await?;
            } else if upper == "QUIT" {
                return self.say("221 2.0.0 bye\r\n").await;
            } else {
                self.say("502 5.5.2 not implemented\r\n").await?;
            }
        }
        Ok(())
    }

    async fn accept_message(
        &mut self,
        from: &mut Option<String>,
        rcpts: &mut Vec<String>,
        data: Vec<u8>,
        bdat: bool,
        params: (String, Vec<String>),
    ) -> std::io::Result<()> {
        if self.b.size > 0 && data.len() as u64 > self.b.size {
            *from = None;
            rcpts.clear();
            return self.say("552 5.3.4 message too big\r\n").await;
        }
        let reply = self
            .b
            .data_reply
            .clone()
            .unwrap_or((250, "2.0.0 Ok: queued".into()));
        if (200..300).contains(&reply.0) {
            self.log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .messages
                .push(Received {
                    mail_from: from.take().unwrap_or_default(),
                    rcpts: std::mem::take(rcpts),
                    data,
                    tls: self.tls,
                    bdat,
                    mail_params: params.0,
                    rcpt_params: params.1,
                });
            self.changed.notify_waiters();
        }
        *from = None;
        rcpts.clear();
        self.say(&format!("{} {}\r\n", reply.0, reply.1)).await
    }
}

fn angle(s: &str) -> String {
    let s = s.trim();
    let end = s.find('>').unwrap_or(s.len());
    s[..end].trim_start_matches('<').to_string()
}

/// What follows `<address>` on a MAIL or RCPT line.
fn after_angle(s: &str) -> String {
    s.find('>')
        .map(|i| s[i + 1..].to_string())
        .unwrap_or_default()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn unstuff(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut start = true;
    for (i, &b) in data.iter().enumerate() {
        if start && b == b'.' && data.get(i + 1).is_some() {
            start = false;
            continue;
        }
        out.push(b);
        start = b == b'\n';
    }
    out
}
