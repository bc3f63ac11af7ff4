//! Engagement tracking endpoints: `GET /t/o/{token}` (the open pixel, a
//! 1×1 GIF) and `GET /t/c/{token}` (a link: `302` to the URL the token
//! carries — only that URL, which was in the message). Each records an
//! `opened` or `clicked` event with the user agent and address, flagged
//! `machine` when a machine fetched it ([`tern_feedback::tracking::machine`]).
//! A token that does not verify is a 404 and records nothing.

use crate::Api;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use tern_events::{Event, EventType};
use tern_feedback::token::Tracked;
use tern_store::EventQuery;

/// The smallest transparent GIF (43 bytes).
const PIXEL: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
    0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// `GET /t/o/{token}`.
pub async fn open(state: State<Arc<Api>>, token: Path<String>, req: Request) -> Response {
    follow(state, token, req, false).await
}

/// `GET /t/c/{token}`.
pub async fn click(state: State<Arc<Api>>, token: Path<String>, req: Request) -> Response {
    follow(state, token, req, true).await
}

/// Records a pixel fetch or a click and answers it: the GIF, or a `302`
/// to the URL the token carries. A token of the other kind is a 404 too.
async fn follow(
    State(api): State<Arc<Api>>,
    Path(token): Path<String>,
    req: Request,
    click: bool,
) -> Response {
    let seen = Seen::of(&req);
    drop(req);
    let Some(t) = read(&api, &token).filter(|t| matches!(t, Tracked::Click { .. }) == click) else {
        return (StatusCode::NOT_FOUND, "This link is not valid.").into_response();
    };
    record(&api, &t, seen).await;
    match t {
        Tracked::Click { url, .. } => (
            StatusCode::FOUND,
            [
                (header::LOCATION, url.as_str()),
                (header::CACHE_CONTROL, "no-store"),
            ],
        )
            .into_response(),
        Tracked::Open { .. } => (
            [
                (header::CONTENT_TYPE, "image/gif"),
                (header::CACHE_CONTROL, "no-store, max-age=0"),
            ],
            PIXEL,
        )
            .into_response(),
    }
}

fn read(api: &Api, token: &str) -> Option<Tracked> {
    api.intake.feedback()?.keys.read_tracking(token).ok()
}

/// Who fetched: address, user agent, and whether it was a `HEAD`.
struct Seen {
    ip: IpAddr,
    user_agent: Option<String>,
    head: bool,
}

impl Seen {
    fn of(req: &Request) -> Self {
        Self {
            ip: req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(|s| s.chars().take(512).collect()),
            head: req.method() == Method::HEAD,
        }
    }
}

/// Writes the event; a failure is logged, never shown to the reader.
async fn record(api: &Api, t: &Tracked, seen: Seen) {
    let (kind, queue_id, recipient, url) = match t {
        Tracked::Open {
            queue_id,
            recipient,
        } => (EventType::Opened, queue_id, recipient, None),
        Tracked::Click {
            queue_id,
            recipient,
            url,
        } => (EventType::Clicked, queue_id, recipient, Some(url.clone())),
    };
    let Seen {
        ip,
        user_agent,
        head,
    } = seen;
    let now_ms = chrono_now_ms();
    // When it was delivered: scanners click within seconds of that.
    let delivered = api
        .store
        .events(EventQuery {
            message_id: Some(queue_id.clone()),
            types: vec![EventType::Delivered],
            limit: 50,
            ..Default::default()
        })
        .await
        .ok()
        .and_then(|es| {
            es.into_iter()
                .filter(|e| {
                    e.recipient
                        .as_deref()
                        .is_some_and(|r| r.eq_ignore_ascii_case(recipient))
                })
                .map(|e| e.time)
                .next_back()
        });
    let machine = tern_feedback::tracking::machine(
        user_agent.as_deref(),
        ip,
        head,
        delivered.map(|d| (now_ms - d) / 1000),
        kind == EventType::Opened,
    );
    let mut e = Event::new(kind, queue_id).to(recipient);
    if let Ok(Some(log)) = api.store.message_log(queue_id).await {
        e.sender = Some(log.sender);
        e.source = Some(log.source);
        e.stream = Some(log.stream).filter(|s| !s.is_empty());
        e.tags = log.tags;
        e.metadata = log.metadata;
    }
    e.url = url;
    e.user_agent = user_agent;
    e.source_ip = Some(ip.to_string());
    e.machine = machine.map(|_| true);
    e.reason = machine.map(str::to_string);
    if let Err(err) = api.store.record_feedback(vec![e], Vec::new()).await {
        tracing::error!(error = %err, queue_id, "tracking: cannot record");
    }
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
