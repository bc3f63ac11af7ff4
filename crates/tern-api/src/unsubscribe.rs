//! One-click unsubscribe (RFC 8058): the links in broadcast mail's
//! `List-Unsubscribe`. A `POST` (what mailbox providers send for their
//! "unsubscribe" button, body `List-Unsubscribe=One-Click`, or the button on
//! the confirmation page) records `unsubscribed` and suppresses the
//! recipient for the sending domain's broadcasts; a `GET` only shows the
//! page asking to confirm — link scanners follow every GET (RFC 8058 §4).
//! The token is signed ([`tern_feedback::token`]): a forged one is a 404.

use crate::Api;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;
use tern_events::{Event, EventType};
use tern_feedback::token::LinkToken;
use tern_store::Suppression;

/// `GET /unsubscribe/{token}`: the confirmation page.
pub async fn page(State(api): State<Arc<Api>>, Path(token): Path<String>) -> Response {
    let Some(t) = verify(&api, &token) else {
        return not_found();
    };
    page_response(
        StatusCode::OK,
        "Unsubscribe",
        &format!(
            "<p>Stop mailings from <strong>{domain}</strong> to <strong>{rcpt}</strong>?</p>\
             <form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>\
             <p class=\"small\">Receipts and other messages you asked for still arrive.</p>",
            domain = escape(&t.domain),
            rcpt = escape(&t.recipient),
        ),
    )
}

/// `POST /unsubscribe/{token}`: unsubscribes.
pub async fn unsubscribe(
    State(api): State<Arc<Api>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(t) = verify(&api, &token) else {
        return not_found();
    };
    let one_click = body.trim() == "List-Unsubscribe=One-Click";
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect::<String>());
    match record(&api, &t, one_click, user_agent).await {
        Ok(()) => page_response(
            StatusCode::OK,
            "Unsubscribed",
            &format!(
                "<p><strong>{rcpt}</strong> will get no more mailings from <strong>{domain}</strong>.</p>",
                domain = escape(&t.domain),
                rcpt = escape(&t.recipient),
            ),
        ),
        Err(e) => {
            tracing::error!(error = %e, "api: cannot record an unsubscribe");
            page_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>Your request could not be recorded just now. Please try again in a minute.</p>",
            )
        }
    }
}

fn verify(api: &Api, token: &str) -> Option<LinkToken> {
    api.intake
        .feedback()?
        .keys
        .read_unsubscribe_link(token)
        .ok()
}

/// The event and the suppression, in one commit; nothing new when the
/// recipient already unsubscribed from this domain.
async fn record(
    api: &Api,
    t: &LinkToken,
    one_click: bool,
    user_agent: Option<String>,
) -> Result<(), tern_store::StoreError> {
    let now = tern_core::now_unix();
    let known = api
        .store
        .suppressed(std::slice::from_ref(&t.recipient), &t.domain, now)
        .await?;
    if known
        .get(&t.recipient)
        .is_some_and(|s| s.reason == "unsubscribe" && s.domain == t.domain)
    {
        return Ok(());
    }
    let mut e = Event::new(EventType::Unsubscribed, &t.queue_id).to(&t.recipient);
    if let Some(log) = api.store.message_log(&t.queue_id).await? {
        e.sender = Some(log.sender);
        e.source = Some(log.source);
        e.stream = Some(log.stream).filter(|s| !s.is_empty());
        e.tags = log.tags;
        e.metadata = log.metadata;
    }
    e.via = Some(if one_click { "one_click" } else { "link" }.into());
    e.user_agent = user_agent;
    e.reason = Some(format!("unsubscribed from {}'s broadcasts", t.domain));
    let s = Suppression {
        address: t.recipient.clone(),
        domain: t.domain.clone(),
        reason: "unsubscribe".into(),
        created: now,
        expires: None,
        detail: format!(
            "{} from message {}",
            if one_click { "one-click" } else { "link" },
            t.queue_id
        ),
    };
    api.store.record_feedback(vec![e], vec![s]).await
}

fn not_found() -> Response {
    page_response(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "<p>This unsubscribe link is not valid. Use the link in the message you received.</p>",
    )
}

fn page_response(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title><style>\
         body{{font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0;\
         display:flex;min-height:100vh;align-items:center;justify-content:center}}\
         main{{background:#fff;max-width:28rem;margin:1rem;padding:2rem;border-radius:12px;\
         box-shadow:0 2px 12px #0002}}h1{{font-size:1.4rem;margin-top:0}}\
         button{{font:inherit;background:#1f5fd1;color:#fff;border:0;border-radius:8px;\
         padding:.6rem 1.4rem;cursor:pointer}}button:focus{{outline:3px solid #9bbcf5}}\
         .small{{color:#5b6475;font-size:.9rem}}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>"
    );
    (status, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// Text as HTML.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
