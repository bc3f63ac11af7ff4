-- Values a node fetched that the others may use until they lapse (MTA-STS policies, by
-- "mta-sts:DOMAIN"), kept across restarts.
CREATE TABLE IF NOT EXISTS cache (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL,
    until  INTEGER NOT NULL
) WITHOUT ROWID;
