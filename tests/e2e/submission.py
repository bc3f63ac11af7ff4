"""Submission with Python's smtplib: STARTTLS + AUTH on 587, implicit TLS on
465, wrong-sender and no-auth refusals. Messages go to dave@remote.test,
which Tern relays to the e2e Postfix."""
import os
import smtplib
import ssl
import sys

token = sys.argv[1]
host, port = os.environ["TERN_SUBMISSION"].rsplit(":", 1)
host_s, port_s = os.environ["TERN_SUBMISSIONS"].rsplit(":", 1)
ctx = ssl.create_default_context(cafile=os.environ["TERN_CERT"])
ctx.check_hostname = False  # the certificate names mail.example.test; we dial 127.0.0.1


def msg(n):
    return (f"From: Alice <alice@example.test>\r\nTo: dave@remote.test\r\n"
            f"Subject: submission {n} {token}\r\n\r\nhello {n}\r\n")


with smtplib.SMTP(host, int(port), timeout=10) as s:
    s.ehlo("client.example.net")
    try:
        s.sendmail("alice@example.test", ["dave@remote.test"], msg(0))
        raise SystemExit("sent without AUTH")
    except smtplib.SMTPSenderRefused as e:
        assert e.smtp_code == 530, e
    s.starttls(context=ctx)
    s.ehlo("client.example.net")
    assert "PLAIN" in s.esmtp_features.get("auth", ""), s.esmtp_features
    s.login("alice@example.test", "alice-pw")
    s.sendmail("alice@example.test", ["dave@remote.test"], msg(1))
    try:
        s.sendmail("bob@example.test", ["dave@remote.test"], msg(2))
        raise SystemExit("sent as bob")
    except smtplib.SMTPSenderRefused as e:
        assert e.smtp_code == 553, e

with smtplib.SMTP_SSL(host_s, int(port_s), context=ctx, timeout=10) as s:
    s.login("alice@example.test", "alice-pw")
    s.sendmail("alice@example.test", ["dave@remote.test"], msg(3))
print("smtplib: 587 STARTTLS+AUTH and 465 TLS+AUTH accepted; no-auth 530, wrong sender 553")
