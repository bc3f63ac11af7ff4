-- Version 9: DMARC aggregate reports received for our domains, parsed.
CREATE TABLE IF NOT EXISTS dmarc_reports (
    id           INTEGER PRIMARY KEY,
    domain       TEXT NOT NULL,
    org          TEXT NOT NULL,
    report_id    TEXT NOT NULL,
    begin_at     INTEGER NOT NULL,
    end_at       INTEGER NOT NULL,
    messages     INTEGER NOT NULL,
    failed       INTEGER NOT NULL,
    report       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    UNIQUE (org, report_id)
);
CREATE INDEX IF NOT EXISTS dmarc_reports_domain ON dmarc_reports(domain, end_at);
