-- Tern on PostgreSQL, first part: the directory (domains, accounts, aliases, forwarding
-- aliases, DKIM keys), each account's mailboxes and subscriptions, and the nodes sharing the
-- store. The same tables and meanings as the SQLite backend (crates/tern-store/src/sqlite/
-- schema*.sql), in PostgreSQL's types; applied by sqlx's migrator, one transaction per file.
CREATE TABLE domains (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    catch_all   TEXT,
    created_at  BIGINT NOT NULL
);
CREATE TABLE accounts (
    id             BIGSERIAL PRIMARY KEY,
    address        TEXT NOT NULL UNIQUE,
    domain_id      BIGINT NOT NULL REFERENCES domains(id),
    password_hash  TEXT NOT NULL,
    quota          BIGINT NOT NULL DEFAULT 0,
    used           BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL
);
CREATE TABLE aliases (
    id          BIGSERIAL PRIMARY KEY,
    address     TEXT NOT NULL UNIQUE,
    domain_id   BIGINT NOT NULL REFERENCES domains(id),
    account_id  BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE
);
CREATE TABLE forwards (
    address    TEXT PRIMARY KEY,
    domain_id  BIGINT NOT NULL REFERENCES domains(id),
    target     TEXT NOT NULL
);
CREATE TABLE dkim_keys (
    id           BIGSERIAL PRIMARY KEY,
    domain       TEXT NOT NULL,
    selector     TEXT NOT NULL,
    algorithm    TEXT NOT NULL,
    private_key  TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (domain, selector)
);
-- Counters shared by every node: 'uidvalidity' (RFC 9051 §2.3.1.1) is the time in seconds but
-- always above every value given before, so it is never given twice for any mailbox name.
CREATE TABLE sequences (
    name   TEXT PRIMARY KEY,
    value  BIGINT NOT NULL
);
INSERT INTO sequences(name, value) VALUES ('uidvalidity', 0);
CREATE TABLE mailboxes (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    special_use     TEXT,
    uidvalidity     BIGINT NOT NULL,
    uidnext         BIGINT NOT NULL DEFAULT 1,
    highest_modseq  BIGINT NOT NULL DEFAULT 1,
    recent_uid      BIGINT NOT NULL DEFAULT 1,
    UNIQUE (account_id, name)
);
CREATE TABLE subscriptions (
    account_id  BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE TABLE nodes (
    name        TEXT PRIMARY KEY,
    started_at  BIGINT NOT NULL,
    heartbeat   BIGINT NOT NULL,
    pid         BIGINT NOT NULL,
    version     TEXT NOT NULL
);
