-- Schema v20: message bodies may live outside the database ([blobs] backend = "files" or "s3"),
-- stored under their hash (the column every row already has). Such a row keeps an empty `data`
-- and `external` = 1; its header block is always in blob_headers, so header searches and
-- ENVELOPE never fetch the body.
ALTER TABLE blobs ADD COLUMN external INTEGER NOT NULL DEFAULT 0;
-- Bodies in the blob store that may have lost their last reference: the row's delete (refcount
-- reached 0) or a write that stored the body and then failed. The collector deletes the body
-- once no row refers to its hash and it has not been written for a while, then the entry.
CREATE TABLE IF NOT EXISTS blob_gc (
    hash   TEXT PRIMARY KEY,
    since  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS blobs_external_removed AFTER DELETE ON blobs WHEN OLD.external <> 0
BEGIN
    INSERT OR IGNORE INTO blob_gc(hash, since) VALUES (OLD.hash, CAST(strftime('%s', 'now') AS INTEGER));
END;
CREATE INDEX IF NOT EXISTS blobs_external_hash ON blobs(hash) WHERE external <> 0;
-- The names of each body's header fields, lower case, each between newlines ("\nfrom\nto\n"):
-- a header search finds the few messages that have the field at all by looking at these short
-- rows instead of every header block. Bodies stored before this version have no row and are
-- looked at the old way.
CREATE TABLE IF NOT EXISTS blob_fields (
    blob_id  INTEGER PRIMARY KEY,
    names    TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS blobs_fields_removed AFTER DELETE ON blobs
BEGIN
    DELETE FROM blob_fields WHERE blob_id = OLD.id;
END;
-- Nodes sharing this store (`tern node list`) and the owner of each queue lease: a node that
-- restarts frees only its own leases. Leases taken before this version have no owner ('')
-- and are freed by whichever node starts first.
CREATE TABLE IF NOT EXISTS nodes (
    name        TEXT PRIMARY KEY,
    started_at  INTEGER NOT NULL,
    heartbeat   INTEGER NOT NULL,
    pid         INTEGER NOT NULL,
    version     TEXT NOT NULL
) WITHOUT ROWID;
ALTER TABLE queue_rcpts ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS queue_rcpts_leases ON queue_rcpts(lease_owner) WHERE lease_until <> 0;
