//! Domains: the list, and for each its live DNS check (what
//! `tern dns check` says, fixes included), sender health (the bulk-sender
//! requirements, as `GET /v1/domains/{d}/health`), its DKIM keys, the
//! DMARC aggregate reports received about it — with pass rates by sending
//! address and reporting organisation, and the addresses that send as the
//! domain from elsewhere — and the TLS reports.

use crate::session::{User, frame};
use crate::{Web, layout};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use tern_dns::check::Status;

/// One sending address over the DMARC reports.
#[derive(Default)]
struct Source {
    messages: u64,
    passed: u64,
    seen_by: BTreeSet<String>,
}

fn pct(part: u64, whole: u64) -> String {
    format!("{:.1}%", 100.0 * part as f64 / whole.max(1) as f64)
}

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
    let tls = match web.store.tls_reports(200).await {
        Ok(r) => r
            .into_iter()
            .filter(|r| r.domain.eq_ignore_ascii_case(&domain))
            .take(20)
            .collect::<Vec<_>>(),
        Err(e) => return layout::store_error(e),
    };
    let health = match tern_api::health::domain_health(
        &web.store,
        web.resolver.as_ref(),
        &domain,
        tern_core::now_unix(),
    )
    .await
    {
        Ok(h) => h,
        Err(e) => return layout::store_error(e),
    };
    // Sending addresses over the reports: messages, DMARC passes, who saw them.
    let mut sources: BTreeMap<IpAddr, Source> = BTreeMap::new();
    let mut orgs: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &reports {
        let o = orgs.entry(r.org.clone()).or_default();
        o.0 += r.messages;
        o.1 += r.messages.saturating_sub(r.failed);
        for row in tern_auth::dmarc_report::dmarc_sources(&r.report) {
            let s = sources.entry(row.ip).or_default();
            s.messages += row.messages;
            s.passed += row.passed;
            s.seen_by.insert(r.org.clone());
        }
    }
    let sending_ips = web.sending_ips();
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
        section.panel aria-labelledby="health-h" {
            h2 #health-h { "Sender health" }
            p {
                @if health.meets_bulk_sender_requirements {
                    span.pill.pass { "meets" } " Gmail's and Yahoo's bulk-sender requirements."
                } @else {
                    span.pill.fail { "does not meet" } " Gmail's and Yahoo's bulk-sender requirements yet."
                }
                " Last 7 days: " (health.last_7_days.delivered) " delivered, "
                (format!("{:.2}%", health.last_7_days.bounce_rate * 100.0)) " bounced, "
                (format!("{:.3}%", health.last_7_days.complaint_rate * 100.0)) " complaints."
            }
            table {
                thead { tr { th { "Requirement" } th { "Met" } th { "Found" } th { "Fix" } } }
                tbody {
                    @for r in &health.requirements {
                        tr {
                            td.name { (r.name) }
                            td { @if r.ok { span.pill.pass { "yes" } } @else { span.pill.fail { "no" } } }
                            td { (r.detail) }
                            td { (r.fix.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        section.panel aria-labelledby="dkim-h" {
            h2 #dkim-h { "DKIM keys" }
            table {
                thead { tr { th { "Selector" } th { "Algorithm" } th { "Status" } th {} } }
                tbody {
                    @for k in &keys {
                        tr {
                            td.mono { (k.selector) }
                            td { (k.algorithm) }
                            td { (k.status) }
                            td {
                                @if k.status == "pending" && user.is_admin() {
                                    form.inline method="post" action=(format!("/domains/{domain}/dkim/activate")) {
                                        input type="hidden" name="csrf" value=(user.csrf);
                                        input type="hidden" name="selector" value=(k.selector);
                                        button.link type="submit" aria-label=(format!("Activate {}", k.selector)) { "Activate" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if user.is_admin() {
                form.inline method="post" action=(format!("/domains/{domain}/dkim/rotate")) {
                    input type="hidden" name="csrf" value=(user.csrf);
                    button type="submit" { "Make new keys" }
                }
                p.muted { "New keys start pending: publish their records (the DNS check above lists them), then activate them here or with " code { "tern dkim activate" } "." }
            }
        }
        section.panel aria-labelledby="dmarc-h" {
            h2 #dmarc-h { "DMARC aggregate reports received" }
            @if reports.is_empty() {
                p.muted { "None yet. Reports come to the rua= address of the DMARC record." }
            } @else {
                h3 { "By sending address" }
                table {
                    thead { tr { th { "Address" } th.num { "Messages" } th.num { "Passed DMARC" } th { "Seen by" } th { "" } } }
                    tbody {
                        @for (ip, src) in &sources {
                            tr {
                                td.mono { (ip) }
                                td.num { (src.messages) }
                                td.num { (pct(src.passed, src.messages)) }
                                td { (src.seen_by.iter().cloned().collect::<Vec<_>>().join(", ")) }
                                td {
                                    @if sending_ips.contains(ip) { span.pill.pass { "this server" } }
                                    @else if src.passed == 0 { span.pill.fail { "unknown sender" } }
                                    @else { span.pill.warn { "elsewhere" } }
                                }
                            }
                        }
                    }
                }
                h3 { "By reporting organisation" }
                table {
                    thead { tr { th { "Organisation" } th.num { "Messages" } th.num { "Passed DMARC" } } }
                    tbody {
                        @for (org, (n, passed)) in &orgs {
                            tr { td { (org) } td.num { (n) } td.num { (pct(*passed, *n)) } }
                        }
                    }
                }
                h3 { "Reports" }
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
        section.panel aria-labelledby="tls-h" {
            h2 #tls-h { "TLS reports received" }
            @if tls.is_empty() {
                p.muted { "None yet. They come to the rua= address of the TLS-RPT record." }
            } @else {
                table {
                    thead { tr { th { "From" } th { "Period" } th.num { "TLS sessions" } th.num { "Failed" } } }
                    tbody {
                        @for r in &tls {
                            tr {
                                td { (r.org) }
                                td { (layout::time(r.begin)) " – " (layout::time(r.end)) }
                                td.num { (r.successes + r.failures) }
                                td.num { (r.failures) }
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

#[derive(serde::Deserialize)]
pub struct DkimForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    selector: String,
}

/// `POST /domains/{domain}/dkim/rotate`: new pending keys.
pub async fn rotate(
    State(web): State<Arc<Web>>,
    user: crate::User,
    Path(domain): Path<String>,
    axum::Form(f): axum::Form<DkimForm>,
) -> Response {
    if let Err(r) = user.check_admin_form(&f.csrf) {
        return r.into_response();
    }
    let domain = domain.to_ascii_lowercase();
    match web.store.list_domains().await {
        Ok(d) if d.iter().any(|d| d.name == domain) => {}
        Ok(_) => return layout::not_found("No such domain here."),
        Err(e) => return layout::store_error(e),
    }
    match tern_auth::dkim_keys::generate_for_domain(web.store.as_ref(), &domain, "pending").await {
        Ok(made) => {
            tracing::info!(domain = %domain, selectors = ?made, user = %user.email, "web: new DKIM keys (pending)");
            axum::response::Redirect::to(&format!("/domains/{domain}")).into_response()
        }
        Err(e) => layout::store_error(e),
    }
}

/// `POST /domains/{domain}/dkim/activate`: a pending key signs from now on.
pub async fn activate(
    State(web): State<Arc<Web>>,
    user: crate::User,
    Path(domain): Path<String>,
    axum::Form(f): axum::Form<DkimForm>,
) -> Response {
    if let Err(r) = user.check_admin_form(&f.csrf) {
        return r.into_response();
    }
    let domain = domain.to_ascii_lowercase();
    match web.store.activate_dkim_key(&domain, &f.selector).await {
        Ok(()) => {
            tracing::info!(domain = %domain, selector = %f.selector, user = %user.email, "web: DKIM key activated");
            axum::response::Redirect::to(&format!("/domains/{domain}")).into_response()
        }
        Err(tern_store::StoreError::NotFound(_)) => layout::not_found("No such key."),
        Err(e) => layout::store_error(e),
    }
}
