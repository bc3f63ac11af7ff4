//! Suppression lists: search, add, remove — as `tern suppression` and
//! `/v1/suppressions` do.

use crate::session::{Refused, User, frame};
use crate::{Web, layout};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;
use tern_store::{Suppression, SuppressionQuery};

#[derive(Deserialize, Default)]
pub struct Params {
    prefix: Option<String>,
}

/// `GET /suppressions`.
pub async fn list(State(web): State<Arc<Web>>, user: User, Query(p): Query<Params>) -> Response {
    let prefix = p
        .prefix
        .as_deref()
        .map(str::trim)
        .unwrap_or("")
        .to_ascii_lowercase();
    let entries = match web
        .store
        .list_suppressions(SuppressionQuery {
            prefix: Some(prefix.clone()).filter(|p| !p.is_empty()),
            limit: 500,
            ..Default::default()
        })
        .await
    {
        Ok(e) => e,
        Err(e) => return layout::store_error(e),
    };
    let entries: Vec<_> = entries
        .into_iter()
        .filter(|s| user.is_admin() || (!s.domain.is_empty() && user.may_see(&s.domain)))
        .collect();
    let body = html! {
        h1 { "Suppressions" }
        p.muted { "Mail to these addresses is not sent: hard bounces, complaints, unsubscribes and entries added by hand." }
        form.filters method="get" action="/suppressions" role="search" {
            div { label for="prefix" { "Address starts with" } input #prefix type="search" name="prefix" value=(prefix); }
            button type="submit" { "Search" }
        }
        section.panel aria-labelledby="add-h" {
            h2 #add-h { "Suppress an address" }
            form.filters method="post" action="/suppressions" {
                input type="hidden" name="csrf" value=(user.csrf);
                div { label for="address" { "Address" } input #address type="email" name="address" required; }
                div {
                    label for="sdomain" { "For sending domain" }
                    input #sdomain type="text" name="domain" placeholder=(if user.is_admin() { "every domain" } else { "your domain" });
                }
                button type="submit" { "Suppress" }
            }
        }
        div.panel {
            table {
                thead { tr { th { "Address" } th { "Domain" } th { "Reason" } th { "Since" } th.hide-sm { "Detail" } th {} } }
                tbody {
                    @for s in &entries {
                        tr {
                            td { (s.address) }
                            td { @if s.domain.is_empty() { "every domain" } @else { (s.domain) } }
                            td { span class=(format!("pill {}", if s.reason == "manual" { "warn" } else { "fail" })) { (s.reason) } }
                            td { (layout::time(s.created)) }
                            td.hide-sm { (s.detail) }
                            td {
                                form.inline method="post" action="/suppressions/remove" {
                                    input type="hidden" name="csrf" value=(user.csrf);
                                    input type="hidden" name="address" value=(s.address);
                                    input type="hidden" name="domain" value=(s.domain);
                                    button.link type="submit" aria-label=(format!("Remove {}", s.address)) { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
            @if entries.is_empty() { p { "No entries." } }
        }
    };
    frame(&user, "Suppressions", "/suppressions")
        .render(body)
        .into_response()
}

#[derive(Deserialize)]
pub struct EntryForm {
    #[serde(default)]
    csrf: String,
    address: String,
    #[serde(default)]
    domain: String,
}

/// Checks the form and the user's right to the entry's domain.
fn entry(user: &User, f: &EntryForm) -> Result<(String, String), Refused> {
    user.check_csrf(&f.csrf)?;
    let address = f.address.trim().to_ascii_lowercase();
    let domain = f.domain.trim().to_ascii_lowercase();
    if address.len() > 320 || !address.contains('@') || address.contains(char::is_whitespace) {
        return Err(Refused("That is not an email address."));
    }
    if domain.is_empty() && !user.is_admin() {
        return Err(Refused("Give one of your domains."));
    }
    if !domain.is_empty() && !user.may_see(&domain) {
        return Err(Refused("You may not change this domain's list."));
    }
    Ok((address, domain))
}

/// `POST /suppressions`.
pub async fn add(
    State(web): State<Arc<Web>>,
    user: User,
    axum::Form(f): axum::Form<EntryForm>,
) -> Response {
    let (address, domain) = match entry(&user, &f) {
        Ok(e) => e,
        Err(r) => return r.into_response(),
    };
    let s = Suppression {
        address: address.clone(),
        domain,
        reason: "manual".into(),
        created: tern_core::now_unix(),
        expires: None,
        detail: format!("added in the dashboard by {}", user.email),
    };
    if let Err(e) = web.store.add_suppressions(vec![s]).await {
        return layout::store_error(e);
    }
    tracing::info!(address = %address, user = %user.email, "web: suppressed");
    Redirect::to("/suppressions").into_response()
}

/// `POST /suppressions/remove`.
pub async fn remove(
    State(web): State<Arc<Web>>,
    user: User,
    axum::Form(f): axum::Form<EntryForm>,
) -> Response {
    let (address, domain) = match entry(&user, &f) {
        Ok(e) => e,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = web.store.remove_suppression(&address, &domain).await {
        return layout::store_error(e);
    }
    tracing::info!(address = %address, user = %user.email, "web: unsuppressed");
    Redirect::to("/suppressions").into_response()
}
