-- Shared by every node. Secrets every node must share (the SRS key, the key that signs unsubscribe and tracking
-- links): made once, by the first node that needs one.
CREATE TABLE secrets (
    name   TEXT PRIMARY KEY,
    value  BYTEA NOT NULL
);

-- Shared allowances (per-account sending limits…): a count per key and window of its period.
CREATE TABLE allowances (
    key  TEXT NOT NULL,
    win  BIGINT NOT NULL,
    n    BIGINT NOT NULL,
    PRIMARY KEY (key, win)
);
