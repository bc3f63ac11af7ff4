-- Version 4: the header block of each body, kept apart so header searches
-- read a few hundred bytes per message instead of the whole message.
-- Rows written before this version have NULL and fall back to the body.
ALTER TABLE blobs ADD COLUMN header BLOB;
