//! The MX (port 25): who may be a recipient, and what happens to a
//! message once it is in — feedback consumed, authentication and spam
//! checks, the decision, forwarding, storage and events.

use super::*;

/// What the checks found about an incoming message.
#[derive(Default)]
struct Checked {
    /// The message with trace and result headers on top.
    raw: Vec<u8>,
    /// DMARC's disposition, when DMARC is enforced.
    dmarc: Option<tern_auth::Disposition>,
    /// The spam filter's findings, when it ran.
    spam: Option<decide::Spam>,
    /// The authentication summary, for events.
    auth_summary: String,
    /// The ARC set for a forwarded copy.
    arc_seal: Option<String>,
}

impl Checked {
    fn spam_score(&self) -> Option<f64> {
        self.spam.as_ref().map(|s| s.score)
    }

    fn auth(&self) -> Option<&str> {
        (!self.auth_summary.is_empty()).then_some(self.auth_summary.as_str())
    }
}

/// The forwarded copy, ready to commit, or only its events (every
/// target suppressed).
#[derive(Default)]
struct Forwarded {
    message: Option<NewMessage>,
    events: Vec<Event>,
}

impl Session {
    /// RCPT on the MX: our domains only (RFC 5321 §3.6.2: no open relay);
    /// return paths, unsubscribe and complaint addresses; forwarding
    /// aliases and bounces to SRS addresses; greylisting; quotas.
    pub(super) async fn rcpt_mx(&mut self, address: Address, to: &RcptTo<String>) -> Next {
        let resolved = self
            .server
            .store
            .resolve(&address, self.cfg().allow_catch_all)
            .await;
        if let Some(fb) = self.server.checks.feedback.clone()
            && let Some(kind) = fb.address_kind(address.local())
            && let Ok(found) = &resolved
            && !matches!(found, Recipient::NotLocal)
        {
            return self.feedback_rcpt(&fb, kind, &address, found, to);
        }
        let local = match resolved {
            Ok(Recipient::Local(l)) => l,
            Ok(Recipient::Forward(target)) if self.server.checks.forwarding.is_some() => {
                return self.add_forward(address.to_string(), target, to);
            }
            Ok(Recipient::UnknownUser)
                if tern_core::srs::is_srs(address.local())
                    && let Some(fw) = &self.server.checks.forwarding
                    && let Some(original) =
                        tern_core::srs::reverse(address.local(), &fw.srs_secret, now_unix()) =>
            {
                // A bounce (or reply) to a copy we forwarded: back to its sender.
                return self.add_forward(address.to_string(), original, to);
            }
            Ok(Recipient::UnknownUser | Recipient::Forward(_)) => {
                return self.unknown_user(&address);
            }
            Ok(Recipient::NotLocal) => {
                metrics::counter!("tern_smtp_rejections_total", "reason" => "relay_denied")
                    .increment(1);
                tracing::info!(client = %self.conn.peer.ip(), rcpt = %address, "smtp: relay denied");
                return self.rcpt_fail(reply!(550, "5.7.1", "<{address}>: relaying denied"));
            }
            Err(e) => {
                return self.lookup_failed(&e);
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
        if let Some(full) = self.over_quota(&local, &address) {
            return full;
        }
        self.add_rcpt(address.to_string(), Some(local), to)
    }

    /// The MX's end of a message (RFC 5321 §4.1.1.4): feedback for sent
    /// mail is consumed; the rest is checked ([`Session::check`]), decided
    /// on ([`decide::decide`]), forwarded ([`Session::forward_copy`]) and
    /// stored with its `received` events ([`Session::store_inbound`]), or
    /// refused with a `rejected` event, before the reply.
    pub(super) async fn finish_mx(
        &mut self,
        mut tx: Transaction,
        body: Vec<u8>,
        queue_id: String,
        now: i64,
        bare: usize,
    ) -> Next {
        if tx.rcpts.iter().any(|r| r.feedback.is_some()) {
            match self.consume_feedback(tx, &body, &queue_id).await {
                Ok(Some(rest)) => tx = rest,
                Ok(None) => return self.send(reply!(250, "2.0.0", "OK: received as {queue_id}")),
                Err(r) => return self.send(r),
            }
        }
        let checked = self.check(&tx, body, &queue_id, now).await;
        let kinds: Vec<decide::Kind> = tx
            .rcpts
            .iter()
            .map(|r| match r.forward {
                Some(_) => decide::Kind::Forward,
                None => decide::Kind::Local,
            })
            .collect();
        let decision = decide::decide(&decide::Facts {
            dmarc: checked.dmarc.as_ref(),
            spam: checked.spam.clone(),
            rcpts: &kinds,
        });
        let copies = match decision {
            decide::Decision::Refuse {
                code,
                status,
                text,
                reason,
            } => {
                metrics::counter!("tern_smtp_rejections_total", "reason" => reason).increment(1);
                tracing::info!(queue_id = %queue_id, client = %self.conn.peer.ip(), from = %tx.mail_from, reason, score = checked.spam_score().unwrap_or(0.0), "smtp: message refused");
                let r = Reply { code, status, text };
                self.record_rejection(&tx, &queue_id, &r, checked.spam_score(), checked.auth())
                    .await;
                return self.send(r);
            }
            decide::Decision::Accept(copies) => copies,
        };
        let junk: Vec<AccountId> = tx
            .rcpts
            .iter()
            .zip(&copies)
            .filter_map(|(r, c)| match (c, &r.local) {
                (decide::Copy::Junk, Some(l)) => Some(l.account),
                _ => None,
            })
            .collect();
        if !junk.is_empty() {
            tracing::info!(queue_id = %queue_id, accounts = junk.len(), "smtp: filed as junk");
        }
        let forwarding = copies.contains(&decide::Copy::Forward);
        if !forwarding && tx.rcpts.iter().any(|r| r.forward.is_some()) {
            tracing::info!(queue_id = %queue_id, from = %tx.mail_from, "smtp: junk not forwarded");
        }
        let forwarded = if forwarding {
            match self.forward_copy(&tx, &checked, &queue_id, now).await {
                Ok(f) => f,
                Err(r) => return self.send(r),
            }
        } else {
            Forwarded::default()
        };
        self.store_inbound(tx, checked, junk, forwarded, queue_id, now, bare)
            .await
    }

    /// Consumes the message for the feedback recipients (return paths,
    /// unsubscribe and complaint addresses): the transaction left for
    /// ordinary delivery, `None` when nothing is left, or the reply.
    async fn consume_feedback(
        &mut self,
        mut tx: Transaction,
        body: &[u8],
        queue_id: &str,
    ) -> Result<Option<Transaction>, Reply> {
        let Some(fb) = self.server.checks.feedback.clone() else {
            return Ok(Some(tx));
        };
        let (special, ordinary): (Vec<Rcpt>, Vec<Rcpt>) =
            tx.rcpts.into_iter().partition(|r| r.feedback.is_some());
        let pairs: Vec<(&str, &feedback::Kind)> = special
            .iter()
            .filter_map(|r| r.feedback.as_ref().map(|k| (r.address.as_str(), k)))
            .collect();
        let incoming = feedback::Incoming {
            mail_from: &tx.mail_from,
            message: body,
            client: self.conn.peer.ip(),
            queue_id,
        };
        let consumed = feedback::consume(&self.server.store, &fb, &pairs, &incoming).await?;
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
            return Ok(None);
        }
        tx.rcpts = rest;
        Ok(Some(tx))
    }

    /// The facts about a message from the internet: SPF, DKIM, ARC and
    /// DMARC (forged results of ours removed, RFC 8601 §5; an ARC seal
    /// made for a copy to be forwarded), the spam score under each
    /// recipient's thresholds, and the message with trace and result
    /// headers on top.
    async fn check(
        &mut self,
        tx: &Transaction,
        body: Vec<u8>,
        queue_id: &str,
        now: i64,
    ) -> Checked {
        let mut body = body;
        let mut checked = Checked::default();
        let mut results = String::new();
        if self.rdns.is_none()
            && let Some(r) = &self.server.checks.resolver
        {
            self.rdns = Some(r.fcrdns(self.conn.peer.ip()).await);
        }
        if let Some(auth) = &self.server.checks.inbound {
            if let Some(clean) = tern_auth::inbound::strip_forged_results(&body, auth.authserv_id())
            {
                body = clean;
            }
            let helo = self.helo.clone().unwrap_or_default();
            // A copy we forward is ARC-sealed by the alias's domain.
            let alias = tx.rcpts.iter().find(|r| r.forward.is_some());
            let sealer = match (alias, &self.server.checks.forwarding) {
                (Some(r), Some(fw)) => {
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
            tracing::info!(queue_id = %queue_id, client = %self.conn.peer.ip(), from = %tx.mail_from, result = %verdict.summary, "smtp: authentication");
            checked.arc_seal = verdict.arc_seal;
            if self.server.checks.enforce_dmarc {
                checked.dmarc = Some(verdict.disposition);
            }
            checked.auth_summary = verdict.summary;
            results = verdict.header;
        }
        let refused = matches!(checked.dmarc, Some(tern_auth::Disposition::Reject(_)));
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
                        auth: &checked.auth_summary,
                        rdns: self.rdns.clone().flatten().as_deref(),
                        account: match locals.as_slice() {
                            [one] => Some(*one),
                            _ => None,
                        },
                    },
                )
                .await;
            tracing::info!(queue_id = %queue_id, score = report.score, tests = %report.tests(), "smtp: spam score");
            // Each recipient's thresholds (its account's, its domain's, or
            // [filter]'s): refused only if every recipient refuses; filed
            // in Junk for those whose junk threshold it reaches.
            let mut actions = Vec::with_capacity(tx.rcpts.len());
            for r in &tx.rcpts {
                let who = r
                    .local
                    .as_ref()
                    .map_or(r.address.as_str(), |l| l.address.as_str());
                actions.push(filter.thresholds(who).await.action(report.score));
            }
            checked.spam = Some(decide::Spam {
                score: report.score,
                tests: report.tests().to_string(),
                actions,
            });
            results.push_str(&report.header(&filter.config));
        }
        let trace = self.trace_headers(tx, queue_id, now, true);
        let mut raw = Vec::with_capacity(trace.len() + results.len() + body.len());
        raw.extend_from_slice(trace.as_bytes());
        raw.extend_from_slice(results.as_bytes());
        raw.extend_from_slice(&body);
        checked.raw = raw;
        checked
    }

    /// The copy for the forwarding aliases among the recipients: the ARC
    /// set on top, sent from an SRS address of the alias's domain, through
    /// the intake (not yet committed: it is stored with the local copies).
    async fn forward_copy(
        &self,
        tx: &Transaction,
        checked: &Checked,
        queue_id: &str,
        now: i64,
    ) -> Result<Forwarded, Reply> {
        let Some(fw) = &self.server.checks.forwarding else {
            return Ok(Forwarded::default());
        };
        let forwards: Vec<(&Rcpt, &String)> = tx
            .rcpts
            .iter()
            .filter_map(|r| r.forward.as_ref().map(|t| (r, t)))
            .collect();
        let Some((alias, _)) = forwards.first() else {
            return Ok(Forwarded::default());
        };
        let alias_domain = alias
            .address
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let seal = checked.arc_seal.clone().unwrap_or_default();
        let raw = &checked.raw;
        // Return-Path belongs to final delivery (RFC 5321 §4.4), not to a
        // copy that travels on.
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
        let sender = tern_core::srs::forward(&tx.mail_from, &alias_domain, &fw.srs_secret, now);
        let mut env = Envelope::new(Source::Forward, sender, fwd_raw);
        env.received_at = now;
        env.source_ip = Some(self.conn.peer.ip());
        env.params = message_params(&tx.params);
        env.recipients = forwards
            .iter()
            .map(|(r, target)| IntakeRcpt {
                address: (*target).clone(),
                params: rcpt_params(&r.params),
            })
            .collect();
        tracing::info!(queue_id = %queue_id, forward_id = %env.queue_id, from = %env.sender, to = %forwards.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(","), sealed = !seal.is_empty(), "smtp: forwarding");
        match fw.intake.prepare(env).await {
            Ok(p) => Ok(match p.into_message() {
                Ok(m) => Forwarded {
                    message: Some(m),
                    events: Vec::new(),
                },
                Err(only) => Forwarded {
                    message: None,
                    events: only.events,
                },
            }),
            Err(e) => {
                tracing::error!(queue_id = %queue_id, error = %e, "smtp: cannot prepare the forwarded copy");
                Err(reply!(
                    451,
                    "4.3.0",
                    "Temporary local problem, try again later"
                ))
            }
        }
    }

    /// Stores the local copies (inbox or Junk, with their `received`
    /// events) and the forwarded copy in one transaction — the `250`
    /// covers both — then answers.
    #[allow(clippy::too_many_arguments)]
    async fn store_inbound(
        &mut self,
        tx: Transaction,
        checked: Checked,
        junk: Vec<AccountId>,
        forwarded: Forwarded,
        queue_id: String,
        now: i64,
        bare: usize,
    ) -> Next {
        let mailbox = "INBOX";
        let size = checked.raw.len();
        let started = Instant::now();
        let mut params = tx.params.clone();
        params["rcpts"] = tx
            .rcpts
            .iter()
            .map(|r| serde_json::json!({"address": r.address, "params": r.params}))
            .collect::<Vec<_>>()
            .into();
        let spam_score = checked.spam_score();
        let auth = checked.auth().map(str::to_string);
        let mut message = NewMessage {
            mailbox,
            junk: junk.clone(),
            ..NewMessage::local(
                queue_id.clone(),
                checked.raw,
                tx.mail_from.clone(),
                tx.rcpts
                    .iter()
                    .filter_map(|r| r.local.as_ref().map(|l| l.account))
                    .filter(|a| !junk.contains(a))
                    .collect(),
                now,
                params.to_string(),
            )
        };
        for r in &tx.rcpts {
            if let Some(l) = &r.local {
                let mut e = self.inbound_event(
                    EventType::Received,
                    &queue_id,
                    &tx.mail_from,
                    &r.address,
                    spam_score,
                    auth.as_deref(),
                );
                e.folder = Some(
                    if junk.contains(&l.account) {
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
        let local = !(message.recipients.is_empty() && message.junk.is_empty());
        let mut all: Vec<NewMessage> = local
            .then_some(message)
            .into_iter()
            .chain(forwarded.message)
            .collect();
        let result = if all.is_empty() {
            if forwarded.events.is_empty() {
                Ok(())
            } else {
                self.server
                    .store
                    .record_events(forwarded.events, Vec::new(), None)
                    .await
            }
        } else {
            if let Some(m) = all.last_mut() {
                m.events.extend(forwarded.events);
            }
            self.server.store.deliver_all(all).await
        };
        if result.is_ok() && self.server.checks.inbound.is_some() {
            self.keep_dmarc_report(&stored, &queue_id, now).await;
        }
        match result {
            Ok(()) => {
                self.log_accepted(&tx, &queue_id, size, bare, started, "", "");
                self.send(reply!(250, "2.0.0", "OK: queued as {queue_id}"))
            }
            Err(e) => self.store_failed(&queue_id, &e),
        }
    }

    /// A recipient at one of feedback's addresses of our domains: return
    /// paths and unsubscribe addresses only with a token that verifies
    /// (others are refused like unknown users), complaint addresses always.
    pub(super) fn feedback_rcpt(
        &mut self,
        fb: &tern_feedback::Settings,
        kind: tern_feedback::Address,
        address: &Address,
        found: &Recipient,
        to: &RcptTo<String>,
    ) -> Next {
        let local_part = address.local();
        let token = match kind {
            tern_feedback::Address::ReturnPath => fb
                .keys
                .read_return_path(local_part, now_unix(), fb.bounce_window_days)
                .map(feedback::Kind::Bounce)
                .map_err(|e| ("bad_return_path", e)),
            tern_feedback::Address::Unsubscribe => fb
                .keys
                .read_unsubscribe_address(local_part)
                .map(feedback::Kind::Unsubscribe)
                .map_err(|e| ("bad_unsubscribe_address", e)),
            tern_feedback::Address::Complaints => Ok(feedback::Kind::Complaints {
                local: matches!(found, Recipient::Local(_)),
            }),
        };
        let kind = match token {
            Ok(k) => k,
            Err((reason, e)) => {
                // Refused like an unknown user: nothing tells a prober
                // which tokens exist.
                metrics::counter!("tern_smtp_rejections_total", "reason" => reason).increment(1);
                tracing::info!(client = %self.conn.peer.ip(), rcpt = %address, error = %e, reason, "smtp: feedback address refused");
                return self.rcpt_fail(reply!(550, "5.1.1", "<{address}>: no such user here"));
            }
        };
        let local = match found {
            Recipient::Local(l) if matches!(kind, feedback::Kind::Complaints { .. }) => {
                Some(l.clone())
            }
            _ => None,
        };
        let next = self.add_rcpt(address.to_string(), local, to);
        if let Some(r) = self.tx.as_mut().and_then(|t| t.rcpts.last_mut()) {
            r.feedback = Some(kind);
        }
        next
    }

    pub(super) fn add_forward(
        &mut self,
        address: String,
        target: String,
        to: &RcptTo<String>,
    ) -> Next {
        let next = self.add_rcpt(address, None, to);
        if let Some(r) = self.tx.as_mut().and_then(|t| t.rcpts.last_mut()) {
            r.forward = Some(target);
        }
        next
    }

    /// An event about mail arriving from this session's client.
    pub(super) fn inbound_event(
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
    pub(super) async fn record_rejection(
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

    /// A DMARC aggregate or TLS report for one of our domains (arriving at
    /// its rua address) is also stored parsed, for the dashboard and
    /// `tern reports dmarc|tls`.
    pub(super) async fn keep_dmarc_report(&self, raw: &[u8], queue_id: &str, now: i64) {
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
}
