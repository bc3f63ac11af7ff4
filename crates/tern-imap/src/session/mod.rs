//! One IMAP session: states and commands of RFC 9051 §6.

mod append;
mod esearch;
mod extra_items;
mod list;
mod local_grammar;
mod metadata;
mod notify;
mod tokens;
mod url;
mod urlauth;

use crate::ImapServer;
use crate::reader::{Event, Reader};
use crate::search::{self, in_set};
use crate::section;
use crate::sort;
use crate::view::{self, View};
use crate::write::{self, Str};
use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::command::{FetchModifier, SelectParameter};
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_codec::imap_types::fetch::{Macro, MacroOrMessageDataItemNames, MessageDataItemName};
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::sequence::SequenceSet;
use imap_codec::imap_types::status::StatusDataItemName;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tern_core::authguard::Login;
use tern_core::conn::Conn;
use tern_store::{AccountId, FlagMode, MailboxRow, StoreError};
use tokio::net::TcpStream;

/// Bad commands tolerated before the server hangs up.
const MAX_ERRORS: u32 = 50;
/// Messages whose rows a FETCH loads at a time.
const FETCH_CHUNK: usize = 2048;

enum State {
    NotAuthenticated,
    Authenticated,
    Selected(Box<View>),
}

struct Session {
    server: Arc<ImapServer>,
    conn: Conn,
    reader: Reader,
    state: State,
    account: Option<(AccountId, String)>,
    out: Vec<u8>,
    errors: u32,
    rev2: bool,
    condstore: bool,
    qresync: bool,
    /// RETURN options of the SEARCH or SORT being run (RFC 4731, 5267).
    esearch: Option<Vec<String>>,
    /// Searches kept up to date (RFC 5267 CONTEXT).
    contexts: Vec<esearch::Context>,
    /// What NOTIFY asked for (RFC 5465), and the change signal it listens to.
    notify: Option<notify::Notify>,
    watch: Option<tern_store::AccountWatch>,
    /// UIDs saved by `SEARCH RETURN (SAVE)`, what `$` stands for (RFC 5182).
    saved: Vec<u32>,
    /// FETCH items of the command being run that the codec does not know.
    fetch_extras: extra_items::FetchExtras,
    /// STATUS MAILBOXID asked (RFC 8474); `true`: MESSAGES only stands in.
    status_mailboxid: Option<bool>,
    /// When the login must be over (`login_timeout` after connecting).
    login_deadline: tokio::time::Instant,
}

/// What the command loop does next.
enum Flow {
    Continue,
    Close,
}

pub async fn run(server: Arc<ImapServer>, tcp: TcpStream, implicit_tls: bool) {
    let conn = match Conn::open(tcp, implicit_tls, server.tls.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "imap: connection setup failed");
            return;
        }
    };
    let server_login_timeout = server.config.login_timeout;
    let mut s = Session {
        reader: Reader::new(server.config.max_command),
        server,
        conn,
        state: State::NotAuthenticated,
        account: None,
        out: Vec::with_capacity(256),
        errors: 0,
        rev2: false,
        condstore: false,
        qresync: false,
        esearch: None,
        contexts: Vec::new(),
        notify: None,
        watch: None,
        saved: Vec::new(),
        fetch_extras: Default::default(),
        status_mailboxid: None,
        login_deadline: tokio::time::Instant::now() + Duration::from_secs(server_login_timeout),
    };
    let caps = s.capabilities();
    s.out.extend_from_slice(
        format!(
            "* OK [CAPABILITY {caps}] {} Tern IMAP ready\r\n",
            s.server.hostname
        )
        .as_bytes(),
    );
    s.command_loop().await;
    s.flush().await;
    s.conn.shutdown().await;
}

/// Output a FETCH holds before writing it (bytes).
const FETCH_FLUSH: usize = 64 * 1024;

/// `1,2,3,7,9,10` → `1:3,7,9:10`.
pub(crate) fn compress(ids: &[u32]) -> String {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    esearch::in_order(&sorted)
}

/// The tag of a raw command line, for replies to commands that do not parse.
fn tag_of(bytes: &[u8]) -> String {
    let tag: String = bytes
        .iter()
        .take_while(|&&b| {
            b.is_ascii_graphic()
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
        })
        .map(|&b| b as char)
        .collect();
    if tag.is_empty() { "*".into() } else { tag }
}

fn store_err(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound(_) => "[NONEXISTENT]",
        StoreError::Exists(_) => "[ALREADYEXISTS]",
        StoreError::OverQuota => "[OVERQUOTA]",
        StoreError::Invalid(_) => "[CANNOT]",
        _ => "[SERVERBUG]",
    }
}

fn mailbox_name(m: &Mailbox<'_>) -> String {
    match m {
        Mailbox::Inbox => "INBOX".into(),
        Mailbox::Other(o) => {
            let s = String::from_utf8_lossy(o.as_ref()).to_string();
            if s.eq_ignore_ascii_case("INBOX") {
                "INBOX".into()
            } else {
                s
            }
        }
    }
}

/// Whether every mailbox name a command carries is valid UTF-8 (a literal
/// can carry any bytes; imap-codec checks only quoted and atom names).
fn mailbox_names_are_utf8(body: &CommandBody<'_>) -> bool {
    let ok = |m: &Mailbox<'_>| match m {
        Mailbox::Inbox => true,
        Mailbox::Other(o) => std::str::from_utf8(o.as_ref()).is_ok(),
    };
    match body {
        CommandBody::Select { mailbox, .. }
        | CommandBody::Examine { mailbox, .. }
        | CommandBody::Create { mailbox }
        | CommandBody::Delete { mailbox }
        | CommandBody::Subscribe { mailbox }
        | CommandBody::Unsubscribe { mailbox }
        | CommandBody::Status { mailbox, .. }
        | CommandBody::Append { mailbox, .. }
        | CommandBody::GetQuotaRoot { mailbox }
        | CommandBody::Copy { mailbox, .. }
        | CommandBody::Move { mailbox, .. } => ok(mailbox),
        CommandBody::Rename { from, to } => ok(from) && ok(to),
        CommandBody::List { reference, .. } | CommandBody::Lsub { reference, .. } => ok(reference),
        _ => true,
    }
}

/// PREVIEW (RFC 8970 §3): the start of the message's text, white space
/// folded, at most 200 characters and 256 octets; empty when it has none.
fn preview(raw: &[u8]) -> String {
    let text = mail_parser::MessageParser::default()
        .parse(raw)
        .and_then(|m| m.body_preview(256).map(|p| p.into_owned()))
        .unwrap_or_default();
    let mut out = String::new();
    for (n, c) in text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .enumerate()
    {
        if n == 200 || out.len() + c.len_utf8() > 256 {
            break;
        }
        out.push(c);
    }
    out
}

/// Runs every rewrite made before imap-codec decodes a command (the parts
/// that need no session), for the fuzz target: on any bytes none may
/// panic.
pub fn pre_decode_rewrites(bytes: &[u8]) {
    let _ = esearch::strip_return(bytes);
    let _ = saved_reference(bytes);
    let _ = list::parse(bytes);
    let _ = append::parse(bytes);
    let _ = notify::parse(bytes);
    let _ = urlauth::parse(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        let _ = url::parse(text);
    }
    let _ = esearch::cancel_update(bytes);
    if let Some((_, words)) = esearch::strip_return(bytes) {
        let _ = esearch::parse_return(&words);
    }
    let _ = extra_items::take_fetch_extras(bytes);
    let _ = extra_items::take_status_mailboxid(bytes);
    extra_items::check_search_extras(bytes);
}

/// A basic `LIST`/`LSUB reference pattern` as decoded by imap-codec.
fn list_command(reference: &Mailbox<'_>, pattern: &ListMailbox<'_>) -> list::ListCommand {
    list::ListCommand {
        reference: match reference {
            Mailbox::Inbox => b"INBOX".to_vec(),
            Mailbox::Other(o) => o.as_ref().to_vec(),
        },
        patterns: vec![match pattern {
            ListMailbox::Token(t) => t.as_ref().to_vec(),
            ListMailbox::String(s) => s.as_ref().to_vec(),
        }],
        ..Default::default()
    }
}

/// Flags a client sets (STORE, APPEND): `\Recent` is the server's alone
/// and is left out (RFC 3501 §2.3.2).
fn flag_strings(flags: &[Flag<'_>]) -> Vec<String> {
    flags
        .iter()
        .map(|f| f.to_string())
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .collect()
}

impl Session {
    fn capabilities(&self) -> String {
        let mut c = String::from(
            "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE COMPRESS=DEFLATE UNSELECT UIDPLUS MOVE SPECIAL-USE CHILDREN STATUS=SIZE CONDSTORE QRESYNC BINARY UTF8=ACCEPT ESEARCH SEARCHRES LIST-EXTENDED LIST-STATUS SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES QUOTA QUOTA=RES-STORAGE METADATA OBJECTID SAVEDATE PREVIEW MULTIAPPEND CATENATE REPLACE ESORT CONTEXT=SEARCH CONTEXT=SORT NOTIFY URLAUTH",
        );
        if self.server.tls.is_some() && !self.conn.is_tls() {
            c.push_str(" STARTTLS");
        }
        if self.plaintext_allowed() {
            c.push_str(" AUTH=PLAIN");
        } else {
            c.push_str(" LOGINDISABLED");
        }
        c
    }

    fn plaintext_allowed(&self) -> bool {
        self.conn.is_tls() || (self.server.auth.plaintext_on_loopback && self.conn.is_loopback())
    }

    async fn flush(&mut self) {
        if !self.out.is_empty() {
            self.conn.write(&self.out);
            self.out.clear();
        }
        let _ = self.conn.flush().await;
    }

    fn tagged(&mut self, tag: &str, status: &str, text: &str) {
        let _ = write!(Str(&mut self.out), "{tag} {status} {text}\r\n");
    }

    /// When the command being read must be complete: `timeout` from now
    /// for the whole command, literals included, and before login no later
    /// than the login deadline. Deadlines, not per-read timeouts, so a
    /// client trickling bytes cannot hold a connection.
    fn command_deadline(&self) -> tokio::time::Instant {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.server.config.timeout);
        match self.state {
            State::NotAuthenticated => deadline.min(self.login_deadline),
            _ => deadline,
        }
    }

    /// Reads until a complete command is framed; answers synchronizing
    /// literals with a continuation (or a refusal). `None` at end of input.
    async fn next_message(&mut self) -> Option<Vec<u8>> {
        let deadline = self.command_deadline();
        loop {
            match self.reader.next_event() {
                Event::Command(bytes) => return Some(bytes),
                Event::Continue => {
                    self.out.extend_from_slice(b"+ Ready for literal data\r\n");
                    continue;
                }
                Event::TooBig(tag) | Event::Dropped(tag) => {
                    let tag = tag.unwrap_or_else(|| "*".into());
                    self.tagged(&tag, "NO", "[TOOBIG] Command or literal too large");
                    self.errors += 1;
                    continue;
                }
                Event::NeedMore => {}
            }
            self.flush().await;
            // With NOTIFY, changes are told as they happen (RFC 5465 §3),
            // between commands.
            let filled = match self.watch.as_mut() {
                Some(watch) if self.reader.between_commands() => {
                    tokio::select! {
                        r = self.conn.fill(deadline) => r,
                        more = watch.changed() => {
                            if more {
                                self.notify_changes().await;
                            } else {
                                self.watch = None;
                            }
                            continue;
                        }
                    }
                }
                _ => self.conn.fill(deadline).await,
            };
            match filled {
                Ok(0) => return None,
                Ok(_) => {
                    let n = self.conn.buffered().len();
                    self.reader.push(self.conn.buffered());
                    self.conn.consume(n);
                }
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::TimedOut {
                        self.out
                            .extend_from_slice(b"* BYE Autologout; idle for too long\r\n");
                    }
                    return None;
                }
            }
        }
    }

    /// Reads one raw line (continuation data: SASL responses, DONE).
    async fn raw_line(&mut self) -> Option<Vec<u8>> {
        self.next_message().await
    }

    async fn command_loop(&mut self) {
        loop {
            let Some(bytes) = self.next_message().await else {
                return;
            };
            let Some(bytes) = self.local_grammar(bytes).await else {
                if self.errors >= MAX_ERRORS {
                    self.out.extend_from_slice(b"* BYE Too many errors\r\n");
                    return;
                }
                continue;
            };
            let cmd = match CommandCodec::default().decode(&bytes) {
                Ok((b"", cmd)) => cmd,
                _ => {
                    let tag = tag_of(&bytes);
                    self.tagged(&tag, "BAD", "Syntax error in command");
                    self.errors += 1;
                    if self.errors >= MAX_ERRORS {
                        self.out.extend_from_slice(b"* BYE Too many errors\r\n");
                        return;
                    }
                    continue;
                }
            };
            if let Flow::Close = self.command(cmd).await {
                return;
            }
        }
    }

    async fn command(&mut self, cmd: Command<'_>) -> Flow {
        let tag = cmd.tag.as_ref().to_string();
        let name = cmd.body.name();
        let authenticated = !matches!(self.state, State::NotAuthenticated);
        let (store, account) = (self.server.store.clone(), self.account_id());
        let selected = matches!(self.state, State::Selected(_));
        match cmd.body {
            CommandBody::Capability => {
                let caps = self.capabilities();
                let _ = write!(Str(&mut self.out), "* CAPABILITY {caps}\r\n");
                self.tagged(&tag, "OK", "CAPABILITY completed");
            }
            CommandBody::Noop | CommandBody::Check => {
                self.sync().await;
                self.tagged(&tag, "OK", &format!("{name} completed"));
            }
            CommandBody::Logout => {
                self.out.extend_from_slice(b"* BYE Logging out\r\n");
                self.tagged(&tag, "OK", "LOGOUT completed");
                return Flow::Close;
            }
            CommandBody::StartTLS => {
                let Some(acceptor) = self.server.tls.clone() else {
                    self.tagged(&tag, "BAD", "STARTTLS not available");
                    return Flow::Continue;
                };
                if self.conn.is_tls() || authenticated {
                    self.tagged(&tag, "BAD", "STARTTLS not allowed now");
                    return Flow::Continue;
                }
                self.tagged(&tag, "OK", "Begin TLS negotiation now");
                self.flush().await;
                // Discard anything pipelined after STARTTLS (RFC 9051 §6.2.1).
                self.reader = Reader::new(self.server.config.max_command);
                if self
                    .conn
                    .start_tls(&acceptor, Duration::from_secs(60))
                    .await
                    .is_err()
                {
                    return Flow::Close;
                }
            }
            CommandBody::Login { username, password } if !authenticated => {
                let user = String::from_utf8_lossy(username.as_ref()).to_string();
                let pass = String::from_utf8_lossy(password.declassify().as_ref()).to_string();
                self.login(&tag, &user, &pass).await;
            }
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } if !authenticated => {
                if mechanism != AuthMechanism::Plain {
                    self.tagged(&tag, "NO", "[CANNOT] Only PLAIN is supported");
                    return Flow::Continue;
                }
                let plain = match initial_response {
                    Some(r) => tern_core::sasl::decode(r.declassify()),
                    None => {
                        self.out.extend_from_slice(b"+ \r\n");
                        let Some(line) = self.raw_line().await else {
                            return Flow::Close;
                        };
                        let line = String::from_utf8_lossy(&line).trim().to_string();
                        if line == "*" {
                            self.tagged(&tag, "BAD", "Authentication cancelled");
                            return Flow::Continue;
                        }
                        tern_core::sasl::decode_base64(&line)
                    }
                };
                match plain {
                    Ok(p) => self.login(&tag, &p.login, &p.password).await,
                    Err(tern_core::sasl::PlainError::Proxy) => self.tagged(
                        &tag,
                        "NO",
                        "[AUTHORIZATIONFAILED] Proxy authorization not permitted",
                    ),
                    Err(e) => self.tagged(&tag, "BAD", &format!("{e}")),
                }
            }
            CommandBody::Login { .. } | CommandBody::Authenticate { .. } => {
                self.tagged(&tag, "BAD", "Already authenticated");
            }
            CommandBody::Id { .. } => {
                self.out.extend_from_slice(b"* ID (\"name\" \"Tern\")\r\n");
                self.tagged(&tag, "OK", "ID completed");
            }
            CommandBody::Enable { capabilities } if authenticated => {
                let mut enabled = Vec::new();
                for c in capabilities.as_ref() {
                    match c {
                        CapabilityEnable::CondStore => {
                            self.condstore = true;
                            enabled.push("CONDSTORE".to_string());
                        }
                        CapabilityEnable::Other(_)
                            if c.to_string().eq_ignore_ascii_case("QRESYNC") =>
                        {
                            self.qresync = true;
                            self.condstore = true;
                            enabled.push("QRESYNC".into());
                        }
                        CapabilityEnable::Other(_)
                            if c.to_string().eq_ignore_ascii_case("IMAP4rev2") =>
                        {
                            self.rev2 = true;
                            enabled.push("IMAP4rev2".into());
                        }
                        _ => {}
                    }
                }
                if let State::Selected(v) = &mut self.state {
                    v.condstore = self.condstore;
                    v.qresync = self.qresync;
                }
                let _ = write!(Str(&mut self.out), "* ENABLED {}\r\n", enabled.join(" "));
                self.tagged(&tag, "OK", "ENABLE completed");
            }
            _ if !authenticated => {
                self.tagged(&tag, "BAD", &format!("{name} requires authentication"));
                self.errors += 1;
            }
            _ if !mailbox_names_are_utf8(&cmd.body) => {
                // RFC 9051 §5.1: names are UTF-8. Replacing bad bytes would
                // make different names clash; refused as a quoted one is.
                self.tagged(&tag, "BAD", "Mailbox name is not valid UTF-8");
                self.errors += 1;
            }
            CommandBody::Compress { .. } => {
                // RFC 4978 §3: once per connection; the OK goes out
                // uncompressed, everything after it compressed.
                if self.conn.is_deflated() {
                    self.tagged(&tag, "NO", "[COMPRESSIONACTIVE] DEFLATE is already active");
                    return Flow::Continue;
                }
                self.tagged(&tag, "OK", "DEFLATE active");
                self.flush().await;
                self.reader = Reader::new(self.server.config.max_command);
                if self.conn.start_deflate().await.is_err() {
                    return Flow::Close;
                }
            }
            CommandBody::SetMetadata {
                mailbox,
                entry_values,
            } => {
                self.set_metadata(&tag, &mailbox, entry_values.as_ref())
                    .await
            }
            CommandBody::GetMetadata {
                options,
                mailbox,
                entries,
            } => {
                self.get_metadata(&tag, &options, &mailbox, entries.as_ref())
                    .await
            }
            CommandBody::Namespace => {
                self.out
                    .extend_from_slice(b"* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
                self.tagged(&tag, "OK", "NAMESPACE completed");
            }
            CommandBody::Select {
                mailbox,
                parameters,
            } => {
                self.select(&tag, &mailbox_name(&mailbox), false, &parameters)
                    .await
            }
            CommandBody::Examine {
                mailbox,
                parameters,
            } => {
                self.select(&tag, &mailbox_name(&mailbox), true, &parameters)
                    .await
            }
            CommandBody::Create { mailbox } => {
                let name = mailbox_name(&mailbox);
                match store.create_mailbox(account, &name).await {
                    Ok(()) => {
                        // RFC 8474 §4.1: CREATE tells the new mailbox's id.
                        let code = match store.find_mailbox(account, &name, false).await {
                            Ok(m) => {
                                format!("[MAILBOXID ({})] ", extra_items::mailbox_id(m.uidvalidity))
                            }
                            Err(_) => String::new(),
                        };
                        self.tagged(&tag, "OK", &format!("{code}CREATE completed"));
                    }
                    Err(e) => self.done(&tag, "CREATE", Err(e)),
                }
            }
            CommandBody::Delete { mailbox } => {
                let r = store.delete_mailbox(account, &mailbox_name(&mailbox)).await;
                self.done(&tag, name, r);
            }
            CommandBody::Rename { from, to } => {
                let r = store
                    .rename_mailbox(account, &mailbox_name(&from), &mailbox_name(&to))
                    .await;
                self.done(&tag, name, r);
            }
            CommandBody::Subscribe { mailbox } | CommandBody::Unsubscribe { mailbox } => {
                let on = name == "SUBSCRIBE";
                let r = store.subscribe(account, &mailbox_name(&mailbox), on).await;
                self.done(&tag, name, r);
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => {
                self.list(&tag, list_command(&reference, &mailbox_wildcard), false)
                    .await
            }
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => {
                self.list(&tag, list_command(&reference, &mailbox_wildcard), true)
                    .await
            }
            CommandBody::Status {
                mailbox,
                item_names,
            } => {
                self.status(&tag, &mailbox_name(&mailbox), &item_names)
                    .await
            }
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => {
                let data = match &message {
                    LiteralOrLiteral8::Literal(l) => l.data().to_vec(),
                    LiteralOrLiteral8::Literal8(l) => l.data.to_vec(),
                };
                let message = append::Message {
                    flags: flag_strings(&flags),
                    date: date.map(|d| d.as_ref().timestamp()),
                    data: append::Data::Bytes(data),
                };
                self.append_messages(&tag, &mailbox_name(&mailbox), vec![message], None)
                    .await;
            }
            CommandBody::Idle => self.idle(&tag).await,
            CommandBody::GetQuotaRoot { mailbox } => {
                let name = mailbox_name(&mailbox);
                if self.find_mailbox(&name, false).await.is_err() {
                    self.tagged(&tag, "NO", "[NONEXISTENT] No such mailbox");
                    return Flow::Continue;
                }
                self.out.extend_from_slice(b"* QUOTAROOT ");
                view::name(&mut self.out, &name);
                self.out.extend_from_slice(b" \"\"\r\n");
                self.quota_line().await;
                self.tagged(&tag, "OK", "GETQUOTAROOT completed");
            }
            CommandBody::GetQuota { root } => {
                if !root.as_ref().is_empty() {
                    self.tagged(&tag, "NO", "[NONEXISTENT] No such quota root");
                    return Flow::Continue;
                }
                self.quota_line().await;
                self.tagged(&tag, "OK", "GETQUOTA completed");
            }
            CommandBody::SetQuota { .. } => {
                self.tagged(
                    &tag,
                    "NO",
                    "[NOPERM] Quotas are set by the administrator (tern account)",
                );
            }
            _ if !selected => {
                self.tagged(&tag, "BAD", &format!("{name} requires a selected mailbox"));
                self.errors += 1;
            }
            CommandBody::Close | CommandBody::Unselect => {
                let close = matches!(cmd.body, CommandBody::Close);
                if close
                    && let State::Selected(v) = &self.state
                    && !v.read_only
                {
                    let rows = v.rows(&self.server.store).await.unwrap_or_default();
                    let uids: Vec<u32> = rows
                        .iter()
                        .filter(|r| r.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
                        .map(|r| r.uid)
                        .collect();
                    let id = v.mailbox.id;
                    if let Err(e) = self.server.store.expunge_uids(id, &uids).await {
                        self.tagged(&tag, "NO", &format!("{} {e}", store_err(&e)));
                        return Flow::Continue;
                    }
                }
                self.state = State::Authenticated;
                self.saved.clear();
                self.contexts.clear();
                self.tagged(&tag, "OK", &format!("{name} completed"));
            }
            CommandBody::Expunge => self.expunge(&tag, None).await,
            CommandBody::ExpungeUid { sequence_set } => {
                self.expunge(&tag, Some(sequence_set)).await
            }
            CommandBody::Search { criteria, uid, .. } => {
                let by_modseq = criteria.as_ref().iter().any(search::uses_modseq);
                if by_modseq {
                    self.enable_condstore();
                }
                let State::Selected(v) = &self.state else {
                    return Flow::Continue;
                };
                let found = search::run(criteria.as_ref(), v, &self.server.store).await;
                let ids: Vec<u32> = found
                    .iter()
                    .map(|(seq, row)| if uid { row.uid } else { *seq })
                    .collect();
                // RFC 7162 §3.1.5: a search by MODSEQ answers with the highest
                // MODSEQ of the messages found.
                let modseq = by_modseq
                    .then(|| found.iter().map(|(_, r)| r.modseq).max())
                    .flatten();
                let with_modseq = |line: String, plain: bool| match modseq {
                    Some(m) => {
                        let body = line.trim_end_matches("\r\n");
                        if plain {
                            format!("{body} (MODSEQ {m})\r\n")
                        } else {
                            format!("{body} MODSEQ {m}\r\n")
                        }
                    }
                    None => line,
                };
                // IMAP4rev2 answers every SEARCH with ESEARCH (RFC 9051 §6.4.4).
                let words = self.esearch.take().or_else(|| self.rev2.then(Vec::new));
                match words.map(|w| esearch::parse_return(&w)) {
                    Some(Err(why)) => {
                        self.tagged(&tag, "BAD", &why);
                        return Flow::Continue;
                    }
                    Some(Ok(opts)) => {
                        if opts.save {
                            self.saved = found.iter().map(|(_, row)| row.uid).collect();
                        }
                        if opts.update {
                            let result = found.iter().map(|(_, r)| r.uid).collect();
                            if !self.add_context(&tag, uid, criteria.into_static(), None, result) {
                                return Flow::Continue;
                            }
                        }
                        // SAVE alone answers nothing (RFC 5182 §2.1).
                        let only_save = opts.save
                            && !(opts.min || opts.max || opts.count || opts.all)
                            && opts.partial.is_none();
                        if !only_save {
                            let line =
                                with_modseq(esearch::line(&tag, uid, &opts, &ids, false), false);
                            self.out.extend_from_slice(line.as_bytes());
                        }
                    }
                    None => {
                        let mut line = String::from("* SEARCH");
                        for id in &ids {
                            let _ = write!(line, " {id}");
                        }
                        line.push_str("\r\n");
                        let line = with_modseq(line, true);
                        self.out.extend_from_slice(line.as_bytes());
                    }
                }
                if uid {
                    self.sync().await;
                }
                self.tagged(&tag, "OK", "SEARCH completed");
            }
            CommandBody::Sort {
                sort_criteria,
                search_criteria,
                uid,
                ..
            } => {
                let State::Selected(v) = &self.state else {
                    return Flow::Continue;
                };
                let found = search::run(search_criteria.as_ref(), v, &self.server.store).await;
                let mut facts = self.facts(found).await;
                sort::sort(&mut facts, sort_criteria.as_ref());
                let ids: Vec<u32> = facts
                    .iter()
                    .map(|f| if uid { f.uid } else { f.seq })
                    .collect();
                match self.esearch.take().map(|w| esearch::parse_return(&w)) {
                    // ESORT (RFC 5267 §3): the answer as ESEARCH, in order.
                    Some(Ok(opts)) => {
                        if opts.update {
                            let result = facts.iter().map(|f| f.uid).collect();
                            let (criteria, sort) = (
                                search_criteria.into_static(),
                                Some(sort_criteria.into_static()),
                            );
                            if !self.add_context(&tag, uid, criteria, sort, result) {
                                return Flow::Continue;
                            }
                        }
                        let line = esearch::line(&tag, uid, &opts, &ids, true);
                        self.out.extend_from_slice(line.as_bytes());
                    }
                    Some(Err(why)) => {
                        self.tagged(&tag, "BAD", &why);
                        return Flow::Continue;
                    }
                    None => {
                        let mut line = String::from("* SORT");
                        for id in &ids {
                            let _ = write!(line, " {id}");
                        }
                        line.push_str("\r\n");
                        self.out.extend_from_slice(line.as_bytes());
                    }
                }
                self.tagged(&tag, "OK", "SORT completed");
            }
            CommandBody::Thread {
                algorithm,
                search_criteria,
                uid,
                ..
            } => {
                let State::Selected(v) = &self.state else {
                    return Flow::Continue;
                };
                let found = search::run(search_criteria.as_ref(), v, &self.server.store).await;
                let facts = self.facts(found).await;
                let id = move |f: &sort::Facts| if uid { f.uid } else { f.seq };
                let threads = match algorithm {
                    ThreadingAlgorithm::OrderedSubject => sort::ordered_subject(facts, id),
                    ThreadingAlgorithm::References => sort::references(facts, id),
                    _ => {
                        self.tagged(&tag, "BAD", "Unsupported threading algorithm");
                        return Flow::Continue;
                    }
                };
                let _ = write!(
                    Str(&mut self.out),
                    "* THREAD {}\r\n",
                    sort::format_threads(&threads)
                );
                self.tagged(&tag, "OK", "THREAD completed");
            }
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => {
                let changed_since = modifiers.iter().find_map(|m| match m {
                    FetchModifier::ChangedSince(m) => Some(m.get()),
                    _ => None,
                });
                let vanished = modifiers
                    .iter()
                    .any(|m| matches!(m, FetchModifier::Vanished));
                if vanished && (!uid || !self.qresync || changed_since.is_none()) {
                    self.tagged(
                        &tag,
                        "BAD",
                        "VANISHED needs UID FETCH, CHANGEDSINCE and QRESYNC",
                    );
                    return Flow::Continue;
                }
                if let (true, Some(since), State::Selected(v)) =
                    (vanished, changed_since, &self.state)
                {
                    let gone: Vec<u32> = self
                        .server
                        .store
                        .vanished_since(v.mailbox.id, since)
                        .await
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|u| in_set(&sequence_set, *u, v.max_uid().max(*u)))
                        .collect();
                    if !gone.is_empty() {
                        let _ = write!(
                            Str(&mut self.out),
                            "* VANISHED (EARLIER) {}\r\n",
                            compress(&gone)
                        );
                    }
                }
                let asks_modseq = match &macro_or_item_names {
                    MacroOrMessageDataItemNames::MessageDataItemNames(items) => items
                        .iter()
                        .any(|i| matches!(i, MessageDataItemName::ModSeq)),
                    MacroOrMessageDataItemNames::Macro(_) => false,
                };
                if asks_modseq || changed_since.is_some() {
                    self.enable_condstore();
                }
                self.fetch(&tag, &sequence_set, macro_or_item_names, uid, changed_since)
                    .await
            }
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => {
                let unchanged_since = modifiers
                    .iter()
                    .map(|imap_codec::imap_types::command::StoreModifier::UnchangedSince(u)| *u)
                    .next();
                if unchanged_since.is_some() {
                    self.enable_condstore();
                }
                self.store(
                    &tag,
                    &sequence_set,
                    kind,
                    response,
                    &flag_strings(&flags),
                    uid,
                    unchanged_since,
                )
                .await
            }
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.copy(&tag, &sequence_set, &mailbox_name(&mailbox), uid, false)
                    .await
            }
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => {
                self.copy(&tag, &sequence_set, &mailbox_name(&mailbox), uid, true)
                    .await
            }
            _ => {
                self.tagged(&tag, "BAD", &format!("{name} is not supported"));
            }
        }
        Flow::Continue
    }

    /// Replaces a `$` argument (RFC 5182) with the saved result: UIDs in UID
    /// commands, sequence numbers otherwise. An empty result becomes a
    /// number no message has. Only a bare `$` where a sequence set may
    /// stand is one: not inside a quoted string, nor the string argument of
    /// a search key (`SUBJECT $` searches for "$").
    fn substitute_saved(&self, bytes: Vec<u8>) -> Vec<u8> {
        let line_end = bytes
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(bytes.len());
        let line = &bytes[..line_end];
        let Some(at) = saved_reference(line) else {
            return bytes;
        };
        let is_uid = line.to_ascii_uppercase().windows(5).any(|w| w == b" UID ");
        let ids: Vec<u32> = match &self.state {
            State::Selected(v) if !is_uid => {
                self.saved.iter().filter_map(|u| v.seq_of(*u)).collect()
            }
            _ => self.saved.clone(),
        };
        let set = if ids.is_empty() {
            u32::MAX.to_string()
        } else {
            compress(&ids)
        };
        let mut out = line[..at].to_vec();
        out.extend_from_slice(set.as_bytes());
        out.extend_from_slice(&bytes[at + 1..]);
        out
    }

    /// Sort/thread facts of search results (header blocks in one query).
    async fn facts(&self, found: Vec<(u32, tern_store::MessageRow)>) -> Vec<sort::Facts> {
        let State::Selected(v) = &self.state else {
            return vec![];
        };
        let (Some(first), Some(last)) = (
            found.iter().map(|f| f.1.uid).min(),
            found.iter().map(|f| f.1.uid).max(),
        ) else {
            return vec![];
        };
        let headers: std::collections::HashMap<u32, Vec<u8>> = self
            .server
            .store
            .headers_in(v.mailbox.id, first, last)
            .await
            .unwrap_or_default()
            .into_iter()
            .collect();
        found
            .iter()
            .map(|(seq, row)| {
                sort::facts(
                    *seq,
                    row,
                    headers.get(&row.uid).map(Vec::as_slice).unwrap_or_default(),
                )
            })
            .collect()
    }

    /// `* QUOTA "" (STORAGE used limit)` in KiB (RFC 9208 §5.1).
    async fn quota_line(&mut self) {
        let login = self
            .account
            .as_ref()
            .map(|a| a.1.clone())
            .unwrap_or_default();
        let (used, quota) = match tern_core::Address::parse(&login) {
            Ok(a) => match self.server.store.resolve(&a, false).await {
                Ok(tern_store::Recipient::Local(l)) => (l.used, l.quota),
                _ => (0, 0),
            },
            Err(_) => (0, 0),
        };
        if quota == 0 {
            self.out.extend_from_slice(b"* QUOTA \"\" ()\r\n");
        } else {
            let _ = write!(
                Str(&mut self.out),
                "* QUOTA \"\" (STORAGE {} {})\r\n",
                used.div_ceil(1024),
                quota / 1024
            );
        }
    }

    fn account_id(&self) -> AccountId {
        self.account.as_ref().map(|a| a.0).unwrap_or_default()
    }

    fn done(&mut self, tag: &str, what: &str, r: Result<(), StoreError>) {
        match r {
            Ok(()) => self.tagged(tag, "OK", &format!("{what} completed")),
            Err(e) => self.tagged(tag, "NO", &format!("{} {e}", store_err(&e))),
        }
    }

    async fn login(&mut self, tag: &str, user: &str, pass: &str) {
        if !self.plaintext_allowed() {
            self.tagged(
                tag,
                "NO",
                "[PRIVACYREQUIRED] Use STARTTLS or port 993 first",
            );
            return;
        }
        let ip = self.conn.peer.ip();
        let login = user.trim().to_lowercase();
        let store = &self.server.store;
        let verdict = self
            .server
            .guard
            .login("imap", ip, &login, || store.authenticate(&login, pass))
            .await;
        match verdict {
            Login::Success(id) => {
                tracing::info!(client = %ip, user = %login, tls = self.conn.is_tls(), "imap: login");
                self.account = Some((id, login));
                self.state = State::Authenticated;
                let caps = self.capabilities();
                self.tagged(tag, "OK", &format!("[CAPABILITY {caps}] Logged in"));
            }
            Login::Invalid => {
                self.tagged(tag, "NO", "[AUTHENTICATIONFAILED] Invalid credentials");
            }
            Login::Refused => {
                self.tagged(
                    tag,
                    "NO",
                    "[UNAVAILABLE] Too many failed logins, try again later",
                );
            }
            Login::Error(_) => {
                self.tagged(tag, "NO", "[UNAVAILABLE] Temporary failure");
            }
        }
    }

    async fn find_mailbox(&self, name: &str, counters: bool) -> Result<MailboxRow, StoreError> {
        self.server
            .store
            .find_mailbox(self.account_id(), name, counters)
            .await
    }

    async fn select(&mut self, tag: &str, name: &str, read_only: bool, params: &[SelectParameter]) {
        if params
            .iter()
            .any(|p| matches!(p, SelectParameter::QResync { .. }))
            && !self.qresync
        {
            self.tagged(tag, "BAD", "ENABLE QRESYNC first");
            return;
        }
        if params
            .iter()
            .any(|p| matches!(p, SelectParameter::CondStore))
        {
            self.condstore = true;
        }
        self.state = State::Authenticated;
        self.saved.clear();
        self.contexts.clear();
        let mailbox = match self.find_mailbox(name, false).await {
            Ok(m) => m,
            Err(e) => {
                self.tagged(tag, "NO", &format!("{} {e}", store_err(&e)));
                return;
            }
        };
        let mut view = match View::open(&self.server.store, mailbox, read_only).await {
            Ok(v) => v,
            Err(e) => {
                self.tagged(tag, "NO", &format!("{} {e}", store_err(&e)));
                return;
            }
        };
        view.condstore = self.condstore;
        view.qresync = self.qresync;
        view.recent.show = !self.rev2;
        let unseen = if self.rev2 {
            None
        } else {
            view.first_unseen(&self.server.store).await.ok().flatten()
        };
        let m = &view.mailbox;
        let o = &mut self.out;
        view.flag_lines(o);
        let _ = write!(Str(o), "* {} EXISTS\r\n", view.len());
        if !self.rev2 {
            let _ = write!(Str(o), "* {} RECENT\r\n", view.recent_count());
            if let Some(seq) = unseen {
                let _ = write!(Str(o), "* OK [UNSEEN {seq}] First unseen\r\n");
            }
        }
        let _ = write!(
            Str(o),
            "* OK [UIDVALIDITY {}] UIDs valid\r\n",
            m.uidvalidity
        );
        let _ = write!(
            Str(o),
            "* OK [UIDNEXT {}] Predicted next UID\r\n",
            m.uidnext
        );
        let _ = write!(
            Str(o),
            "* OK [HIGHESTMODSEQ {}] Highest\r\n",
            m.highest_modseq
        );
        let _ = write!(
            Str(o),
            "* OK [MAILBOXID ({})] Ok\r\n",
            extra_items::mailbox_id(m.uidvalidity)
        );
        // RFC 9051 §6.3.2: IMAP4rev2 names the mailbox in a LIST response;
        // RFC 3501 has none, and IMAP4rev1 clients take an untagged LIST
        // for the answer to their next LIST (Python's imaplib does).
        if self.rev2 {
            let _ = write!(Str(o), "* LIST () \"/\" ");
            view::name(o, &m.name);
            o.extend_from_slice(b"\r\n");
        }
        let resync = params.iter().find_map(|p| match p {
            SelectParameter::QResync {
                uid_validity,
                mod_sequence_value,
                known_uids,
                ..
            } => Some((
                uid_validity.get(),
                mod_sequence_value.get(),
                known_uids.clone(),
            )),
            _ => None,
        });
        if let Some((validity, modseq, known)) = resync
            && validity == view.mailbox.uidvalidity
        {
            let id = view.mailbox.id;
            let max = u32::MAX;
            let vanished: Vec<u32> = self
                .server
                .store
                .vanished_since(id, modseq)
                .await
                .unwrap_or_default()
                .into_iter()
                .filter(|u| known.as_ref().is_none_or(|k| in_set(k, *u, max)))
                .collect();
            if !vanished.is_empty() {
                let _ = write!(
                    Str(&mut self.out),
                    "* VANISHED (EARLIER) {}\r\n",
                    compress(&vanished)
                );
            }
            for r in self
                .server
                .store
                .changed_since(id, modseq)
                .await
                .unwrap_or_default()
            {
                if let Some(seq) = view.seq_of(r.uid) {
                    let _ = write!(Str(&mut self.out), "* {seq} FETCH (UID {} ", r.uid);
                    view.recent.write_flags(&mut self.out, r.uid, &r.flags);
                    let _ = write!(Str(&mut self.out), " MODSEQ ({}))\r\n", r.modseq);
                }
            }
        }
        let code = if read_only {
            "[READ-ONLY]"
        } else {
            "[READ-WRITE]"
        };
        self.state = State::Selected(Box::new(view));
        self.tagged(
            tag,
            "OK",
            &format!(
                "{code} {} completed",
                if read_only { "EXAMINE" } else { "SELECT" }
            ),
        );
    }

    /// RFC 7162 §3.1: a CONDSTORE-enabling command (FETCH with MODSEQ or
    /// CHANGEDSINCE, SEARCH with MODSEQ, STORE with UNCHANGEDSINCE) turns
    /// CONDSTORE on for the session; with a mailbox selected the first one
    /// is answered with its HIGHESTMODSEQ.
    fn enable_condstore(&mut self) {
        if self.condstore {
            return;
        }
        self.condstore = true;
        if let State::Selected(v) = &mut self.state {
            v.condstore = true;
            let _ = write!(
                Str(&mut self.out),
                "* OK [HIGHESTMODSEQ {}] Highest\r\n",
                v.highest_modseq()
            );
        }
    }

    /// The items of a STATUS answer (RFC 9051 §6.3.11; RECENT of RFC 3501
    /// §6.3.10), for STATUS and LIST-STATUS; `m` read with its counters.
    async fn status_parts(&self, m: &MailboxRow, items: &[&str]) -> String {
        let mut parts = Vec::new();
        for item in items {
            let value = match *item {
                "MESSAGES" => u64::from(m.messages),
                "UIDNEXT" => u64::from(m.uidnext),
                "UIDVALIDITY" => u64::from(m.uidvalidity),
                "UNSEEN" => u64::from(m.unseen),
                "SIZE" => m.size,
                "MAILBOXID" => {
                    parts.push(format!(
                        "MAILBOXID ({})",
                        extra_items::mailbox_id(m.uidvalidity)
                    ));
                    continue;
                }
                "HIGHESTMODSEQ" => m.highest_modseq,
                "RECENT" => self
                    .server
                    .store
                    .recent(m.id)
                    .await
                    .map_or(0, |r| u64::from(r.0)),
                "DELETED" => self.server.store.messages(m.id).await.map_or(0, |rows| {
                    rows.iter()
                        .filter(|r| r.flags.iter().any(|f| f == "\\Deleted"))
                        .count() as u64
                }),
                _ => continue,
            };
            parts.push(format!("{item} {value}"));
        }
        parts.join(" ")
    }

    async fn status(&mut self, tag: &str, name: &str, items: &[StatusDataItemName]) {
        let m = match self.find_mailbox(name, true).await {
            Ok(m) => m,
            Err(e) => {
                self.tagged(tag, "NO", &format!("{} {e}", store_err(&e)));
                return;
            }
        };
        let names: Vec<&str> = items
            .iter()
            .filter_map(|i| match i {
                StatusDataItemName::Messages => Some("MESSAGES"),
                StatusDataItemName::Recent => Some("RECENT"),
                StatusDataItemName::UidNext => Some("UIDNEXT"),
                StatusDataItemName::UidValidity => Some("UIDVALIDITY"),
                StatusDataItemName::Unseen => Some("UNSEEN"),
                StatusDataItemName::Size => Some("SIZE"),
                StatusDataItemName::HighestModSeq => Some("HIGHESTMODSEQ"),
                StatusDataItemName::Deleted => Some("DELETED"),
                _ => None,
            })
            .collect();
        let mut names = names;
        let mailboxid = self.status_mailboxid.take();
        if mailboxid == Some(true) {
            names.clear();
        }
        if mailboxid.is_some() {
            names.push("MAILBOXID");
        }
        let parts = self.status_parts(&m, &names).await;
        self.out.extend_from_slice(b"* STATUS ");
        view::name(&mut self.out, &m.name);
        let _ = write!(Str(&mut self.out), " ({parts})\r\n");
        self.tagged(tag, "OK", "STATUS completed");
    }

    /// Brings the selected view up to date (untagged EXISTS/EXPUNGE/FETCH),
    /// and the searches kept up to date (RFC 5267 §4.3).
    async fn sync(&mut self) {
        if let State::Selected(v) = &mut self.state
            && let Err(e) = v.sync(&self.server.store, &mut self.out).await
        {
            tracing::warn!(error = %e, "imap: mailbox sync failed");
        }
        if !self.contexts.is_empty() {
            self.update_contexts().await;
        }
    }

    /// Resolves a sequence set to (seq, uid) pairs of the view.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Vec<(u32, u32)> {
        let State::Selected(v) = &self.state else {
            return vec![];
        };
        let (n, max_uid) = (v.len() as u32, v.max_uid());
        v.uids()
            .iter()
            .enumerate()
            .filter(|(i, u)| {
                if uid {
                    in_set(set, **u, max_uid)
                } else {
                    in_set(set, *i as u32 + 1, n)
                }
            })
            .map(|(i, u)| (i as u32 + 1, *u))
            .collect()
    }

    async fn expunge(&mut self, tag: &str, uids: Option<SequenceSet>) {
        let State::Selected(v) = &self.state else {
            return;
        };
        if v.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return;
        }
        let max_uid = v.max_uid();
        let rows = match v.rows(&self.server.store).await {
            Ok(r) => r,
            Err(e) => {
                self.tagged(tag, "NO", &format!("{} {e}", store_err(&e)));
                return;
            }
        };
        let targets: Vec<u32> = rows
            .iter()
            .filter(|r| r.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
            .filter(|r| uids.as_ref().is_none_or(|s| in_set(s, r.uid, max_uid)))
            .map(|r| r.uid)
            .collect();
        let id = v.mailbox.id;
        match self.server.store.expunge_uids(id, &targets).await {
            Ok(()) => {
                self.sync().await;
                self.tagged(tag, "OK", "EXPUNGE completed");
            }
            Err(e) => self.tagged(tag, "NO", &format!("{} {e}", store_err(&e))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: &[String],
        uid: bool,
        unchanged_since: Option<u64>,
    ) {
        let targets = self.resolve(set, uid);
        let State::Selected(v) = &self.state else {
            return;
        };
        if v.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return;
        }
        let mode = match kind {
            StoreType::Add => FlagMode::Add,
            StoreType::Remove => FlagMode::Remove,
            StoreType::Replace => FlagMode::Replace,
        };
        let id = v.mailbox.id;
        let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
        let updates = match self
            .server
            .store
            .set_flags(id, &uids, mode, flags, unchanged_since)
            .await
        {
            Ok(u) => u,
            Err(e) => {
                self.tagged(tag, "NO", &format!("{} {e}", store_err(&e)));
                return;
            }
        };
        let condstore = self.condstore || unchanged_since.is_some();
        let mut failed = Vec::new();
        if let State::Selected(v) = &mut self.state {
            for u in &updates {
                let seq = v.seq_of(u.uid).unwrap_or(0);
                if !u.applied {
                    failed.push(if uid { u.uid } else { seq });
                    continue;
                }
                v.own_change(u.modseq);
                v.announce(&u.flags, &mut self.out);
                if response == StoreResponse::Answer || condstore {
                    let _ = write!(Str(&mut self.out), "* {seq} FETCH (");
                    // RFC 7162 §3.2: with CONDSTORE, flag-change FETCHes
                    // carry UID and MODSEQ.
                    if uid || condstore {
                        let _ = write!(Str(&mut self.out), "UID {} ", u.uid);
                    }
                    if response == StoreResponse::Answer {
                        v.recent.write_flags(&mut self.out, u.uid, &u.flags);
                        if condstore {
                            self.out.push(b' ');
                        }
                    }
                    if condstore {
                        let _ = write!(Str(&mut self.out), "MODSEQ ({})", u.modseq);
                    }
                    self.out.extend_from_slice(b")\r\n");
                }
            }
        }
        if uid {
            self.sync().await;
        }
        if failed.is_empty() {
            self.tagged(tag, "OK", "STORE completed");
        } else {
            let list: Vec<String> = failed.iter().map(u32::to_string).collect();
            self.tagged(
                tag,
                "OK",
                &format!("[MODIFIED {}] Conditional STORE failed", list.join(",")),
            );
        }
    }

    async fn copy(&mut self, tag: &str, set: &SequenceSet, dest: &str, uid: bool, remove: bool) {
        let targets = self.resolve(set, uid);
        let what = if remove { "MOVE" } else { "COPY" };
        let State::Selected(v) = &self.state else {
            return;
        };
        if remove && v.read_only {
            self.tagged(tag, "NO", "[READ-ONLY] Mailbox is read-only");
            return;
        }
        let from = v.mailbox.id;
        let to = match self.find_mailbox(dest, false).await {
            Ok(m) => m,
            Err(_) => {
                self.tagged(tag, "NO", "[TRYCREATE] No such mailbox");
                return;
            }
        };
        let uids: Vec<u32> = targets.iter().map(|t| t.1).collect();
        match self.server.store.copy(from, &uids, to.id, remove).await {
            Ok((uidvalidity, pairs)) => {
                let code = if pairs.is_empty() {
                    String::new()
                } else {
                    let src: Vec<String> = pairs.iter().map(|p| p.0.to_string()).collect();
                    let dst: Vec<String> = pairs.iter().map(|p| p.1.to_string()).collect();
                    format!(
                        "[COPYUID {uidvalidity} {} {}] ",
                        src.join(","),
                        dst.join(",")
                    )
                };
                if remove {
                    // RFC 6851 §4.3: COPYUID goes in an untagged OK before the expunges.
                    if !code.is_empty() {
                        let _ = write!(Str(&mut self.out), "* OK {code}Moved\r\n");
                    }
                    self.sync().await;
                    self.tagged(tag, "OK", &format!("{what} completed"));
                } else {
                    if uid {
                        self.sync().await;
                    }
                    self.tagged(tag, "OK", &format!("{code}{what} completed"));
                }
            }
            Err(e) => self.tagged(tag, "NO", &format!("{} {e}", store_err(&e))),
        }
    }

    async fn fetch(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        items: MacroOrMessageDataItemNames<'_>,
        uid: bool,
        changed_since: Option<u64>,
    ) {
        let mut items = match items {
            MacroOrMessageDataItemNames::Macro(m) => {
                use MessageDataItemName::*;
                match m {
                    Macro::Fast => vec![Flags, InternalDate, Rfc822Size],
                    Macro::Full => vec![Flags, InternalDate, Rfc822Size, Envelope, Body],
                    _ => vec![Flags, InternalDate, Rfc822Size, Envelope],
                }
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(v) => v,
        };
        if uid && !items.iter().any(|i| matches!(i, MessageDataItemName::Uid)) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let targets = self.resolve(set, uid);
        let (read_only, mailbox_id, condstore, recent) = match &self.state {
            State::Selected(v) => (
                v.read_only,
                v.mailbox.id,
                v.condstore || changed_since.is_some(),
                v.recent.clone(),
            ),
            _ => return,
        };
        let needs_meta = items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::Envelope
                    | MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
                    | MessageDataItemName::BodyExt {
                        section: Some(_),
                        ..
                    }
                    | MessageDataItemName::Rfc822Header
                    | MessageDataItemName::Rfc822Text
            )
        });
        let needs_raw = items.iter().any(|i| {
            matches!(
                i,
                MessageDataItemName::Body
                    | MessageDataItemName::BodyStructure
                    | MessageDataItemName::BodyExt { .. }
                    | MessageDataItemName::Rfc822
                    | MessageDataItemName::Rfc822Header
                    | MessageDataItemName::Rfc822Text
                    | MessageDataItemName::Binary { .. }
                    | MessageDataItemName::BinarySize { .. }
            )
        });
        let extras = std::mem::take(&mut self.fetch_extras);
        let needs_raw = needs_raw || extras.preview;
        let sets_seen = !read_only
            && items.iter().any(|i| {
                matches!(
                    i,
                    MessageDataItemName::BodyExt { peek: false, .. }
                        | MessageDataItemName::Rfc822
                        | MessageDataItemName::Rfc822Text
                        | MessageDataItemName::Binary { peek: false, .. }
                )
            });
        // Messages whose body could not be read (their FETCH is left out).
        let mut unavailable = 0usize;
        // In chunks: `1:*` on a huge mailbox never holds more than a chunk of
        // rows, and output is flushed as it grows.
        for chunk in targets.chunks(FETCH_CHUNK) {
            // Targets are in sequence order, hence ascending UIDs, like the rows.
            let mut rows: Vec<tern_store::MessageRow> = match &self.state {
                State::Selected(v) => {
                    let uids: Vec<u32> = chunk.iter().map(|t| t.1).collect();
                    match v.rows_for(&self.server.store, &uids).await {
                        Ok(r) => r,
                        Err(e) => {
                            self.tagged(tag, "NO", &format!("{} {e}", store_err(&e)));
                            return;
                        }
                    }
                }
                _ => return,
            };
            let mut seen_now = std::collections::HashSet::new();
            if sets_seen {
                let unseen: Vec<u32> = rows
                    .iter()
                    .filter(|r| !r.flags.iter().any(|f| f == "\\Seen"))
                    .map(|r| r.uid)
                    .collect();
                if !unseen.is_empty()
                    && let Ok(updates) = self
                        .server
                        .store
                        .set_flags(
                            mailbox_id,
                            &unseen,
                            FlagMode::Add,
                            &["\\Seen".to_string()],
                            None,
                        )
                        .await
                    && let State::Selected(v) = &mut self.state
                {
                    for u in updates {
                        v.own_change(u.modseq);
                        seen_now.insert(u.uid);
                        if let Ok(i) = rows.binary_search_by_key(&u.uid, |r| r.uid) {
                            rows[i].flags = u.flags;
                            rows[i].modseq = u.modseq;
                        }
                    }
                }
            }
            let saved_dates: std::collections::HashMap<u32, Option<i64>> =
                match (extras.savedate, chunk.first(), chunk.last()) {
                    (true, Some(&(_, first)), Some(&(_, last))) => self
                        .server
                        .store
                        .saved_dates(mailbox_id, first, last)
                        .await
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                    _ => Default::default(),
                };
            let mut next = 0;
            let flags_requested = items
                .iter()
                .any(|i| matches!(i, MessageDataItemName::Flags));
            for &(seq, uid) in chunk {
                // Expunged by another session since our last sync: nothing to send.
                while next < rows.len() && rows[next].uid < uid {
                    next += 1;
                }
                if next >= rows.len() || rows[next].uid != uid {
                    continue;
                }
                let row = std::mem::take(&mut rows[next]);
                if changed_since.is_some_and(|m| row.modseq <= m) {
                    continue;
                }
                let meta = if needs_meta {
                    self.server.store.read_meta(row.blob).await.ok()
                } else {
                    None
                };
                let raw = if needs_raw {
                    match self.server.store.read_blob(row.blob).await {
                        Ok(raw) => raw,
                        Err(e) => {
                            // Never an empty body in place of the real one:
                            // the client would cache it.
                            tracing::error!(uid = row.uid, error = %e, "IMAP FETCH: message body unavailable");
                            unavailable += 1;
                            continue;
                        }
                    }
                } else {
                    Vec::new()
                };
                let meta = meta.unwrap_or_else(|| {
                    if needs_meta {
                        tern_store::meta::analyze(&raw)
                    } else {
                        Default::default()
                    }
                });
                let o = &mut self.out;
                let _ = write!(Str(o), "* {seq} FETCH (");
                let mut first = true;
                let mut sep = |o: &mut Vec<u8>| {
                    if !first {
                        o.push(b' ');
                    }
                    first = false;
                };
                for item in &items {
                    match item {
                        MessageDataItemName::Uid => {
                            sep(o);
                            let _ = write!(Str(o), "UID {}", row.uid);
                        }
                        MessageDataItemName::Flags => {
                            sep(o);
                            recent.write_flags(o, row.uid, &row.flags);
                        }
                        MessageDataItemName::InternalDate => {
                            sep(o);
                            let _ = write!(
                                Str(o),
                                "INTERNALDATE {}",
                                write::internal_date(row.internaldate)
                            );
                        }
                        MessageDataItemName::Rfc822Size => {
                            sep(o);
                            let _ = write!(Str(o), "RFC822.SIZE {}", row.size);
                        }
                        MessageDataItemName::Envelope => {
                            sep(o);
                            o.extend_from_slice(b"ENVELOPE ");
                            write::envelope(o, &meta);
                        }
                        MessageDataItemName::Body => {
                            sep(o);
                            o.extend_from_slice(b"BODY ");
                            write::body_structure(o, &meta, &raw, 0, false);
                        }
                        MessageDataItemName::BodyStructure => {
                            sep(o);
                            o.extend_from_slice(b"BODYSTRUCTURE ");
                            write::body_structure(o, &meta, &raw, 0, true);
                        }
                        MessageDataItemName::BodyExt {
                            section, partial, ..
                        } => {
                            sep(o);
                            let bytes = section::partial(
                                section::extract(&raw, &meta, section.as_ref()),
                                partial.to_owned(),
                            );
                            let _ =
                                write!(Str(o), "BODY[{}]", section::section_name(section.as_ref()));
                            if let Some((origin, _)) = partial {
                                let _ = write!(Str(o), "<{origin}>");
                            }
                            o.push(b' ');
                            write::literal(o, &bytes);
                        }
                        MessageDataItemName::Binary {
                            section, partial, ..
                        } => {
                            sep(o);
                            let names: Vec<String> =
                                section.iter().map(|n| n.to_string()).collect();
                            let bytes =
                                section::partial(binary(&raw, &section[..]), partial.to_owned());
                            let _ = write!(Str(o), "BINARY[{}]", names.join("."));
                            if let Some((origin, _)) = partial {
                                let _ = write!(Str(o), "<{origin}>");
                            }
                            o.push(b' ');
                            write::binary_literal(o, &bytes);
                        }
                        MessageDataItemName::BinarySize { section } => {
                            sep(o);
                            let names: Vec<String> =
                                section.iter().map(|n| n.to_string()).collect();
                            let _ = write!(
                                Str(o),
                                "BINARY.SIZE[{}] {}",
                                names.join("."),
                                binary(&raw, &section[..]).len()
                            );
                        }
                        MessageDataItemName::Rfc822 => {
                            sep(o);
                            o.extend_from_slice(b"RFC822 ");
                            write::literal(o, &raw);
                        }
                        MessageDataItemName::Rfc822Header => {
                            sep(o);
                            o.extend_from_slice(b"RFC822.HEADER ");
                            let end = (meta.body_offset as usize).min(raw.len());
                            write::literal(o, &raw[..end]);
                        }
                        MessageDataItemName::Rfc822Text => {
                            sep(o);
                            o.extend_from_slice(b"RFC822.TEXT ");
                            let start = (meta.body_offset as usize).min(raw.len());
                            write::literal(o, &raw[start..]);
                        }
                        MessageDataItemName::ModSeq => {
                            sep(o);
                            let _ = write!(Str(o), "MODSEQ ({})", row.modseq);
                        }
                    }
                }
                if seen_now.contains(&row.uid) && !flags_requested {
                    sep(o);
                    recent.write_flags(o, row.uid, &row.flags);
                }
                if condstore
                    && !items
                        .iter()
                        .any(|i| matches!(i, MessageDataItemName::ModSeq))
                {
                    sep(o);
                    let _ = write!(Str(o), "MODSEQ ({})", row.modseq);
                }
                if extras.emailid {
                    sep(o);
                    let _ = write!(Str(o), "EMAILID ({})", extra_items::email_id(row.blob));
                }
                if extras.threadid {
                    // RFC 8474 §5.2: a server without thread identifiers
                    // answers NIL.
                    sep(o);
                    o.extend_from_slice(b"THREADID NIL");
                }
                if extras.savedate {
                    sep(o);
                    let when = saved_dates
                        .get(&row.uid)
                        .copied()
                        .flatten()
                        .unwrap_or(row.internaldate);
                    let _ = write!(Str(o), "SAVEDATE \"{}\"", write::internal_date(when));
                }
                if extras.preview {
                    sep(o);
                    o.extend_from_slice(b"PREVIEW ");
                    let text = preview(&raw);
                    write::string(o, text.as_bytes());
                }
                o.extend_from_slice(b")\r\n");
                // Written as it grows: the client parses the first lines
                // while the rest is produced.
                if self.out.len() > FETCH_FLUSH {
                    self.flush().await;
                }
            }
        }
        if uid {
            self.sync().await;
        }
        if unavailable > 0 {
            // RFC 5530 §3: a temporary failure of a subsystem.
            let text = format!(
                "[UNAVAILABLE] {unavailable} message bodies cannot be read now; try again later"
            );
            self.tagged(tag, "NO", &text);
            return;
        }
        self.tagged(tag, "OK", "FETCH completed");
    }

    /// IDLE (RFC 2177, RFC 9051 §6.3.13): pushes changes until DONE.
    async fn idle(&mut self, tag: &str) {
        let mut changes = self.server.store.watch_account(self.account_id()).await;
        self.out.extend_from_slice(b"+ idling\r\n");
        self.sync().await;
        self.flush().await;
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(self.server.config.timeout.max(30 * 60));
        loop {
            // A complete "DONE" line may already be buffered.
            if let Event::Command(line) = self.reader.next_event() {
                if line.trim_ascii().eq_ignore_ascii_case(b"DONE") {
                    self.tagged(tag, "OK", "IDLE terminated");
                } else {
                    self.tagged(tag, "BAD", "Expected DONE");
                }
                return;
            }
            tokio::select! {
                r = self.conn.fill(deadline) => match r {
                    Ok(n) if n > 0 => {
                        let n = self.conn.buffered().len();
                        self.reader.push(self.conn.buffered());
                        self.conn.consume(n);
                    }
                    _ => return,
                },
                more = changes.changed() => {
                    if !more {
                        return;
                    }
                    self.sync().await;
                    self.notify_changes().await;
                    self.flush().await;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.out.extend_from_slice(b"* BYE IDLE timeout\r\n");
                    return;
                }
            }
        }
    }
}

/// BINARY[section]: the part with its content-transfer-encoding removed;
/// an empty section is the whole message, header included (RFC 3516 §4.2).
fn binary(raw: &[u8], section: &[std::num::NonZeroU32]) -> Vec<u8> {
    if section.is_empty() {
        return raw.to_vec();
    }
    let Some(msg) = mail_parser::MessageParser::default().parse(raw) else {
        return raw.to_vec();
    };
    let mut part = msg.root_part();
    for n in section {
        let idx = n.get() as usize - 1;
        match &part.body {
            mail_parser::PartType::Multipart(children) => {
                match children.get(idx).and_then(|&c| msg.parts.get(c as usize)) {
                    Some(p) => part = p,
                    None => return Vec::new(),
                }
            }
            _ if idx == 0 => {}
            _ => return Vec::new(),
        }
    }
    part.contents().to_vec()
}

/// Where the first `$` standing for the saved result is in a command
/// line (RFC 5182 §2): a bare `$` token (alone, or before `)`), outside
/// quoted strings, that is not the string argument of a search key.
fn saved_reference(line: &[u8]) -> Option<usize> {
    /// Search keys whose next argument is a string (RFC 9051 §6.4.4).
    const STRING_KEYS: &[&[u8]] = &[
        b"BCC",
        b"BODY",
        b"CC",
        b"FROM",
        b"KEYWORD",
        b"SUBJECT",
        b"TEXT",
        b"TO",
        b"UNKEYWORD",
    ];
    let mut tokens: Vec<(usize, &[u8])> = Vec::new();
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b' ' | b'(' | b')' => i += 1,
            b'"' => {
                // A quoted string is one token, escapes included.
                let start = i;
                i += 1;
                while i < line.len() && line[i] != b'"' {
                    i += if line[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                tokens.push((start, b"\"\""));
            }
            _ => {
                let start = i;
                while i < line.len() && !matches!(line[i], b' ' | b'(' | b')') {
                    i += 1;
                }
                tokens.push((start, &line[start..i]));
            }
        }
    }
    tokens.iter().enumerate().find_map(|(n, (at, t))| {
        if *t != b"$" {
            return None;
        }
        let before = |k: usize| n.checked_sub(k).map(|j| tokens[j].1.to_ascii_uppercase());
        let string_arg = before(1).is_some_and(|p| STRING_KEYS.contains(&p.as_slice()))
            || before(2).is_some_and(|p| p == b"HEADER")
            || before(1).is_some_and(|p| p == b"HEADER");
        (!string_arg).then_some(*at)
    })
}

#[cfg(test)]
mod tests {
    use super::{compress, esearch};

    #[test]
    fn saved_result_references() {
        use super::saved_reference;
        assert_eq!(saved_reference(b"a FETCH $ (UID)"), Some(8));
        assert_eq!(saved_reference(b"a UID SEARCH UID $"), Some(17));
        assert_eq!(saved_reference(b"a SEARCH ($ SUBJECT x)"), Some(10));
        assert_eq!(saved_reference(b"a SEARCH SUBJECT \"a $ b\""), None);
        assert_eq!(saved_reference(b"a SEARCH SUBJECT $"), None);
        assert_eq!(saved_reference(b"a SEARCH HEADER X-Y $"), None);
        assert_eq!(saved_reference(b"a SEARCH SUBJECT \"q\\\" $\" $"), Some(25));
    }

    #[test]
    fn esearch_parts() {
        let (cmd, opts) =
            esearch::strip_return(b"a UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n").unwrap();
        assert_eq!(cmd, b"a UID SEARCH UNSEEN\r\n");
        assert_eq!(opts, vec!["MIN", "COUNT"]);
        assert!(esearch::strip_return(b"a SEARCH ALL\r\n").is_none());
        assert_eq!(compress(&[1, 2, 3, 7, 9, 10]), "1:3,7,9:10");
    }
}
