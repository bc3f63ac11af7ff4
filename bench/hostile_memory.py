#!/usr/bin/env python3
"""Memory under hostile or large input, for any SMTP/IMAP server given its master PID.
Memory is the RSS summed over the server's process tree (../shared/bench/common/procmem.py),
sampled every 20 ms for the peak.

  hostile_memory.py oversize --port 2525 --pid PID [--n 24 --mb 100]
      N clients at once each send an MB-megabyte message with DATA (over any sane limit):
      peak RSS, RSS 5 s after, the replies.
  hostile_memory.py mailbox --port 1143 --pid PID --user U --password P
      SELECT INBOX, FETCH 1:* (FLAGS), UID SEARCH HEADER X-Bench-Tag needle, LOGOUT:
      time and peak RSS growth of each, RSS after LOGOUT. One JSON line on stdout."""
import argparse, imaplib, json, os, socket, sys, threading, time
sys.path.insert(0, os.path.join(os.environ.get('SHARED_BENCH', os.path.join(os.path.dirname(__file__), '../../shared/bench')), 'common'))
import procmem

class Peak:
    def __init__(self, pid):
        self.pid, self.peak, self.peak_anon, self.stop = pid, 0, 0, False
        self.t = threading.Thread(target=self.run, daemon=True)
    def sample(self):
        self.peak = max(self.peak, procmem.tree_mem(self.pid)[1])
        self.peak_anon = max(self.peak_anon, anon(self.pid))
    def run(self):
        while not self.stop:
            self.sample()
            time.sleep(0.02)
    def __enter__(self):
        self.sample(); self.t.start(); return self
    def __exit__(self, *a):
        self.stop = True; self.t.join()

def rss(pid):
    return procmem.tree_mem(pid)[1]

def anon(pid):
    """RssAnon summed over the tree: heap and stacks, without mapped files (SQLite maps its
    database, Dovecot its indexes; those pages are the kernel's page cache, given back under
    pressure)."""
    total = 0
    for p in procmem.tree(pid):
        try:
            for line in open(f'/proc/{p}/status'):
                if line.startswith('RssAnon:'):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total

def reply(f):
    lines = []
    while True:
        l = f.readline()
        if not l:
            return lines
        lines.append(l.decode(errors='replace').rstrip())
        if len(l) < 4 or l[3:4] != b'-':
            return lines

def oversize_client(port, mb, out, i):
    try:
        s = socket.create_connection(('127.0.0.1', port), timeout=600)
        f = s.makefile('rb')
        reply(f)
        for cmd in (b'EHLO bench.example', b'MAIL FROM:<big@example.org>', b'RCPT TO:<user@example.test>', b'DATA'):
            s.sendall(cmd + b'\r\n'); r = reply(f)
        if not r or not r[-1].startswith('354'):
            out[i] = 'DATA: ' + ' | '.join(r); return
        line = b'x' * 998 + b'\r\n'; chunk = line * 1024
        for _ in range(mb):
            s.sendall(chunk)
        s.sendall(b'.\r\n')
        out[i] = ' '.join(reply(f))[:60]
        s.sendall(b'QUIT\r\n'); s.close()
    except OSError as e:
        out[i] = f'error: {e}'

def oversize(a):
    base = rss(a.pid)
    out = [None] * a.n
    t0 = time.time()
    with Peak(a.pid) as p:
        ts = [threading.Thread(target=oversize_client, args=(a.port, a.mb, out, i)) for i in range(a.n)]
        for t in ts: t.start()
        for t in ts: t.join()
    secs = time.time() - t0
    time.sleep(5)
    replies = {}
    for r in out:
        replies[r] = replies.get(r, 0) + 1
    print(json.dumps({'test': 'oversize', 'clients': a.n, 'mb_each': a.mb, 'rss_before_kib': base,
                      'peak_rss_kib': p.peak, 'peak_anon_kib': p.peak_anon, 'rss_after_5s_kib': rss(a.pid),
                      'seconds': round(secs, 1), 'replies': replies}))

def timed(pid, fn):
    before, before_anon = rss(pid), anon(pid)
    with Peak(pid) as p:
        t0 = time.time(); r = fn(); dt = time.time() - t0
    return {'ms': round(dt * 1000, 1), 'peak_growth_kib': p.peak - before,
            'peak_anon_growth_kib': p.peak_anon - before_anon}, r

def mailbox(a):
    base = rss(a.pid)
    m = imaplib.IMAP4('127.0.0.1', a.port)
    m.login(a.user, a.password)
    res = {'test': 'mailbox', 'rss_before_kib': base, 'anon_before_kib': anon(a.pid)}
    res['select'], (_, data) = timed(a.pid, lambda: m.select('INBOX'))
    res['messages'] = int(data[0])
    res['fetch_flags'], _ = timed(a.pid, lambda: m.fetch('1:*', '(FLAGS)'))
    res['search_header'], (_, found) = timed(a.pid, lambda: m.uid('SEARCH', 'HEADER', 'X-Bench-Tag', 'needle'))
    res['search_found'] = len(found[0].split())
    res['rss_selected_kib'], res['anon_selected_kib'] = rss(a.pid), anon(a.pid)
    m.logout()
    time.sleep(2)
    res['rss_after_logout_kib'], res['anon_after_logout_kib'] = rss(a.pid), anon(a.pid)
    print(json.dumps(res))

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
sub = ap.add_subparsers(dest='cmd', required=True)
o = sub.add_parser('oversize'); o.add_argument('--port', type=int, required=True); o.add_argument('--pid', type=int, required=True)
o.add_argument('--n', type=int, default=24); o.add_argument('--mb', type=int, default=100)
b = sub.add_parser('mailbox'); b.add_argument('--port', type=int, required=True); b.add_argument('--pid', type=int, required=True)
b.add_argument('--user', default='user'); b.add_argument('--password', default='pass')
a = ap.parse_args()
{'oversize': oversize, 'mailbox': mailbox}[a.cmd](a)
