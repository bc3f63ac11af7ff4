#!/usr/bin/env python3
"""Deliver every file of a Maildir (new/ and cur/) to an address over SMTP, as an MTA would:
LF line endings become CRLF on the wire. Used to give Tern the same 10,000-message mailbox
that ../shared/bench/dovecot/gen_maildir.py makes for Dovecot.
usage: load_maildir.py MAILDIR HOST:PORT RCPT [--threads 8]"""
import argparse, os, smtplib, threading

ap = argparse.ArgumentParser()
ap.add_argument('maildir'); ap.add_argument('server'); ap.add_argument('rcpt')
ap.add_argument('--threads', type=int, default=8)
a = ap.parse_args()
files = sorted(os.path.join(a.maildir, sub, f) for sub in ('new', 'cur')
               for f in os.listdir(os.path.join(a.maildir, sub)))
# Deliver in file order (message number order) so UIDs follow the template's order.
files.sort(key=lambda p: int(os.path.basename(p).split('.M')[1].split('P')[0]) if '.M' in p else 0)
host, port = a.server.rsplit(':', 1)
lock = threading.Lock()
it = iter(files)
order = []

def worker():
    s = smtplib.SMTP(host, int(port))
    while True:
        with lock:
            f = next(it, None)
        if f is None:
            break
        data = open(f, 'rb').read().replace(b'\r\n', b'\n').replace(b'\n', b'\r\n')
        s.sendmail('loader@example.org', [a.rcpt], data)
    s.quit()

# One thread keeps UID order identical to the template; more threads are faster.
ts = [threading.Thread(target=worker) for _ in range(a.threads)]
for t in ts: t.start()
for t in ts: t.join()
print(f'delivered {len(files)} messages to {a.rcpt}')
