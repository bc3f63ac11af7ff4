-- Version 3: find changed messages by MODSEQ (IMAP sessions' sync, CONDSTORE).
CREATE INDEX IF NOT EXISTS mailbox_messages_modseq ON mailbox_messages(mailbox_id, modseq);
