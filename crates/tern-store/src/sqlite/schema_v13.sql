-- Version 13: the sending platform. Events (the history of every message,
-- written in the same transaction as the change they record), the log of
-- sent messages' envelopes and headers (kept as long as their events),
-- suppression lists, API keys, idempotent responses, webhook endpoints and
-- their durable outbox, message templates.
CREATE TABLE IF NOT EXISTS events (
    id          TEXT PRIMARY KEY,     -- ULID: sorts by time
    type        TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    recipient   TEXT,                 -- lower case
    domain      TEXT,
    data        TEXT NOT NULL         -- the event's JSON
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_message ON events(message_id, id);
CREATE INDEX IF NOT EXISTS events_recipient ON events(recipient, id);
CREATE INDEX IF NOT EXISTS events_domain ON events(domain, id);
-- Keyed by queue id, which sorts by time: pruning needs no second index. Every index
-- here is a page more in each group commit's WAL write, so there are only the ones
-- the API's lookups need (by message, by recipient, by domain; a type filter scans
-- in id order).
CREATE TABLE IF NOT EXISTS message_log (
    message_id  TEXT PRIMARY KEY,
    time        INTEGER NOT NULL,     -- Unix seconds
    data        TEXT NOT NULL         -- JSON: source, sender, recipients, headers, tags, metadata
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS suppressions (
    address     TEXT NOT NULL,        -- lower case
    domain      TEXT NOT NULL,        -- the sending domain it applies to; '' for all
    reason      TEXT NOT NULL,        -- hard_bounce, complaint, unsubscribe, manual
    created     INTEGER NOT NULL,
    expires     INTEGER,              -- NULL: never
    detail      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (address, domain)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,     -- the public part of the key
    hash        TEXT NOT NULL,        -- SHA-256 of the whole key, hex
    scope       TEXT NOT NULL,        -- send, read, admin
    domains     TEXT NOT NULL,        -- JSON array; empty: any
    name        TEXT NOT NULL DEFAULT '',
    created     INTEGER NOT NULL,
    revoked     INTEGER               -- NULL: valid
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idempotency (
    key_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    request     TEXT NOT NULL,        -- SHA-256 of method, path and body
    status      INTEGER NOT NULL,
    response    TEXT NOT NULL,
    created     INTEGER NOT NULL,
    PRIMARY KEY (key_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhooks (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    secret      TEXT NOT NULL,
    events      TEXT NOT NULL,        -- JSON array of types; empty: all
    domain      TEXT NOT NULL,        -- '' for all
    batch       INTEGER NOT NULL DEFAULT 0,
    created     INTEGER NOT NULL,
    next_attempt INTEGER NOT NULL DEFAULT 0,  -- the endpoint backs off as a whole
    failures    INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_outbox (
    seq         INTEGER PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL,
    created     INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX IF NOT EXISTS webhook_outbox_hook ON webhook_outbox(webhook_id, seq);
CREATE TABLE IF NOT EXISTS webhook_attempts (
    seq         INTEGER PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    time        INTEGER NOT NULL,
    events      INTEGER NOT NULL,
    status      INTEGER,              -- HTTP status; NULL: no answer
    error       TEXT NOT NULL DEFAULT '',
    millis      INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_hook ON webhook_attempts(webhook_id, seq);
CREATE TABLE IF NOT EXISTS webhook_dead (
    seq         INTEGER PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL,
    time        INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS templates (
    name        TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    text        TEXT,
    html        TEXT,
    created     INTEGER NOT NULL,
    updated     INTEGER NOT NULL
) WITHOUT ROWID;
