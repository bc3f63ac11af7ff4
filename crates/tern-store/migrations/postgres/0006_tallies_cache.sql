-- Tallies (failed logins by address, network and account): a count that lapses at `until`.
CREATE TABLE tallies (
    key    TEXT PRIMARY KEY,
    n      BIGINT NOT NULL,
    until  BIGINT NOT NULL
);

-- Rates (connections per minute per network, API requests per second per key): the
-- theoretical arrival time of the next request, in Unix milliseconds (GCRA).
CREATE TABLE rates (
    key  TEXT PRIMARY KEY,
    tat  BIGINT NOT NULL
);

-- Values a node fetched that the others may use until they lapse (MTA-STS policies).
CREATE TABLE cache (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL,
    until  BIGINT NOT NULL
);

-- An allowance window is swept when it can no longer count (two periods after it began).
ALTER TABLE allowances ADD COLUMN until BIGINT NOT NULL DEFAULT 9223372036854775807;
