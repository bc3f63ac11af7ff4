#!/usr/bin/env python3
"""Python's imaplib against a running Tern: list/select/fetch/search/store/copy/move/append/
expunge/idle, over STARTTLS and implicit TLS.
Environment: TERN_SMTP, TERN_IMAP, TERN_IMAPS (host:port), TERN_USER, TERN_PASS, TERN_CERT.
"""
import imaplib
import os
import smtplib
import socket
import ssl
import threading
import time
import unittest
import uuid
import zlib


def hostport(var):
    host, port = os.environ[var].rsplit(':', 1)
    return host, int(port)


USER, PASS = os.environ['TERN_USER'], os.environ['TERN_PASS']


def compress(m):
    """COMPRESS DEFLATE (RFC 4978) on an imaplib session, with zlib's raw deflate (wbits
    -15) as the client side: imaplib's read/readline/send go through it afterwards."""
    imaplib.Commands.setdefault('COMPRESS', ('AUTH', 'SELECTED'))
    typ, _ = m._simple_command('COMPRESS', 'DEFLATE')
    assert typ == 'OK', typ
    out, inflate, buf, raw = zlib.compressobj(6, zlib.DEFLATED, -15), zlib.decompressobj(-15), bytearray(), m.sock
    stats = {'wire': 0, 'plain': 0}

    def fill():
        data = raw.recv(65536)
        if not data:
            raise imaplib.IMAP4.abort('connection closed')
        stats['wire'] += len(data)
        plain = inflate.decompress(data)
        stats['plain'] += len(plain)
        buf.extend(plain)

    def read(size):
        while len(buf) < size:
            fill()
        chunk = bytes(buf[:size])
        del buf[:size]
        return chunk

    def readline():
        while b'\n' not in buf:
            fill()
        i = buf.index(b'\n') + 1
        line = bytes(buf[:i])
        del buf[:i]
        return line

    def send(data):
        raw.sendall(out.compress(data) + out.flush(zlib.Z_SYNC_FLUSH))

    m.read, m.readline, m.send = read, readline, send
    return stats


def ctx():
    c = ssl.create_default_context(cafile=os.environ['TERN_CERT'])
    c.check_hostname = False
    return c


def deliver(subject, body='body text'):
    with smtplib.SMTP(*hostport('TERN_SMTP'), timeout=10) as s:
        s.sendmail('py@remote.test', [USER], f'From: Py <py@remote.test>\r\nTo: {USER}\r\nSubject: {subject}\r\n\r\n{body}\r\n')


def login():
    m = imaplib.IMAP4(*hostport('TERN_IMAP'), timeout=10)
    m.starttls(ssl_context=ctx())
    typ, _ = m.login(USER, PASS)
    assert typ == 'OK'
    return m


class Imap(unittest.TestCase):
    def setUp(self):
        m = login()
        m.select('INBOX')
        m.store('1:*', '+FLAGS.SILENT', r'(\Deleted)')
        m.expunge()
        m.logout()

    def test_flows(self):
        token = uuid.uuid4().hex
        deliver(f'alpha {token}', 'the quick brown fox')
        deliver(f'beta {token}', 'jumps over the lazy dog')
        m = login()
        typ, boxes = m.list()
        self.assertEqual(typ, 'OK')
        self.assertTrue(any(b'\\Junk' in b and b'"Junk"' in b for b in boxes), boxes)
        typ, data = m.select('INBOX')
        self.assertEqual(data, [b'2'])
        typ, data = m.fetch('1:*', '(UID FLAGS RFC822.SIZE ENVELOPE)')
        self.assertEqual(len(data), 2)
        self.assertIn(f'alpha {token}'.encode(), data[0])
        typ, data = m.fetch('1', '(RFC822)')
        self.assertIn(b'the quick brown fox', data[0][1])
        typ, data = m.fetch('1', '(FLAGS)')
        self.assertIn(b'\\Seen', data[0])
        typ, data = m.search(None, 'BODY', 'lazy')
        self.assertEqual(data, [b'2'])
        typ, data = m.uid('SEARCH', None, 'SUBJECT', f'"alpha {token}"')
        self.assertEqual(len(data[0].split()), 1)
        m.store('2', '+FLAGS', r'(\Flagged)')
        typ, data = m.search(None, 'FLAGGED')
        self.assertEqual(data, [b'2'])
        m.create('Archive/2026')
        typ, data = m.copy('1', 'Archive/2026')
        self.assertEqual(typ, 'OK')
        typ, data = m.uid('MOVE', m.uid('SEARCH', None, 'FLAGGED')[1][0], 'Junk')
        self.assertEqual(typ, 'OK')
        self.assertEqual(m.select('INBOX')[1], [b'1'])
        self.assertEqual(m.status('Junk', '(MESSAGES)')[1][0].split(b'(')[1], b'MESSAGES 1)')
        typ, data = m.append('Drafts', r'(\Draft)', imaplib.Time2Internaldate(time.time()), b'Subject: draft\r\n\r\nwip\r\n')
        self.assertEqual(typ, 'OK')
        self.assertIn(b'APPENDUID', data[0])
        m.store('1', '+FLAGS', r'(\Deleted)')
        m.expunge()
        self.assertEqual(m.select('INBOX')[1], [b'0'])
        m.logout()

    def test_idle_push(self):
        m = login()
        m.select('INBOX')
        tag = m._new_tag()
        m.send(tag + b' IDLE\r\n')
        self.assertTrue(m.readline().startswith(b'+'))
        t0 = time.monotonic()
        threading.Timer(0.2, deliver, args=('pushed',)).start()
        line = m.readline()
        self.assertEqual(line.strip(), b'* 1 EXISTS')
        self.assertLess(time.monotonic() - t0, 1.5)
        m.send(b'DONE\r\n')
        while not m.readline().startswith(tag):
            pass
        m.logout()

    def test_compress_deflate(self):
        body = '\r\n'.join(['the same words over and over again'] * 400)
        deliver('compressed', body)
        m = login()
        stats = compress(m)
        typ, _ = m._simple_command('COMPRESS', 'DEFLATE')
        self.assertEqual(typ, 'NO')  # [COMPRESSIONACTIVE]
        self.assertEqual(m.select('INBOX')[1], [b'1'])
        typ, data = m.fetch('1', '(BODY.PEEK[TEXT])')
        self.assertEqual(typ, 'OK')
        self.assertIn(body.encode(), data[0][1])
        self.assertLess(stats['wire'] * 5, stats['plain'], stats)
        typ, _ = m.append('Drafts', None, None, ('Subject: z\r\n\r\n' + body + '\r\n').encode())
        self.assertEqual(typ, 'OK')
        self.assertEqual(m.status('Drafts', '(MESSAGES)')[0], 'OK')
        m.logout()

    def test_implicit_tls(self):
        m = imaplib.IMAP4_SSL(*hostport('TERN_IMAPS'), ssl_context=ctx(), timeout=10)
        m.login(USER, PASS)
        self.assertEqual(m.select('INBOX', readonly=True)[0], 'OK')
        m.logout()


if __name__ == '__main__':
    unittest.main(verbosity=2)
