-- Version 6: DKIM signing keys per domain (RFC 6376, RFC 8463).
-- status: 'active' (signing), 'pending' (generated, record not yet published).
CREATE TABLE IF NOT EXISTS dkim_keys (
    id          INTEGER PRIMARY KEY,
    domain      TEXT NOT NULL,
    selector    TEXT NOT NULL,
    algorithm   TEXT NOT NULL,
    private_key TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active',
    created_at  INTEGER NOT NULL,
    UNIQUE (domain, selector)
);
