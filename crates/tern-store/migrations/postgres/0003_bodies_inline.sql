-- Bodies in PostgreSQL itself, for a store without a blob store ([blobs] backend = "local"):
-- written in the transaction that refers to them, so one WAL flush covers body and metadata,
-- and gone with their `blobs` row. Stored out of line and uncompressed (STORAGE EXTERNAL):
-- mail compresses poorly and the CPU is better spent elsewhere.
CREATE TABLE blob_data (
    blob_id  BIGINT PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE,
    data     BYTEA NOT NULL
);
ALTER TABLE blob_data ALTER COLUMN data SET STORAGE EXTERNAL;
