#!/usr/bin/env python3
"""Event-log read latency (issue "Every message has a story", benchmark 3): fill a Tern data
folder's database with EVENTS events (200,000 messages x 5 events, 100,000 recipients,
written straight into the events and message_log tables in Tern's format), start Tern, then
time sequential keep-alive requests: GET /v1/messages/{id} and GET /v1/events?recipient=.
Target: p99 <= 10 ms.
usage: events_load.py --tern BIN --data DIR --port HTTP_PORT --key KEY [--events 1000000] [--requests 2000]
"""
import argparse, http.client, json, os, random, sqlite3, statistics, subprocess, time

ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'


def ulid(ms, rnd):
    v = (ms << 80) | rnd
    return ''.join(ALPHABET[(v >> (5 * i)) & 31] for i in range(25, -1, -1))


def iso(ms):
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ms / 1000)) + '.%03dZ' % (ms % 1000)


def fill(db, n_events):
    c = sqlite3.connect(db)
    c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA synchronous=OFF')
    per = 5
    msgs = n_events // per
    now = int(time.time() * 1000) - 3600_000
    types = ['accepted', 'deferred', 'deferred', 'delivered', 'opened']
    seq = 0
    batch, logs = [], []
    t0 = time.monotonic()
    for m in range(msgs):
        mid = 'B%014d' % m
        rcpt = 'user%06d@example%02d.net' % (m % 100_000, m % 97)
        dom = rcpt.split('@')[1]
        logs.append((mid, now // 1000, json.dumps({'message_id': mid, 'time': now // 1000, 'source': 'api',
                     'sender': 'shop@example.test', 'recipients': [rcpt],
                     'headers': 'From: shop@example.test\r\nTo: %s\r\nSubject: order %d\r\n\r\n' % (rcpt, m)})))
        for t in types:
            seq += 1
            ms = now + seq // 4
            eid = ulid(ms, seq)
            ev = {'id': eid, 'type': t, 'time': iso(ms), 'message_id': mid, 'recipient': rcpt, 'domain': dom,
                  'sender': 'shop@example.test', 'source': 'api', 'tags': ['receipt']}
            if t == 'delivered':
                ev.update(reply='250 2.0.0 Ok: queued', mx_host='mx.' + dom, remote_ip='192.0.2.1', tls='TLSv1.3')
            batch.append((eid, t, mid, rcpt, dom, json.dumps(ev, separators=(',', ':'))))
        if len(batch) >= 50_000:
            c.executemany('INSERT INTO events(id, type, message_id, recipient, domain, data) VALUES (?,?,?,?,?,?)', batch)
            c.executemany('INSERT INTO message_log(message_id, time, data) VALUES (?,?,?)', logs)
            c.commit(); batch, logs = [], []
    if batch:
        c.executemany('INSERT INTO events(id, type, message_id, recipient, domain, data) VALUES (?,?,?,?,?,?)', batch)
        c.executemany('INSERT INTO message_log(message_id, time, data) VALUES (?,?,?)', logs)
    c.commit()
    c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()
    print(f'filled {seq} events, {msgs} messages in {time.monotonic()-t0:.1f}s; db {os.path.getsize(db)/2**20:.0f} MiB', flush=True)
    return msgs


def timed(conn, path, key):
    t = time.perf_counter()
    conn.request('GET', path, headers={'Authorization': 'Bearer ' + key})
    r = conn.getresponse(); body = r.read()
    dt = (time.perf_counter() - t) * 1000
    if r.status != 200:
        raise SystemExit(f'{path}: HTTP {r.status} {body[:200]}')
    return dt, json.loads(body)


def report(name, v):
    v = sorted(v)
    p = lambda q: v[min(len(v) - 1, int(len(v) * q))]
    print(f'RESULT {name} n={len(v)} p50={p(0.5):.2f}ms p99={p(0.99):.2f}ms max={v[-1]:.2f}ms mean={statistics.mean(v):.2f}ms', flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tern', required=True); ap.add_argument('--data', required=True)
    ap.add_argument('--port', type=int, required=True); ap.add_argument('--key', required=True)
    ap.add_argument('--events', type=int, default=1_000_000); ap.add_argument('--requests', type=int, default=2000)
    a = ap.parse_args()
    msgs = fill(os.path.join(a.data, 'tern.db'), a.events)
    p = subprocess.Popen([a.tern, 'serve', '--data', a.data], env={**os.environ, 'TERN_LOG': 'warn'},
                         stderr=open(os.path.join(a.data, 'tern.log'), 'a'))
    try:
        for _ in range(200):
            try:
                conn = http.client.HTTPConnection('127.0.0.1', a.port, timeout=10); conn.connect(); break
            except OSError:
                time.sleep(0.05)
        rnd = random.Random(1)
        for _ in range(100):  # warm the page cache like a running server's
            timed(conn, '/v1/messages/B%014d' % rnd.randrange(msgs), a.key)
        lat = []
        for _ in range(a.requests):
            dt, v = timed(conn, '/v1/messages/B%014d' % rnd.randrange(msgs), a.key)
            assert len(v['recipients'][0]['events']) == 5, v
            lat.append(dt)
        report('GET /v1/messages/{id}', lat)
        lat = []
        for _ in range(a.requests):
            m = rnd.randrange(100_000)
            dt, v = timed(conn, '/v1/events?recipient=user%06d@example%02d.net' % (m, m % 97), a.key)
            assert v['events'], v
            lat.append(dt)
        report('GET /v1/events?recipient=', lat)
        lat = []
        for _ in range(a.requests // 4):
            dt, v = timed(conn, '/v1/events?type=delivered&limit=100', a.key)
            lat.append(dt)
        report('GET /v1/events?type=delivered&limit=100', lat)
    finally:
        p.kill(); p.wait()


if __name__ == '__main__':
    main()
