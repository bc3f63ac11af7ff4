//! What administrators run: webhook endpoints (attempts, dead letters,
//! replay), API keys (create, revoke), accounts and aliases (add, remove)
//! — the CLI's functions in the browser, each form with its CSRF token.

use crate::session::{Refused, User, frame};
use crate::{Web, layout};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;
use tern_core::Address;
use tern_store::EventQuery;

fn csrf_field(user: &User) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf); }
}

/// A page that says something happened, with a way back.
fn done(user: &User, title: &str, current: &str, body: Markup, back: &str) -> Response {
    frame(user, title, current)
        .render(html! { h1 { (title) } (body) p { a href=(back) { "Back" } } })
        .into_response()
}

/// `GET /webhooks`.
pub async fn webhooks(State(web): State<Arc<Web>>, user: User) -> Response {
    if let Err(r) = user.require_admin() {
        return r.into_response();
    }
    let hooks = match web.store.webhooks().await {
        Ok(h) => h,
        Err(e) => return layout::store_error(e),
    };
    let mut rows = Vec::new();
    for h in hooks {
        let pending = web.store.outbox_len(&h.id).await.unwrap_or(0);
        let dead = web
            .store
            .webhook_dead_letters(&h.id, 100)
            .await
            .map(|d| d.len())
            .unwrap_or(0);
        rows.push((h, pending, dead));
    }
    let body = html! {
        h1 { "Webhooks" }
        div.panel {
            table {
                thead { tr { th { "Endpoint" } th { "Events" } th.num { "Pending" } th.num { "Dead letters" } th.num { "Failures in a row" } } }
                tbody {
                    @for (h, pending, dead) in &rows {
                        tr {
                            td { a.mono href=(format!("/webhooks/{}", h.id)) { (h.url) } br; span.muted.mono { (h.id) } }
                            td { @if h.events.is_empty() { "all" } @else { (h.events.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")) } }
                            td.num { (pending) }
                            td.num { (dead) }
                            td.num { (h.failures) }
                        }
                    }
                }
            }
            @if rows.is_empty() { p { "No endpoints. Add one with " code { "tern webhook add URL" } " or " code { "POST /v1/webhooks" } "." } }
        }
    };
    frame(&user, "Webhooks", "/webhooks")
        .render(body)
        .into_response()
}

/// `GET /webhooks/{id}`: the latest attempts, dead letters, and replay.
pub async fn webhook(State(web): State<Arc<Web>>, user: User, Path(id): Path<String>) -> Response {
    if let Err(r) = user.require_admin() {
        return r.into_response();
    }
    let hook = match web.store.webhook(&id).await {
        Ok(Some(h)) => h,
        Ok(None) => return layout::not_found("No such webhook endpoint."),
        Err(e) => return layout::store_error(e),
    };
    let (attempts, dead) = match (
        web.store.webhook_attempts(&id, 50).await,
        web.store.webhook_dead_letters(&id, 50).await,
    ) {
        (Ok(a), Ok(d)) => (a, d),
        (Err(e), _) | (_, Err(e)) => return layout::store_error(e),
    };
    let body = html! {
        h1 { "Webhook " span.mono { (hook.id) } }
        p.mono { (hook.url) }
        section.panel aria-labelledby="replay-h" {
            h2 #replay-h { "Send stored events again" }
            form.filters method="post" action=(format!("/webhooks/{}/replay", hook.id)) {
                (csrf_field(&user))
                div {
                    label for="hours" { "Events of the last" }
                    select #hours name="hours" {
                        option value="1" { "hour" }
                        option value="24" selected { "24 hours" }
                        option value="168" { "7 days" }
                    }
                }
                button type="submit" { "Replay" }
            }
        }
        section.panel aria-labelledby="attempts-h" {
            h2 #attempts-h { "Latest attempts" }
            table {
                thead { tr { th { "Time" } th.num { "Events" } th { "Answer" } th.num { "ms" } } }
                tbody {
                    @for a in &attempts {
                        tr {
                            td { (layout::time(a.time)) }
                            td.num { (a.events) }
                            td {
                                @match a.status {
                                    Some(s) if (200..300).contains(&s) => span.pill.pass { (s) },
                                    Some(s) => span.pill.fail { (s) },
                                    None => span.pill.fail { "no answer" },
                                }
                                " " (a.error)
                            }
                            td.num { (a.millis) }
                        }
                    }
                }
            }
            @if attempts.is_empty() { p.muted { "None yet." } }
        }
        section.panel aria-labelledby="dead-h" {
            h2 #dead-h { "Dead letters" }
            table {
                thead { tr { th { "Event" } th { "Given up" } th.num { "Attempts" } th { "Last error" } } }
                tbody {
                    @for d in &dead {
                        tr { td.mono { (d.event_id) } td { (layout::time(d.time)) } td.num { (d.attempts) } td { (d.last_error) } }
                    }
                }
            }
            @if dead.is_empty() { p.muted { "None." } }
        }
    };
    frame(&user, "Webhook", "/webhooks")
        .render(body)
        .into_response()
}

#[derive(Deserialize)]
pub struct ReplayForm {
    #[serde(default)]
    csrf: String,
    hours: u32,
}

/// `POST /webhooks/{id}/replay`.
pub async fn replay(
    State(web): State<Arc<Web>>,
    user: User,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<ReplayForm>,
) -> Response {
    if let Err(r) = user.check_admin_form(&f.csrf) {
        return r.into_response();
    }
    let since = tern_core::now_unix() - i64::from(f.hours.min(24 * 30)) * 3600;
    let q = EventQuery {
        since: Some(since * 1000),
        ..Default::default()
    };
    match web.store.replay_webhook(&id, q).await {
        Ok(n) => {
            tracing::info!(webhook = %id, events = n, user = %user.email, "web: replay");
            done(
                &user,
                "Replayed",
                "/webhooks",
                html! { p { (n) " events queued for " span.mono { (id) } " again." } },
                &format!("/webhooks/{id}"),
            )
        }
        Err(e) => layout::store_error(e),
    }
}

/// `GET /keys`.
pub async fn keys(State(web): State<Arc<Web>>, user: User) -> Response {
    if let Err(r) = user.require_admin() {
        return r.into_response();
    }
    let keys = match web.store.api_keys().await {
        Ok(k) => k,
        Err(e) => return layout::store_error(e),
    };
    let body = html! {
        h1 { "API keys" }
        section.panel aria-labelledby="new-key-h" {
            h2 #new-key-h { "Create a key" }
            form.filters method="post" action="/keys" {
                (csrf_field(&user))
                div { label for="kname" { "Name" } input #kname type="text" name="name" required maxlength="100"; }
                div {
                    label for="scope" { "Scope" }
                    select #scope name="scope" {
                        @for s in ["send", "read", "verify", "admin"] { option value=(s) { (s) } }
                    }
                }
                div { label for="kdomains" { "Only these domains" } input #kdomains type="text" name="domains" placeholder="all"; }
                button type="submit" { "Create" }
            }
        }
        div.panel {
            table {
                thead { tr { th { "Key" } th { "Name" } th { "Scope" } th { "Domains" } th { "Created" } th { "Status" } } }
                tbody {
                    @for k in &keys {
                        tr {
                            td.mono { (k.id) }
                            td { (k.name) }
                            td { (k.scope) }
                            td { @if k.domains.is_empty() { "all" } @else { (k.domains.join(", ")) } }
                            td { (layout::time(k.created)) }
                            td {
                                @match k.revoked {
                                    Some(t) => span.pill.fail { "revoked " (layout::time(t)) },
                                    None => {
                                        span.pill.pass { "active" } " "
                                        form.inline method="post" action=(format!("/keys/{}/revoke", k.id)) {
                                            (csrf_field(&user))
                                            button.link type="submit" aria-label=(format!("Revoke {}", k.id)) { "Revoke" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    frame(&user, "API keys", "/keys")
        .render(body)
        .into_response()
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    name: String,
    scope: String,
    #[serde(default)]
    domains: String,
}

/// `POST /keys`: the secret is shown once.
pub async fn create_key(
    State(web): State<Arc<Web>>,
    user: User,
    axum::Form(f): axum::Form<KeyForm>,
) -> Response {
    if let Err(r) = user.check_admin_form(&f.csrf) {
        return r.into_response();
    }
    let Some(scope) = tern_api::keys::Scope::parse(&f.scope) else {
        return crate::session::forbidden("Unknown scope.");
    };
    let domains: Vec<String> = f
        .domains
        .split([',', ' '])
        .map(|d| d.trim().to_ascii_lowercase())
        .filter(|d| !d.is_empty())
        .take(100)
        .collect();
    let name: String = f.name.trim().chars().take(100).collect();
    let (secret, record) = tern_api::keys::generate(scope, domains, name, tern_core::now_unix());
    let id = record.id.clone();
    if let Err(e) = web.store.add_api_key(record).await {
        return layout::store_error(e);
    }
    tracing::info!(key = %id, scope = scope.as_str(), user = %user.email, "web: API key created");
    done(
        &user,
        "Key created",
        "/keys",
        html! {
            p { "Copy the key now: it is not shown again." }
            p { code #secret { (secret) } }
        },
        "/keys",
    )
}

/// `POST /keys/{id}/revoke`.
pub async fn revoke_key(
    State(web): State<Arc<Web>>,
    user: User,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<crate::session::CsrfForm>,
) -> Response {
    if let Err(r) = user.check_admin_form(&f.csrf) {
        return r.into_response();
    }
    match web.store.revoke_api_key(&id, tern_core::now_unix()).await {
        Ok(true) => {
            tracing::info!(key = %id, user = %user.email, "web: API key revoked");
            Redirect::to("/keys").into_response()
        }
        Ok(false) => layout::not_found("No such active key."),
        Err(e) => layout::store_error(e),
    }
}

/// `GET /accounts`.
pub async fn accounts(State(web): State<Arc<Web>>, user: User) -> Response {
    if let Err(r) = user.require_admin() {
        return r.into_response();
    }
    let (accounts, aliases) = match (
        web.store.list_accounts(None).await,
        web.store.list_aliases().await,
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return layout::store_error(e),
    };
    let body = html! {
        h1 { "Accounts and aliases" }
        section.panel {
            h2 { "Accounts" }
            form.filters method="post" action="/accounts" {
                (csrf_field(&user))
                div { label for="new-account" { "New account" } input #new-account type="email" name="address" required; }
                button type="submit" { "Create" }
            }
            table {
                thead { tr { th { "Address" } th.num { "Messages" } th.num { "Used" } th.num { "Quota" } th {} } }
                tbody {
                    @for a in &accounts {
                        tr {
                            td { (a.address) }
                            td.num { (a.messages) }
                            td.num { (mib(a.used)) }
                            td.num { @if a.quota == 0 { "none" } @else { (mib(a.quota)) } }
                            td {
                                form.inline method="post" action="/accounts/remove" {
                                    (csrf_field(&user))
                                    input type="hidden" name="address" value=(a.address);
                                    button.link type="submit" aria-label=(format!("Remove {} and its mail", a.address)) { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.panel {
            h2 { "Aliases" }
            form.filters method="post" action="/aliases" {
                (csrf_field(&user))
                div { label for="alias" { "Alias" } input #alias type="email" name="address" required; }
                div { label for="target" { "Delivers to" } input #target type="email" name="target" required; }
                button type="submit" { "Add" }
            }
            table {
                thead { tr { th { "Alias" } th { "Delivers to" } th {} } }
                tbody {
                    @for a in &aliases {
                        tr {
                            td { (a.address) }
                            td { (a.target) }
                            td {
                                form.inline method="post" action="/aliases/remove" {
                                    (csrf_field(&user))
                                    input type="hidden" name="address" value=(a.address);
                                    button.link type="submit" aria-label=(format!("Remove alias {}", a.address)) { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    frame(&user, "Accounts", "/accounts")
        .render(body)
        .into_response()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[derive(Deserialize)]
pub struct AddressForm {
    #[serde(default)]
    csrf: String,
    address: String,
    #[serde(default)]
    target: String,
}

fn address(s: &str) -> Result<Address, Refused> {
    Address::parse(s.trim()).map_err(|_| Refused("That is not an email address."))
}

/// `POST /accounts`: a new account with a generated password, shown once.
pub async fn add_account(
    State(web): State<Arc<Web>>,
    user: User,
    axum::Form(f): axum::Form<AddressForm>,
) -> Response {
    if let Err(r) = user.check_admin_form(&f.csrf) {
        return r.into_response();
    }
    let addr = match address(&f.address) {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let password: String = (0..20)
        .map(|_| {
            b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"[rand::random_range(0..56)]
                as char
        })
        .collect();
    match web.store.add_account(&addr, &password, 0).await {
        Ok(_) => {
            tracing::info!(account = %addr, user = %user.email, "web: account created");
            done(
                &user,
                "Account created",
                "/accounts",
                html! {
                    p { (addr.to_string()) " can log in (IMAP, POP3, submission) with this password; it is not shown again:" }
                    p { code #password { (password) } }
                },
                "/accounts",
            )
        }
        Err(e) => done(
            &user,
            "Not created",
            "/accounts",
            html! { p.error { (e.to_string()) } },
            "/accounts",
        ),
    }
}

/// The form's own address, once the form is checked.
fn form_address(user: &User, f: &AddressForm) -> Result<Address, Refused> {
    user.check_admin_form(&f.csrf)?;
    address(&f.address)
}

/// After a change to accounts or aliases: back to the list, or why not.
fn changed(user: &User, what: &str, r: Result<(), tern_store::StoreError>) -> Response {
    match r {
        Ok(()) => {
            tracing::info!(user = %user.email, change = what, "web: accounts changed");
            Redirect::to("/accounts").into_response()
        }
        Err(e) => done(
            user,
            &format!("Not done: {what}"),
            "/accounts",
            html! { p.error { (e.to_string()) } },
            "/accounts",
        ),
    }
}

/// `POST /accounts/remove`.
pub async fn remove_account(
    State(web): State<Arc<Web>>,
    user: User,
    axum::Form(f): axum::Form<AddressForm>,
) -> Response {
    match form_address(&user, &f) {
        Ok(a) => changed(
            &user,
            &format!("remove {a}"),
            web.store.remove_account(&a).await,
        ),
        Err(r) => r.into_response(),
    }
}

/// `POST /aliases`.
pub async fn add_alias(
    State(web): State<Arc<Web>>,
    user: User,
    axum::Form(f): axum::Form<AddressForm>,
) -> Response {
    let (alias, target) = match (form_address(&user, &f), address(&f.target)) {
        (Ok(a), Ok(t)) => (a, t),
        (Err(r), _) | (_, Err(r)) => return r.into_response(),
    };
    let r = web.store.add_alias(&alias, &target).await;
    changed(&user, &format!("alias {alias} to {target}"), r)
}

/// `POST /aliases/remove`.
pub async fn remove_alias(
    State(web): State<Arc<Web>>,
    user: User,
    axum::Form(f): axum::Form<AddressForm>,
) -> Response {
    match form_address(&user, &f) {
        Ok(a) => changed(
            &user,
            &format!("remove alias {a}"),
            web.store.remove_alias(&a).await,
        ),
        Err(r) => r.into_response(),
    }
}
