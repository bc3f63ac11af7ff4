#!/usr/bin/python3
"""Verifies the ARC chain (RFC 8617) of the message on stdin with dkimpy (an
independent implementation), fetching keys from the test's DNS server.

Usage: arc_verify.py DNS_IP:PORT < message
Prints "cv=<pass|fail|none> <reason>"; exits 0 only when the chain passes.
Needs python3-dkim and python3-dnspython (Debian packages)."""
import sys

import dkim
from testdns import dnsfunc_for

dnsfunc = dnsfunc_for(sys.argv[1])


msg = sys.stdin.buffer.read()
cv, results, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
cv = cv.decode() if isinstance(cv, bytes) else str(cv)
print(f"cv={cv} {reason}")
sys.exit(0 if cv == "pass" else 1)
