//! `Idempotency-Key` on every POST that creates something: the same key and
//! request within 24 hours get the first response again (marked
//! `Idempotent-Replayed: true`), across restarts; the same key with another
//! request is a 409, and so is a second request while the first is still
//! being processed.

use crate::auth::Caller;
use crate::{Api, Problem};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tern_store::IdempotentResponse;

/// How long a response is kept.
const WINDOW: i64 = 86400;

/// A JSON answer.
pub(crate) fn json_response(status: StatusCode, json: String) -> Response {
    let mut r = (status, json).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A request with a key seen for the first time: the key is held (a second
/// request with it is refused) until this is dropped, after the response
/// was kept.
pub(crate) struct Pending {
    record: IdempotentResponse,
    api: Arc<Api>,
}

impl Pending {
    /// What to keep for the answer `status` with `json`.
    pub(crate) fn record(&self, status: StatusCode, json: &str) -> IdempotentResponse {
        IdempotentResponse {
            status: status.as_u16(),
            response: json.to_string(),
            ..self.record.clone()
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let key = (self.record.key_id.clone(), self.record.key.clone());
        self.api
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }
}

/// Looks the request's key up (`what` names the endpoint, e.g. `POST
/// /v1/messages`): `Ok(None)` without a key, `Ok(Some)` for a new one,
/// `Err` with the answer to give instead (the kept response, or a problem).
pub(crate) async fn begin(
    api: &Arc<Api>,
    caller: &Caller,
    headers: &HeaderMap,
    what: &str,
    body: &[u8],
) -> Result<Option<Pending>, Response> {
    let Some(key) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            Problem::invalid("Idempotency-Key", "use 1 to 255 visible ASCII characters")
                .into_response()
        })?
        .to_string();
    let mut h = Sha256::new();
    h.update(what.as_bytes());
    h.update([0]);
    h.update(body);
    let request = hex::encode(h.finalize());
    let now = tern_core::now_unix();
    let kept = api
        .store
        .idempotent_response(&caller.key.id, &key, now - WINDOW)
        .await
        .map_err(|e| Problem::unavailable(e).into_response())?;
    if let Some(k) = kept {
        if k.request != request {
            return Err(Problem::conflict(
                "idempotency-key-reused",
                "This Idempotency-Key was used within 24 hours for a different request; use a new key for a new request.",
            )
            .into_response());
        }
        let status = StatusCode::from_u16(k.status).unwrap_or(StatusCode::OK);
        let mut r = json_response(status, k.response);
        r.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
        return Err(r);
    }
    let slot = (caller.key.id.clone(), key.clone());
    if !api
        .in_flight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(slot)
    {
        return Err(Problem::conflict(
            "idempotency-key-in-use",
            "A request with this Idempotency-Key is still being processed; retry when it is done.",
        )
        .into_response());
    }
    Ok(Some(Pending {
        record: IdempotentResponse {
            key_id: caller.key.id.clone(),
            key,
            request,
            status: 0,
            response: String::new(),
            created: now,
        },
        api: api.clone(),
    }))
}

/// A POST that creates something other than a message: `create` makes it
/// and returns its JSON; the answer is `201`, kept for the key if there is
/// one (in a commit after the object's own).
pub(crate) async fn created(
    api: &Arc<Api>,
    caller: &Caller,
    headers: &HeaderMap,
    what: &str,
    body: &[u8],
    create: impl Future<Output = Result<String, Problem>>,
) -> Result<Response, Problem> {
    let pending = match begin(api, caller, headers, what, body).await {
        Ok(p) => p,
        Err(replay) => return Ok(replay),
    };
    let json = create.await?;
    if let Some(p) = &pending {
        api.store
            .save_idempotent_response(p.record(StatusCode::CREATED, &json))
            .await?;
    }
    Ok(json_response(StatusCode::CREATED, json))
}
