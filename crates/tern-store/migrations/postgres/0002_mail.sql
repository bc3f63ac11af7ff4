-- Tern on PostgreSQL, second part: mail (bodies by hash, mailbox rows, tombstones), the queue,
-- and the sending platform's records (events and their counters, message logs, suppressions,
-- API keys, idempotent responses, webhooks and their outbox, templates), spam data, reports,
-- verification jobs and dashboard users. The same tables and meanings as the SQLite backend.
--
-- The invariants the SQLite backend keeps in triggers are kept here in triggers too, so that no
-- code path (a cascade from an account's removal included) can break them:
--   * an account's `used` is the sum of its mailbox rows' sizes;
--   * a body's `refcount` is the number of mailbox and queue rows naming it; at 0 the row goes
--     and its hash is handed to the collector (`blob_gc`), which deletes the body from the blob
--     store once no row names it again (under the hash's advisory lock: see postgres/bodies.rs);
--   * an expunged message leaves a tombstone (RFC 7162 VANISHED) with its mailbox's MODSEQ;
--   * a queued message goes when its last recipient goes.
-- UIDNEXT and HIGHESTMODSEQ are advanced by the code that inserts, with the mailbox row locked
-- (UPDATE … RETURNING), so concurrent writers on any node are ordered by that lock.

-- Bodies: the bytes are in the blob store under `hash`; the row keeps what IMAP reads without
-- them (MIME metadata, the header block and its field names). One row per content.
CREATE TABLE blobs (
    id        BIGSERIAL PRIMARY KEY,
    hash      TEXT NOT NULL UNIQUE,
    size      BIGINT NOT NULL,
    refcount  BIGINT NOT NULL DEFAULT 0,
    meta      TEXT NOT NULL,
    header    BYTEA,
    fields    TEXT
);
CREATE TABLE blob_gc (
    hash   TEXT PRIMARY KEY,
    since  BIGINT NOT NULL
);
CREATE TABLE mailbox_messages (
    mailbox_id    BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid           BIGINT NOT NULL,
    blob_id       BIGINT NOT NULL REFERENCES blobs(id),
    size          BIGINT NOT NULL,
    flags         TEXT NOT NULL DEFAULT '',
    modseq        BIGINT NOT NULL,
    internaldate  BIGINT NOT NULL,
    queue_id      TEXT NOT NULL,
    mail_from     TEXT NOT NULL,
    params        TEXT NOT NULL DEFAULT '{}',
    saved_at      BIGINT,
    PRIMARY KEY (mailbox_id, uid)
);
CREATE INDEX mailbox_messages_blob ON mailbox_messages(blob_id);
CREATE INDEX mailbox_messages_modseq ON mailbox_messages(mailbox_id, modseq);
CREATE TABLE expunged (
    mailbox_id  BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid         BIGINT NOT NULL,
    modseq      BIGINT NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
);

-- A body gains a reference.
CREATE FUNCTION blob_ref(blob BIGINT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE blobs SET refcount = refcount + 1 WHERE id = blob;
END $$;
-- A body loses a reference; the last one removes its row and hands the hash to the collector.
CREATE FUNCTION blob_unref(blob BIGINT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    left_over BIGINT;
    h TEXT;
BEGIN
    UPDATE blobs SET refcount = refcount - 1 WHERE id = blob RETURNING refcount, hash INTO left_over, h;
    IF left_over IS NOT NULL AND left_over <= 0 THEN
        DELETE FROM blobs WHERE id = blob;
        INSERT INTO blob_gc(hash, since) VALUES (h, EXTRACT(EPOCH FROM now())::BIGINT)
            ON CONFLICT (hash) DO NOTHING;
    END IF;
END $$;

CREATE FUNCTION mailbox_message_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET used = used + NEW.size
        WHERE id = (SELECT account_id FROM mailboxes WHERE id = NEW.mailbox_id);
    PERFORM blob_ref(NEW.blob_id);
    RETURN NULL;
END $$;
CREATE TRIGGER mailbox_messages_added AFTER INSERT ON mailbox_messages
    FOR EACH ROW EXECUTE FUNCTION mailbox_message_added();

CREATE FUNCTION mailbox_message_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE accounts SET used = GREATEST(0, used - OLD.size)
        WHERE id = (SELECT account_id FROM mailboxes WHERE id = OLD.mailbox_id);
    -- A mailbox removed with its rows leaves no tombstones (the SELECT finds no mailbox).
    INSERT INTO expunged(mailbox_id, uid, modseq)
        SELECT OLD.mailbox_id, OLD.uid, highest_modseq FROM mailboxes WHERE id = OLD.mailbox_id
        ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = EXCLUDED.modseq;
    PERFORM blob_unref(OLD.blob_id);
    RETURN NULL;
END $$;
CREATE TRIGGER mailbox_messages_removed AFTER DELETE ON mailbox_messages
    FOR EACH ROW EXECUTE FUNCTION mailbox_message_removed();

CREATE TABLE junk_training (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT NOT NULL,
    blob_id     BIGINT NOT NULL,
    is_spam     BOOLEAN NOT NULL,
    at          BIGINT NOT NULL
);
CREATE TABLE metadata (
    account_id  BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mailbox     TEXT NOT NULL,
    entry       TEXT NOT NULL,
    value       BYTEA NOT NULL,
    PRIMARY KEY (account_id, mailbox, entry)
);
CREATE TABLE urlauth_keys (
    account_id  BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mailbox     TEXT NOT NULL,
    key         BYTEA NOT NULL,
    PRIMARY KEY (account_id, mailbox)
);

-- The queue. A recipient is leased to one node (`lease_owner`) until `lease_until`; claims
-- skip rows another node has locked (FOR UPDATE SKIP LOCKED).
CREATE TABLE queue_messages (
    id          BIGSERIAL PRIMARY KEY,
    queue_id    TEXT NOT NULL,
    blob_id     BIGINT NOT NULL REFERENCES blobs(id),
    mail_from   TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    size        BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX queue_messages_queue_id ON queue_messages(queue_id);
CREATE INDEX queue_messages_blob ON queue_messages(blob_id);
CREATE TABLE queue_rcpts (
    id            BIGSERIAL PRIMARY KEY,
    message_id    BIGINT NOT NULL REFERENCES queue_messages(id),
    address       TEXT NOT NULL,
    domain        TEXT NOT NULL,
    params        TEXT NOT NULL DEFAULT '{}',
    attempts      BIGINT NOT NULL DEFAULT 0,
    next_attempt  BIGINT NOT NULL,
    lease_until   BIGINT NOT NULL DEFAULT 0,
    lease_owner   TEXT NOT NULL DEFAULT '',
    last_error    TEXT,
    delay_noticed BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX queue_rcpts_due ON queue_rcpts(next_attempt);
CREATE INDEX queue_rcpts_message ON queue_rcpts(message_id);
CREATE INDEX queue_rcpts_leases ON queue_rcpts(lease_owner) WHERE lease_until <> 0;

CREATE FUNCTION queue_message_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM blob_ref(NEW.blob_id);
    RETURN NULL;
END $$;
CREATE TRIGGER queue_messages_added AFTER INSERT ON queue_messages
    FOR EACH ROW EXECUTE FUNCTION queue_message_added();
CREATE FUNCTION queue_message_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM blob_unref(OLD.blob_id);
    RETURN NULL;
END $$;
CREATE TRIGGER queue_messages_removed AFTER DELETE ON queue_messages
    FOR EACH ROW EXECUTE FUNCTION queue_message_removed();
-- The message row is locked first, so two nodes removing its last two recipients at once are
-- ordered, and the second sees the first's removal (READ COMMITTED: a new snapshot per
-- statement) and removes the message.
CREATE FUNCTION queue_rcpt_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM queue_messages WHERE id = OLD.message_id FOR UPDATE;
    DELETE FROM queue_messages WHERE id = OLD.message_id
        AND NOT EXISTS (SELECT 1 FROM queue_rcpts WHERE message_id = OLD.message_id);
    RETURN NULL;
END $$;
CREATE TRIGGER queue_rcpts_removed AFTER DELETE ON queue_rcpts
    FOR EACH ROW EXECUTE FUNCTION queue_rcpt_removed();

-- The sending platform.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,     -- ULID: sorts by time
    type        TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    recipient   TEXT,                 -- lower case
    domain      TEXT,
    data        TEXT NOT NULL         -- the event's JSON
);
CREATE INDEX events_message ON events(message_id, id);
CREATE INDEX events_recipient ON events(recipient, id);
CREATE INDEX events_domain ON events(domain, id);
-- Hourly counters. Every delivery adds to the all-domains row of its hour, so each key is
-- spread over 16 slots (the writer picks one at random): concurrent commits on any node do not
-- queue on one row lock. Readers sum the slots.
CREATE TABLE event_counts (
    hour    BIGINT NOT NULL,
    domain  TEXT NOT NULL,
    dim     TEXT NOT NULL,
    type    TEXT NOT NULL,
    detail  TEXT NOT NULL,
    slot    SMALLINT NOT NULL,
    n       BIGINT NOT NULL,
    PRIMARY KEY (domain, dim, hour, type, detail, slot)
);
CREATE TABLE message_log (
    message_id  TEXT PRIMARY KEY,
    time        BIGINT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX message_log_time ON message_log(time);
CREATE TABLE suppressions (
    address     TEXT NOT NULL,
    domain      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created     BIGINT NOT NULL,
    expires     BIGINT,
    detail      TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (address, domain)
);
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    hash        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    domains     TEXT NOT NULL,
    name        TEXT NOT NULL DEFAULT '',
    created     BIGINT NOT NULL,
    revoked     BIGINT
);
CREATE TABLE idempotency (
    key_id      TEXT NOT NULL,
    key         TEXT NOT NULL,
    request     TEXT NOT NULL,
    status      BIGINT NOT NULL,
    response    TEXT NOT NULL,
    created     BIGINT NOT NULL,
    PRIMARY KEY (key_id, key)
);
CREATE TABLE webhooks (
    id           TEXT PRIMARY KEY,
    url          TEXT NOT NULL,
    secret       TEXT NOT NULL,
    events       TEXT NOT NULL,
    domain       TEXT NOT NULL,
    batch        BOOLEAN NOT NULL DEFAULT false,
    created      BIGINT NOT NULL,
    next_attempt BIGINT NOT NULL DEFAULT 0,
    failures     BIGINT NOT NULL DEFAULT 0,
    -- The node draining the endpoint, until when (renewed with each result): one node at a
    -- time, so events reach it once and in order.
    claimed_by    TEXT NOT NULL DEFAULT '',
    claimed_until BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE webhook_outbox (
    seq         BIGSERIAL PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL,
    created     BIGINT NOT NULL,
    attempts    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT
);
CREATE INDEX webhook_outbox_hook ON webhook_outbox(webhook_id, seq);
CREATE TABLE webhook_attempts (
    seq         BIGSERIAL PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    time        BIGINT NOT NULL,
    events      BIGINT NOT NULL,
    status      BIGINT,
    error       TEXT NOT NULL DEFAULT '',
    millis      BIGINT NOT NULL
);
CREATE INDEX webhook_attempts_hook ON webhook_attempts(webhook_id, seq);
CREATE TABLE webhook_dead (
    seq         BIGSERIAL PRIMARY KEY,
    webhook_id  TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id    TEXT NOT NULL,
    time        BIGINT NOT NULL,
    attempts    BIGINT NOT NULL,
    last_error  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE templates (
    name        TEXT PRIMARY KEY,
    subject     TEXT NOT NULL,
    text        TEXT,
    html        TEXT,
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL
);

-- Spam data, reports, verification jobs, dashboard users.
CREATE TABLE bayes_tokens (
    scope  BIGINT NOT NULL,
    token  BIGINT NOT NULL,
    spam   BIGINT NOT NULL DEFAULT 0,
    ham    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, token)
);
CREATE TABLE bayes_totals (
    scope  BIGINT PRIMARY KEY,
    spam   BIGINT NOT NULL DEFAULT 0,
    ham    BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE filter_policies (
    target        TEXT PRIMARY KEY,
    junk_score    DOUBLE PRECISION,
    reject_score  DOUBLE PRECISION
);
CREATE TABLE greylist (
    network       TEXT NOT NULL,
    sender        TEXT NOT NULL,
    rcpt          TEXT NOT NULL,
    first_seen    BIGINT NOT NULL,
    passed_until  BIGINT NOT NULL,
    PRIMARY KEY (network, sender, rcpt)
);
CREATE TABLE dmarc_reports (
    id           BIGSERIAL PRIMARY KEY,
    domain       TEXT NOT NULL,
    org          TEXT NOT NULL,
    report_id    TEXT NOT NULL,
    begin_at     BIGINT NOT NULL,
    end_at       BIGINT NOT NULL,
    messages     BIGINT NOT NULL,
    failed       BIGINT NOT NULL,
    report       TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    UNIQUE (org, report_id)
);
CREATE INDEX dmarc_reports_domain ON dmarc_reports(domain, end_at);
CREATE TABLE tls_reports (
    id           BIGSERIAL PRIMARY KEY,
    domain       TEXT NOT NULL,
    org          TEXT NOT NULL,
    report_id    TEXT NOT NULL,
    begin_at     BIGINT NOT NULL,
    end_at       BIGINT NOT NULL,
    successes    BIGINT NOT NULL,
    failures     BIGINT NOT NULL,
    report       TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    UNIQUE (org, report_id)
);
CREATE INDEX tls_reports_domain ON tls_reports(domain, end_at);
CREATE TABLE report_counts (
    kind      TEXT NOT NULL,
    domain    TEXT NOT NULL,
    key       TEXT NOT NULL,
    meta      TEXT NOT NULL,
    count     BIGINT NOT NULL,
    first_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, domain, key)
);
CREATE TABLE verify_jobs (
    id        TEXT PRIMARY KEY,
    created   BIGINT NOT NULL,
    api_key   TEXT,
    total     BIGINT NOT NULL,
    done      BIGINT NOT NULL DEFAULT 0,
    finished  BIGINT
);
CREATE INDEX verify_jobs_created ON verify_jobs(created);
CREATE TABLE verify_items (
    job      TEXT NOT NULL REFERENCES verify_jobs(id) ON DELETE CASCADE,
    idx      BIGINT NOT NULL,
    address  TEXT NOT NULL,
    result   TEXT,
    answer   TEXT,
    PRIMARY KEY (job, idx)
);
CREATE INDEX verify_items_pending ON verify_items(job, idx) WHERE result IS NULL;
CREATE TABLE web_users (
    email          TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    domains        TEXT NOT NULL DEFAULT '[]',
    created        BIGINT NOT NULL
);
CREATE TABLE web_sessions (
    id_hash  TEXT PRIMARY KEY,
    email    TEXT NOT NULL REFERENCES web_users(email) ON DELETE CASCADE,
    csrf     TEXT NOT NULL,
    expires  BIGINT NOT NULL
);
CREATE INDEX web_sessions_expires ON web_sessions(expires);
