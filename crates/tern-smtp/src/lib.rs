//! Tern's SMTP server: inbound mail from the internet (MX, port 25) and
//! message submission from users (RFC 6409; ports 587 and 465, see
//! [`submission`]).
//!
//! Implements RFC 5321 with the extensions PIPELINING (RFC 2920), 8BITMIME
//! (RFC 6152), SMTPUTF8 (RFC 6531), SIZE (RFC 1870), ENHANCEDSTATUSCODES
//! (RFC 2034, codes from RFC 3463), CHUNKING/BDAT (RFC 3030), STARTTLS
//! (RFC 3207) and DSN parameters (RFC 3461, stored for later use). Commands
//! are parsed with `smtp-proto`; message data with [`data::DataReader`].
//!
//! On the MX port mail is accepted only for local domains, accounts and
//! aliases; on submission ports, from authenticated users for anyone (remote
//! recipients go to the outbound queue). Either way it is acknowledged with
//! `250` only once the store says it is durable.

pub mod command;
pub mod data;
pub mod decide;
mod feedback;
pub mod ratelimit;
pub mod reply;
mod session;
pub mod submission;

use std::sync::Arc;
use tern_core::config::SmtpConfig;
use tern_core::connlimit::ConnLimiter;
use tern_store::SharedStore;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What the MX listener checks on mail from the internet.
#[derive(Default)]
pub struct MxChecks {
    /// SPF/DKIM/ARC/DMARC (`None`: off).
    pub inbound: Option<tern_auth::InboundAuth>,
    /// Act on DMARC `reject`/`quarantine`.
    pub enforce_dmarc: bool,
    /// The spam filter (`None`: off).
    pub filter: Option<Arc<tern_filter::Filter>>,
    /// For the client's forward-confirmed reverse DNS.
    pub resolver: Option<tern_dns::Resolver>,
    /// Forwarding aliases (mail on to other domains; `None`: refused).
    pub forwarding: Option<Forwarding>,
    /// Bounces, unsubscribe mails and complaints arriving for sent mail
    /// (`[feedback]`).
    pub feedback: Option<std::sync::Arc<tern_feedback::Settings>>,
}

/// How mail for forwarding aliases is sent on: the envelope sender
/// rewritten with SRS (so SPF passes at the destination; bounces come back
/// and are reversed), the copy ARC-sealed by the alias's domain (RFC 8617)
/// so the destination can trust the checks Tern made.
pub struct Forwarding {
    /// The SRS secret.
    pub srs_secret: Vec<u8>,
    /// The queue's intake, which the forwarded copies go through.
    pub intake: std::sync::Arc<tern_queue::intake::Intake>,
    /// Sealing keys per domain (its DKIM keys).
    pub signers: tern_auth::SignerCache,
}

/// Everything a session needs, shared by all sessions.
pub struct SmtpServer {
    /// Limits and timeouts.
    pub config: SmtpConfig,
    /// Host name for the greeting and `Received` headers.
    pub hostname: String,
    /// Where mail goes.
    pub store: SharedStore,
    /// For STARTTLS; `None` disables it.
    pub tls: Option<TlsAcceptor>,
    /// `Some` on submission listeners: AUTH required, relaying allowed.
    pub submission: Option<submission::Submission>,
    /// What the MX listener checks (all off on submission listeners).
    pub checks: MxChecks,
    /// Connections and messages per minute per client network.
    pub rates: ratelimit::RateLimits,
    /// Memory for message data being received, shared by the sessions.
    pub data_budget: data::DataBudget,
    limiter: ConnLimiter,
}

impl SmtpServer {
    /// A server with the given configuration.
    pub fn new(
        config: SmtpConfig,
        hostname: String,
        store: SharedStore,
        tls: Option<TlsAcceptor>,
    ) -> Arc<Self> {
        Self::build(config, hostname, store, tls, None, MxChecks::default())
    }

    /// A submission server (ports 587/465).
    pub fn submission(
        config: SmtpConfig,
        hostname: String,
        store: SharedStore,
        tls: Option<TlsAcceptor>,
        submission: submission::Submission,
    ) -> Arc<Self> {
        Self::build(
            config,
            hostname,
            store,
            tls,
            Some(submission),
            MxChecks::default(),
        )
    }

    /// An MX server that authenticates and scores what it receives.
    pub fn mx_with_checks(
        config: SmtpConfig,
        hostname: String,
        store: SharedStore,
        tls: Option<TlsAcceptor>,
        checks: MxChecks,
    ) -> Arc<Self> {
        Self::build(config, hostname, store, tls, None, checks)
    }

    fn build(
        config: SmtpConfig,
        hostname: String,
        store: SharedStore,
        tls: Option<TlsAcceptor>,
        submission: Option<submission::Submission>,
        checks: MxChecks,
    ) -> Arc<Self> {
        let limiter = ConnLimiter::new(config.max_connections, config.max_connections_per_ip);
        let rates = ratelimit::RateLimits::new(&config, store.clone());
        // One message at the size limit always fits.
        let data_budget =
            data::DataBudget::new(config.max_data_memory.max(config.max_message_size));
        Arc::new(Self {
            rates,
            data_budget,
            config,
            hostname,
            store,
            tls,
            submission,
            checks,
            limiter,
        })
    }

    /// Accepts connections forever, one task per session. `implicit_tls`
    /// starts TLS before the greeting (port 465, RFC 8314).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, implicit_tls: bool) {
        let service = if self.submission.is_some() {
            "submission"
        } else {
            "smtp"
        };
        tern_core::conn::accept_loop(listener, service, move |tcp, peer| {
            let server = self.clone();
            async move {
                metrics::counter!("tern_smtp_connections_total").increment(1);
                let guard = server.limiter.acquire(peer.ip());
                session::run(server.clone(), tcp, implicit_tls, guard).await;
            }
        })
        .await
    }
}
