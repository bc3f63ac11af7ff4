//! Reading JSON bodies: strictly (an unknown field is an error, RFC 9457
//! answers name the field), and keeping the bytes for idempotency.

use crate::Problem;
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

/// Parses a JSON body; a missing or wrong content type, bad JSON and
/// fields that do not fit are problems a client can act on.
pub fn parse<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let v = v.split(';').next().unwrap_or("").trim();
            v.eq_ignore_ascii_case("application/json") || v.to_ascii_lowercase().ends_with("+json")
        })
        .unwrap_or(false);
    if !json {
        return Err(Problem::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            "Send the body as JSON with Content-Type: application/json.",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                Problem::bad_json(format!("The body is not valid JSON: {e}."))
            }
            Category::Data => {
                let msg = e.to_string();
                let field = msg
                    .split('`')
                    .nth(1)
                    .filter(|_| {
                        msg.starts_with("unknown field") || msg.starts_with("missing field")
                    })
                    .unwrap_or("body")
                    .to_string();
                Problem::invalid(field, msg)
            }
        }
    })
}

/// Rejects CR, LF and other control characters in a value that becomes
/// part of a header (no header injection).
pub fn header_safe(field: &str, value: &str) -> Result<(), Problem> {
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Problem::invalid(
            field,
            "must not contain line breaks or control characters",
        ));
    }
    Ok(())
}

/// Query parameters, strictly: an unknown or malformed one is a 422
/// problem naming the query, not axum's plain-text 400.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(t)| Self(t))
            .map_err(|e| Problem::invalid("query", e.body_text()))
    }
}
