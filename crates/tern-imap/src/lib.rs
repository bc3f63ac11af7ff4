//! Tern's IMAP server: IMAP4rev2 (RFC 9051) with IMAP4rev1 (RFC 3501)
//! behaviour for clients that do not ENABLE rev2, on 143 (STARTTLS) and 993
//! (implicit TLS, RFC 8314).
//!
//! Commands are framed with `imap-codec`'s `Fragmentizer` (literals bounded
//! before any byte is buffered) and decoded with its `CommandCodec`;
//! responses are written by [`write`]. Message structure comes from the
//! metadata stored at delivery ("parse once"), never from re-parsing.

mod address;
pub mod pattern;
pub mod reader;
mod search;
mod section;
mod session;
mod sort;
mod view;
pub mod write;

pub use session::pre_decode_rewrites;
use std::sync::Arc;
use tern_core::authguard::AuthGuard;
use tern_core::config::AuthConfig;
pub use tern_core::config::ImapConfig;
use tern_core::connlimit::ConnLimiter;
use tern_store::SharedStore;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Shared state of the IMAP service.
pub struct ImapServer {
    /// Settings.
    pub config: ImapConfig,
    /// Login policy.
    pub auth: AuthConfig,
    /// Host name for the greeting.
    pub hostname: String,
    /// Accounts and mail.
    pub store: SharedStore,
    /// For STARTTLS and the implicit-TLS port.
    pub tls: Option<TlsAcceptor>,
    /// Failed-login throttling, shared with other services.
    pub guard: Arc<AuthGuard>,
    limiter: ConnLimiter,
}

impl ImapServer {
    /// An IMAP service.
    pub fn new(
        config: ImapConfig,
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

    /// Accepts connections forever; `implicit_tls` for port 993.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, implicit_tls: bool) {
        tern_core::conn::accept_loop(listener, "imap", move |tcp, peer| {
            let server = self.clone();
            async move {
                metrics::counter!("tern_imap_connections_total").increment(1);
                // The refusal is said on plaintext ports only (TLS comes first on the others).
                let refusal: &[u8] =
                    b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n";
                let Some(_slot) = server.limiter.admit(
                    "imap",
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
