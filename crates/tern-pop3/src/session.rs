//! One POP3 session (RFC 1939 §3–§7).

use crate::Pop3Server;
use std::sync::Arc;
use std::time::Duration;
use tern_core::authguard::Login;
use tern_core::conn::{Conn, Line};
use tern_store::{AccountId, MessageEntry};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// RFC 2449 §4: commands are at most 255 octets; AUTH responses may be longer.
const MAX_LINE: usize = 2048;
/// Bad commands tolerated before the server hangs up.
const MAX_ERRORS: u32 = 20;

struct Maildrop {
    account: AccountId,
    login: String,
    uidvalidity: u32,
    messages: Vec<MessageEntry>,
    deleted: Vec<bool>,
}

enum State {
    Authorization { user: Option<String> },
    Transaction(Maildrop),
}

struct Session {
    server: Arc<Pop3Server>,
    conn: Conn,
    state: State,
    errors: u32,
    /// When the login (AUTHORIZATION state) must be over.
    login_deadline: Instant,
}

pub async fn run(server: Arc<Pop3Server>, tcp: TcpStream, implicit_tls: bool) {
    let timeout = Duration::from_secs(server.config.timeout);
    // Deadlines, not per-read timeouts: one for each command line and one
    // for the whole login, so a client trickling bytes is closed on time.
    let login_deadline = Instant::now() + Duration::from_secs(server.config.login_timeout);
    let mut deadline = Instant::now() + timeout;
    let conn = match Conn::open(tcp, implicit_tls, server.tls.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "pop3: connection setup failed");
            return;
        }
    };
    let mut s = Session {
        server,
        conn,
        state: State::Authorization { user: None },
        errors: 0,
        login_deadline,
    };
    s.conn
        .write(format!("+OK {} Tern POP3 server ready\r\n", s.server.hostname).as_bytes());
    loop {
        match s.conn.take_line(MAX_LINE) {
            Line::Complete(line) => {
                if !s.command(&line).await {
                    break;
                }
                deadline = Instant::now() + timeout;
            }
            Line::TooLong => {
                if !s.err("Line too long") {
                    break;
                }
            }
            Line::Incomplete => {
                let until = match s.state {
                    State::Authorization { .. } => deadline.min(s.login_deadline),
                    _ => deadline,
                };
                match s.conn.fill(until).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => {
                        if e.kind() == std::io::ErrorKind::TimedOut {
                            s.conn.write(b"-ERR [SYS/TEMP] Timeout, closing\r\n");
                        }
                        break;
                    }
                }
            }
        }
    }
    s.conn.shutdown().await;
}

impl Session {
    fn ok(&mut self, text: &str) -> bool {
        self.conn.write(format!("+OK {text}\r\n").as_bytes());
        true
    }

    /// Sends `-ERR`; returns false once the client has made too many errors.
    fn err(&mut self, text: &str) -> bool {
        self.conn.write(format!("-ERR {text}\r\n").as_bytes());
        self.errors += 1;
        if self.errors >= MAX_ERRORS {
            self.conn
                .write(b"-ERR Too many errors, closing connection\r\n");
            return false;
        }
        true
    }

    fn plaintext_allowed(&self) -> bool {
        self.conn.is_tls() || (self.server.auth.plaintext_on_loopback && self.conn.is_loopback())
    }

    /// Handles one command line; false to end the session.
    async fn command(&mut self, line: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(line) else {
            return self.err("Invalid UTF-8 in command");
        };
        let text = text.trim_end_matches(['\r', '\n']);
        if text.contains('\0') {
            return self.err("NUL in command");
        }
        let (cmd, arg) = match text.split_once(' ') {
            Some((c, a)) => (c.to_ascii_uppercase(), a.trim()),
            None => (text.to_ascii_uppercase(), ""),
        };
        match cmd.as_str() {
            "CAPA" => self.capa(),
            "QUIT" => {
                self.quit().await;
                false
            }
            "NOOP" if matches!(self.state, State::Transaction(_)) => self.ok(""),
            "STLS" => self.stls().await,
            "USER" => self.user(arg),
            "PASS" => self.pass(arg).await,
            "AUTH" => self.auth(arg).await,
            "STAT" | "LIST" | "UIDL" | "RETR" | "TOP" | "DELE" | "RSET" => {
                self.transaction(&cmd, arg).await
            }
            "" => self.err("Empty command"),
            _ => self.err("Unknown command"),
        }
    }

    fn capa(&mut self) -> bool {
        let mut caps = String::from(
            "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n",
        );
        if matches!(self.state, State::Authorization { .. }) {
            if self.plaintext_allowed() {
                caps.push_str("USER\r\nSASL PLAIN\r\n");
            }
            if self.server.tls.is_some() && !self.conn.is_tls() {
                caps.push_str("STLS\r\n");
            }
        }
        caps.push_str(
            "EXPIRE NEVER
LOGIN-DELAY 0
IMPLEMENTATION Tern
.
",
        );
        self.conn.write(caps.as_bytes());
        true
    }

    async fn stls(&mut self) -> bool {
        if !matches!(self.state, State::Authorization { .. }) {
            return self.err("STLS only before login");
        }
        let Some(acceptor) = self.server.tls.clone() else {
            return self.err("STLS not available");
        };
        if self.conn.is_tls() {
            return self.err("Already using TLS");
        }
        self.ok("Begin TLS negotiation");
        if let Err(e) = self
            .conn
            .start_tls(&acceptor, Duration::from_secs(60))
            .await
        {
            tracing::debug!(error = %e, "pop3: STLS handshake failed");
            return false;
        }
        self.state = State::Authorization { user: None };
        true
    }

    fn user(&mut self, arg: &str) -> bool {
        let State::Authorization { user } = &mut self.state else {
            return self.err("Already logged in");
        };
        if arg.is_empty() {
            return self.err("Syntax: USER name");
        }
        *user = Some(arg.to_string());
        if !self.plaintext_allowed() {
            // Say so now rather than after the password has been sent in clear.
            return self.err("[AUTH] Plaintext authentication requires TLS; use STLS");
        }
        self.ok("Send PASS")
    }

    async fn pass(&mut self, arg: &str) -> bool {
        let State::Authorization { user } = &mut self.state else {
            return self.err("Already logged in");
        };
        let Some(login) = user.take() else {
            return self.err("Send USER first");
        };
        self.login(&login, arg).await
    }

    /// AUTH PLAIN (RFC 5034): initial response on the line or after "+ ".
    async fn auth(&mut self, arg: &str) -> bool {
        if !matches!(self.state, State::Authorization { .. }) {
            return self.err("Already logged in");
        }
        let (mech, initial) = match arg.split_once(' ') {
            Some((m, i)) => (m.to_ascii_uppercase(), Some(i.trim().to_string())),
            None => (arg.to_ascii_uppercase(), None),
        };
        if mech.is_empty() {
            // RFC 5034 §4 leaves "AUTH" alone to list mechanisms.
            self.conn.write(b"+OK\r\nPLAIN\r\n.\r\n");
            return true;
        }
        if mech != "PLAIN" {
            return self.err("Unsupported mechanism");
        }
        let response = match initial {
            Some(i) if i != "=" => i,
            Some(_) => String::new(),
            None => {
                self.conn.write(b"+ \r\n");
                loop {
                    match self.conn.take_line(MAX_LINE) {
                        Line::Complete(l) => {
                            break String::from_utf8_lossy(&l).trim_end().to_string();
                        }
                        Line::TooLong => return self.err("Line too long"),
                        Line::Incomplete => {
                            let t =
                                Instant::now() + Duration::from_secs(self.server.config.timeout);
                            match self.conn.fill(t.min(self.login_deadline)).await {
                                Ok(0) | Err(_) => return false,
                                Ok(_) => {}
                            }
                        }
                    }
                }
            }
        };
        if response == "*" {
            return self.err("Authentication cancelled");
        }
        match tern_core::sasl::decode_base64(&response) {
            Ok(p) => self.login(&p.login, &p.password).await,
            Err(tern_core::sasl::PlainError::Proxy) => {
                self.err("[AUTH] Proxy authorization not permitted")
            }
            Err(tern_core::sasl::PlainError::Base64) => self.err("Invalid base64"),
            Err(tern_core::sasl::PlainError::Malformed) => self.err("Invalid PLAIN response"),
        }
    }

    async fn login(&mut self, login: &str, password: &str) -> bool {
        if !self.plaintext_allowed() {
            return self.err("[AUTH] Plaintext authentication requires TLS; use STLS");
        }
        let ip = self.conn.peer.ip();
        let login = login.trim().to_lowercase();
        let store = &self.server.store;
        let verdict = self
            .server
            .guard
            .login("pop3", ip, &login, || store.authenticate(&login, password))
            .await;
        let account = match verdict {
            Login::Success(a) => a,
            Login::Invalid => return self.err("[AUTH] Invalid login or password"),
            Login::Refused => return self.err("[AUTH] Too many failed logins, try again later"),
            Login::Error(_) => return self.err("[SYS/TEMP] Temporary failure, try again later"),
        };
        let mailbox = self.server.store.mailbox(account, "INBOX").await;
        let list = self.server.store.list(account, "INBOX").await;
        let (Ok(mailbox), Ok(messages)) = (mailbox, list) else {
            return self.err("[SYS/TEMP] Cannot open mailbox");
        };
        tracing::info!(client = %ip, user = %login, messages = messages.len(), tls = self.conn.is_tls(), "pop3: login");
        let n = messages.len();
        let size: u64 = messages.iter().map(|m| m.size).sum();
        self.state = State::Transaction(Maildrop {
            account,
            login,
            uidvalidity: mailbox.uidvalidity,
            deleted: vec![false; n],
            messages,
        });
        self.ok(&format!("Logged in, {n} messages ({size} octets)"))
    }

    async fn transaction(&mut self, cmd: &str, arg: &str) -> bool {
        let State::Transaction(drop) = &mut self.state else {
            return self.err("Log in first");
        };
        let args: Vec<&str> = arg.split_ascii_whitespace().collect();
        // Message numbers are 1-based and refer to non-deleted messages.
        let msg = |drop: &Maildrop, s: Option<&&str>| -> Result<usize, &'static str> {
            let n: usize = s
                .ok_or("Message number required")?
                .parse()
                .map_err(|_| "Invalid message number")?;
            if n == 0 || n > drop.messages.len() {
                return Err("No such message");
            }
            if drop.deleted[n - 1] {
                return Err("Message is deleted");
            }
            Ok(n - 1)
        };
        match cmd {
            "STAT" => {
                let (n, size) = live(drop);
                self.ok(&format!("{n} {size}"))
            }
            "LIST" | "UIDL" => {
                let uidl = cmd == "UIDL";
                let line = |drop: &Maildrop, i: usize| {
                    if uidl {
                        format!(
                            "{} {}",
                            i + 1,
                            uid_string(drop.uidvalidity, drop.messages[i].uid)
                        )
                    } else {
                        format!("{} {}", i + 1, drop.messages[i].size)
                    }
                };
                if !args.is_empty() {
                    return match msg(drop, args.first()) {
                        Ok(i) => {
                            let l = line(drop, i);
                            self.ok(&l)
                        }
                        Err(e) => self.err(e),
                    };
                }
                let mut out = String::from("+OK\r\n");
                for i in 0..drop.messages.len() {
                    if !drop.deleted[i] {
                        out.push_str(&line(drop, i));
                        out.push_str("\r\n");
                    }
                }
                out.push_str(".\r\n");
                self.conn.write(out.as_bytes());
                true
            }
            "RETR" | "TOP" => {
                let i = match msg(drop, args.first()) {
                    Ok(i) => i,
                    Err(e) => return self.err(e),
                };
                let lines = if cmd == "TOP" {
                    match args.get(1).map(|s| s.parse::<usize>()) {
                        Some(Ok(n)) => Some(n),
                        _ => return self.err("Syntax: TOP msg n"),
                    }
                } else {
                    None
                };
                let entry = drop.messages[i].clone();
                let body = match self.server.store.read_blob(entry.blob).await {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "pop3: cannot read message");
                        return self.err("[SYS/TEMP] Cannot read message");
                    }
                };
                let content = match lines {
                    Some(n) => top(&body, n),
                    None => &body[..],
                };
                let mut out = Vec::with_capacity(content.len() + content.len() / 50 + 64);
                out.extend_from_slice(format!("+OK {} octets\r\n", entry.size).as_bytes());
                dot_stuff(content, &mut out);
                out.extend_from_slice(b".\r\n");
                self.conn.write(&out);
                // Large messages: do not hold them all in the buffer.
                if self.conn.pending_output() > 256 * 1024 && self.conn.flush().await.is_err() {
                    return false;
                }
                true
            }
            "DELE" => match msg(drop, args.first()) {
                Ok(i) => {
                    drop.deleted[i] = true;
                    let t = format!("Message {} deleted", i + 1);
                    self.ok(&t)
                }
                Err(e) => self.err(e),
            },
            "RSET" => {
                drop.deleted.iter_mut().for_each(|d| *d = false);
                let (n, size) = live(drop);
                self.ok(&format!("{n} messages ({size} octets)"))
            }
            _ => self.err("Unknown command"),
        }
    }

    /// QUIT: in the TRANSACTION state, enter UPDATE and expunge (RFC 1939 §6).
    async fn quit(&mut self) {
        if let State::Transaction(drop) = &self.state {
            let uids: Vec<u32> = drop
                .messages
                .iter()
                .zip(&drop.deleted)
                .filter(|(_, d)| **d)
                .map(|(m, _)| m.uid)
                .collect();
            let (account, login) = (drop.account, drop.login.clone());
            if let Err(e) = self.server.store.expunge(account, "INBOX", &uids).await {
                tracing::error!(error = %e, user = %login, "pop3: expunge failed");
                self.conn
                    .write(b"-ERR [SYS/TEMP] Some deleted messages not removed\r\n");
                return;
            }
            tracing::info!(user = %login, deleted = uids.len(), "pop3: logout");
        }
        let host = self.server.hostname.clone();
        self.ok(&format!("{host} Tern POP3 server signing off"));
    }
}

fn live(drop: &Maildrop) -> (usize, u64) {
    drop.messages
        .iter()
        .zip(&drop.deleted)
        .filter(|(_, d)| !**d)
        .fold((0, 0), |(n, s), (m, _)| (n + 1, s + m.size))
}

/// A UIDL that stays the same across sessions and restarts (RFC 1939 §7).
fn uid_string(uidvalidity: u32, uid: u32) -> String {
    format!("{uidvalidity:08x}{uid:08x}")
}

/// Header, blank line and the first `n` body lines (RFC 1939 TOP).
fn top(msg: &[u8], n: usize) -> &[u8] {
    let body = tern_store::meta::find_body_offset(msg) as usize;
    let mut end = body;
    for _ in 0..n {
        match msg[end..].iter().position(|&b| b == b'\n') {
            Some(p) => end += p + 1,
            None => {
                end = msg.len();
                break;
            }
        }
    }
    &msg[..end]
}

/// Byte-stuffs lines starting with "." and makes sure the data ends in CRLF
/// (RFC 1939 §3).
fn dot_stuff(content: &[u8], out: &mut Vec<u8>) {
    let mut at_line_start = true;
    for &b in content {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !content.is_empty() && !content.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stuffing() {
        let mut out = Vec::new();
        dot_stuff(b".a\r\nb\r\n.\r\n", &mut out);
        assert_eq!(out, b"..a\r\nb\r\n..\r\n");
    }

    #[test]
    fn top_lines() {
        let m = b"A: 1\r\n\r\nl1\r\nl2\r\nl3\r\n";
        assert_eq!(top(m, 0), b"A: 1\r\n\r\n");
        assert_eq!(top(m, 2), b"A: 1\r\n\r\nl1\r\nl2\r\n");
        assert_eq!(top(m, 9), &m[..]);
    }
}
