//! Who is calling: the `Authorization: Bearer` key, checked against the
//! store, with its scope and per-key rate limit.

use crate::keys::{self, Scope};
use crate::{Api, Problem};
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use std::sync::Arc;
use tern_store::ApiKey;

/// Requests per second per key, counted by the store's allowances, so
/// that every node of a shared store counts one allowance per key.
pub struct KeyLimiter(u32);

impl KeyLimiter {
    /// `per_second` requests a second, bursts of twice that; 0: unlimited.
    pub fn new(per_second: u32) -> Self {
        Self(per_second)
    }

    /// `Err(seconds to wait)` when the key is over its rate. When the store
    /// cannot count, the request goes through.
    async fn check(&self, store: &tern_store::SharedStore, key: &str) -> Result<(), u64> {
        if self.0 == 0 {
            return Ok(());
        }
        let interval_ms = (1000 / i64::from(self.0)).max(1);
        let burst = self.0.saturating_mul(2);
        match store
            .take_rate(
                &format!("api:{key}"),
                interval_ms,
                burst,
                tern_core::now_unix_ms(),
            )
            .await
        {
            Ok(None) => Ok(()),
            // Whole seconds for Retry-After, at least one.
            Ok(Some(wait_ms)) => Err(u64::try_from(wait_ms).unwrap_or(0).div_ceil(1000).max(1)),
            Err(e) => {
                tracing::warn!(error = %e, "api: cannot count the key's rate; letting the request through");
                Ok(())
            }
        }
    }
}

/// Keys read from the store recently: every request needs its key, and a
/// key changes only when revoked, which takes effect within [`KEY_TTL`].
#[derive(Default)]
pub struct KeyCache(
    std::sync::Mutex<std::collections::HashMap<String, (ApiKey, std::time::Instant)>>,
);

/// How long a key read from the store is trusted without reading it again.
pub const KEY_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl KeyCache {
    async fn get(&self, api: &Api, id: &str) -> Result<Option<ApiKey>, Problem> {
        if let Some((k, at)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(id)
            && at.elapsed() < KEY_TTL
        {
            return Ok(Some(k.clone()));
        }
        let key = api.store.api_key(id).await.map_err(Problem::unavailable)?;
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.clear();
        }
        match &key {
            Some(k) => {
                map.insert(id.to_string(), (k.clone(), std::time::Instant::now()));
            }
            None => {
                map.remove(id);
            }
        }
        Ok(key)
    }
}

/// An authenticated caller.
pub struct Caller {
    /// Its key.
    pub key: ApiKey,
    /// The key's scope.
    pub scope: Scope,
}

impl Caller {
    /// `Ok` if the key may do what `need` allows.
    pub fn require(&self, need: Scope) -> Result<(), Problem> {
        if self.scope.allows(need) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "This API key has the {} scope; this request needs {}.",
                self.scope.as_str(),
                need.as_str()
            )))
        }
    }

    /// `Ok` if the key may read (scopes read and admin; send keys may read
    /// only the messages they sent, checked where that applies).
    pub fn require_read(&self) -> Result<(), Problem> {
        self.require(Scope::Read)
    }

    /// Whether the key may send as `domain`.
    pub fn may_send_as(&self, domain: &str) -> bool {
        self.key.domains.is_empty()
            || self
                .key
                .domains
                .iter()
                .any(|d| d.eq_ignore_ascii_case(domain))
    }
}

impl FromRequestParts<Arc<Api>> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, api: &Arc<Api>) -> Result<Self, Problem> {
        let presented = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                Problem::unauthorized(
                    "Send an API key as Authorization: Bearer KEY (make one with `tern apikey create`).",
                )
            })?;
        let invalid = || Problem::unauthorized("The API key is not valid or has been revoked.");
        let id = keys::id_of(presented).ok_or_else(invalid)?;
        let key = api
            .keys
            .get(api, id)
            .await?
            .filter(|k| k.revoked.is_none() && keys::matches(k, presented))
            .ok_or_else(invalid)?;
        if let Err(wait) = api.limiter.check(&api.store, &key.id).await {
            metrics::counter!("tern_api_rate_limited_total").increment(1);
            let mut p = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Too many requests",
                format!(
                    "This API key is limited to {} requests per second; try again in {wait} s.",
                    api.config.requests_per_second
                ),
            );
            p.retry_after = Some(wait);
            return Err(p);
        }
        let scope = Scope::parse(&key.scope).ok_or_else(invalid)?;
        Ok(Caller { key, scope })
    }
}
