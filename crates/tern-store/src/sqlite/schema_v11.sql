-- Version 11: forwarding aliases, whose target is an address in another domain.
CREATE TABLE IF NOT EXISTS forwards (
    id         INTEGER PRIMARY KEY,
    address    TEXT NOT NULL UNIQUE,
    domain_id  INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    target     TEXT NOT NULL
);
