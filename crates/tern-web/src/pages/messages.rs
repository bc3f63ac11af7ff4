//! Messages: a search over the event log (a recipient, a message id or
//! `tag:NAME`; without one, the latest messages), and a message's
//! timeline — its envelope and subject, every event with the remote
//! replies, and for mail still queued why it waits and when it is tried
//! next, with retry and delete.

use crate::session::{User, frame};
use crate::{Web, layout};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;
use tern_events::{Event, EventType};
use tern_store::EventQuery;

#[derive(Deserialize, Default)]
pub struct SearchParams {
    q: Option<String>,
    from: Option<String>,
    text: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// `YYYY-MM-DD` (a date input's value) as Unix seconds at 00:00 UTC.
fn day(s: Option<&str>) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(s?.trim(), "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp())
}

fn domain_of(a: &str) -> &str {
    a.rsplit_once('@').map_or("", |(_, d)| d)
}

/// Whether `user` may see an event: its sender's or recipient's domain.
fn visible(user: &User, e: &Event) -> bool {
    user.is_admin()
        || e.sender
            .as_deref()
            .is_some_and(|s| user.may_see(domain_of(s)))
        || e.recipient
            .as_deref()
            .is_some_and(|r| user.may_see(domain_of(r)))
}

fn pill(t: EventType) -> Markup {
    html! { span class=(format!("pill {}", t.as_str())) { (t.as_str()) } }
}

fn when(ms: i64) -> String {
    layout::time(ms.div_euclid(1000))
}

/// `GET /messages`: by recipient, message id or tag through the event
/// log; by sender, subject or Message-ID and dates through what is kept of
/// sent messages.
pub async fn search(
    State(web): State<Arc<Web>>,
    user: User,
    Query(p): Query<SearchParams>,
) -> Response {
    let clean = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| v.chars().take(200).collect::<String>())
    };
    let (q, from, text) = (
        clean(&p.q).unwrap_or_default(),
        clean(&p.from),
        clean(&p.text),
    );
    let (since, until) = (
        day(p.since.as_deref()),
        day(p.until.as_deref()).map(|d| d + 86_400),
    );
    let by_log = from.is_some() || text.is_some() || since.is_some() || until.is_some();
    let results = if by_log {
        let logs = match web
            .store
            .search_message_logs(tern_store::MessageSearch {
                sender: from.clone(),
                text: text.clone(),
                since,
                until,
                limit: 100,
            })
            .await
        {
            Ok(l) => l,
            Err(e) => return layout::store_error(e),
        };
        let logs: Vec<_> = logs
            .into_iter()
            .filter(|l| user.is_admin() || user.may_see(domain_of(&l.sender)))
            .collect();
        html! {
            @if logs.is_empty() { p { "Nothing found." } } @else {
                div.panel {
                    table {
                        thead { tr { th { "Time" } th { "Message" } th { "From" } th { "To" } th { "Subject" } } }
                        tbody {
                            @for l in &logs {
                                tr {
                                    td { (layout::time(l.time)) }
                                    td.mono { a href=(format!("/messages/{}", l.message_id)) { (l.message_id) } }
                                    td { (l.sender) }
                                    td { (l.recipients.join(", ")) }
                                    td { (subject(&l.headers).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
            }
        }
    } else {
        let mut query = EventQuery {
            limit: 100,
            newest_first: true,
            ..Default::default()
        };
        if q.is_empty() {
            query.types = vec![
                EventType::Accepted,
                EventType::Received,
                EventType::Rejected,
            ];
        } else if let Some(tag) = q.strip_prefix("tag:") {
            query.tag = Some(tag.trim().to_string());
        } else if q.contains('@') {
            query.recipient = Some(q.to_ascii_lowercase());
        } else {
            query.message_id = Some(q.clone());
        }
        let events = match web.store.events(query).await {
            Ok(e) => e,
            Err(e) => return layout::store_error(e),
        };
        let events: Vec<Event> = events.into_iter().filter(|e| visible(&user, e)).collect();
        html! {
            @if q.is_empty() { p.muted { "The latest messages sent and received." } }
            @if events.is_empty() {
                p { "Nothing found." }
            } @else {
                div.panel {
                    table {
                        thead { tr { th { "Time" } th { "Event" } th { "Message" } th { "From" } th { "To" } th.hide-sm { "Detail" } } }
                        tbody {
                            @for e in &events {
                                tr {
                                    td { (when(e.time)) }
                                    td { (pill(e.event_type)) }
                                    td.mono { a href=(format!("/messages/{}", e.message_id)) { (e.message_id) } }
                                    td { (e.sender.as_deref().unwrap_or("")) }
                                    td { (e.recipient.as_deref().unwrap_or("")) }
                                    td.hide-sm { (e.reply.as_deref().or(e.reason.as_deref()).unwrap_or("")) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        h1 { "Messages" }
        form.filters method="get" action="/messages" role="search" {
            div {
                label for="q" { "Recipient, message id, or tag:NAME" }
                input #q type="search" name="q" value=(q) size="28";
            }
            button type="submit" { "Search" }
        }
        form.filters method="get" action="/messages" role="search" aria-label="Sent messages" {
            div { label for="from" { "Sender" } input #from type="email" name="from" value=(from.as_deref().unwrap_or("")); }
            div { label for="text" { "Subject or Message-ID" } input #text type="search" name="text" value=(text.as_deref().unwrap_or("")); }
            div { label for="since" { "From day" } input #since type="date" name="since" value=(p.since.as_deref().unwrap_or("")); }
            div { label for="until" { "To day" } input #until type="date" name="until" value=(p.until.as_deref().unwrap_or("")); }
            button type="submit" { "Find sent mail" }
        }
        (results)
    };
    frame(&user, "Messages", "/messages")
        .render(body)
        .into_response()
}

/// The Subject of a logged header block, unfolded and with RFC 2047
/// encoded words decoded (mail-parser, as everywhere else in Tern).
fn subject(headers: &str) -> Option<String> {
    let block = format!("{}\r\n\r\n", headers.trim_end());
    mail_parser::MessageParser::default()
        .parse_headers(block.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
}

/// `GET /messages/{id}`.
pub async fn timeline(State(web): State<Arc<Web>>, user: User, Path(id): Path<String>) -> Response {
    if id.len() > 64 {
        return layout::not_found("No such message.");
    }
    let log = match web.store.message_log(&id).await {
        Ok(l) => l,
        Err(e) => return layout::store_error(e),
    };
    let events = match web
        .store
        .events(EventQuery {
            message_id: Some(id.clone()),
            limit: 1000,
            ..Default::default()
        })
        .await
    {
        Ok(e) => e,
        Err(e) => return layout::store_error(e),
    };
    let queued = match web.store.queued_message(&id).await {
        Ok(q) => q,
        Err(e) => return layout::store_error(e),
    };
    if log.is_none() && events.is_empty() && queued.is_empty() {
        return layout::not_found("No such message.");
    }
    let allowed = user.is_admin()
        || events.iter().any(|e| visible(&user, e))
        || log
            .as_ref()
            .is_some_and(|l| user.may_see(domain_of(&l.sender)));
    if !allowed {
        return layout::not_found("No such message.");
    }
    let subject = log.as_ref().and_then(|l| subject(&l.headers));
    let body = html! {
        h1 { "Message " span.mono { (id) } }
        div.panel {
            table {
                tbody {
                    @if let Some(s) = &subject { tr { th { "Subject" } td { (s) } } }
                    @if let Some(l) = &log {
                        tr { th { "From (envelope)" } td { (l.sender) } }
                        tr { th { "To" } td { (l.recipients.join(", ")) } }
                        tr { th { "Accepted" } td { (layout::time(l.time)) " via " (l.source) } }
                        @if !l.stream.is_empty() { tr { th { "Stream" } td { (l.stream) } } }
                        @if !l.tags.is_empty() { tr { th { "Tags" } td { (l.tags.join(", ")) } } }
                    }
                }
            }
        }
        @if !queued.is_empty() {
            section.panel aria-labelledby="queue-h" {
                h2 #queue-h { "Waiting in the queue" }
                table {
                    thead { tr { th { "Recipient" } th.num { "Attempts" } th { "Next attempt" } th { "Why it waits" } } }
                    tbody {
                        @for r in &queued {
                            tr {
                                td { (r.address) }
                                td.num { (r.attempts) }
                                td { (layout::time(r.next_attempt)) }
                                td { (r.last_error.as_deref().unwrap_or("not tried yet")) }
                            }
                        }
                    }
                }
                @if user.is_admin() {
                    p {
                        form.inline method="post" action=(format!("/messages/{id}/retry")) {
                            input type="hidden" name="csrf" value=(user.csrf);
                            button type="submit" { "Retry now" }
                        }
                        " "
                        form.inline method="post" action=(format!("/messages/{id}/delete")) {
                            input type="hidden" name="csrf" value=(user.csrf);
                            button.danger type="submit" { "Delete from the queue" }
                        }
                    }
                }
            }
        }
        section.panel aria-labelledby="events-h" {
            h2 #events-h { "Timeline" }
            table {
                thead { tr { th { "Time" } th { "Event" } th { "Recipient" } th { "What happened" } } }
                tbody {
                    @for e in &events {
                        tr {
                            td { (when(e.time)) }
                            td { (pill(e.event_type)) }
                            td { (e.recipient.as_deref().unwrap_or("")) }
                            td { (describe(e)) }
                        }
                    }
                }
            }
        }
        @if let Some(l) = &log {
            details.panel {
                summary { "Headers as sent" }
                pre.mono { (l.headers) }
            }
        }
    };
    frame(&user, "Message", "/messages")
        .render(body)
        .into_response()
}

fn describe(e: &Event) -> Markup {
    let mut parts: Vec<Markup> = Vec::new();
    if let Some(h) = &e.mx_host {
        parts.push(html! { "at " span.mono { (h) } });
    }
    if let Some(r) = &e.reply {
        parts.push(html! { span.mono { (r) } });
    }
    for t in [&e.category, &e.reason].into_iter().flatten() {
        parts.push(html! { (t) });
    }
    if let Some(u) = &e.url {
        parts.push(html! { span.mono { (u) } });
    }
    if let Some(n) = e.next_attempt {
        parts.push(html! { "next try " (layout::time(n)) });
    }
    if let Some(f) = &e.folder {
        parts.push(html! { "filed in " (f) });
    }
    html! {
        @for (i, p) in parts.iter().enumerate() {
            @if i > 0 { " · " }
            (p)
        }
    }
}

/// After a queue action on message `id`: back to its page.
fn acted(user: &User, id: &str, what: &str, r: Result<usize, tern_store::StoreError>) -> Response {
    match r {
        Ok(n) => {
            tracing::info!(queue_id = %id, recipients = n, user = %user.email, action = what, "web: queue action");
            Redirect::to(&format!("/messages/{id}")).into_response()
        }
        Err(e) => layout::store_error(e),
    }
}

/// `POST /messages/{id}/retry`: every recipient due now.
pub async fn retry(
    State(web): State<Arc<Web>>,
    user: User,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<crate::session::CsrfForm>,
) -> Response {
    if let Err(r) = user.check_admin_form(&f.csrf) {
        return r.into_response();
    }
    let r = web
        .store
        .queue_retry(Some(&id), tern_core::now_unix())
        .await;
    acted(&user, &id, "retry now", r)
}

/// `POST /messages/{id}/delete`: out of the queue without notice.
pub async fn delete(
    State(web): State<Arc<Web>>,
    user: User,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<crate::session::CsrfForm>,
) -> Response {
    if let Err(r) = user.check_admin_form(&f.csrf) {
        return r.into_response();
    }
    let r = web.store.queue_delete(&id).await;
    acted(&user, &id, "delete", r)
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers_unfold() {
        let h = "From: a@b\r\nSubject: hello\r\n there\r\nTo: c@d\r\n";
        assert_eq!(super::subject(h).as_deref(), Some("hello there"));
        assert_eq!(super::subject("From: a@b\r\nTo: c@d\r\n"), None);
        // Encoded words are decoded.
        assert_eq!(
            super::subject("Subject: =?utf-8?q?caf=C3=A9?=\r\n").as_deref(),
            Some("café")
        );
    }
}
