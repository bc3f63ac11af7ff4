"""A loopback DNS responder answering NXDOMAIN to everything at once, so the
e2e server never asks the machine's resolvers (tests stay on loopback).
usage: nxdns.py PORT"""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
while True:
    q, peer = s.recvfrom(4096)
    if len(q) < 12:
        continue
    i = 12
    while i < len(q) and q[i] != 0:
        i += 1 + q[i]
    end = i + 5
    if end > len(q):
        continue
    r = bytearray(q[:end])
    r[2] = 0x80 | (q[2] & 0x79)
    r[3] = 0x80 | 3
    r[6:12] = bytes(6)
    s.sendto(bytes(r), peer)
