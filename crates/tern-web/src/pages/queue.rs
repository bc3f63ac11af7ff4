//! The queue: what waits, grouped by destination domain and by why.

use crate::session::{User, frame};
use crate::{Web, layout};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A last error without the parts that differ per message (addresses,
/// queue ids), so alike failures group together.
fn reason(e: Option<&str>) -> String {
    match e {
        None => "not tried yet".into(),
        Some(e) => {
            let e: String = e.chars().take(160).collect();
            e.split_whitespace()
                .map(|w| if w.contains('@') { "…" } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        }
    }
}

/// Recipients of one domain waiting for one reason: how many, the oldest,
/// the next attempt, and a message to look at.
type Group = (usize, i64, i64, String);

/// `GET /queue`.
pub async fn page(State(web): State<Arc<Web>>, user: User) -> Response {
    let rows = match web.store.queue_list().await {
        Ok(r) => r,
        Err(e) => return layout::store_error(e),
    };
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| {
            user.is_admin() || user.may_see(r.mail_from.rsplit_once('@').map_or("", |(_, d)| d))
        })
        .collect();
    let mut groups: BTreeMap<String, BTreeMap<String, Group>> = BTreeMap::new();
    for r in &rows {
        let g = groups
            .entry(r.domain.clone())
            .or_default()
            .entry(reason(r.last_error.as_deref()))
            .or_insert((0, i64::MAX, i64::MAX, r.queue_id.clone()));
        g.0 += 1;
        g.1 = g.1.min(r.created_at);
        g.2 = g.2.min(r.next_attempt);
    }
    let body = html! {
        h1 { "Queue" }
        p.muted { (rows.len()) " recipients waiting, for " (groups.len()) " domains." }
        @if groups.is_empty() {
            p { "Nothing waits: every message has been delivered or has bounced." }
        }
        @for (domain, reasons) in &groups {
            section.panel {
                h2 { (domain) }
                table {
                    thead { tr { th { "Why it waits" } th.num { "Recipients" } th { "Oldest" } th { "Next attempt" } th { "Example" } } }
                    tbody {
                        @for (why, (n, oldest, next, example)) in reasons {
                            tr {
                                td { (why) }
                                td.num { (n) }
                                td { (layout::time(*oldest)) }
                                td { (layout::time(*next)) }
                                td.mono { a href=(format!("/messages/{example}")) { (example) } }
                            }
                        }
                    }
                }
            }
        }
    };
    frame(&user, "Queue", "/queue").render(body).into_response()
}
