-- Secrets every node must share (the SRS key, the key that signs unsubscribe and tracking
-- links): made once, by the first node that needs one.
CREATE TABLE secrets (
    name   TEXT PRIMARY KEY,
    value  BYTEA NOT NULL
);
