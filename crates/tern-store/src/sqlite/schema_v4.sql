-- Version 4: the header block of each body, in its own small table so
-- header searches read a few hundred bytes per message instead of walking
-- the body's overflow pages. Bodies stored before this version have no row
-- here and fall back to the body.
CREATE TABLE IF NOT EXISTS blob_headers (
    blob_id  INTEGER PRIMARY KEY,
    header   BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS blobs_removed AFTER DELETE ON blobs
BEGIN
    DELETE FROM blob_headers WHERE blob_id = OLD.id;
END;
