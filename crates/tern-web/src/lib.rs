//! Tern's dashboard, served by `tern serve` at `/` on the HTTP listeners:
//! delivery analytics from the hourly counters, message timelines, the
//! queue, domains with their live DNS check, suppressions, webhooks, API
//! keys and accounts. Server-rendered HTML (maud escapes everything it is
//! given, so a subject with `<script>` shows as text), one stylesheet
//! embedded in the binary, no JavaScript needed; logins with argon2
//! passwords, sessions in Secure/HttpOnly/SameSite=Strict cookies, a CSRF
//! token in every form, and the same login throttling as IMAP.

mod chart;
mod layout;
mod pages;
mod session;

use axum::Router;
use axum::routing::{get, post};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tern_core::authguard::AuthGuard;
use tern_store::SharedStore;

pub use session::{SESSION_COOKIE, User};

/// A request that came over TLS (the HTTPS listeners add it): cookies get
/// the `Secure` attribute.
#[derive(Debug, Clone, Copy)]
pub struct Https;

/// Checks a domain's DNS as `tern dns check` does (the binary provides it:
/// it needs SPF evaluation and the MTA-STS fetcher).
pub trait DomainChecker: Send + Sync {
    /// The checks of `domain`.
    fn check<'a>(
        &'a self,
        domain: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<tern_dns::check::Check>, String>> + Send + 'a>>;
}

/// The dashboard's state.
pub struct Web {
    store: SharedStore,
    guard: Arc<AuthGuard>,
    hostname: String,
    checker: Option<Arc<dyn DomainChecker>>,
    resolver: Option<tern_dns::Resolver>,
    sending_ips: std::sync::RwLock<Vec<std::net::IpAddr>>,
}

impl Web {
    /// The dashboard over `store`, throttling logins with `guard`.
    pub fn new(
        store: SharedStore,
        guard: Arc<AuthGuard>,
        hostname: String,
        checker: Option<Arc<dyn DomainChecker>>,
    ) -> Self {
        Self {
            store,
            guard,
            hostname,
            checker,
            resolver: None,
            sending_ips: Default::default(),
        }
    }

    /// Asks `resolver` for sender health's live requirements.
    pub fn with_resolver(mut self, resolver: tern_dns::Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    /// The addresses this server sends from: DMARC report sources outside
    /// them are shown as sending as the domain from elsewhere.
    pub fn with_sending_ips(self, ips: Vec<std::net::IpAddr>) -> Self {
        self.set_sending_ips(ips);
        self
    }

    /// Replaces the sending addresses (found after start-up, when they
    /// come from the DNS: start-up never waits for a resolver).
    pub fn set_sending_ips(&self, ips: Vec<std::net::IpAddr>) {
        *self.sending_ips.write().unwrap_or_else(|e| e.into_inner()) = ips;
    }

    /// The addresses this server sends from, as known now.
    pub fn sending_ips(&self) -> Vec<std::net::IpAddr> {
        self.sending_ips
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The dashboard's routes.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/messages", get(pages::messages::search))
        .route("/messages/{id}", get(pages::messages::timeline))
        .route("/messages/{id}/retry", post(pages::messages::retry))
        .route("/messages/{id}/delete", post(pages::messages::delete))
        .route("/queue", get(pages::queue::page))
        .route("/domains", get(pages::domains::list))
        .route("/domains/{domain}", get(pages::domains::detail))
        .route(
            "/domains/{domain}/dkim/rotate",
            post(pages::domains::rotate),
        )
        .route(
            "/domains/{domain}/dkim/activate",
            post(pages::domains::activate),
        )
        .route(
            "/suppressions",
            get(pages::suppressions::list).post(pages::suppressions::add),
        )
        .route("/suppressions/remove", post(pages::suppressions::remove))
        .route("/webhooks", get(pages::admin::webhooks))
        .route("/webhooks/{id}", get(pages::admin::webhook))
        .route("/webhooks/{id}/replay", post(pages::admin::replay))
        .route(
            "/keys",
            get(pages::admin::keys).post(pages::admin::create_key),
        )
        .route("/keys/{id}/revoke", post(pages::admin::revoke_key))
        .route(
            "/accounts",
            get(pages::admin::accounts).post(pages::admin::add_account),
        )
        .route("/accounts/remove", post(pages::admin::remove_account))
        .route("/aliases", post(pages::admin::add_alias))
        .route("/aliases/remove", post(pages::admin::remove_alias))
        .route("/assets/style.css", get(layout::stylesheet))
        .with_state(web)
}
