-- Version 12: spam filter thresholds per domain or account, and the greylist's
-- triplets (kept across restarts).
CREATE TABLE IF NOT EXISTS filter_policies (
    target        TEXT PRIMARY KEY,   -- 'example.com' or 'alice@example.com'
    junk_score    REAL,               -- NULL: inherit (domain, then [filter])
    reject_score  REAL
);
CREATE TABLE IF NOT EXISTS greylist (
    network       TEXT NOT NULL,
    sender        TEXT NOT NULL,
    rcpt          TEXT NOT NULL,
    first_seen    INTEGER NOT NULL,
    passed_until  INTEGER NOT NULL,
    PRIMARY KEY (network, sender, rcpt)
);
