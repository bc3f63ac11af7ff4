//! Address verification over HTTP (scope `verify`), the same verifier as
//! `tern verify`:
//! - `POST /v1/verify`: up to 100 addresses, answered when every one is
//!   decided;
//! - `POST /v1/verify/jobs`: up to 100,000 addresses, stored before the
//!   job's id is returned and answered in the background
//!   ([`tern_verify::jobs::Runner`]); `GET …/jobs/{id}` shows progress,
//!   `GET …/jobs/{id}/results` pages through the answers, `DELETE` drops
//!   the job. A key sees its own jobs; an admin key sees all.

use crate::body::{Params, parse};
use crate::{Api, Problem};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tern_store::VerifyJob;
use utoipa::{IntoParams, ToSchema};

/// Most addresses in one request.
pub const MAX_ADDRESSES: usize = 100;
/// Most addresses in one job.
pub const MAX_JOB_ADDRESSES: usize = 100_000;

/// The addresses to verify.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// 1 to 100 addresses (1 to 100,000 for a job).
    pub addresses: Vec<String>,
}

/// One answer per address, in the order given.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// The answers.
    pub results: Vec<tern_verify::Answer>,
}

fn runner(api: &Api) -> Result<&Arc<tern_verify::jobs::Runner>, Problem> {
    api.verify
        .as_ref()
        .ok_or_else(|| Problem::unavailable("Address verification is not set up on this server."))
}

/// The request's addresses, checked: `1..=max`, each plausible as text.
fn addresses(headers: &HeaderMap, body: &Bytes, max: usize) -> Result<Vec<String>, Problem> {
    let req: VerifyRequest = parse(headers, body)?;
    if req.addresses.is_empty() || req.addresses.len() > max {
        return Err(Problem::invalid(
            "addresses",
            format!("1 to {max} addresses per request"),
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
    Ok(req.addresses)
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
    let addresses = addresses(&headers, &body, MAX_ADDRESSES)?;
    let runner = runner(&api)?;
    let results = runner.verifier().verify_all(&addresses, 10, |_| {}).await;
    Ok(Json(VerifyResponse { results }))
}

/// Answers so far, by result.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct JobCounts {
    /// Deliverable.
    pub deliverable: u64,
    /// Undeliverable.
    pub undeliverable: u64,
    /// Risky.
    pub risky: u64,
    /// Unknown.
    pub unknown: u64,
}

/// A verification job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// The job's id.
    pub id: String,
    /// `running` or `done`.
    pub status: String,
    /// Addresses in the job.
    pub total: u64,
    /// Addresses answered.
    pub done: u64,
    /// The answers so far, by result.
    pub counts: JobCounts,
    /// When it was created.
    pub created: String,
    /// When the last address was answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
}

impl From<VerifyJob> for JobView {
    fn from(j: VerifyJob) -> Self {
        let mut counts = JobCounts::default();
        for (r, n) in &j.counts {
            match r.as_str() {
                "deliverable" => counts.deliverable = *n,
                "undeliverable" => counts.undeliverable = *n,
                "risky" => counts.risky = *n,
                _ => counts.unknown += *n,
            }
        }
        Self {
            status: if j.done >= j.total { "done" } else { "running" }.into(),
            id: j.id,
            total: j.total,
            done: j.done,
            counts,
            created: tern_events::event::format_time(j.created * 1000),
            finished: j
                .finished
                .map(|f| tern_events::event::format_time(f * 1000)),
        }
    }
}

/// Jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// The jobs (at most 100).
    pub jobs: Vec<JobView>,
}

/// `POST /v1/verify/jobs`: stores the job, then answers 202 with it.
#[utoipa::path(post, path = "/v1/verify/jobs", tag = "verify", request_body = VerifyRequest,
    responses((status = 202, body = JobView, headers(("Location" = String, description = "The job"))),
        (status = 422, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)))]
pub async fn create_job(
    State(api): State<Arc<Api>>,
    caller: crate::auth::Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    caller.require(crate::keys::Scope::Verify)?;
    let addresses = addresses(&headers, &body, MAX_JOB_ADDRESSES)?;
    let runner = runner(&api)?;
    let id: String = (0..20)
        .map(|_| b"abcdefghijklmnopqrstuvwxyz234567"[rand::random_range(0..32)] as char)
        .collect();
    let job = VerifyJob {
        id: format!("vj_{id}"),
        created: tern_core::now_unix(),
        api_key: Some(caller.key.id.clone()),
        total: addresses.len() as u64,
        done: 0,
        finished: None,
        counts: Vec::new(),
    };
    let view = JobView::from(job.clone());
    api.store.add_verify_job(job, addresses).await?;
    runner.wake();
    let mut r = (StatusCode::ACCEPTED, Json(&view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/v1/verify/jobs/{}", view.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Ok(r)
}

/// The job `id` if `caller` may see it.
async fn own_job(api: &Api, caller: &crate::auth::Caller, id: &str) -> Result<VerifyJob, Problem> {
    caller.require(crate::keys::Scope::Verify)?;
    match api.store.verify_job(id).await? {
        Some(j)
            if caller.scope == crate::keys::Scope::Admin
                || j.api_key.as_deref() == Some(caller.key.id.as_str()) =>
        {
            Ok(j)
        }
        _ => Err(Problem::not_found(format!("Verification job {id}"))),
    }
}

/// `GET /v1/verify/jobs`: the newest 100 jobs of this key (all, for an
/// admin key).
#[utoipa::path(get, path = "/v1/verify/jobs", tag = "verify",
    responses((status = 200, body = JobList), (status = 403, body = Problem)))]
pub async fn list_jobs(
    State(api): State<Arc<Api>>,
    caller: crate::auth::Caller,
) -> Result<Json<JobList>, Problem> {
    caller.require(crate::keys::Scope::Verify)?;
    let key = (caller.scope != crate::keys::Scope::Admin).then_some(caller.key.id.as_str());
    let jobs = api.store.verify_jobs(key, 100).await?;
    Ok(Json(JobList {
        jobs: jobs.into_iter().map(JobView::from).collect(),
    }))
}

/// `GET /v1/verify/jobs/{id}`: progress and counts.
#[utoipa::path(get, path = "/v1/verify/jobs/{id}", tag = "verify",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = Problem)))]
pub async fn get_job(
    State(api): State<Arc<Api>>,
    caller: crate::auth::Caller,
    Path(id): Path<String>,
) -> Result<Json<JobView>, Problem> {
    Ok(Json(own_job(&api, &caller, &id).await?.into()))
}

/// `DELETE /v1/verify/jobs/{id}`: the job and its answers go; a running
/// job stops after its current chunk.
#[utoipa::path(delete, path = "/v1/verify/jobs/{id}", tag = "verify",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn remove_job(
    State(api): State<Arc<Api>>,
    caller: crate::auth::Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    own_job(&api, &caller, &id).await?;
    api.store.remove_verify_job(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging through a job's answers.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResultsParams {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000 (100).
    pub limit: Option<usize>,
}

/// One address of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobResult {
    /// Its position in the job, from 0.
    pub index: u64,
    /// The address as given.
    pub address: String,
    /// The answer; absent while the address waits its turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<tern_verify::Answer>,
}

/// A page of a job's answers, in the order the addresses were given.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobResults {
    /// The addresses with their answers.
    pub results: Vec<JobResult>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/verify/jobs/{id}/results`.
#[utoipa::path(get, path = "/v1/verify/jobs/{id}/results", tag = "verify",
    params(("id" = String, Path, description = "Job id"), ResultsParams),
    responses((status = 200, body = JobResults), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
pub async fn job_results(
    State(api): State<Arc<Api>>,
    caller: crate::auth::Caller,
    Path(id): Path<String>,
    Params(p): Params<ResultsParams>,
) -> Result<Json<JobResults>, Problem> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid("limit", "1 to 1000"));
    }
    let after = match &p.cursor {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| Problem::invalid("cursor", "not a cursor this API returned"))?,
        ),
    };
    let job = own_job(&api, &caller, &id).await?;
    let items = api.store.verify_items(&job.id, after, limit).await?;
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|i| i.index.to_string()))
        .flatten();
    let results = items
        .into_iter()
        .map(|i| JobResult {
            index: i.index,
            answer: i.answer.and_then(|a| serde_json::from_str(&a).ok()),
            address: i.address,
        })
        .collect();
    Ok(Json(JobResults {
        results,
        next_cursor,
    }))
}
