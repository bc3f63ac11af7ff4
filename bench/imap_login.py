#!/usr/bin/env python3
"""LOGIN time alone (connect and greeting excluded), N fresh connections in a row: the first,
and the median of the rest (a server with an authentication cache answers those from it).
usage: imap_login.py HOST PORT USER PASS [--n 5] [--label NAME]"""
import argparse, imaplib, statistics, time

ap = argparse.ArgumentParser()
ap.add_argument('host'); ap.add_argument('port', type=int); ap.add_argument('user'); ap.add_argument('password')
ap.add_argument('--n', type=int, default=5); ap.add_argument('--label', default='')
a = ap.parse_args()
times = []
for _ in range(a.n):
    c = imaplib.IMAP4(a.host, a.port)
    t0 = time.perf_counter(); typ, _ = c.login(a.user, a.password); times.append(time.perf_counter() - t0)
    assert typ == 'OK', typ
    c.logout()
rest = statistics.median(times[1:]) if len(times) > 1 else float('nan')
print(f'  {a.label:<10} LOGIN first {times[0]*1000:7.1f} ms   later (median of {len(times)-1}) {rest*1000:7.1f} ms', flush=True)
