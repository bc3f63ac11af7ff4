#!/usr/bin/python3
"""Verifies every DKIM-Signature of the message on stdin with dkimpy (an
independent implementation), fetching keys from the test's DNS server.

Usage: dkim_verify.py DNS_IP:PORT < message
Prints one line per signature: "<algorithm> <d=> <s=> pass|fail"; exits 1 if
any signature fails or there is none. Needs python3-dkim, python3-nacl
(Ed25519) and python3-dnspython (Debian packages)."""
import re
import sys

import dkim
from testdns import dnsfunc_for

dnsfunc = dnsfunc_for(sys.argv[1])


msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [h for h in d.headers if h[0].lower() == b"dkim-signature"]
if not sigs:
    print("no DKIM-Signature")
    sys.exit(1)
ok = True
for i, (_, value) in enumerate(sigs):
    tags = dict(
        (k.strip(), v.strip())
        for k, v in (t.split(b"=", 1) for t in re.sub(rb"\s+", b"", value).split(b";") if b"=" in t)
    )
    good = d.verify(idx=i, dnsfunc=dnsfunc)
    ok &= bool(good)
    print(tags[b"a"].decode(), tags[b"d"].decode(), tags[b"s"].decode(), "pass" if good else "fail")
sys.exit(0 if ok else 1)
