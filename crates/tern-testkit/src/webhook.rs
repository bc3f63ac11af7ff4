//! A webhook receiver for tests: an HTTP server on loopback that checks
//! every POST's Standard Webhooks signature, records the events in arrival
//! order, counts duplicates, and fails on purpose when told to (an error
//! status, `429` with `Retry-After`, or no answer at all).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `204`.
    Accept,
    /// This status.
    Fail(u16),
    /// `429` with `Retry-After: N`.
    TooMany(u64),
    /// Never answers (the sender times out).
    Stall,
}

/// What arrived.
#[derive(Default)]
struct Log {
    /// Events accepted (answered 2xx), in order; one per event even in batches.
    events: Vec<serde_json::Value>,
    /// How many times each event id was accepted.
    seen: HashMap<String, usize>,
    posts: usize,
    bad_signatures: usize,
    mode: Option<Mode>,
    secret: String,
}

/// A running receiver.
pub struct WebhookReceiver {
    /// Its URL (`http://127.0.0.1:PORT/hook`).
    pub url: String,
    log: Arc<Mutex<Log>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = (Arc<Mutex<Log>>, Arc<Notify>);

async fn hook(State((log, changed)): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let mode = {
        let mut l = log.lock().unwrap();
        l.posts += 1;
        l.mode.unwrap_or(Mode::Accept)
    };
    match mode {
        Mode::Fail(s) => return StatusCode::from_u16(s).unwrap().into_response(),
        Mode::TooMany(secs) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
            )
                .into_response();
        }
        Mode::Stall => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return StatusCode::OK.into_response();
        }
        Mode::Accept => {}
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let mut l = log.lock().unwrap();
    let ok = ts
        .parse::<i64>()
        .ok()
        .is_some_and(|ts| tern_events::signature::verify(&l.secret, &id, ts, &body, &sig).is_ok());
    if !ok {
        l.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let events = match v.get("events").and_then(|e| e.as_array()) {
        Some(batch) => batch.clone(),
        None => vec![v],
    };
    for e in events {
        let eid = e["id"].as_str().unwrap_or("").to_string();
        *l.seen.entry(eid).or_default() += 1;
        l.events.push(e);
    }
    drop(l);
    changed.notify_waiters();
    StatusCode::NO_CONTENT.into_response()
}

impl WebhookReceiver {
    /// Starts a receiver on 127.0.0.1 (any port); it verifies signatures
    /// with the secret given later ([`WebhookReceiver::set_secret`]).
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Log::default()));
        let changed = Arc::new(Notify::new());
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state((log.clone(), changed.clone()));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/hook"),
            log,
            changed,
            task,
        }
    }

    /// The endpoint's signing secret.
    pub fn set_secret(&self, secret: &str) {
        self.log.lock().unwrap().secret = secret.to_string();
    }

    /// How it answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        self.log.lock().unwrap().mode = Some(mode);
    }

    /// Events accepted so far, in arrival order.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.log.lock().unwrap().events.clone()
    }

    /// POSTs received (answered or not).
    pub fn posts(&self) -> usize {
        self.log.lock().unwrap().posts
    }

    /// POSTs whose signature did not verify.
    pub fn bad_signatures(&self) -> usize {
        self.log.lock().unwrap().bad_signatures
    }

    /// Event ids accepted more than once.
    pub fn duplicates(&self) -> usize {
        self.log
            .lock()
            .unwrap()
            .seen
            .values()
            .filter(|n| **n > 1)
            .count()
    }

    /// Waits until `pred` holds for the accepted events, or `timeout`.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let events = self.events();
            if pred(&events) {
                return events;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let events = self.events();
                assert!(
                    pred(&events),
                    "webhook receiver: condition not met after {timeout:?}; got {} posts, events: {events:#?}",
                    self.posts()
                );
                return events;
            }
        }
    }
}
