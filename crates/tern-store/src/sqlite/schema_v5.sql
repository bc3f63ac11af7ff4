-- Version 5: expunged UIDs with the MODSEQ of their removal, so IMAP
-- clients can resynchronise quickly (QRESYNC VANISHED, RFC 7162 §3.2).
CREATE TABLE IF NOT EXISTS expunged (
    mailbox_id  INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    modseq      INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS mailbox_messages_tombstone AFTER DELETE ON mailbox_messages
BEGIN
    INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq)
        SELECT OLD.mailbox_id, OLD.uid, highest_modseq FROM mailboxes WHERE id = OLD.mailbox_id;
END;
CREATE TRIGGER IF NOT EXISTS mailboxes_removed AFTER DELETE ON mailboxes
BEGIN
    DELETE FROM expunged WHERE mailbox_id = OLD.id;
END;
