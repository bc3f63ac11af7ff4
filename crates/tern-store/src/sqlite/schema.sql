-- Tern embedded schema (SQLite). Version tracked with PRAGMA user_version.
CREATE TABLE IF NOT EXISTS domains (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    catch_all   TEXT,
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS accounts (
    id             INTEGER PRIMARY KEY,
    address        TEXT NOT NULL UNIQUE,
    domain_id      INTEGER NOT NULL REFERENCES domains(id),
    password_hash  TEXT NOT NULL,
    quota          INTEGER NOT NULL DEFAULT 0,
    used           INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (
    id          INTEGER PRIMARY KEY,
    address     TEXT NOT NULL UNIQUE,
    domain_id   INTEGER NOT NULL REFERENCES domains(id),
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS mailboxes (
    id              INTEGER PRIMARY KEY,
    account_id      INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    special_use     TEXT,
    uidvalidity     INTEGER NOT NULL,
    uidnext         INTEGER NOT NULL DEFAULT 1,
    highest_modseq  INTEGER NOT NULL DEFAULT 1,
    subscribed      INTEGER NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);
-- One row per stored message body, however many mailboxes hold it. `hash` is
-- the SHA-256 of the bytes (integrity checks, object keys for S3 later). It
-- is deliberately not indexed: every inbound message carries its own
-- Received header, so bodies of different transactions never coincide, and a
-- random-order index would cost a WAL page per message. Rows are referenced
-- by `id`, which grows in order, so a batch of deliveries touches few pages.
CREATE TABLE IF NOT EXISTS blobs (
    id        INTEGER PRIMARY KEY,
    hash      TEXT NOT NULL,
    size      INTEGER NOT NULL,
    refcount  INTEGER NOT NULL,
    meta      TEXT NOT NULL,
    data      BLOB NOT NULL
);
-- A message in a mailbox.
CREATE TABLE IF NOT EXISTS mailbox_messages (
    mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
    uid           INTEGER NOT NULL,
    blob_id       INTEGER NOT NULL REFERENCES blobs(id),
    size          INTEGER NOT NULL,
    flags         TEXT NOT NULL DEFAULT '',
    modseq        INTEGER NOT NULL,
    internaldate  INTEGER NOT NULL,
    queue_id      TEXT NOT NULL,
    mail_from     TEXT NOT NULL,
    params        TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mailbox_messages_blob ON mailbox_messages(blob_id);

-- Bookkeeping done inside SQLite, so a delivery or expunge is one statement
-- per mailbox row (no extra round trips in the group-commit writer):
-- UIDNEXT/HIGHESTMODSEQ, account usage and blob reference counts follow the
-- mailbox_messages rows.
CREATE TRIGGER IF NOT EXISTS mailbox_messages_added AFTER INSERT ON mailbox_messages
BEGIN
    UPDATE mailboxes SET uidnext = NEW.uid + 1, highest_modseq = NEW.modseq WHERE id = NEW.mailbox_id;
    UPDATE accounts SET used = used + NEW.size
        WHERE id = (SELECT account_id FROM mailboxes WHERE id = NEW.mailbox_id);
    UPDATE blobs SET refcount = refcount + 1 WHERE id = NEW.blob_id;
END;
CREATE TRIGGER IF NOT EXISTS mailbox_messages_removed AFTER DELETE ON mailbox_messages
BEGIN
    UPDATE accounts SET used = MAX(0, used - OLD.size)
        WHERE id = (SELECT account_id FROM mailboxes WHERE id = OLD.mailbox_id);
    UPDATE blobs SET refcount = refcount - 1 WHERE id = OLD.blob_id;
    DELETE FROM blobs WHERE id = OLD.blob_id AND refcount <= 0;
END;
