//! What administrators see of the server's set-up: webhook endpoints with
//! their pending and dead deliveries, API keys, accounts and aliases.
//! Changes are made with the CLI and the API; these pages show.

use crate::session::{User, frame};
use crate::{Web, layout};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;
use std::sync::Arc;

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
                            td { span.mono { (h.url) } br; span.muted.mono { (h.id) } }
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
                            td { @match k.revoked { Some(t) => span.pill.fail { "revoked " (layout::time(t)) }, None => span.pill.pass { "active" } } }
                        }
                    }
                }
            }
            p.muted { "Create and revoke with " code { "tern apikey" } "." }
        }
    };
    frame(&user, "API keys", "/keys")
        .render(body)
        .into_response()
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
            table {
                thead { tr { th { "Address" } th.num { "Messages" } th.num { "Used" } th.num { "Quota" } } }
                tbody {
                    @for a in &accounts {
                        tr {
                            td { (a.address) }
                            td.num { (a.messages) }
                            td.num { (mib(a.used)) }
                            td.num { @if a.quota == 0 { "none" } @else { (mib(a.quota)) } }
                        }
                    }
                }
            }
        }
        section.panel {
            h2 { "Aliases" }
            table {
                thead { tr { th { "Alias" } th { "Delivers to" } } }
                tbody { @for a in &aliases { tr { td { (a.address) } td { (a.target) } } } }
            }
        }
        p.muted { "Manage with " code { "tern account" } " and " code { "tern alias" } "." }
    };
    frame(&user, "Accounts", "/accounts")
        .render(body)
        .into_response()
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
