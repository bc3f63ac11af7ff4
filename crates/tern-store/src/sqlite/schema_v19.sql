-- Schema v19: subscriptions are names, not a mailbox attribute (RFC 9051 §6.3.7: a server must
-- not remove a name from the subscription list because the mailbox is gone; LIST (SUBSCRIBED)
-- then shows it as \NonExistent, RFC 5258 §3). CREATE no longer subscribes (RFC 9051 §6.3.4
-- says nothing of it, and clients that want it SUBSCRIBE); an account's first mailboxes are.
CREATE TABLE IF NOT EXISTS subscriptions (
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;
INSERT OR IGNORE INTO subscriptions(account_id, name)
SELECT account_id, name FROM mailboxes WHERE subscribed <> 0;
ALTER TABLE mailboxes DROP COLUMN subscribed;
-- \Recent for IMAP4rev1 sessions (RFC 3501 §2.3.2): messages from recent_uid up are recent;
-- the first read-write session to see them claims them by moving it past them. Nothing that
-- exists at this upgrade is recent.
ALTER TABLE mailboxes ADD COLUMN recent_uid INTEGER NOT NULL DEFAULT 1;
UPDATE mailboxes SET recent_uid = uidnext;
-- IMAP METADATA (RFC 5464): annotations of the server ('' as mailbox) and of mailboxes, by
-- mailbox name; DELETE removes a mailbox's, RENAME moves them.
CREATE TABLE IF NOT EXISTS metadata (
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mailbox     TEXT NOT NULL,
    entry       TEXT NOT NULL,
    value       BLOB NOT NULL,
    PRIMARY KEY (account_id, mailbox, entry)
) WITHOUT ROWID;
-- SAVEDATE (RFC 8514): when a message was saved into its mailbox (delivery, APPEND, COPY,
-- MOVE), Unix seconds; unknown (NULL) for rows stored before this version.
ALTER TABLE mailbox_messages ADD COLUMN saved_at INTEGER;
-- URLAUTH (RFC 4467): the secret each mailbox's authorized URLs are signed with, by mailbox name
-- (RESETKEY replaces it, which revokes every URL issued; DELETE removes it, RENAME moves it).
CREATE TABLE IF NOT EXISTS urlauth_keys (
    account_id  INTEGER NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    mailbox     TEXT NOT NULL,
    key         BLOB NOT NULL,
    PRIMARY KEY (account_id, mailbox)
) WITHOUT ROWID;
