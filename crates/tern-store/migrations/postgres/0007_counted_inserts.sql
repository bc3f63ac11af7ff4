-- Rows added to mailboxes and the queue no longer count themselves in a row trigger (a
-- plpgsql call and two updates per row, a new version of the body's and the account's row
-- each time): the statements that add them count a whole batch at once — a body's references
-- as its row is made or found (`blobs.refcount`), each account's bytes in one update
-- (`accounts.used`). Removals still count in triggers: they come by cascade too.
DROP TRIGGER mailbox_messages_added ON mailbox_messages;
DROP FUNCTION mailbox_message_added();
DROP TRIGGER queue_messages_added ON queue_messages;
DROP FUNCTION queue_message_added();
DROP FUNCTION blob_ref(BIGINT);
