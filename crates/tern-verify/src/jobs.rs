//! Bulk verification jobs: the addresses are stored with the job
//! ([`tern_store::VerifyJobs`]) before its id is given out; this runner
//! answers them a chunk at a time, oldest job first, storing each chunk's
//! answers as it finishes. After a restart it carries on with what is
//! unanswered; a chunk answered twice (a crash between answering and
//! storing) is stored once.

use crate::{Answer, Verifier};
use std::sync::Arc;
use std::time::Duration;
use tern_store::{VerifyItem, VerifyJobs};
use tokio::sync::Notify;

/// Addresses verified together (and stored in one commit).
const CHUNK: usize = 500;

/// Runs verification jobs.
pub struct Runner {
    store: Arc<dyn VerifyJobs>,
    verifier: Arc<Verifier>,
    concurrency: usize,
    wake: Notify,
}

impl Runner {
    /// A runner over `store`, verifying `concurrency` domains at once.
    pub fn new(
        store: Arc<dyn VerifyJobs>,
        verifier: Arc<Verifier>,
        concurrency: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            verifier,
            concurrency: concurrency.max(1),
            wake: Notify::new(),
        })
    }

    /// The verifier, for answers given at once.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }

    /// The store of jobs.
    pub fn store(&self) -> &Arc<dyn VerifyJobs> {
        &self.store
    }

    /// Says that a job was added.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Works through unfinished jobs for ever.
    pub async fn run(self: Arc<Self>) {
        loop {
            match self.store.unfinished_verify_jobs().await {
                Ok(ids) => {
                    for id in ids {
                        self.work(&id).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "verify: cannot list jobs"),
            }
            // A missed wake-up costs at most a minute.
            let _ = tokio::time::timeout(Duration::from_secs(60), self.wake.notified()).await;
        }
    }

    /// Answers one job to its end (or until it is removed).
    async fn work(&self, id: &str) {
        loop {
            let items = match self.store.pending_verify_items(id, CHUNK).await {
                Ok(i) if i.is_empty() => return,
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(job = id, error = %e, "verify: cannot read the job");
                    return;
                }
            };
            let addresses: Vec<String> = items.iter().map(|i| i.address.clone()).collect();
            let answers = self
                .verifier
                .verify_all(&addresses, self.concurrency, |_| {})
                .await;
            let answered = items
                .into_iter()
                .zip(answers)
                .map(|(item, a)| answered(item, &a))
                .collect::<Vec<_>>();
            let n = answered.len();
            let now = chrono_now();
            if let Err(e) = self.store.save_verify_answers(id, answered, now).await {
                tracing::warn!(job = id, error = %e, "verify: cannot store answers");
                return;
            }
            tracing::info!(job = id, answered = n, "verify: chunk done");
        }
    }
}

fn answered(mut item: VerifyItem, a: &Answer) -> VerifyItem {
    item.result = Some(a.result.as_str().to_string());
    item.answer = serde_json::to_string(a).ok();
    item
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
