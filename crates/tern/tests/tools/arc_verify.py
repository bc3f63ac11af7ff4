#!/usr/bin/python3
"""Verifies the ARC chain (RFC 8617) of the message on stdin with dkimpy (an
independent implementation), fetching keys from the test's DNS server.

Usage: arc_verify.py DNS_IP:PORT < message
Prints "cv=<pass|fail|none> <reason>"; exits 0 only when the chain passes.
Needs python3-dkim and python3-dnspython (Debian packages)."""
import sys

import dkim
import dns.resolver

host, port = sys.argv[1].rsplit(":", 1)
resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = [host]
resolver.port = int(port)


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    answer = resolver.resolve(name, "TXT", lifetime=timeout)
    return b"".join(answer[0].strings)


msg = sys.stdin.buffer.read()
cv, results, reason = dkim.arc_verify(msg, dnsfunc=dnsfunc)
cv = cv.decode() if isinstance(cv, bytes) else str(cv)
print(f"cv={cv} {reason}")
sys.exit(0 if cv == "pass" else 1)
