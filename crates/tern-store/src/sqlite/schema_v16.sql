-- Schema v16: dashboard users (admins, and domain owners with a list of domains) and their
-- sessions, kept as the SHA-256 of the cookie value.
CREATE TABLE IF NOT EXISTS web_users (
    email          TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    domains        TEXT NOT NULL DEFAULT '[]',   -- JSON array; [] = every domain
    created        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS web_sessions (
    id_hash  TEXT PRIMARY KEY,
    email    TEXT NOT NULL REFERENCES web_users(email) ON DELETE CASCADE,
    csrf     TEXT NOT NULL,
    expires  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS web_sessions_expires ON web_sessions(expires);
