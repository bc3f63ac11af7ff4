-- Version 10: counters behind the aggregate reports Tern sends (DMARC, RFC 7489 §7.2;
-- TLS-RPT, RFC 8460), kept here so a restart does not lose them, and TLS reports
-- received for our domains, parsed.
CREATE TABLE IF NOT EXISTS report_counts (
    kind      TEXT NOT NULL,     -- 'dmarc' or 'tls'
    domain    TEXT NOT NULL,     -- the domain reported on
    key       TEXT NOT NULL,     -- one row of the report (JSON), counted
    meta      TEXT NOT NULL,     -- what the report needs besides rows (JSON), latest wins
    count     INTEGER NOT NULL,
    first_at  INTEGER NOT NULL,
    PRIMARY KEY (kind, domain, key)
);
CREATE TABLE IF NOT EXISTS tls_reports (
    id           INTEGER PRIMARY KEY,
    domain       TEXT NOT NULL,
    org          TEXT NOT NULL,
    report_id    TEXT NOT NULL,
    begin_at     INTEGER NOT NULL,
    end_at       INTEGER NOT NULL,
    successes    INTEGER NOT NULL,
    failures     INTEGER NOT NULL,
    report       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    UNIQUE (org, report_id)
);
CREATE INDEX IF NOT EXISTS tls_reports_domain ON tls_reports(domain, end_at);
