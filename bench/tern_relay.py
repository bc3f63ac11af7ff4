#!/usr/bin/env python3
"""Relay throughput of Tern (submission -> queue -> delivery to smtp-sink), driven by
Postfix's smtp-source exactly like ../shared/bench/postfix/bench_smtp.py `outbound` drives
Postfix: 20 sessions, 100 messages per session, 5 KiB, recipient x@relay.test, which a
transport rule sends to smtp-sink on 127.0.0.1:SINK_PORT.

  concurrent: submit and deliver at once; time from the first submission to an empty queue
  drain:      the queue is filled while the sink is down (every recipient deferred); then
              the sink starts and `tern queue retry --all` makes everything due in the running
              server (as postsuper -H + postkick do for Postfix); time from the release to an
              empty queue

Tern acknowledges a submission only once it is fsynced in the queue (like Postfix's 250 after
its queue file is fsynced). "Queue empty" is read from the database (queue_rcpts rows): the
SQLite file, or with --psql the PostgreSQL database that command line reaches.
usage: tern_relay.py --tern BIN --data DIR --port SUBMISSION_PORT --sink-port P [--n 20000] [--runs 3]
                     [--psql "psql -h 127.0.0.1 -p PORT -U tern -d tern"]
"""
import argparse, os, signal, sqlite3, subprocess, sys, time
sys.path.insert(0, os.environ.get('SHARED_BENCH', '/work/shared/bench') + '/common')
from procmem import PeakSampler, loadavg, summarize


QUEUED = 'SELECT COUNT(*), COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) FROM queue_rcpts'


def queued(db):
    if isinstance(db, list):  # a psql command line
        out = subprocess.run(db + ['-X', '-q', '-t', '-A', '-F', ' ', '-c', QUEUED],
                             capture_output=True, text=True, check=True).stdout.split()
        return (int(out[0]), int(out[1]))
    c = sqlite3.connect(f'file:{db}?mode=ro', uri=True, timeout=30)
    try:
        return c.execute(QUEUED).fetchone()
    finally:
        c.close()


def wait(pred, timeout, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return time.monotonic()
        time.sleep(interval)
    raise SystemExit('timeout waiting for the queue')


def events_seen(url):
    if not url:
        return 0
    import urllib.request
    return int(urllib.request.urlopen(url, timeout=10).read())


def cmds(a):
    base = ['smtp-source', '-s', str(a.sessions), '-l', str(a.size), '-f', 'bench@example.test', '-t', 'x@relay.test']
    batch, left, out = a.sessions * 100, a.n, []
    while left > 0:
        m = min(batch, left); out.append(base + ['-d', '-m', str(m), f'127.0.0.1:{a.port}']); left -= m
    return out


class Sink:
    def __init__(self, port):
        self.port, self.p = port, None

    def start(self):
        self.p = subprocess.Popen(['smtp-sink', '-u', 'postfix', f'127.0.0.1:{self.port}', '1024'])
        time.sleep(0.3)

    def stop(self):
        if self.p:
            self.p.terminate(); self.p.wait(); self.p = None


class Tern:
    def __init__(self, a):
        self.a, self.p = a, None

    def start(self):
        self.p = subprocess.Popen([self.a.tern, 'serve', '--data', self.a.data], env={**os.environ, 'TERN_LOG': 'warn'},
                                  stderr=open(os.path.join(self.a.data, 'tern.log'), 'a'))
        import socket
        for _ in range(200):
            try:
                socket.create_connection(('127.0.0.1', self.a.port), 0.2).close(); return
            except OSError:
                time.sleep(0.02)
        raise SystemExit('tern did not start')

    def stop(self):
        if self.p:
            self.p.send_signal(signal.SIGKILL); self.p.wait(); self.p = None


def submit(cs):
    for c in cs:
        p = subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode:
            raise SystemExit(f'smtp-source failed: {p.stderr}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tern', required=True); ap.add_argument('--data', required=True)
    ap.add_argument('--port', type=int, required=True); ap.add_argument('--sink-port', type=int, required=True)
    ap.add_argument('--n', type=int, default=20000); ap.add_argument('--size', type=int, default=5120)
    ap.add_argument('--sessions', type=int, default=20); ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--modes', nargs='+', default=['drain', 'concurrent'])
    ap.add_argument('--label', default='tern')
    ap.add_argument('--psql', default=None, help='read the queue from PostgreSQL with this psql command line')
    ap.add_argument('--events-url', default=None,
                    help='webhook receiver count URL: also wait until it has every accepted+delivered event')
    a = ap.parse_args()
    db = a.psql.split() if a.psql else os.path.join(a.data, 'tern.db')
    cs = cmds(a)
    sink, tern = Sink(a.sink_port), Tern(a)
    try:
        for mode in a.modes:
            print(f'CMD[{mode}]: {" ".join(cs[0])}   (x{len(cs)} back-to-back)', flush=True)
            rates = []
            for r in range(a.runs):
                subprocess.run(['sync']); la = loadavg()
                if mode == 'concurrent':
                    sink.start(); tern.start()
                    base = events_seen(a.events_url)
                    s = PeakSampler(tern.p.pid).start()
                    t0 = time.monotonic(); submit(cs); t1 = time.monotonic()
                    t2 = wait(lambda: queued(db)[0] == 0, 900)
                    ev = ''
                    if a.events_url:
                        t3 = wait(lambda: events_seen(a.events_url) - base >= 2 * a.n, 900)
                        ev = f' submit->all_events_posted={t3-t0:.2f}s'
                    s.stop(); tern.stop(); sink.stop()
                    rates.append(a.n / (t2 - t0))
                    print(f'  run{r+1}: msgs={a.n} submit={t1-t0:.2f}s submit->queue_empty={t2-t0:.2f}s{ev} '
                          f'rate={rates[-1]:.0f}/s loadavg_before={la} peak_rss={s.peak_rss/1024:.0f}MiB', flush=True)
                else:
                    tern.start()  # sink down: every delivery attempt fails and is deferred (retry 1h)
                    t0 = time.monotonic(); submit(cs); t1 = time.monotonic()
                    wait(lambda: queued(db) == (a.n, a.n), 900)
                    # Like postsuper -H + postkick for Postfix: make everything due now in the
                    # running server (`tern queue retry --all`; it looks every 250 ms).
                    sink.start(); subprocess.run(['sync'])
                    s = PeakSampler(tern.p.pid).start()
                    t2 = time.monotonic()
                    subprocess.run([a.tern, 'queue', 'retry', '--all', '--data', a.data], check=True,
                                   stdout=subprocess.DEVNULL, env={**os.environ, 'TERN_LOG': 'warn'})
                    t3 = wait(lambda: queued(db)[0] == 0, 900)
                    s.stop(); tern.stop(); sink.stop()
                    rates.append(a.n / (t3 - t2))
                    print(f'  run{r+1}: msgs={a.n} filled in {t1-t0:.2f}s release->queue_empty={t3-t2:.2f}s '
                          f'rate={rates[-1]:.0f}/s loadavg_before={la} peak_rss={s.peak_rss/1024:.0f}MiB', flush=True)
            print(f'RESULT {a.label} outbound mode={mode} delivered msg/s {summarize(rates)}', flush=True)
    finally:
        tern.stop(); sink.stop()


if __name__ == '__main__':
    main()
