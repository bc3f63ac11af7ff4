//! Domains: the list, and for each its live DNS check (what
//! `tern dns check` says, fixes included), its DKIM keys and the DMARC
//! aggregate reports received about it.

use crate::session::{User, frame};
use crate::{Web, layout};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use std::sync::Arc;
use tern_dns::check::Status;

/// `GET /domains`.
pub async fn list(State(web): State<Arc<Web>>, user: User) -> Response {
    let domains = match web.store.list_domains().await {
        Ok(d) => d,
        Err(e) => return layout::store_error(e),
    };
    let body = html! {
        h1 { "Domains" }
        div.panel {
            table {
                thead { tr { th { "Domain" } th { "Catch-all" } } }
                tbody {
                    @for d in domains.iter().filter(|d| user.may_see(&d.name)) {
                        tr {
                            td { a href=(format!("/domains/{}", d.name)) { (d.name) } }
                            td { (d.catch_all.as_deref().unwrap_or("—")) }
                        }
                    }
                }
            }
        }
        p.muted { "Mail for these domains goes to " span.mono { (web.hostname) } "." }
    };
    frame(&user, "Domains", "/domains")
        .render(body)
        .into_response()
}

/// `GET /domains/{domain}`.
pub async fn detail(
    State(web): State<Arc<Web>>,
    user: User,
    Path(domain): Path<String>,
) -> Response {
    let domain = domain.to_ascii_lowercase();
    let known = match web.store.list_domains().await {
        Ok(d) => d.iter().any(|d| d.name == domain),
        Err(e) => return layout::store_error(e),
    };
    if !known || !user.may_see(&domain) {
        return layout::not_found("No such domain here.");
    }
    let keys = match web.store.dkim_keys(&domain).await {
        Ok(k) => k,
        Err(e) => return layout::store_error(e),
    };
    let reports = match web.store.dmarc_reports(200).await {
        Ok(r) => r,
        Err(e) => return layout::store_error(e),
    };
    let reports: Vec<_> = reports
        .into_iter()
        .filter(|r| r.domain.eq_ignore_ascii_case(&domain))
        .take(20)
        .collect();
    let checks = match &web.checker {
        Some(c) => c.check(&domain).await,
        None => Err("DNS checks are not set up".into()),
    };
    let body = html! {
        h1 { (domain) }
        section.panel aria-labelledby="dns-h" {
            h2 #dns-h { "DNS, as the world sees it" }
            @match &checks {
                Err(e) => p.error { (e) },
                Ok(checks) => {
                    @let fails = checks.iter().filter(|c| c.status == Status::Fail).count();
                    p { (checks.len()) " checks, " (fails) " failing." }
                    table {
                        thead { tr { th { "Check" } th { "Result" } th { "Found" } th { "Fix" } } }
                        tbody {
                            @for c in checks {
                                @let s = match c.status { Status::Pass => "pass", Status::Warn => "warn", Status::Fail => "fail" };
                                tr {
                                    td.mono.name { (c.name) }
                                    td { span class=(format!("pill {s}")) { (s) } }
                                    td { (c.found) }
                                    td.mono { (c.fix.as_deref().unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.panel aria-labelledby="dkim-h" {
            h2 #dkim-h { "DKIM keys" }
            table {
                thead { tr { th { "Selector" } th { "Algorithm" } th { "Status" } } }
                tbody {
                    @for k in &keys {
                        tr { td.mono { (k.selector) } td { (k.algorithm) } td { (k.status) } }
                    }
                }
            }
            p.muted { "Rotate with " code { "tern dkim rotate " (domain) } ", publish, then " code { "tern dkim activate" } "." }
        }
        section.panel aria-labelledby="dmarc-h" {
            h2 #dmarc-h { "DMARC aggregate reports received" }
            @if reports.is_empty() {
                p.muted { "None yet. Reports come to the rua= address of the DMARC record." }
            } @else {
                table {
                    thead { tr { th { "From" } th { "Period" } th.num { "Messages" } th.num { "Passed DMARC" } th.num { "Failed" } } }
                    tbody {
                        @for r in &reports {
                            tr {
                                td { (r.org) }
                                td { (layout::time(r.begin)) " – " (layout::time(r.end)) }
                                td.num { (r.messages) }
                                td.num { (r.messages.saturating_sub(r.failed)) }
                                td.num { (r.failed) }
                            }
                        }
                    }
                }
            }
        }
    };
    frame(&user, &domain, "/domains")
        .render(body)
        .into_response()
}
