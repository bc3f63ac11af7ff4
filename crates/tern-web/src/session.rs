//! Logging in and out, sessions and CSRF tokens.
//!
//! - The login form carries a token that must equal the `tern_login`
//!   cookie's (double submit): a page elsewhere cannot post a login.
//! - A session is a random 256-bit cookie value (`tern_session`: HttpOnly,
//!   SameSite=Strict, Secure over HTTPS, 12 hours), stored as its SHA-256.
//! - Every form of a session carries the session's CSRF token; a POST
//!   without it is refused (403).
//! - Failed logins count in the same [`AuthGuard`] as IMAP, POP3 and SMTP
//!   AUTH: slowed, then refused per address and network.

use crate::layout::{self, Page};
use crate::{Https, Web};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use tern_core::authguard::Login;
use tern_store::{WebSession, WebUser};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tern_session";
/// The login form's double-submit cookie.
const LOGIN_COOKIE: &str = "tern_login";
/// How long a session lasts.
const SESSION_SECS: i64 = 12 * 3600;

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Equal without saying where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A cookie's value from the request (bounded: the first 50 cookies).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .take(50)
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| v.len() <= 128)
}

fn set_cookie(name: &str, value: &str, max_age: i64, https: bool) -> HeaderValue {
    let secure = if https { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The logged-in user of a request. Pages that take it send visitors
/// without a session to the login page.
pub struct User {
    /// The login.
    pub email: String,
    /// Domains the user may see; empty: all.
    pub domains: Vec<String>,
    /// The session's CSRF token, for forms.
    pub csrf: String,
    session: String,
}

impl User {
    /// Whether the user sees every domain.
    pub fn is_admin(&self) -> bool {
        self.domains.is_empty()
    }

    /// Whether the user may see `domain`'s mail.
    pub fn may_see(&self, domain: &str) -> bool {
        self.is_admin() || self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// `Ok` when `token` is the session's CSRF token.
    pub fn check_csrf(&self, token: &str) -> Result<(), Refused> {
        if same(token, &self.csrf) {
            Ok(())
        } else {
            Err(Refused(
                "This form is out of date or did not come from Tern: reload the page and try again.",
            ))
        }
    }

    /// `Ok` for an admin posting a form of this session (`token`).
    pub fn check_admin_form(&self, token: &str) -> Result<(), Refused> {
        self.check_csrf(token).and_then(|_| self.require_admin())
    }

    /// `Ok` for an admin.
    pub fn require_admin(&self) -> Result<(), Refused> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Refused("Only administrators may do this."))
        }
    }
}

/// A request refused (403), with why.
#[derive(Debug, Clone, Copy)]
pub struct Refused(pub &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        forbidden(self.0)
    }
}

pub(crate) fn forbidden(why: &str) -> Response {
    let body = layout::bare(
        "Refused",
        html! { main.narrow { h1 { "Refused" } p { (why) } p { a href="/" { "Back to the overview" } } } },
    );
    (StatusCode::FORBIDDEN, body).into_response()
}

impl FromRequestParts<Arc<Web>> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        let to_login = || {
            let next = parts.uri.path();
            let next = if next.starts_with('/') && !next.starts_with("//") {
                next
            } else {
                "/"
            };
            Redirect::to(&format!("/login?next={}", urlencode(next))).into_response()
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let id_hash = hash(token);
        let now = tern_core::now_unix();
        let session = match web.store.web_session(&id_hash, now).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(layout::store_error(e)),
        };
        let user = match web.store.web_user(&session.email).await {
            Ok(Some(u)) => u,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(layout::store_error(e)),
        };
        Ok(User {
            email: user.email,
            domains: user.domains,
            csrf: session.csrf,
            session: id_hash,
        })
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where to go after logging in: a local path only.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

#[derive(Deserialize)]
pub(crate) struct NextParam {
    next: Option<String>,
}

fn login_form(token: &str, next: &str, error: Option<&str>) -> maud::Markup {
    layout::bare(
        "Log in",
        html! {
            main.narrow {
                h1 { "Tern" }
                p.muted { "Log in to see how your mail is doing." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/login" {
                    input type="hidden" name="csrf" value=(token);
                    input type="hidden" name="next" value=(next);
                    label for="email" { "Email" }
                    input #email type="email" name="email" autocomplete="username" required autofocus;
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

/// `GET /login`.
pub async fn login_page(
    headers: HeaderMap,
    https: Option<axum::Extension<Https>>,
    axum::extract::Query(q): axum::extract::Query<NextParam>,
) -> Response {
    let token = cookie(&headers, LOGIN_COOKIE)
        .filter(|t| t.len() == 64)
        .map(str::to_string)
        .unwrap_or_else(random_token);
    let mut r = login_form(&token, &safe_next(q.next.as_deref()), None).into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(LOGIN_COOKIE, &token, 3600, https.is_some()),
    );
    r
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    email: String,
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login`.
pub async fn login(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    https: Option<axum::Extension<Https>>,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same(&f.csrf, expected) {
        return forbidden(
            "The login form expired or did not come from Tern: open the login page again.",
        );
    }
    let next = safe_next(f.next.as_deref());
    let email = f.email.trim().to_ascii_lowercase();
    if email.len() > 254 || f.password.len() > 1024 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            login_form(expected, &next, Some("Wrong email or password.")),
        )
            .into_response();
    }
    let store = web.store.clone();
    let (who, password) = (email.clone(), f.password.clone());
    let outcome = web
        .guard
        .login("web", peer.ip(), &email, || async move {
            let user: Option<WebUser> = store.web_user(&who).await?;
            let Some(user) = user else {
                tern_store::password::burn(&password);
                return Ok::<_, tern_store::StoreError>(None);
            };
            let hash = user.password_hash.clone();
            let ok =
                tokio::task::spawn_blocking(move || tern_store::password::verify(&password, &hash))
                    .await
                    .unwrap_or(false);
            Ok(ok.then_some(user))
        })
        .await;
    match outcome {
        Login::Success(user) => {
            let token = random_token();
            let session = WebSession {
                id_hash: hash(&token),
                email: user.email.clone(),
                csrf: random_token(),
                expires: tern_core::now_unix() + SESSION_SECS,
            };
            if let Err(e) = web.store.add_web_session(session).await {
                return layout::store_error(e);
            }
            tracing::info!(user = %user.email, client = %peer.ip(), "web: logged in");
            let mut r = Redirect::to(&next).into_response();
            let h = r.headers_mut();
            h.append(
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &token, SESSION_SECS, https.is_some()),
            );
            h.append(
                header::SET_COOKIE,
                set_cookie(LOGIN_COOKIE, "", 0, https.is_some()),
            );
            r
        }
        Login::Invalid => (
            StatusCode::UNAUTHORIZED,
            login_form(expected, &next, Some("Wrong email or password.")),
        )
            .into_response(),
        Login::Refused => (
            StatusCode::TOO_MANY_REQUESTS,
            login_form(
                expected,
                &next,
                Some("Too many failed logins from your address: wait a while, then try again."),
            ),
        )
            .into_response(),
        Login::Error(e) => layout::store_error(e),
    }
}

/// A form that carries only its CSRF token.
#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    pub(crate) csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(web): State<Arc<Web>>,
    user: User,
    https: Option<axum::Extension<Https>>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if let Err(r) = user.check_csrf(&f.csrf) {
        return r.into_response();
    }
    if let Err(e) = web.store.remove_web_session(&user.session).await {
        return layout::store_error(e);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", 0, https.is_some()),
    );
    r
}

/// For pages: the page frame with this user's navigation.
pub(crate) fn frame(user: &User, title: &str, current: &str) -> Page {
    Page {
        title: title.to_string(),
        current: current.to_string(),
        email: user.email.clone(),
        csrf: user.csrf.clone(),
        admin: user.is_admin(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_local() {
        assert_eq!(safe_next(Some("/queue")), "/queue");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_found_and_bounded() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tern_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, "tern_session"), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
