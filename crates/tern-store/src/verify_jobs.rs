//! Bulk verification jobs (`POST /v1/verify/jobs`): the addresses of a job
//! and each one's answer as it is found. A job is stored in one commit
//! before its id is returned, and every answer is stored as its chunk
//! finishes, so a job survives a restart and resumes where it stood.

use crate::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A job as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyJob {
    /// `vj_` and random letters.
    pub id: String,
    /// When it was created (Unix seconds).
    pub created: i64,
    /// The API key that created it.
    pub api_key: Option<String>,
    /// How many addresses.
    pub total: u64,
    /// How many are answered.
    pub done: u64,
    /// When the last answer came (Unix seconds).
    pub finished: Option<i64>,
    /// Answers so far by result (`deliverable`, `undeliverable`, `risky`,
    /// `unknown`).
    pub counts: Vec<(String, u64)>,
}

/// One answered address.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyItem {
    /// The position in the job, from 0.
    pub index: u64,
    /// The address as given.
    pub address: String,
    /// The result (`deliverable`…); `None` while unanswered.
    pub result: Option<String>,
    /// The answer as JSON; `None` while unanswered.
    pub answer: Option<String>,
}

/// Storage of verification jobs.
#[async_trait]
pub trait VerifyJobs: Send + Sync {
    /// Stores a new job with its addresses, in one commit.
    async fn add_verify_job(&self, job: VerifyJob, addresses: Vec<String>) -> Result<()>;
    /// A job with its counts.
    async fn verify_job(&self, id: &str) -> Result<Option<VerifyJob>>;
    /// The newest jobs first (of one API key, if given).
    async fn verify_jobs(&self, api_key: Option<&str>, limit: usize) -> Result<Vec<VerifyJob>>;
    /// The ids of jobs with unanswered addresses, oldest first.
    async fn unfinished_verify_jobs(&self) -> Result<Vec<String>>;
    /// Up to `limit` unanswered addresses of a job, in order.
    async fn pending_verify_items(&self, id: &str, limit: usize) -> Result<Vec<VerifyItem>>;
    /// Stores answers (items with `result` and `answer` set), in one commit;
    /// a job whose last address is answered gets its `finished` time.
    async fn save_verify_answers(&self, id: &str, items: Vec<VerifyItem>, now: i64) -> Result<()>;
    /// Items after position `after` (exclusive; `None`: from the start),
    /// answered or not, in order.
    async fn verify_items(
        &self,
        id: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<VerifyItem>>;
    /// Removes a job and its items (a running job stops at its next chunk).
    async fn remove_verify_job(&self, id: &str) -> Result<bool>;
    /// Removes jobs created before `before` (Unix seconds); how many.
    async fn prune_verify_jobs(&self, before: i64) -> Result<usize>;
}
