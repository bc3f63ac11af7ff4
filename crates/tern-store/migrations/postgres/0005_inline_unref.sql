-- A body kept in PostgreSQL (blob_data) goes with its row when its last reference does: only
-- a body in a blob store needs the collector, so only those are handed to it (blob_gc).
CREATE OR REPLACE FUNCTION blob_unref(blob BIGINT) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    left_over BIGINT;
    h TEXT;
BEGIN
    UPDATE blobs SET refcount = refcount - 1 WHERE id = blob RETURNING refcount, hash INTO left_over, h;
    IF left_over IS NOT NULL AND left_over <= 0 THEN
        IF NOT EXISTS (SELECT 1 FROM blob_data WHERE blob_id = blob) THEN
            INSERT INTO blob_gc(hash, since) VALUES (h, EXTRACT(EPOCH FROM now())::BIGINT)
                ON CONFLICT (hash) DO NOTHING;
        END IF;
        DELETE FROM blobs WHERE id = blob;
    END IF;
END $$;
