//! One SMTP session: the RFC 5321 §4.1 command state machine.

use crate::SmtpServer;
use crate::data::{DataProblem, DataReader};
use crate::decide;
use crate::feedback;
use crate::reply::{Reply, reply};
use crate::submission;
use smtp_proto::{MailFrom, RcptTo, Request};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tern_core::authguard::Login;
use tern_core::conn::{Conn, Line};
use tern_core::connlimit::{ConnGuard, LimitExceeded};
use tern_core::{Address, now_unix, rfc5322_date};
use tern_events::{Event, EventType};
use tern_queue::intake::{
    Envelope, MessageParams, Rcpt as IntakeRcpt, RcptParams, RcptState, Source,
};
use tern_store::{AccountId, LocalRecipient, NewMessage, Recipient};

/// The session's MAIL parameters as the queue keeps them.
fn message_params(params: &serde_json::Value) -> MessageParams {
    serde_json::from_value(params.clone()).unwrap_or_default()
}

/// A recipient's DSN parameters as the queue keeps them.
fn rcpt_params(params: &serde_json::Value) -> RcptParams {
    serde_json::from_value(params.clone()).unwrap_or_default()
}
use tokio::net::TcpStream;
use tokio::time::Instant;

/// What the command loop does next.
enum Next {
    Continue,
    Close,
}

struct Rcpt {
    address: String,
    /// `None`: a remote recipient (submission only), queued for delivery.
    local: Option<LocalRecipient>,
    /// MX only: a forwarding alias's target (or the original sender a
    /// bounce to one of our SRS addresses goes back to).
    forward: Option<String>,
    params: serde_json::Value,
    /// MX only: a return path, unsubscribe or complaint address.
    feedback: Option<feedback::Kind>,
}

struct Transaction {
    mail_from: String,
    params: serde_json::Value,
    rcpts: Vec<Rcpt>,
    /// Partial message for BDAT, and whether a BDAT already failed.
    bdat: Option<DataReader>,
    bdat_failed: bool,
}

struct Session {
    server: Arc<SmtpServer>,
    conn: Conn,
    helo: Option<String>,
    esmtp: bool,
    tx: Option<Transaction>,
    errors: u32,
    /// Bad RCPT in this transaction (for the DATA reply when none were good).
    rcpt_failures: usize,
    /// The authenticated account and login (submission).
    account: Option<(AccountId, String)>,
    /// The client's forward-confirmed reverse DNS name, once looked up.
    rdns: Option<Option<String>>,
}

/// Runs a session to completion. `guard` holds the connection slot, or says
/// which limit refused it.
pub async fn run(
    server: Arc<SmtpServer>,
    tcp: TcpStream,
    implicit_tls: bool,
    guard: Result<ConnGuard, LimitExceeded>,
) {
    let peer = tcp.peer_addr().ok();
    let mut conn = match Conn::open(tcp, implicit_tls, server.tls.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(client = ?peer, error = %e, "smtp: TLS handshake failed");
            return;
        }
    };
    let _guard = match guard {
        Ok(g) => g,
        Err(limit) => {
            let why = match limit {
                LimitExceeded::Total => "Too many connections, try again later",
                LimitExceeded::PerIp => "Too many connections from your address, try again later",
            };
            metrics::counter!("tern_smtp_rejections_total", "reason" => "connection_limit")
                .increment(1);
            tracing::info!(client = %conn.peer.ip(), "smtp: refused connection: {why}");
            conn.write(&reply!(421, "4.7.0", "{} {why}", server.hostname).to_bytes());
            conn.shutdown().await;
            return;
        }
    };
    let peer = conn.peer;
    if server.submission.is_none() && !server.rates.connection(peer.ip()) {
        metrics::counter!("tern_smtp_rejections_total", "reason" => "connection_rate").increment(1);
        tracing::info!(client = %peer.ip(), "smtp: refused connection: connection rate of the network");
        conn.write(
            &reply!(
                421,
                "4.7.0",
                "{} Too many connections from your network, slow down",
                server.hostname
            )
            .to_bytes(),
        );
        conn.shutdown().await;
        return;
    }
    tracing::debug!(client = %peer, "smtp: connect");
    let mut s = Session {
        conn,
        helo: None,
        esmtp: false,
        tx: None,
        errors: 0,
        rcpt_failures: 0,
        account: None,
        rdns: None,
        server,
    };
    s.conn
        .write(format!("220 {} ESMTP Tern\r\n", s.server.hostname).as_bytes());
    s.command_loop().await;
    s.conn.shutdown().await;
    tracing::debug!(client = %peer, "smtp: disconnect");
}

impl Session {
    fn cfg(&self) -> &tern_core::config::SmtpConfig {
        &self.server.config
    }

    /// Reads and runs commands. `command_timeout` is a deadline for each
    /// whole command line (RFC 5321 §4.5.3.2.7), set when the server starts
    /// waiting for it: trickling bytes does not extend it.
    async fn command_loop(&mut self) {
        let timeout = Duration::from_secs(self.cfg().command_timeout);
        let mut deadline = Instant::now() + timeout;
        loop {
            let max = self.cfg().max_command_line;
            match self.conn.take_line(max) {
                Line::Complete(line) => {
                    if let Next::Close = self.command(&line).await {
                        return;
                    }
                    deadline = Instant::now() + timeout;
                }
                Line::TooLong => {
                    if let Next::Close =
                        self.send(reply!(500, "5.5.2", "Line too long (at most {max} bytes)"))
                    {
                        return;
                    }
                }
                Line::Incomplete => match self.conn.fill(deadline).await {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        self.conn.write(
                            &reply!(
                                421,
                                "4.4.2",
                                "{} Timeout waiting for a command, closing",
                                self.server.hostname
                            )
                            .to_bytes(),
                        );
                        return;
                    }
                    Err(_) => return,
                },
            }
        }
    }

    /// `552 5.3.4` (RFC 1870 §6.1, RFC 3463): the one reply for a message
    /// over the size limit, whether announced (SIZE, BDAT) or received.
    fn too_big(&self) -> Reply {
        reply!(
            552,
            "5.3.4",
            "Message size exceeds the limit of {} bytes",
            self.cfg().max_message_size
        )
    }

    /// Queues a reply; after too many errors adds a 421 and asks to close.
    fn send(&mut self, r: Reply) -> Next {
        self.conn.write(&r.to_bytes());
        if r.is_error() {
            self.errors += 1;
            if self.errors >= self.cfg().max_errors {
                metrics::counter!("tern_smtp_rejections_total", "reason" => "too_many_errors")
                    .increment(1);
                tracing::info!(client = %self.conn.peer.ip(), errors = self.errors, "smtp: too many errors, disconnecting");
                self.conn.write(
                    &reply!(
                        421,
                        "4.7.0",
                        "{} Too many errors, closing connection",
                        self.server.hostname
                    )
                    .to_bytes(),
                );
                return Next::Close;
            }
        }
        Next::Continue
    }

    async fn command(&mut self, line: &[u8]) -> Next {
        let request = match crate::command::parse(line) {
            Ok(r) => r,
            Err(r) => return self.send(r),
        };
        match request {
            Request::Ehlo { host } => self.ehlo(host, true),
            Request::Helo { host } => self.ehlo(host, false),
            Request::Lhlo { .. } => {
                self.send(reply!(500, "5.5.1", "LHLO is for LMTP; this is SMTP"))
            }
            Request::Mail { from } => self.mail(from).await,
            Request::Rcpt { to } => self.rcpt(to).await,
            Request::Data => self.data().await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size, is_last).await,
            Request::StartTls => self.starttls().await,
            Request::Rset => {
                self.reset();
                self.send(reply!(250, "2.0.0", "OK"))
            }
            Request::Noop { .. } => self.send(reply!(250, "2.0.0", "OK")),
            Request::Quit => {
                self.conn.write(
                    &reply!(221, "2.0.0", "{} closing connection", self.server.hostname).to_bytes(),
                );
                Next::Close
            }
            Request::Vrfy { .. } => self.send(reply!(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message for local recipients"
            )),
            Request::Expn { .. } => self.send(reply!(502, "5.5.1", "EXPN is not available")),
            Request::Help { .. } => self.send(reply!(
                214,
                "2.0.0",
                "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT STARTTLS VRFY"
            )),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response).await,
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.send(reply!(502, "5.5.1", "Command not implemented"))
            }
        }
    }

    fn reset(&mut self) {
        self.tx = None;
        self.rcpt_failures = 0;
    }

    fn ehlo(&mut self, host: String, esmtp: bool) -> Next {
        let host = host.trim().to_string();
        if host.is_empty() {
            return self.send(reply!(501, "5.5.4", "Syntax: EHLO hostname"));
        }
        self.reset();
        self.esmtp = esmtp;
        let greeting = format!(
            "{} Hello {} [{}]",
            self.server.hostname,
            host,
            self.conn.peer.ip()
        );
        self.helo = Some(host);
        if !esmtp {
            return self.send(Reply::new(250, "2.0.0", greeting).without_status());
        }
        let mut lines = vec![
            greeting,
            "PIPELINING".into(),
            format!("SIZE {}", self.cfg().max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if self.server.tls.is_some() && !self.conn.is_tls() {
            lines.push("STARTTLS".into());
        }
        if self.server.submission.is_some() && self.auth_allowed() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        let n = lines.len();
        let mut out = String::new();
        for (i, l) in lines.iter().enumerate() {
            out.push_str(if i + 1 == n { "250 " } else { "250-" });
            out.push_str(l);
            out.push_str("\r\n");
        }
        self.conn.write(out.as_bytes());
        Next::Continue
    }

    async fn starttls(&mut self) -> Next {
        let Some(acceptor) = self.server.tls.clone() else {
            return self.send(reply!(502, "5.5.1", "STARTTLS is not available"));
        };
        if self.conn.is_tls() {
            return self.send(reply!(503, "5.5.1", "Already using TLS"));
        }
        self.conn
            .write(&reply!(220, "2.0.0", "Ready to start TLS").to_bytes());
        let timeout = Duration::from_secs(self.cfg().command_timeout.min(60));
        if let Err(e) = self.conn.start_tls(&acceptor, timeout).await {
            tracing::info!(client = %self.conn.peer.ip(), error = %e, "smtp: TLS handshake failed");
            return Next::Close;
        }
        // RFC 3207 §4.2: forget everything learnt before TLS.
        self.helo = None;
        self.esmtp = false;
        self.account = None;
        self.reset();
        Next::Continue
    }

    async fn mail(&mut self, from: MailFrom<String>) -> Next {
        if self.helo.is_none() {
            return self.send(reply!(503, "5.5.1", "Send EHLO or HELO first"));
        }
        if let Some(sub) = &self.server.submission {
            let trusted = sub
                .config
                .trusted_networks
                .iter()
                .any(|n| n.contains(self.conn.peer.ip()));
            let Some((account, login)) = self.account.clone() else {
                if trusted {
                    return self.mail_accepted(from);
                }
                return self.send(reply!(530, "5.7.0", "Authentication required"));
            };
            if self.tx.is_none() {
                match submission::may_send_as(&self.server.store, account, from.address.trim())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        metrics::counter!("tern_smtp_rejections_total", "reason" => "sender_mismatch").increment(1);
                        tracing::info!(client = %self.conn.peer.ip(), user = %login, from = %from.address, "submission: sender refused");
                        return self.send(reply!(
                            553,
                            "5.7.1",
                            "<{}>: not an address of {login}",
                            from.address.trim()
                        ));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "submission: sender lookup failed");
                        return self.send(reply!(451, "4.3.0", "Temporary lookup failure"));
                    }
                }
                if let Err(which) = sub.take_message(account) {
                    metrics::counter!("tern_smtp_rejections_total", "reason" => "rate_limit")
                        .increment(1);
                    tracing::info!(user = %login, limit = which, "submission: sending limit reached");
                    return self.send(reply!(
                        451,
                        "4.7.1",
                        "Your {which} sending limit is reached; try again later"
                    ));
                }
            }
        }
        if self.server.submission.is_none() && !self.server.rates.message(self.conn.peer.ip()) {
            metrics::counter!("tern_smtp_rejections_total", "reason" => "message_rate")
                .increment(1);
            tracing::info!(client = %self.conn.peer.ip(), "smtp: message rate of the network reached");
            return self.send(reply!(
                451,
                "4.7.1",
                "Too many messages from your network, try again later"
            ));
        }
        self.mail_accepted(from)
    }

    /// MAIL FROM checks common to every listener (RFC 5321 §4.1.1.2).
    fn mail_accepted(&mut self, from: MailFrom<String>) -> Next {
        if self.tx.is_some() {
            return self.send(reply!(503, "5.5.1", "Nested MAIL command"));
        }
        if from.flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
            return self.send(reply!(555, "5.5.4", "BINARYMIME is not supported"));
        }
        if from.flags & smtp_proto::MAIL_REQUIRETLS != 0 {
            return self.send(reply!(555, "5.5.4", "REQUIRETLS is not supported"));
        }
        if from.size > self.cfg().max_message_size {
            metrics::counter!("tern_smtp_rejections_total", "reason" => "size").increment(1);
            return self.send(self.too_big());
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        let address = from.address.trim().to_string();
        if !address.is_empty() {
            if !address.is_ascii() && !smtputf8 {
                return self.send(reply!(
                    553,
                    "5.6.7",
                    "Non-ASCII sender address requires SMTPUTF8"
                ));
            }
            if Address::parse(&address).is_err() {
                return self.send(reply!(553, "5.1.7", "Bad sender address syntax"));
            }
        }
        let mut params = serde_json::json!({
            "smtputf8": smtputf8,
            "body": if from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0 { "8bitmime" } else { "7bit" },
        });
        if from.size > 0 {
            params["size"] = from.size.into();
        }
        if from.flags & smtp_proto::MAIL_RET_FULL != 0 {
            params["ret"] = "full".into();
        } else if from.flags & smtp_proto::MAIL_RET_HDRS != 0 {
            params["ret"] = "hdrs".into();
        }
        if let Some(envid) = &from.env_id {
            params["envid"] = envid.clone().into();
        }
        self.tx = Some(Transaction {
            mail_from: address,
            params,
            rcpts: Vec::new(),
            bdat: None,
            bdat_failed: false,
        });
        self.rcpt_failures = 0;
        self.send(reply!(250, "2.1.0", "Sender OK"))
    }

    async fn rcpt(&mut self, to: RcptTo<String>) -> Next {
        let Some(tx) = &self.tx else {
            return self.send(reply!(503, "5.5.1", "Send MAIL first"));
        };
        let max_rcpts = match &self.server.submission {
            Some(sub) => sub.config.max_recipients,
            None => self.cfg().max_recipients,
        };
        if tx.rcpts.len() >= max_rcpts {
            metrics::counter!("tern_smtp_rejections_total", "reason" => "too_many_recipients")
                .increment(1);
            return self.send(reply!(452, "4.5.3", "Too many recipients"));
        }
        let smtputf8 = tx.params["smtputf8"].as_bool().unwrap_or(false);
        let size_hint = tx.params["size"].as_u64().unwrap_or(0);
        let raw = to.address.trim();
        if !raw.is_ascii() && !smtputf8 {
            return self.rcpt_fail(reply!(
                553,
                "5.6.7",
                "Non-ASCII recipient address requires SMTPUTF8"
            ));
        }
        let address = match Address::parse(raw) {
            Ok(a) => a,
            Err(e) => {
                return self.rcpt_fail(reply!(553, "5.1.3", "Bad recipient address syntax: {e}"));
            }
        };
        let resolved = self
            .server
            .store
            .resolve(&address, self.cfg().allow_catch_all)
            .await;
        if self.server.submission.is_none()
            && let Some(fb) = self.server.checks.feedback.clone()
            && let Some(kind) = fb.address_kind(address.local())
            && let Ok(found) = &resolved
            && !matches!(found, Recipient::NotLocal)
        {
            return self.feedback_rcpt(&fb, kind, &address, found, &to);
        }
        let local = match resolved {
            Ok(Recipient::Local(l)) => l,
            Ok(Recipient::Forward(target)) if self.server.submission.is_some() => {
                return self.add_rcpt(target, None, &to);
            }
            Ok(Recipient::Forward(target)) if self.server.checks.forwarding.is_some() => {
                return self.add_forward(address.to_string(), target, &to);
            }
            Ok(Recipient::UnknownUser)
                if self.server.submission.is_none()
                    && tern_core::srs::is_srs(address.local())
                    && let Some(fw) = &self.server.checks.forwarding
                    && let Some(original) =
                        tern_core::srs::reverse(address.local(), &fw.srs_secret, now_unix()) =>
            {
                // A bounce (or reply) to a copy we forwarded: back to its sender.
                return self.add_forward(address.to_string(), original, &to);
            }
            Ok(Recipient::UnknownUser | Recipient::Forward(_)) => {
                metrics::counter!("tern_smtp_rejections_total", "reason" => "unknown_user")
                    .increment(1);
                tracing::info!(client = %self.conn.peer.ip(), rcpt = %address, "smtp: unknown recipient");
                return self.rcpt_fail(reply!(550, "5.1.1", "<{address}>: no such user here"));
            }
            Ok(Recipient::NotLocal) if self.server.submission.is_some() => {
                return self.add_rcpt(address.to_string(), None, &to);
            }
            Ok(Recipient::NotLocal) => {
                metrics::counter!("tern_smtp_rejections_total", "reason" => "relay_denied")
                    .increment(1);
                tracing::info!(client = %self.conn.peer.ip(), rcpt = %address, "smtp: relay denied");
                return self.rcpt_fail(reply!(550, "5.7.1", "<{address}>: relaying denied"));
            }
            Err(e) => {
                tracing::error!(error = %e, "smtp: recipient lookup failed");
                return self.rcpt_fail(reply!(
                    451,
                    "4.3.0",
                    "Temporary lookup failure, try again later"
                ));
            }
        };
        if let Some(filter) = &self.server.checks.filter {
            let ip = self.conn.peer.ip();
            let from = self
                .tx
                .as_ref()
                .map(|t| t.mail_from.clone())
                .unwrap_or_default();
            if let Some(wait) = filter.greylisted(
                ip,
                self.server.rates.network(ip),
                &from,
                &address.to_string(),
                now_unix(),
            ) {
                metrics::counter!("tern_smtp_rejections_total", "reason" => "greylisted")
                    .increment(1);
                tracing::info!(client = %ip, from = %from, rcpt = %address, "smtp: greylisted");
                return self.rcpt_fail(reply!(
                    451,
                    "4.7.1",
                    "Greylisted, please try again in {wait} seconds"
                ));
            }
        }
        if local.quota > 0 && local.used.saturating_add(size_hint) > local.quota {
            metrics::counter!("tern_smtp_rejections_total", "reason" => "quota").increment(1);
            return self.rcpt_fail(reply!(552, "5.2.2", "<{address}>: mailbox full"));
        }
        self.add_rcpt(address.to_string(), Some(local), &to)
    }

    /// A recipient at one of feedback's addresses of our domains: return
    /// paths and unsubscribe addresses only with a token that verifies
    /// (others are refused like unknown users), complaint addresses always.
    fn feedback_rcpt(
        &mut self,
        fb: &tern_feedback::Settings,
        kind: tern_feedback::Address,
        address: &Address,
        found: &Recipient,
        to: &RcptTo<String>,
    ) -> Next {
        let local_part = address.local();
        let (kind, local) = match kind {
            tern_feedback::Address::ReturnPath => {
                match fb
                    .keys
                    .read_return_path(local_part, now_unix(), fb.bounce_window_days)
                {
                    Ok(t) => (feedback::Kind::Bounce(t), None),
                    Err(e) => {
                        metrics::counter!("tern_smtp_rejections_total", "reason" => "bad_return_path")
                            .increment(1);
                        tracing::info!(client = %self.conn.peer.ip(), rcpt = %address, error = %e, "smtp: return path refused");
                        return self.rcpt_fail(reply!(
                            550,
                            "5.1.1",
                            "<{address}>: no such user here"
                        ));
                    }
                }
            }
            tern_feedback::Address::Unsubscribe => {
                match fb.keys.read_unsubscribe_address(local_part) {
                    Ok(t) => (feedback::Kind::Unsubscribe(t), None),
                    Err(e) => {
                        metrics::counter!("tern_smtp_rejections_total", "reason" => "bad_unsubscribe_address")
                            .increment(1);
                        tracing::info!(client = %self.conn.peer.ip(), rcpt = %address, error = %e, "smtp: unsubscribe address refused");
                        return self.rcpt_fail(reply!(
                            550,
                            "5.1.1",
                            "<{address}>: no such user here"
                        ));
                    }
                }
            }
            tern_feedback::Address::Complaints => match found {
                Recipient::Local(l) => {
                    (feedback::Kind::Complaints { local: true }, Some(l.clone()))
                }
                _ => (feedback::Kind::Complaints { local: false }, None),
            },
        };
        let next = self.add_rcpt(address.to_string(), local, to);
        if let Some(r) = self.tx.as_mut().and_then(|t| t.rcpts.last_mut()) {
            r.feedback = Some(kind);
        }
        next
    }

    fn add_forward(&mut self, address: String, target: String, to: &RcptTo<String>) -> Next {
        let next = self.add_rcpt(address, None, to);
        if let Some(r) = self.tx.as_mut().and_then(|t| t.rcpts.last_mut()) {
            r.forward = Some(target);
        }
        next
    }

    fn add_rcpt(
        &mut self,
        address: String,
        local: Option<LocalRecipient>,
        to: &RcptTo<String>,
    ) -> Next {
        let mut params = serde_json::json!({});
        if let Some(orcpt) = &to.orcpt {
            params["orcpt"] = orcpt.clone().into();
        }
        let notify: Vec<&str> = [
            (smtp_proto::RCPT_NOTIFY_SUCCESS, "SUCCESS"),
            (smtp_proto::RCPT_NOTIFY_FAILURE, "FAILURE"),
            (smtp_proto::RCPT_NOTIFY_DELAY, "DELAY"),
            (smtp_proto::RCPT_NOTIFY_NEVER, "NEVER"),
        ]
        .iter()
        .filter(|(f, _)| to.flags & f != 0)
        .map(|(_, n)| *n)
        .collect();
        if !notify.is_empty() {
            params["notify"] = notify.into();
        }
        if let Some(tx) = &mut self.tx {
            tx.rcpts.push(Rcpt {
                address,
                local,
                forward: None,
                params,
                feedback: None,
            });
        }
        self.send(reply!(250, "2.1.5", "Recipient OK"))
    }

    fn rcpt_fail(&mut self, r: Reply) -> Next {
        self.rcpt_failures += 1;
        self.send(r)
    }

    /// Checks MAIL and RCPT were given; the reply to send instead if not.
    fn ready_for_data(&self) -> Option<Reply> {
        match &self.tx {
            None => Some(reply!(503, "5.5.1", "Send MAIL first")),
            Some(tx) if tx.rcpts.is_empty() && self.rcpt_failures > 0 => {
                Some(reply!(554, "5.5.1", "No valid recipients"))
            }
            Some(tx) if tx.rcpts.is_empty() => Some(reply!(503, "5.5.1", "Send RCPT first")),
            Some(tx) if tx.bdat.is_some() || tx.bdat_failed => {
                Some(reply!(503, "5.5.1", "DATA is not allowed after BDAT"))
            }
            Some(_) => None,
        }
    }

    async fn data(&mut self) -> Next {
        if let Some(r) = self.ready_for_data() {
            return self.send(r);
        }
        if !self.conn.buffered().is_empty() {
            // RFC 2920 §3.1: DATA ends a pipelined group; the message may
            // follow only the 354. Bytes already here were sent blind and are
            // not taken as the message (nor as commands): refused, as Postfix
            // does, and the session ends.
            tracing::info!(client = %self.conn.peer.ip(), "smtp: message data sent before 354");
            metrics::counter!("tern_smtp_rejections_total", "reason" => "pipelining").increment(1);
            self.tx = None;
            self.conn.write(
                &reply!(
                    554,
                    "5.5.0",
                    "Error: SMTP protocol synchronization: data sent before 354"
                )
                .to_bytes(),
            );
            return Next::Close;
        }
        self.conn
            .write(&reply!(354, "2.0.0", "Start mail input; end with <CRLF>.<CRLF>").to_bytes());
        let mut reader = DataReader::data(
            self.cfg().max_message_size,
            self.cfg().max_data_line,
            &self.server.data_budget,
        );
        let deadline = Instant::now() + Duration::from_secs(self.cfg().data_total_timeout);
        loop {
            let end = reader.feed(self.conn.buffered());
            let used = end.unwrap_or(self.conn.buffered().len());
            self.conn.consume(used);
            if end.is_some() {
                break;
            }
            if let Err(next) = self.fill_data(deadline).await {
                return next;
            }
        }
        self.finish_message(reader).await
    }

    /// Reads more message data; on timeout or disconnect, the `Err` says to close.
    async fn fill_data(&mut self, deadline: Instant) -> Result<(), Next> {
        let block = Instant::now() + Duration::from_secs(self.cfg().data_block_timeout);
        match self.conn.fill(block.min(deadline)).await {
            Ok(0) => {
                tracing::info!(client = %self.conn.peer.ip(), "smtp: connection lost during message data");
                Err(Next::Close)
            }
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                self.conn.write(
                    &reply!(
                        421,
                        "4.4.2",
                        "{} Timeout during message data, closing",
                        self.server.hostname
                    )
                    .to_bytes(),
                );
                Err(Next::Close)
            }
            Err(_) => Err(Next::Close),
        }
    }

    async fn bdat(&mut self, chunk_size: usize, is_last: bool) -> Next {
        let max_size = self.cfg().max_message_size;
        // A chunk that would take the message past the size limit is refused
        // before any of it is read: reading (and discarding) whatever size a
        // client announces would let it hold the session as long as it likes.
        // Its bytes, if the client sends them anyway, are then taken as
        // commands and end the session through the error limit.
        if let Some(tx) = self.tx.as_mut() {
            let so_far = tx.bdat.as_ref().map_or(0, DataReader::received);
            if so_far.saturating_add(chunk_size) > max_size {
                tx.bdat = None;
                tx.bdat_failed = true;
                metrics::counter!("tern_smtp_rejections_total", "reason" => "size").increment(1);
                return self.send(self.too_big());
            }
        }
        // RFC 3030 §2: the chunk is read even when the command is refused.
        let refusal = match &self.tx {
            Some(tx) if tx.bdat_failed => {
                Some(reply!(503, "5.5.1", "Earlier BDAT failed; send RSET"))
            }
            Some(tx) if tx.rcpts.is_empty() => Some(if self.rcpt_failures > 0 {
                reply!(554, "5.5.1", "No valid recipients")
            } else {
                reply!(503, "5.5.1", "Send RCPT first")
            }),
            Some(_) => None,
            None => Some(reply!(503, "5.5.1", "Send MAIL first")),
        };
        let max_line = self.cfg().max_data_line;
        let mut reader = match (&refusal, self.tx.as_mut()) {
            (None, Some(tx)) => tx
                .bdat
                .take()
                .unwrap_or_else(|| DataReader::bdat(max_size, max_line, &self.server.data_budget)),
            // Discard into a reader that keeps nothing.
            _ => DataReader::bdat(0, usize::MAX, &self.server.data_budget),
        };
        let deadline = Instant::now() + Duration::from_secs(self.cfg().data_total_timeout);
        let mut left = chunk_size;
        loop {
            let take = left.min(self.conn.buffered().len());
            reader.feed(&self.conn.buffered()[..take]);
            self.conn.consume(take);
            left -= take;
            if left == 0 {
                break;
            }
            if let Err(next) = self.fill_data(deadline).await {
                return next;
            }
        }
        if let Some(r) = refusal {
            if let Some(tx) = &mut self.tx {
                tx.bdat_failed = true;
            }
            return self.send(r);
        }
        if !is_last {
            if reader.problem() == Some(DataProblem::TooBig) {
                // Keep reading chunks into the void; refuse at the end.
            }
            let n = reader.received();
            if let Some(tx) = &mut self.tx {
                tx.bdat = Some(reader);
            }
            return self.send(reply!(250, "2.0.0", "{n} octets received"));
        }
        reader.finish_chunks();
        self.finish_message(reader).await
    }

    async fn finish_message(&mut self, reader: DataReader) -> Next {
        let tx = self.tx.take();
        self.rcpt_failures = 0;
        let Some(tx) = tx else {
            return self.send(reply!(503, "5.5.1", "Send MAIL first"));
        };
        let bare = reader.bare_line_endings();
        // `_held`: this message's share of the data memory, kept until it
        // has been handled.
        let (body, _held) = match reader.into_message() {
            Ok(b) => b,
            Err(problem) => {
                let (reason, r) = match problem {
                    DataProblem::Busy => (
                        "memory",
                        reply!(
                            452,
                            "4.3.1",
                            "Insufficient system resources for the message now, try again later"
                        ),
                    ),
                    DataProblem::TooBig => ("size", self.too_big()),
                    DataProblem::LineTooLong => (
                        "line_length",
                        reply!(
                            554,
                            "5.6.0",
                            "Message has a line longer than {} bytes",
                            self.cfg().max_data_line
                        ),
                    ),
                    DataProblem::Nul => ("nul", reply!(554, "5.6.0", "Message contains NUL bytes")),
                };
                metrics::counter!("tern_smtp_rejections_total", "reason" => reason).increment(1);
                tracing::info!(client = %self.conn.peer.ip(), from = %tx.mail_from, reason, "smtp: message refused");
                return self.send(r);
            }
        };
        let queue_id = tern_core::id::queue_id();
        let now = now_unix();
        let mut tx = tx;
        if let Some(fb) = self.server.checks.feedback.clone()
            && tx.rcpts.iter().any(|r| r.feedback.is_some())
        {
            let (special, ordinary): (Vec<Rcpt>, Vec<Rcpt>) =
                tx.rcpts.into_iter().partition(|r| r.feedback.is_some());
            let pairs: Vec<(&str, &feedback::Kind)> = special
                .iter()
                .filter_map(|r| r.feedback.as_ref().map(|k| (r.address.as_str(), k)))
                .collect();
            let incoming = feedback::Incoming {
                mail_from: &tx.mail_from,
                message: &body,
                client: self.conn.peer.ip(),
                queue_id: &queue_id,
            };
            let consumed = feedback::consume(&self.server.store, &fb, &pairs, &incoming).await;
            let consumed = match consumed {
                Ok(c) => c,
                Err(r) => return self.send(r),
            };
            tracing::info!(queue_id = %queue_id, client = %self.conn.peer.ip(), from = %tx.mail_from, feedback = %consumed.summary.join("; "), "smtp: feedback received");
            metrics::counter!("tern_smtp_feedback_total").increment(1);
            let mut rest = ordinary;
            for (i, mut r) in special.into_iter().enumerate() {
                if consumed.deliver.contains(&i) {
                    r.feedback = None;
                    rest.push(r);
                }
            }
            if rest.is_empty() {
                return self.send(reply!(250, "2.0.0", "OK: received as {queue_id}"));
            }
            tx.rcpts = rest;
        }
        let mailbox = "INBOX";
        // Forwarding aliases among the recipients (MX only): (alias, target).
        let forwards: Vec<(&Rcpt, String)> = tx
            .rcpts
            .iter()
            .filter_map(|r| r.forward.clone().map(|t| (r, t)))
            .collect();
        let mut arc_seal: Option<String> = None;
        // Recipients whose own thresholds file this message as junk while
        // the others get it in their inbox; and whether a forward target's
        // thresholds call it junk.
        // What the checks found (MX): DMARC's disposition when enforced,
        // the spam filter's findings.
        let mut dmarc: Option<tern_auth::Disposition> = None;
        let mut spam: Option<decide::Spam> = None;
        // For the `received` events: the authentication summary and score.
        let mut auth_summary = String::new();
        let mut spam_score = None;
        let raw = if self.server.submission.is_some() {
            match self.prepare_submitted(&tx, &body, &queue_id, now).await {
                Ok(raw) => raw,
                Err(r) => return self.send(r),
            }
        } else {
            let mut body = body;
            let mut results = String::new();
            let mut summary = String::new();
            if self.rdns.is_none()
                && let Some(r) = &self.server.checks.resolver
            {
                self.rdns = Some(r.fcrdns(self.conn.peer.ip()).await);
            }
            if let Some(auth) = &self.server.checks.inbound {
                // RFC 8601 §5: results claiming to be ours are forgeries.
                if let Some(clean) =
                    tern_auth::inbound::strip_forged_results(&body, auth.authserv_id())
                {
                    body = clean;
                }
                let helo = self.helo.clone().unwrap_or_default();
                // A copy we forward is ARC-sealed by the alias's domain.
                let sealer = match (forwards.first(), &self.server.checks.forwarding) {
                    (Some((r, _)), Some(fw)) => {
                        let domain = r.address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
                        tern_queue::signers::load(&fw.signers, &self.server.store, domain).await
                    }
                    _ => None,
                };
                let verdict = auth
                    .check(
                        self.conn.peer.ip(),
                        &helo,
                        &tx.mail_from,
                        &body,
                        sealer.as_deref(),
                    )
                    .await;
                arc_seal = verdict.arc_seal.clone();
                tracing::info!(queue_id = %queue_id, client = %self.conn.peer.ip(), from = %tx.mail_from, result = %verdict.summary, "smtp: authentication");
                if self.server.checks.enforce_dmarc {
                    dmarc = Some(verdict.disposition.clone());
                }
                summary = verdict.summary;
                results = verdict.header;
            }
            let refused = matches!(dmarc, Some(tern_auth::Disposition::Reject(_)));
            if let Some(filter) = self.server.checks.filter.as_ref().filter(|_| !refused) {
                let locals: Vec<AccountId> = tx
                    .rcpts
                    .iter()
                    .filter_map(|r| r.local.as_ref().map(|l| l.account))
                    .collect();
                let report = filter
                    .check(
                        &body,
                        &tern_filter::Facts {
                            ip: self.conn.peer.ip(),
                            helo: self.helo.as_deref().unwrap_or(""),
                            auth: &summary,
                            rdns: self.rdns.clone().flatten().as_deref(),
                            account: match locals.as_slice() {
                                [one] => Some(*one),
                                _ => None,
                            },
                        },
                    )
                    .await;
                tracing::info!(queue_id = %queue_id, score = report.score, tests = %report.tests(), "smtp: spam score");
                // Each recipient's thresholds (its account's, its domain's,
                // or [filter]'s): refused only if every recipient refuses;
                // filed in Junk for those whose junk threshold it reaches.
                let mut actions = Vec::with_capacity(tx.rcpts.len());
                for r in &tx.rcpts {
                    let who = r
                        .local
                        .as_ref()
                        .map_or(r.address.as_str(), |l| l.address.as_str());
                    actions.push(filter.thresholds(who).await.action(report.score));
                }
                spam = Some(decide::Spam {
                    score: report.score,
                    tests: report.tests().to_string(),
                    actions,
                });
                results.push_str(&report.header(&filter.config));
                spam_score = Some(report.score);
            }
            auth_summary = summary;
            let trace = self.trace_headers(&tx, &queue_id, now, true);
            let mut raw = Vec::with_capacity(trace.len() + results.len() + body.len());
            raw.extend_from_slice(trace.as_bytes());
            raw.extend_from_slice(results.as_bytes());
            raw.extend_from_slice(&body);
            raw
        };
        // The decision (MX): each recipient's copy, or a refusal.
        let mut junk_only: Vec<AccountId> = Vec::new();
        let mut forwarding = !forwards.is_empty();
        if self.server.submission.is_none() {
            let kinds: Vec<decide::Kind> = tx
                .rcpts
                .iter()
                .map(|r| match r.forward {
                    Some(_) => decide::Kind::Forward,
                    None => decide::Kind::Local,
                })
                .collect();
            let decision = decide::decide(&decide::Facts {
                dmarc: dmarc.as_ref(),
                spam,
                rcpts: &kinds,
            });
            match decision {
                decide::Decision::Refuse {
                    code,
                    status,
                    text,
                    reason,
                } => {
                    metrics::counter!("tern_smtp_rejections_total", "reason" => reason)
                        .increment(1);
                    tracing::info!(queue_id = %queue_id, client = %self.conn.peer.ip(), from = %tx.mail_from, reason, score = spam_score.unwrap_or(0.0), "smtp: message refused");
                    let r = Reply { code, status, text };
                    let auth = (!auth_summary.is_empty()).then_some(auth_summary.as_str());
                    self.record_rejection(&tx, &queue_id, &r, spam_score, auth)
                        .await;
                    return self.send(r);
                }
                decide::Decision::Accept(copies) => {
                    for (r, c) in tx.rcpts.iter().zip(&copies) {
                        if let (decide::Copy::Junk, Some(l)) = (c, &r.local) {
                            junk_only.push(l.account);
                        }
                    }
                    forwarding = copies.contains(&decide::Copy::Forward);
                    if !junk_only.is_empty() {
                        tracing::info!(queue_id = %queue_id, accounts = junk_only.len(), "smtp: filed as junk");
                    }
                    if !forwards.is_empty() && !forwarding {
                        tracing::info!(queue_id = %queue_id, from = %tx.mail_from, "smtp: junk not forwarded");
                    }
                }
            }
        }
        // The forwarded copy: ARC set on top, sent from an SRS address of
        // the alias's domain.
        let mut forward_message = None;
        let mut forward_events = Vec::new();
        if let (true, Some(fw)) = (forwarding, &self.server.checks.forwarding) {
            {
                let alias_domain = forwards[0]
                    .0
                    .address
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_ascii_lowercase())
                    .unwrap_or_default();
                let seal = arc_seal.unwrap_or_default();
                // Return-Path belongs to final delivery (RFC 5321 §4.4), not
                // to a copy that travels on.
                let onward = if raw.starts_with(b"Return-Path:") {
                    let eol = raw
                        .windows(2)
                        .position(|w| w == b"\r\n")
                        .map_or(0, |i| i + 2);
                    &raw[eol..]
                } else {
                    &raw[..]
                };
                let mut fwd_raw = Vec::with_capacity(seal.len() + onward.len());
                fwd_raw.extend_from_slice(seal.as_bytes());
                fwd_raw.extend_from_slice(onward);
                let sender =
                    tern_core::srs::forward(&tx.mail_from, &alias_domain, &fw.srs_secret, now);
                let mut env = Envelope::new(Source::Forward, sender, fwd_raw);
                env.received_at = now;
                env.source_ip = Some(self.conn.peer.ip());
                env.params = message_params(&tx.params);
                env.recipients = forwards
                    .iter()
                    .map(|(r, target)| IntakeRcpt {
                        address: target.clone(),
                        params: rcpt_params(&r.params),
                    })
                    .collect();
                tracing::info!(queue_id = %queue_id, forward_id = %env.queue_id, from = %env.sender, to = %forwards.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(","), sealed = !seal.is_empty(), "smtp: forwarding");
                match fw.intake.prepare(env).await {
                    Ok(p) => match p.into_message() {
                        Ok(m) => forward_message = Some(m),
                        Err(only) => forward_events = only.events,
                    },
                    Err(e) => {
                        tracing::error!(queue_id = %queue_id, error = %e, "smtp: cannot prepare the forwarded copy");
                        return self.send(reply!(
                            451,
                            "4.3.0",
                            "Temporary local problem, try again later"
                        ));
                    }
                }
            }
        }
        let size = raw.len();
        let started = Instant::now();
        let server = self.server.clone();
        if let Some(sub) = &server.submission {
            return self.submit(sub, tx, raw, queue_id, now, bare).await;
        }
        let mut params = tx.params.clone();
        params["rcpts"] = tx
            .rcpts
            .iter()
            .map(|r| serde_json::json!({"address": r.address, "params": r.params}))
            .collect::<Vec<_>>()
            .into();
        let message = NewMessage {
            mailbox,
            junk: junk_only.clone(),
            ..NewMessage::local(
                queue_id.clone(),
                raw,
                tx.mail_from.clone(),
                tx.rcpts
                    .iter()
                    .filter_map(|r| r.local.as_ref().map(|l| l.account))
                    .filter(|a| !junk_only.contains(a))
                    .collect(),
                now,
                params.to_string(),
            )
        };
        let mut message = message;
        for r in &tx.rcpts {
            if let Some(l) = &r.local {
                let auth = (!auth_summary.is_empty()).then_some(auth_summary.as_str());
                let mut e = self.inbound_event(
                    EventType::Received,
                    &queue_id,
                    &tx.mail_from,
                    &r.address,
                    spam_score,
                    auth,
                );
                e.folder = Some(
                    if junk_only.contains(&l.account) {
                        "Junk"
                    } else {
                        mailbox
                    }
                    .into(),
                );
                message.events.push(e);
            }
        }
        let stored = message.raw.clone();
        // An incoming message and the copy it is forwarded as: one
        // transaction, so the 250 covers both.
        let local = !(message.recipients.is_empty() && message.junk.is_empty());
        let mut all: Vec<NewMessage> = local
            .then_some(message)
            .into_iter()
            .chain(forward_message)
            .collect();
        let result = if all.is_empty() {
            if forward_events.is_empty() {
                Ok(())
            } else {
                self.server
                    .store
                    .record_events(forward_events, Vec::new(), None)
                    .await
            }
        } else {
            if let Some(m) = all.last_mut() {
                m.events.extend(forward_events);
            }
            self.server.store.deliver_all(all).await
        };
        if result.is_ok() && self.server.checks.inbound.is_some() {
            self.keep_dmarc_report(&stored, &queue_id, now).await;
        }
        let rcpts: Vec<&str> = tx.rcpts.iter().map(|r| r.address.as_str()).collect();
        match result {
            Ok(()) => {
                metrics::counter!("tern_smtp_messages_total").increment(1);
                metrics::counter!("tern_smtp_bytes_total").increment(size as u64);
                tracing::info!(
                    queue_id = %queue_id,
                    client = %self.conn.peer.ip(),
                    helo = self.helo.as_deref().unwrap_or(""),
                    user = self.account.as_ref().map(|a| a.1.as_str()).unwrap_or(""),
                    from = %tx.mail_from,
                    to = %rcpts.join(","),
                    size,
                    tls = self.conn.is_tls(),
                    bare_line_endings = bare,
                    store_ms = started.elapsed().as_millis() as u64,
                    "smtp: message accepted"
                );
                self.send(reply!(250, "2.0.0", "OK: queued as {queue_id}"))
            }
            Err(e) => {
                tracing::error!(queue_id = %queue_id, error = %e, "smtp: store failed; message not accepted");
                self.send(reply!(
                    451,
                    "4.3.0",
                    "Temporary storage failure, try again later"
                ))
            }
        }
    }

    /// The submission checks and fixes (RFC 6409 §8): every `From:`/`Sender:`
    /// address must be the user's; `Date:` and `Message-ID:` are added when
    /// missing; the `Received:` line goes on top (DKIM signing is the
    /// intake's).
    async fn prepare_submitted(
        &self,
        tx: &Transaction,
        body: &[u8],
        queue_id: &str,
        now: i64,
    ) -> Result<Vec<u8>, Reply> {
        if self.server.submission.is_none() {
            return Err(reply!(530, "5.7.0", "Authentication required"));
        }
        let facts = submission::header_facts(body);
        if facts.senders.is_empty() {
            return Err(reply!(554, "5.6.0", "Message has no From: header"));
        }
        // Clients from trusted networks (no account) are not checked.
        let checks: Vec<(AccountId, String, String)> = match &self.account {
            Some((account, login)) => facts
                .senders
                .iter()
                .map(|s| (*account, login.clone(), s.clone()))
                .collect(),
            None => Vec::new(),
        };
        for (account, login, sender) in checks {
            match submission::may_send_as(&self.server.store, account, &sender).await {
                Ok(true) => {}
                Ok(false) => {
                    metrics::counter!("tern_smtp_rejections_total", "reason" => "sender_mismatch")
                        .increment(1);
                    tracing::info!(client = %self.conn.peer.ip(), user = %login, header_from = %sender, "submission: From: refused");
                    return Err(reply!(
                        553,
                        "5.7.1",
                        "From: <{sender}> is not an address of {login}"
                    ));
                }
                Err(e) => {
                    tracing::error!(error = %e, "submission: sender lookup failed");
                    return Err(reply!(451, "4.3.0", "Temporary lookup failure"));
                }
            }
        }
        let mut unsigned = self.trace_headers(tx, queue_id, now, false).into_bytes();
        if !facts.has_date {
            unsigned.extend_from_slice(format!("Date: {}\r\n", rfc5322_date(now)).as_bytes());
        }
        if !facts.has_message_id {
            unsigned.extend_from_slice(
                format!(
                    "Message-ID: <{}.{:016x}@{}>\r\n",
                    queue_id,
                    rand::random::<u64>(),
                    self.server.hostname
                )
                .as_bytes(),
            );
        }
        unsigned.extend_from_slice(body);
        Ok(unsigned)
    }

    /// An event about mail arriving from this session's client.
    fn inbound_event(
        &self,
        t: EventType,
        queue_id: &str,
        sender: &str,
        rcpt: &str,
        spam_score: Option<f64>,
        authentication: Option<&str>,
    ) -> Event {
        let mut e = Event::new(t, queue_id).to(rcpt);
        e.sender = Some(sender.to_string());
        e.source = Some("smtp".into());
        e.source_ip = Some(self.conn.peer.ip().to_string());
        e.spam_score = spam_score;
        e.authentication = authentication.map(str::to_string);
        e
    }

    /// Records a `rejected` event per recipient of a refused message.
    async fn record_rejection(
        &self,
        tx: &Transaction,
        queue_id: &str,
        reply: &Reply,
        spam_score: Option<f64>,
        authentication: Option<&str>,
    ) {
        let events = tx
            .rcpts
            .iter()
            .map(|r| {
                let mut e = self.inbound_event(
                    EventType::Rejected,
                    queue_id,
                    &tx.mail_from,
                    &r.address,
                    spam_score,
                    authentication,
                );
                e.reply = Some(format!("{} {} {}", reply.code, reply.status, reply.text));
                e.status = Some(reply.status.into());
                e
            })
            .collect();
        if let Err(e) = self
            .server
            .store
            .record_events(events, Vec::new(), None)
            .await
        {
            tracing::warn!(queue_id, error = %e, "smtp: cannot record the refusal");
        }
    }

    /// Hands a submitted message to the queue's intake (which signs it,
    /// checks suppression lists and writes its events) and answers.
    async fn submit(
        &mut self,
        sub: &submission::Submission,
        tx: Transaction,
        raw: Vec<u8>,
        queue_id: String,
        now: i64,
        bare: usize,
    ) -> Next {
        let size = raw.len();
        let started = Instant::now();
        let mut env = Envelope::new(Source::Submission, tx.mail_from.clone(), raw);
        env.queue_id = queue_id.clone();
        env.received_at = now;
        env.source_ip = Some(self.conn.peer.ip());
        env.params = message_params(&tx.params);
        for r in &tx.rcpts {
            match &r.local {
                Some(l) => env.local.push((l.account, r.address.clone())),
                None => env.recipients.push(IntakeRcpt {
                    address: r.address.clone(),
                    params: rcpt_params(&r.params),
                }),
            }
        }
        env.sent_copy = match &self.account {
            Some((account, _)) if sub.config.save_sent => Some(*account),
            _ => None,
        };
        let rcpts: Vec<&str> = tx.rcpts.iter().map(|r| r.address.as_str()).collect();
        match sub.intake.submit(env).await {
            Ok(decision) => {
                let suppressed: Vec<&str> = decision
                    .recipients
                    .iter()
                    .filter(|(_, s)| matches!(s, RcptState::Suppressed(_)))
                    .map(|(a, _)| a.as_str())
                    .collect();
                metrics::counter!("tern_smtp_messages_total").increment(1);
                metrics::counter!("tern_smtp_bytes_total").increment(size as u64);
                tracing::info!(
                    queue_id = %queue_id,
                    client = %self.conn.peer.ip(),
                    helo = self.helo.as_deref().unwrap_or(""),
                    user = self.account.as_ref().map(|a| a.1.as_str()).unwrap_or(""),
                    from = %tx.mail_from,
                    to = %rcpts.join(","),
                    suppressed = %suppressed.join(","),
                    dkim = decision.signed.as_deref().unwrap_or(""),
                    size,
                    tls = self.conn.is_tls(),
                    bare_line_endings = bare,
                    store_ms = started.elapsed().as_millis() as u64,
                    "submission: message accepted"
                );
                if suppressed.is_empty() {
                    self.send(reply!(250, "2.0.0", "OK: queued as {queue_id}"))
                } else {
                    self.send(reply!(
                        250,
                        "2.0.0",
                        "OK: queued as {queue_id}; not sent to suppressed {}",
                        suppressed.join(", ")
                    ))
                }
            }
            Err(e) => {
                tracing::error!(queue_id = %queue_id, error = %e, "submission: store failed; message not accepted");
                self.send(reply!(
                    451,
                    "4.3.0",
                    "Temporary storage failure, try again later"
                ))
            }
        }
    }

    /// A DMARC aggregate or TLS report for one of our domains (arriving at
    /// its rua address) is also stored parsed, for the dashboard and
    /// `tern reports dmarc|tls`.
    async fn keep_dmarc_report(&self, raw: &[u8], queue_id: &str, now: i64) {
        let store = &self.server.store;
        use tern_auth::dmarc_report::ReceivedReport;
        let stored = match tern_auth::dmarc_report::received_report(raw) {
            Some(ReceivedReport::Tls(r)) => {
                tracing::info!(queue_id, domain = %r.domain, org = %r.org, successes = r.successes, failures = r.failures, "smtp: TLS report received");
                store.add_tls_report(r, now).await
            }
            Some(ReceivedReport::Dmarc(r)) => {
                tracing::info!(queue_id, domain = %r.domain, org = %r.org, messages = r.messages, failed = r.failed, "smtp: DMARC aggregate report received");
                store.add_dmarc_report(r, now).await
            }
            None => return,
        };
        if let Err(e) = stored {
            tracing::warn!(queue_id, error = %e, "smtp: cannot store the report");
        }
    }

    /// Whether a password may be sent now: over TLS, or from loopback when
    /// the config allows plaintext there.
    fn auth_allowed(&self) -> bool {
        let loopback_ok = self
            .server
            .submission
            .as_ref()
            .is_some_and(|s| s.auth.plaintext_on_loopback);
        self.conn.is_tls() || (loopback_ok && self.conn.is_loopback())
    }

    /// AUTH (RFC 4954 §4) with PLAIN (RFC 4616) or LOGIN.
    async fn auth(&mut self, mechanism: u64, initial: String) -> Next {
        if self.server.submission.is_none() {
            return self.send(reply!(
                503,
                "5.5.1",
                "AUTH is not available on this port; use submission"
            ));
        }
        if self.helo.is_none() {
            return self.send(reply!(503, "5.5.1", "Send EHLO first"));
        }
        if self.account.is_some() {
            return self.send(reply!(503, "5.5.1", "Already authenticated"));
        }
        if self.tx.is_some() {
            return self.send(reply!(
                503,
                "5.5.1",
                "AUTH is not allowed during a transaction"
            ));
        }
        if !self.auth_allowed() {
            return self.send(reply!(
                538,
                "5.7.11",
                "Encryption required for authentication; use STARTTLS"
            ));
        }
        let initial = initial.trim().to_string();
        let credentials = if mechanism == smtp_proto::AUTH_PLAIN {
            let response = if initial.is_empty() {
                match self.challenge("").await {
                    Ok(r) => r,
                    Err(next) => return next,
                }
            } else if initial == "=" {
                String::new()
            } else {
                initial
            };
            match tern_core::sasl::decode_base64(&response) {
                Ok(p) => Some((p.login, p.password)),
                Err(tern_core::sasl::PlainError::Proxy) => {
                    return self.send(reply!(
                        535,
                        "5.7.8",
                        "Authorization identity must match the login"
                    ));
                }
                Err(_) => None,
            }
        } else if mechanism == smtp_proto::AUTH_LOGIN {
            let user = if initial.is_empty() {
                match self.challenge("VXNlcm5hbWU6").await {
                    Ok(r) => r,
                    Err(next) => return next,
                }
            } else {
                initial
            };
            let pass = match self.challenge("UGFzc3dvcmQ6").await {
                Ok(r) => r,
                Err(next) => return next,
            };
            tern_core::sasl::decode_base64_text(&user)
                .zip(tern_core::sasl::decode_base64_text(&pass))
        } else {
            return self.send(reply!(504, "5.5.4", "Unrecognized authentication type"));
        };
        let Some((login, password)) = credentials else {
            return self.send(reply!(501, "5.5.2", "Cannot decode the AUTH response"));
        };
        self.login(login.trim().to_lowercase(), password).await
    }

    /// Sends a `334` challenge and reads the client's answer; `*` cancels
    /// (RFC 4954 §4).
    async fn challenge(&mut self, text: &str) -> Result<String, Next> {
        self.conn.write(format!("334 {text}\r\n").as_bytes());
        let deadline = Instant::now() + Duration::from_secs(self.cfg().command_timeout);
        loop {
            match self.conn.take_line(self.cfg().max_command_line) {
                Line::Complete(line) => {
                    let text = String::from_utf8_lossy(&line).trim_end().to_string();
                    if text == "*" {
                        return Err(self.send(reply!(501, "5.0.0", "Authentication cancelled")));
                    }
                    return Ok(text);
                }
                Line::TooLong => {
                    return Err(self.send(reply!(
                        500,
                        "5.5.6",
                        "Authentication exchange line too long"
                    )));
                }
                Line::Incomplete => match self.conn.fill(deadline).await {
                    Ok(0) | Err(_) => return Err(Next::Close),
                    Ok(_) => {}
                },
            }
        }
    }

    async fn login(&mut self, login: String, password: String) -> Next {
        let Some(sub) = &self.server.submission else {
            return Next::Close;
        };
        let ip = self.conn.peer.ip();
        let store = &self.server.store;
        let verdict = sub
            .guard
            .login("submission", ip, &login, || {
                store.authenticate(&login, &password)
            })
            .await;
        match verdict {
            Login::Success(account) => {
                tracing::info!(client = %ip, user = %login, tls = self.conn.is_tls(), "submission: login");
                self.account = Some((account, login));
                self.send(reply!(235, "2.7.0", "Authentication successful"))
            }
            Login::Invalid => self.send(reply!(535, "5.7.8", "Authentication credentials invalid")),
            Login::Refused => self.send(reply!(
                454,
                "4.7.0",
                "Too many failed logins, try again later"
            )),
            Login::Error(_) => self.send(reply!(454, "4.7.0", "Temporary authentication failure")),
        }
    }

    /// `Return-Path` (final delivery only) and `Received` (RFC 5321 §4.4,
    /// RFC 3848 "with" types).
    fn trace_headers(
        &self,
        tx: &Transaction,
        queue_id: &str,
        now: i64,
        return_path: bool,
    ) -> String {
        let auth = if self.account.is_some() { "A" } else { "" };
        let with = match (self.esmtp, self.conn.is_tls()) {
            (true, true) => format!("ESMTPS{auth}"),
            (true, false) => format!("ESMTP{auth}"),
            (false, true) => "SMTPS".into(),
            (false, false) => "SMTP".into(),
        };
        let helo = sanitize(self.helo.as_deref().unwrap_or("unknown"));
        let tls = self
            .conn
            .tls_info()
            .map(|t| format!("\r\n\t(using {t})"))
            .unwrap_or_default();
        let for_clause = match tx.rcpts.as_slice() {
            [one] => format!("\r\n\tfor <{}>", one.address),
            _ => String::new(),
        };
        let return_path = if return_path {
            format!("Return-Path: <{}>\r\n", tx.mail_from)
        } else {
            String::new()
        };
        // RFC 5321 §4.4 TCP-info: the verified reverse name, then the address.
        let rdns = match self.rdns.as_ref().and_then(|r| r.as_deref()) {
            Some(name) => format!("{} ", sanitize(name)),
            None => String::new(),
        };
        format!(
            "{}Received: from {} ({}[{}]){}\r\n\tby {} (Tern) with {} id {}{}; {}\r\n",
            return_path,
            helo,
            rdns,
            self.conn.peer.ip(),
            tls,
            self.server.hostname,
            with,
            queue_id,
            for_clause,
            rfc5322_date(now)
        )
    }
}

/// Keeps client-supplied text safe inside a header: printable, no CR/LF.
pub(crate) fn sanitize(s: &str) -> Cow<'_, str> {
    if s.chars().all(|c| c.is_ascii_graphic()) && s.len() <= 255 {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(
            s.chars()
                .take(255)
                .map(|c| if c.is_ascii_graphic() { c } else { '?' })
                .collect(),
        )
    }
}
