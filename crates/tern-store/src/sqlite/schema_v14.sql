-- Schema v14: event counters per hour, sending domain, type and detail, kept in the same
-- transaction as the events they count, so that sender health and the dashboard read a few
-- rows instead of scanning the event log. `domain` is the sending domain for outbound events
-- and the recipient's (our) domain for inbound ones; `detail` is the failure category for
-- bounced and deferred, `human` or `machine` for opened and clicked, '' otherwise.
CREATE TABLE IF NOT EXISTS event_counts (
    hour    INTEGER NOT NULL,     -- Unix time / 3600
    domain  TEXT NOT NULL,
    type    TEXT NOT NULL,
    detail  TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (domain, hour, type, detail)
) WITHOUT ROWID;
-- The events already stored, counted once.
INSERT INTO event_counts(hour, domain, type, detail, n)
SELECT CAST(strftime('%s', json_extract(data, '$.time')) AS INTEGER) / 3600 AS hour,
       lower(CASE WHEN type IN ('received', 'rejected') THEN coalesce(domain, '')
            ELSE coalesce(substr(json_extract(data, '$.sender'),
                                 instr(json_extract(data, '$.sender'), '@') + 1), '') END) AS d,
       type,
       CASE WHEN type IN ('bounced', 'deferred') THEN coalesce(json_extract(data, '$.category'), '')
            WHEN type IN ('opened', 'clicked') THEN
                CASE WHEN json_extract(data, '$.machine') THEN 'machine' ELSE 'human' END
            ELSE '' END AS detail,
       count(*)
FROM events
WHERE json_extract(data, '$.time') IS NOT NULL
GROUP BY 1, 2, 3, 4
ON CONFLICT(domain, hour, type, detail) DO UPDATE SET n = n + excluded.n;
