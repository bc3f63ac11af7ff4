#!/usr/bin/env python3
"""Real clients against a running Tern: Python's smtplib and poplib.

Environment: TERN_SMTP, TERN_POP3, TERN_POP3S (host:port), TERN_USER, TERN_PASS,
TERN_USER2, TERN_PASS2 (a second account), TERN_CERT (the server certificate).
"""
import email
import os
import poplib
import smtplib
import ssl
import unittest
import uuid


def hostport(var):
    host, port = os.environ[var].rsplit(':', 1)
    return host, int(port)


USER, PASS = os.environ['TERN_USER'], os.environ['TERN_PASS']
USER2, PASS2 = os.environ['TERN_USER2'], os.environ['TERN_PASS2']


def tls_context():
    ctx = ssl.create_default_context(cafile=os.environ['TERN_CERT'])
    ctx.check_hostname = False  # the demo certificate names mail.example.test, we dial 127.0.0.1
    return ctx


def pop3(user=USER, password=PASS):
    p = poplib.POP3(*hostport('TERN_POP3'), timeout=10)
    p.user(user)
    p.pass_(password)
    return p


def retrieve_all(user=USER, password=PASS):
    p = pop3(user, password)
    msgs = [b'\r\n'.join(p.retr(i + 1)[1]) + b'\r\n' for i in range(p.stat()[0])]
    p.quit()
    return msgs


def empty_mailbox(user=USER, password=PASS):
    p = pop3(user, password)
    for i in range(p.stat()[0]):
        p.dele(i + 1)
    p.quit()


class Smtp(unittest.TestCase):
    def setUp(self):
        empty_mailbox()
        empty_mailbox(USER2, PASS2)

    def test_plain_and_starttls_delivery(self):
        token = uuid.uuid4().hex
        body = f'From: py@remote.test\r\nTo: {USER}\r\nSubject: {token}\r\n\r\nline\r\n.leading dot\r\n'
        with smtplib.SMTP(*hostport('TERN_SMTP'), timeout=10) as s:
            s.ehlo('py.remote.test')
            self.assertTrue(s.has_extn('pipelining'))
            self.assertTrue(s.has_extn('chunking'))
            s.sendmail('py@remote.test', [USER], body)
            s.starttls(context=tls_context())
            s.ehlo('py.remote.test')
            self.assertFalse(s.has_extn('starttls'))
            s.sendmail('py@remote.test', [USER, USER2], body)
        mine = retrieve_all()
        self.assertEqual(len(mine), 2)
        for m in mine:
            self.assertTrue(m.endswith(body.encode()), m)
        self.assertIn(b'with ESMTPS id', mine[1])
        self.assertEqual(len(retrieve_all(USER2, PASS2)), 1)

    def test_refusals_have_enhanced_codes(self):
        with smtplib.SMTP(*hostport('TERN_SMTP'), timeout=10) as s:
            s.ehlo('py.remote.test')
            s.mail('py@remote.test')
            code, msg = s.rcpt('nobody@' + USER.split('@')[1])
            self.assertEqual((code, msg[:5]), (550, b'5.1.1'))
            code, msg = s.rcpt('victim@elsewhere.test')
            self.assertEqual((code, msg[:5]), (550, b'5.7.1'))
            with self.assertRaises(smtplib.SMTPRecipientsRefused):
                s.rset()
                s.sendmail('py@remote.test', ['victim@elsewhere.test'], 'Subject: x\r\n\r\nx\r\n')

    def test_smtputf8(self):
        msg = email.message.EmailMessage()
        msg['From'] = 'jöe@remote.test'
        msg['To'] = USER
        msg['Subject'] = 'ünïcödé'
        msg.set_content('grüße')
        with smtplib.SMTP(*hostport('TERN_SMTP'), timeout=10) as s:
            s.send_message(msg, mail_options=['SMTPUTF8'])
        got = retrieve_all()
        self.assertEqual(len(got), 1)
        self.assertIn('jöe@remote.test'.encode(), got[0])


class Pop3(unittest.TestCase):
    def setUp(self):
        empty_mailbox()
        with smtplib.SMTP(*hostport('TERN_SMTP'), timeout=10) as s:
            for i in range(3):
                s.sendmail('py@remote.test', [USER], f'Subject: n{i}\r\n\r\nbody {i}\r\n..two dots\r\n')

    def test_commands(self):
        p = pop3()
        count, size = p.stat()
        self.assertEqual(count, 3)
        listing = p.list()[1]
        self.assertEqual(sum(int(l.split()[1]) for l in listing), size)
        uidl = p.uidl()[1]
        self.assertEqual(len(set(u.split()[1] for u in uidl)), 3)
        top = p.top(1, 0)[1]
        self.assertIn(b'Subject: n0', top)
        self.assertNotIn(b'body 0', top)
        lines = p.retr(2)[1]
        self.assertIn(b'..two dots', lines)  # stored as sent, stuffed on the wire, unstuffed by poplib
        p.dele(1)
        p.rset()
        p.dele(3)
        p.quit()
        p = pop3()
        self.assertEqual(p.stat()[0], 2)
        self.assertEqual([u.split()[1] for u in p.uidl()[1]], [u.split()[1] for u in uidl[:2]])
        p.quit()

    def test_pop3s_and_stls(self):
        p = poplib.POP3_SSL(*hostport('TERN_POP3S'), context=tls_context(), timeout=10)
        p.user(USER)
        p.pass_(PASS)
        self.assertEqual(p.stat()[0], 3)
        p.quit()
        p = poplib.POP3(*hostport('TERN_POP3'), timeout=10)
        self.assertIn('STLS', p.capa())
        p.stls(context=tls_context())
        p.user(USER)
        p.pass_(PASS)
        self.assertEqual(p.stat()[0], 3)
        p.quit()

    def test_bad_password(self):
        p = poplib.POP3(*hostport('TERN_POP3'), timeout=10)
        p.user(USER)
        with self.assertRaises(poplib.error_proto) as e:
            p.pass_('wrong')
        self.assertIn(b'[AUTH]', e.exception.args[0])


if __name__ == '__main__':
    unittest.main(verbosity=2)
