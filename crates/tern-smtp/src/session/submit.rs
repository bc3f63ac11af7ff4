//! Submission (ports 587/465): recipients anywhere for an authenticated
//! user, SASL authentication, and a submitted message's way into the
//! queue's intake.

use super::*;

impl Session {
    /// RCPT on submission (RFC 6409): any address once authenticated; our
    /// own accounts and aliases resolved, their quotas checked.
    pub(super) async fn rcpt_submission(&mut self, address: Address, to: &RcptTo<String>) -> Next {
        match self
            .server
            .store
            .resolve(&address, self.cfg().allow_catch_all)
            .await
        {
            Ok(Recipient::Local(l)) => {
                if let Some(full) = self.over_quota(&l, &address) {
                    return full;
                }
                self.add_rcpt(address.to_string(), Some(l), to)
            }
            Ok(Recipient::Forward(target)) => self.add_rcpt(target, None, to),
            Ok(Recipient::NotLocal) => self.add_rcpt(address.to_string(), None, to),
            Ok(Recipient::UnknownUser) => self.unknown_user(&address),
            Err(e) => self.lookup_failed(&e),
        }
    }

    /// Submission's end of a message: the MSA's checks and fixes, then the
    /// intake (suppression, DKIM signing, queue, events) before the reply.
    pub(super) async fn finish_submission(
        &mut self,
        tx: Transaction,
        body: Vec<u8>,
        queue_id: String,
        now: i64,
        bare: usize,
    ) -> Next {
        let raw = match self.prepare_submitted(&tx, &body, &queue_id, now).await {
            Ok(raw) => raw,
            Err(r) => return self.send(r),
        };
        let server = self.server.clone();
        let Some(sub) = &server.submission else {
            return self.send(reply!(
                451,
                "4.3.0",
                "Temporary local problem, try again later"
            ));
        };
        self.submit(sub, tx, raw, queue_id, now, bare).await
    }

    /// The submission checks and fixes (RFC 6409 §8): every `From:`/`Sender:`
    /// address must be the user's; `Date:` and `Message-ID:` are added when
    /// missing; the `Received:` line goes on top (DKIM signing is the
    /// intake's).
    pub(super) async fn prepare_submitted(
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

    /// Hands a submitted message to the queue's intake (which signs it,
    /// checks suppression lists and writes its events) and answers.
    pub(super) async fn submit(
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
        match sub.intake.submit(env).await {
            Ok(decision) => {
                let suppressed: Vec<&str> = decision
                    .recipients
                    .iter()
                    .filter(|(_, s)| matches!(s, RcptState::Suppressed(_)))
                    .map(|(a, _)| a.as_str())
                    .collect();
                let suppressed = suppressed.join(", ");
                let dkim = decision.signed.as_deref().unwrap_or("");
                self.log_accepted(&tx, &queue_id, size, bare, started, &suppressed, dkim);
                if suppressed.is_empty() {
                    self.send(reply!(250, "2.0.0", "OK: queued as {queue_id}"))
                } else {
                    self.send(reply!(
                        250,
                        "2.0.0",
                        "OK: queued as {queue_id}; not sent to suppressed {suppressed}"
                    ))
                }
            }
            Err(e) => self.store_failed(&queue_id, &e),
        }
    }

    /// Whether a password may be sent now: over TLS, or from loopback when
    /// the config allows plaintext there.
    pub(super) fn auth_allowed(&self) -> bool {
        let loopback_ok = self
            .server
            .submission
            .as_ref()
            .is_some_and(|s| s.auth.plaintext_on_loopback);
        self.conn.is_tls() || (loopback_ok && self.conn.is_loopback())
    }

    /// AUTH (RFC 4954 §4) with PLAIN (RFC 4616) or LOGIN.
    pub(super) async fn auth(&mut self, mechanism: u64, initial: String) -> Next {
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
    pub(super) async fn challenge(&mut self, text: &str) -> Result<String, Next> {
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

    pub(super) async fn login(&mut self, login: String, password: String) -> Next {
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
}
