//! Tern's POP3 server: RFC 1939, CAPA (RFC 2449), STLS (RFC 2595), AUTH
//! PLAIN (RFC 5034 with RFC 4616). Serves each account's INBOX.
//!
//! Written here because no maintained POP3 server crate exists; the protocol
//! is small: a line-based state machine over [`tern_core::conn::Conn`].

mod session;

use std::sync::Arc;
use tern_core::authguard::AuthGuard;
use tern_core::config::{AuthConfig, Pop3Config};
use tern_core::connlimit::ConnLimiter;
use tern_store::SharedStore;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Shared state of the POP3 service.
pub struct Pop3Server {
    /// POP3 settings.
    pub config: Pop3Config,
    /// Login policy.
    pub auth: AuthConfig,
    /// Host name for the greeting.
    pub hostname: String,
    /// Accounts and mail.
    pub store: SharedStore,
    /// For STLS and the implicit-TLS port.
    pub tls: Option<TlsAcceptor>,
    /// Failed-login throttling, shared with other services.
    pub guard: Arc<AuthGuard>,
    limiter: ConnLimiter,
}

impl Pop3Server {
    /// A POP3 service.
    pub fn new(
        config: Pop3Config,
        auth: AuthConfig,
        hostname: String,
        store: SharedStore,
        tls: Option<TlsAcceptor>,
        guard: Arc<AuthGuard>,
    ) -> Arc<Self> {
        let limiter = ConnLimiter::new(config.max_connections, config.max_connections_per_ip);
        Arc::new(Self {
            config,
            auth,
            hostname,
            store,
            tls,
            guard,
            limiter,
        })
    }

    /// Accepts connections forever. With `implicit_tls` the TLS handshake
    /// comes first (port 995, RFC 8314).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, implicit_tls: bool) {
        tern_core::conn::accept_loop(listener, "pop3", move |tcp, peer| {
            let server = self.clone();
            async move {
                metrics::counter!("tern_pop3_connections_total").increment(1);
                // The refusal is said on plaintext ports only (TLS comes first on the others).
                let refusal: &[u8] = b"-ERR [SYS/TEMP] Too many connections, try again later\r\n";
                let Some(_slot) = server.limiter.admit(
                    "pop3",
                    &tcp,
                    peer.ip(),
                    (!implicit_tls).then_some(refusal),
                ) else {
                    return;
                };
                session::run(server.clone(), tcp, implicit_tls).await;
            }
        })
        .await
    }
}
