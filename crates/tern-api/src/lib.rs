//! Tern's HTTP API and webhook delivery.
//!
//! JSON under `/v1` on the server's HTTP listeners, described by the
//! OpenAPI document at `/v1/openapi.json` (generated from the handlers'
//! types with utoipa): sending (`/v1/messages`, idempotent with
//! `Idempotency-Key`), each message's history (`/v1/messages/{id}`,
//! `/v1/events`), suppression lists, webhook endpoints with replay,
//! templates and the queue. Requests carry an API key
//! (`Authorization: Bearer`), made with `tern apikey create`; errors are
//! RFC 9457 problem documents.
//!
//! [`webhooks::Deliverer`] POSTs events from the durable outbox the store
//! fills in the same commit as each event, signed as Standard Webhooks
//! specifies.

pub mod auth;
mod body;
pub mod build;
pub mod health;
mod idempotency;
pub mod keys;
mod messages;
mod problem;
mod resources;
mod templates;
mod tracking;
mod unsubscribe;
mod verify;
pub mod webhooks;

pub use problem::Problem;

use axum::Router;
use std::sync::Arc;
use tern_core::config::{ApiConfig, WebhooksConfig};
use tern_queue::intake::Intake;
use tern_store::SharedStore;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the handlers share.
pub struct Api {
    store: SharedStore,
    intake: Arc<Intake>,
    config: ApiConfig,
    webhooks: WebhooksConfig,
    hostname: String,
    limiter: auth::KeyLimiter,
    keys: auth::KeyCache,
    in_flight: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    resolver: Option<tern_dns::Resolver>,
    verify: Option<Arc<tern_verify::jobs::Runner>>,
}

impl Api {
    /// The API over `store`, sending through `intake`; `resolver` checks
    /// domains' DNS for sender health, `verify` answers `/v1/verify` and runs its jobs.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: SharedStore,
        intake: Arc<Intake>,
        config: ApiConfig,
        webhooks: WebhooksConfig,
        hostname: String,
        resolver: Option<tern_dns::Resolver>,
        verify: Option<Arc<tern_verify::jobs::Runner>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            limiter: auth::KeyLimiter::new(config.requests_per_second),
            keys: auth::KeyCache::default(),
            store,
            intake,
            config,
            webhooks,
            hostname,
            in_flight: Default::default(),
            resolver,
            verify,
        })
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tern API",
        description = "Send mail, follow each message's history, manage suppression lists, webhooks, templates and the queue. Authenticate with `Authorization: Bearer KEY` (`tern apikey create`). Errors are RFC 9457 problem documents.",
        version = "1"
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/v1` routes, with the OpenAPI document describing them.
fn api_routes() -> OpenApiRouter<Arc<Api>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(messages::send))
        .routes(routes!(messages::send_batch))
        .routes(routes!(messages::get_message))
        .routes(routes!(resources::list_events))
        .routes(routes!(
            resources::list_suppressions,
            resources::add_suppressions
        ))
        .routes(routes!(resources::remove_suppression))
        .routes(routes!(resources::list_webhooks, resources::add_webhook))
        .routes(routes!(resources::get_webhook, resources::remove_webhook))
        .routes(routes!(resources::replay_webhook))
        .routes(routes!(templates::list, templates::create))
        .routes(routes!(templates::get, templates::put, templates::remove))
        .routes(routes!(templates::preview))
        .routes(routes!(resources::queue_list))
        .routes(routes!(resources::queue_retry))
        .routes(routes!(resources::queue_delete))
        .routes(routes!(health::get_health))
        .routes(routes!(verify::verify))
        .routes(routes!(verify::list_jobs, verify::create_job))
        .routes(routes!(verify::get_job, verify::remove_job))
        .routes(routes!(verify::job_results))
}

/// The API's router: `/v1/…` and `/v1/openapi.json`, with the request size
/// limit; unknown `/v1` paths get a problem document.
pub fn router(api: Arc<Api>) -> Router {
    let max = api.config.max_body_size;
    let (routes, mut doc) = api_routes().split_for_parts();
    document_problems(&mut doc);
    // The links in broadcast mail: public pages, not part of the API.
    let unsubscribe_routes = Router::new()
        .route(
            "/unsubscribe/{token}",
            axum::routing::get(unsubscribe::page).post(unsubscribe::unsubscribe),
        )
        .route("/t/o/{token}", axum::routing::get(tracking::open))
        .route("/t/c/{token}", axum::routing::get(tracking::click))
        .with_state(api.clone());
    let routes = routes.with_state(api);
    let json = Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".into()));
    routes
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let json = json.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        json.as_str().to_owned(),
                    )
                }
            }),
        )
        .merge(unsubscribe_routes)
        .route("/v1", axum::routing::any(not_found))
        .route("/v1/{*rest}", axum::routing::any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(max))
}

/// The OpenAPI document (for `tern api openapi` and tests).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes().split_for_parts().1;
    document_problems(&mut doc);
    doc
}

/// Every operation's error answers as RFC 9457 documents: the ones any
/// request may get (no or a bad key, rate limit, storage trouble, a
/// missing object, a bad query) and, for those with a body, the body's.
fn document_problems(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let problem = |what: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build(),
        )
    };
    let any: &[(&str, &str)] = &[
        ("401", "No API key, or not a valid one"),
        ("403", "The key's scope or domains do not allow this"),
        ("404", "No such object"),
        ("422", "A field or query parameter is not acceptable"),
        ("429", "Over the key's request rate (see Retry-After)"),
        ("503", "Temporarily unavailable; nothing was changed"),
    ];
    let with_body: &[(&str, &str)] = &[
        ("400", "The body is not JSON"),
        (
            "409",
            "Conflicts with an existing object or Idempotency-Key",
        ),
        ("413", "The body is larger than [api] max_body_size"),
        ("415", "The body is not application/json"),
    ];
    for item in doc.paths.paths.values_mut() {
        let ops = [
            (&mut item.get, false),
            (&mut item.delete, false),
            (&mut item.post, true),
            (&mut item.put, true),
        ];
        for (op, body) in ops {
            let Some(op) = op.as_mut() else { continue };
            let codes = any.iter().chain(if body { with_body } else { &[][..] });
            for (code, what) in codes {
                op.responses
                    .responses
                    .insert((*code).to_string(), problem(what));
            }
        }
    }
}

async fn not_found() -> Problem {
    Problem::new(
        axum::http::StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "There is no such API endpoint; the endpoints are listed in /v1/openapi.json.",
    )
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "This endpoint does not take that method; see /v1/openapi.json.",
    )
}
