-- Recipients leave the queue in batches (postgres/queue.rs `remove_rcpts`), not row by row in
-- triggers: a recipient's row trigger locked its message, deleted it with its last recipient,
-- whose own trigger called blob_unref — six statements in plpgsql per delivered message. The
-- batch does the same in two statements: the messages and their bodies locked in id order,
-- then recipients, emptied messages and the bodies' references at once (a body whose last
-- reference goes is deleted, and handed to the collector if it lives in a blob store).
-- Nothing else deletes queue rows: the queue has no cascade into it.
DROP TRIGGER queue_rcpts_removed ON queue_rcpts;
DROP FUNCTION queue_rcpt_removed();
DROP TRIGGER queue_messages_removed ON queue_messages;
DROP FUNCTION queue_message_removed();
