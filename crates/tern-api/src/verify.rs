//! `POST /v1/verify`: address verification over HTTP (scope `verify`),
//! the same verifier as `tern verify` — up to 100 addresses per request,
//! answered when every one is decided.

use crate::body::parse;
use crate::{Api, Problem};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Most addresses in one request.
pub const MAX_ADDRESSES: usize = 100;

/// The addresses to verify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// 1 to 100 addresses.
    pub addresses: Vec<String>,
}

/// One answer per address, in the order given.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// The answers.
    pub results: Vec<tern_verify::Answer>,
}

/// `POST /v1/verify`.
#[utoipa::path(post, path = "/v1/verify", tag = "verify", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse), (status = 422, body = Problem),
        (status = 403, body = Problem), (status = 503, body = Problem)))]
pub async fn verify(
    State(api): State<Arc<Api>>,
    caller: crate::auth::Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<VerifyResponse>, Problem> {
    caller.require(crate::keys::Scope::Verify)?;
    let req: VerifyRequest = parse(&headers, &body)?;
    if req.addresses.is_empty() || req.addresses.len() > MAX_ADDRESSES {
        return Err(Problem::invalid(
            "addresses",
            format!("1 to {MAX_ADDRESSES} addresses per request"),
        ));
    }
    if let Some((i, _)) = req
        .addresses
        .iter()
        .enumerate()
        .find(|(_, a)| a.len() > 320 || a.contains(['\r', '\n', '\0']))
    {
        return Err(Problem::invalid(
            format!("addresses[{i}]"),
            "not an address (longer than 320 characters, or a control character)",
        ));
    }
    let Some(verifier) = api.verifier.clone() else {
        return Err(Problem::unavailable(
            "Address verification is not set up on this server.",
        ));
    };
    let results = verifier.verify_all(&req.addresses, 10, |_| {}).await;
    Ok(Json(VerifyResponse { results }))
}
