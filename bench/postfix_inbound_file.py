#!/usr/bin/env python3
"""Inbound accept-to-Maildir throughput of the private Postfix (../shared/bench/postfix) for a
prepared message file, driven by smtp-source -F exactly like tern_inbound.py drives Tern.
usage: postfix_inbound_file.py --file MSG --maildir DIR/new [--n 20000] [--runs 3] [--label L]
"""
import argparse, os, subprocess, sys, time
sys.path.insert(0, os.environ.get('SHARED_BENCH', '/work/shared/bench') + '/common')
from procmem import loadavg, summarize


def count(d):
    try:
        return sum(1 for _ in os.scandir(d))
    except FileNotFoundError:
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--file', required=True); ap.add_argument('--maildir', required=True)
    ap.add_argument('--port', type=int, default=int(os.environ.get('SMTP_PORT', '2525')))
    ap.add_argument('--n', type=int, default=20000); ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--sessions', type=int, default=20); ap.add_argument('--sender', default='sender@bench.test')
    ap.add_argument('--user', default='user@example.test'); ap.add_argument('--label', default='postfix')
    a = ap.parse_args()
    batch, left, cmds = a.sessions * 100, a.n, []
    while left > 0:
        m = min(batch, left)
        cmds.append(['smtp-source', '-s', str(a.sessions), '-F', a.file, '-f', a.sender, '-t', a.user,
                     '-d', '-m', str(m), f'127.0.0.1:{a.port}'])
        left -= m
    print(f'CMD: {" ".join(cmds[0])}   (x{len(cmds)} back-to-back)')
    rates = []
    for r in range(a.runs):
        before = count(a.maildir)
        subprocess.run(['sync']); la = loadavg(); t0 = time.monotonic()
        for c in cmds:
            p = subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if p.returncode:
                raise SystemExit(f'smtp-source failed: {p.stderr}')
        end = time.monotonic() + 600
        while count(a.maildir) - before < a.n and time.monotonic() < end:
            time.sleep(0.05)
        t1 = time.monotonic()
        got = count(a.maildir) - before
        if got < a.n:
            raise SystemExit(f'only {got} of {a.n} messages reached the Maildir')
        rates.append(a.n / (t1 - t0))
        print(f'  run{r+1}: msgs={a.n} in_maildir={t1-t0:.2f}s rate={rates[-1]:.0f}/s loadavg_before={la}', flush=True)
    print(f'RESULT {a.label} inbound per_session=100 accept+maildir msg/s {summarize(rates)}')


if __name__ == '__main__':
    main()
