-- Version 7: the outbound queue. A queued message refers to its body in
-- `blobs` (shared with local copies of the same submission); each remote
-- recipient has its own row with its own schedule, so one deferred domain
-- never holds back the others. Rows leave the queue when delivered or
-- returned; the message goes with its last recipient.
CREATE TABLE IF NOT EXISTS queue_messages (
    id          INTEGER PRIMARY KEY,
    queue_id    TEXT NOT NULL,
    blob_id     INTEGER NOT NULL REFERENCES blobs(id),
    mail_from   TEXT NOT NULL,
    params      TEXT NOT NULL DEFAULT '{}',
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_messages_queue_id ON queue_messages(queue_id);
-- Deleting a body checks its references (foreign keys): without this index
-- that check scans the whole queue.
CREATE INDEX IF NOT EXISTS queue_messages_blob ON queue_messages(blob_id);
CREATE TABLE IF NOT EXISTS queue_rcpts (
    id            INTEGER PRIMARY KEY,
    message_id    INTEGER NOT NULL REFERENCES queue_messages(id),
    address       TEXT NOT NULL,
    domain        TEXT NOT NULL,
    params        TEXT NOT NULL DEFAULT '{}',
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_attempt  INTEGER NOT NULL,
    -- A worker holds the row until then (0 = free); cleared at startup.
    lease_until   INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    delay_noticed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queue_rcpts_due ON queue_rcpts(next_attempt);
CREATE INDEX IF NOT EXISTS queue_rcpts_message ON queue_rcpts(message_id);
CREATE TRIGGER IF NOT EXISTS queue_messages_added AFTER INSERT ON queue_messages
BEGIN
    UPDATE blobs SET refcount = refcount + 1 WHERE id = NEW.blob_id;
END;
CREATE TRIGGER IF NOT EXISTS queue_messages_removed AFTER DELETE ON queue_messages
BEGIN
    UPDATE blobs SET refcount = refcount - 1 WHERE id = OLD.blob_id;
    DELETE FROM blobs WHERE id = OLD.blob_id AND refcount <= 0;
END;
CREATE TRIGGER IF NOT EXISTS queue_rcpts_removed AFTER DELETE ON queue_rcpts
BEGIN
    DELETE FROM queue_messages WHERE id = OLD.message_id
        AND NOT EXISTS (SELECT 1 FROM queue_rcpts WHERE message_id = OLD.message_id);
END;
