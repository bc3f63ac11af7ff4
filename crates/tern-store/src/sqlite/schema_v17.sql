-- Schema v17: the hourly counters gain a dimension — '' for a domain's totals, 'stream:NAME' and
-- 'tag:NAME' for the dashboard's filters — and every domain's together are kept under domain '*'
-- (the overview of a month of all domains reads ~11k rows instead of summing every domain's).
-- Received mail filed as junk gets the detail 'junk'.
CREATE TABLE event_counts_v17 (
    hour    INTEGER NOT NULL,
    domain  TEXT NOT NULL,
    dim     TEXT NOT NULL,
    type    TEXT NOT NULL,
    detail  TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (domain, dim, hour, type, detail)
) WITHOUT ROWID;
INSERT INTO event_counts_v17(hour, domain, dim, type, detail, n)
SELECT hour, domain, '', type, detail, n FROM event_counts WHERE type <> 'received';
DROP TABLE event_counts;
ALTER TABLE event_counts_v17 RENAME TO event_counts;
-- Received, with the junk detail, and the tags and streams, from the stored events.
INSERT INTO event_counts(hour, domain, dim, type, detail, n)
SELECT CAST(strftime('%s', json_extract(data, '$.time')) AS INTEGER) / 3600,
       lower(coalesce(domain, '')), '', type,
       CASE WHEN json_extract(data, '$.folder') = 'Junk' THEN 'junk' ELSE '' END, count(*)
FROM events WHERE type = 'received' AND json_extract(data, '$.time') IS NOT NULL
GROUP BY 1, 2, 4, 5
ON CONFLICT(domain, dim, hour, type, detail) DO UPDATE SET n = n + excluded.n;
INSERT INTO event_counts(hour, domain, dim, type, detail, n)
SELECT c.hour, c.domain, 'tag:' || t.value, c.type, c.detail, count(*)
FROM (SELECT e.data,
             CAST(strftime('%s', json_extract(e.data, '$.time')) AS INTEGER) / 3600 AS hour,
             lower(CASE WHEN e.type IN ('received', 'rejected') THEN coalesce(e.domain, '')
                  ELSE coalesce(substr(json_extract(e.data, '$.sender'),
                                       instr(json_extract(e.data, '$.sender'), '@') + 1), '') END) AS domain,
             e.type,
             CASE WHEN e.type IN ('bounced', 'deferred') THEN coalesce(json_extract(e.data, '$.category'), '')
                  WHEN e.type IN ('opened', 'clicked') THEN
                      CASE WHEN json_extract(e.data, '$.machine') THEN 'machine' ELSE 'human' END
                  WHEN e.type = 'received' AND json_extract(e.data, '$.folder') = 'Junk' THEN 'junk'
                  ELSE '' END AS detail
      FROM events e WHERE json_extract(e.data, '$.time') IS NOT NULL) c,
     json_each(c.data, '$.tags') t
WHERE t.key < 5
GROUP BY 1, 2, 3, 4, 5
ON CONFLICT(domain, dim, hour, type, detail) DO UPDATE SET n = n + excluded.n;
-- Every domain together.
INSERT INTO event_counts(hour, domain, dim, type, detail, n)
SELECT hour, '*', dim, type, detail, sum(n) FROM event_counts WHERE domain <> '*'
GROUP BY hour, dim, type, detail
ON CONFLICT(domain, dim, hour, type, detail) DO UPDATE SET n = n + excluded.n;
