#!/usr/bin/python3
"""Signs the message on stdin with dkimpy (an independent DKIM signer),
relaxed/relaxed, and writes the signed message to stdout.
usage: dkim_sign.py SELECTOR DOMAIN KEYFILE(PEM, RSA) < message > signed"""
import sys

import dkim

selector, domain, keyfile = sys.argv[1:4]
msg = sys.stdin.buffer.read()
sig = dkim.sign(
    msg,
    selector.encode(),
    domain.encode(),
    open(keyfile, "rb").read(),
    canonicalize=(b"relaxed", b"relaxed"),
    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"],
)
sys.stdout.buffer.write(sig + msg)
