#!/usr/bin/env python3
"""Inbound accept-to-mailbox throughput of Tern, driven by Postfix's smtp-source exactly like
../shared/bench/postfix/bench_smtp.py drives Postfix. Tern sends 250 only after the message is
fsynced into the mailbox, so "accepted" already means "in the mailbox"; the count is verified
with `tern account list` after each run.
usage: tern_inbound.py --tern BIN --data DIR --port P --pid PID [--n 20000] [--runs 3]
"""
import argparse, os, subprocess, sys, time
sys.path.insert(0, os.environ.get('SHARED_BENCH', '/work/shared/bench') + '/common')
from procmem import PeakSampler, loadavg, summarize


def mailbox_count(a):
    out = subprocess.run([a.tern, 'account', 'list', '--data', a.data], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith(a.user + ' '):
            return int(line.split()[1])
    raise SystemExit(f'account {a.user} not found:\n{out}')


def cmds(a, per):
    body = ['-F', a.file] if a.file else ['-l', str(a.size)]
    base = ['smtp-source', '-s', str(a.sessions)] + body + ['-f', a.sender, '-t', a.user]
    if per <= 1:
        return [base + ['-m', str(a.n), f'127.0.0.1:{a.port}']]
    batch, left, out = a.sessions * per, a.n, []
    while left > 0:
        m = min(batch, left); out.append(base + ['-d', '-m', str(m), f'127.0.0.1:{a.port}']); left -= m
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--tern', required=True); ap.add_argument('--data', required=True)
    ap.add_argument('--port', type=int, required=True); ap.add_argument('--pid', type=int, required=True)
    ap.add_argument('--user', default='user@example.test')
    ap.add_argument('--n', type=int, default=20000); ap.add_argument('--size', type=int, default=5120)
    ap.add_argument('--sessions', type=int, default=20); ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--per-session', type=int, nargs='+', default=[1, 100])
    ap.add_argument('--file', help='send this prepared message (smtp-source -F) instead of generated ones')
    ap.add_argument('--sender', default='bench@example.test')
    ap.add_argument('--label', default='tern')
    a = ap.parse_args()
    for per in a.per_session:
        cs = cmds(a, per)
        print(f'CMD: {" ".join(cs[0])}' + (f'   (x{len(cs)} back-to-back)' if len(cs) > 1 else ''))
        rates = []
        for r in range(a.runs):
            before = mailbox_count(a)
            subprocess.run(['sync'])
            s = PeakSampler(a.pid).start(); la = loadavg(); t0 = time.monotonic()
            for c in cs:
                p = subprocess.run(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if p.returncode:
                    raise SystemExit(f'smtp-source failed: {p.stderr}')
            t1 = time.monotonic(); s.stop()
            got = mailbox_count(a) - before
            if got != a.n:
                raise SystemExit(f'expected {a.n} new messages in the mailbox, found {got}')
            rates.append(a.n / (t1 - t0))
            print(f'  run{r+1}: msgs={a.n} per_session={per} accept=in_mailbox={t1-t0:.2f}s rate={rates[-1]:.0f}/s '
                  f'loadavg_before={la} peak_rss={s.peak_rss/1024:.0f}MiB', flush=True)
        print(f'RESULT {a.label} inbound per_session={per} accept+mailbox msg/s {summarize(rates)}')


if __name__ == '__main__':
    main()
