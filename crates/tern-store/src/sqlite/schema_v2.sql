-- Version 2: moves into and out of Junk, for the spam filter to learn from.
CREATE TABLE IF NOT EXISTS junk_training (
    id          INTEGER PRIMARY KEY,
    account_id  INTEGER NOT NULL,
    blob_id     INTEGER NOT NULL,
    is_spam     INTEGER NOT NULL,
    at          INTEGER NOT NULL
);
