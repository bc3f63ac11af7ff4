//! One SMTP session: the RFC 5321 §4.1 command state machine, shared by
//! the two handlers that differ — the MX (`session/mx.rs`: recipients of
//! our domains, checks, decision, storage) and submission
//! (`session/submit.rs`: authentication, any recipient, the intake).

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

mod mx;
mod submit;

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
    if server.submission.is_none() && !server.rates.connection(peer.ip()).await {
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
                let allowed = match sub.take_message(&self.server.store, account).await {
                    Ok(allowed) => allowed,
                    Err(e) => {
                        tracing::error!(error = %e, "submission: sending limits unavailable");
                        return self.send(reply!(
                            451,
                            "4.3.0",
                            "Temporary failure; try again later"
                        ));
                    }
                };
                if let Err(which) = allowed {
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
        if self.server.submission.is_none() && !self.server.rates.message(self.conn.peer.ip()).await
        {
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
        if self.server.submission.is_some() {
            self.rcpt_submission(address, &to).await
        } else {
            self.rcpt_mx(address, &to).await
        }
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

    /// `550 5.1.1` for an address of ours that nobody has.
    fn unknown_user(&mut self, address: &Address) -> Next {
        metrics::counter!("tern_smtp_rejections_total", "reason" => "unknown_user").increment(1);
        tracing::info!(client = %self.conn.peer.ip(), rcpt = %address, "smtp: unknown recipient");
        self.rcpt_fail(reply!(550, "5.1.1", "<{address}>: no such user here"))
    }

    /// `451 4.3.0` when the directory could not be read.
    fn lookup_failed(&mut self, e: &tern_store::StoreError) -> Next {
        tracing::error!(error = %e, "smtp: recipient lookup failed");
        self.rcpt_fail(reply!(
            451,
            "4.3.0",
            "Temporary lookup failure, try again later"
        ))
    }

    /// `552 5.2.2` when the message (by its declared SIZE) would not fit
    /// in the account's quota.
    fn over_quota(&mut self, l: &LocalRecipient, address: &Address) -> Option<Next> {
        let size_hint = self
            .tx
            .as_ref()
            .and_then(|t| t.params["size"].as_u64())
            .unwrap_or(0);
        if l.quota > 0 && l.used.saturating_add(size_hint) > l.quota {
            metrics::counter!("tern_smtp_rejections_total", "reason" => "quota").increment(1);
            return Some(self.rcpt_fail(reply!(552, "5.2.2", "<{address}>: mailbox full")));
        }
        None
    }

    /// The log line and counters of an accepted message (MX and
    /// submission alike; `suppressed` and `dkim` are submission's).
    #[allow(clippy::too_many_arguments)]
    fn log_accepted(
        &self,
        tx: &Transaction,
        queue_id: &str,
        size: usize,
        bare: usize,
        started: Instant,
        suppressed: &str,
        dkim: &str,
    ) {
        metrics::counter!("tern_smtp_messages_total").increment(1);
        metrics::counter!("tern_smtp_bytes_total").increment(size as u64);
        let rcpts: Vec<&str> = tx.rcpts.iter().map(|r| r.address.as_str()).collect();
        tracing::info!(
            queue_id = %queue_id,
            client = %self.conn.peer.ip(),
            helo = self.helo.as_deref().unwrap_or(""),
            user = self.account.as_ref().map(|a| a.1.as_str()).unwrap_or(""),
            from = %tx.mail_from,
            to = %rcpts.join(","),
            suppressed,
            dkim,
            size,
            tls = self.conn.is_tls(),
            bare_line_endings = bare,
            store_ms = started.elapsed().as_millis() as u64,
            "{}: message accepted",
            if self.server.submission.is_some() { "submission" } else { "smtp" }
        );
    }

    /// `451 4.3.0` when a message could not be stored: not accepted.
    fn store_failed(&mut self, queue_id: &str, e: &dyn std::fmt::Display) -> Next {
        tracing::error!(queue_id = %queue_id, error = %e, "smtp: store failed; message not accepted");
        self.send(reply!(
            451,
            "4.3.0",
            "Temporary storage failure, try again later"
        ))
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
        if self.server.submission.is_some() {
            self.finish_submission(tx, body, queue_id, now, bare).await
        } else {
            self.finish_mx(tx, body, queue_id, now, bare).await
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
