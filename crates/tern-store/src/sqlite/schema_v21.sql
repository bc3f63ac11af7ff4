-- Secrets every node of an installation must share (the SRS key, the key that signs
-- unsubscribe and tracking links): made once, by the first node that needs one.
CREATE TABLE IF NOT EXISTS secrets (
    name   TEXT PRIMARY KEY,
    value  BLOB NOT NULL
) WITHOUT ROWID;
