-- Schema v15: bulk verification jobs (POST /v1/verify/jobs). A job's addresses are stored with
-- it; each answer is written as its chunk finishes, so a job resumes after a restart.
CREATE TABLE IF NOT EXISTS verify_jobs (
    id        TEXT PRIMARY KEY,
    created   INTEGER NOT NULL,
    api_key   TEXT,
    total     INTEGER NOT NULL,
    done      INTEGER NOT NULL DEFAULT 0,
    finished  INTEGER
);
CREATE INDEX IF NOT EXISTS verify_jobs_created ON verify_jobs(created);
CREATE TABLE IF NOT EXISTS verify_items (
    job      TEXT NOT NULL REFERENCES verify_jobs(id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    address  TEXT NOT NULL,
    result   TEXT,                -- deliverable, undeliverable, risky, unknown; NULL: pending
    answer   TEXT,                -- the answer as JSON
    PRIMARY KEY (job, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS verify_items_pending ON verify_items(job, idx) WHERE result IS NULL;
