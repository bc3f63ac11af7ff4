-- Schema v18: a UIDVALIDITY is never given twice (RFC 9051 §2.3.1.1): the last one issued is
-- kept here, so a mailbox deleted and created again within the same second gets a new one.
CREATE TABLE IF NOT EXISTS sequences (
    name   TEXT PRIMARY KEY,
    value  INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO sequences(name, value)
SELECT 'uidvalidity', coalesce(max(uidvalidity), 0) FROM mailboxes;
