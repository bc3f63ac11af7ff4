#!/usr/bin/env python3
"""Helper for the mbsync round trip in run.sh.
  seed                 : deliver 3 messages to carol over SMTP
  local-change MAILDIR : mark one message seen, delete one, add one to a new folder "Projects";
                         and on the server deliver one more message
  compare MAILDIR      : every folder has the same messages (by Message-ID) and flags on both sides
"""
import email, imaplib, os, smtplib, ssl, sys, time

USER, PASS = 'carol@example.test', 'carol-pw'
SMTP = os.environ['TERN_SMTP'].rsplit(':', 1)
IMAPS = os.environ['TERN_IMAPS'].rsplit(':', 1)


def deliver(i):
    with smtplib.SMTP(SMTP[0], int(SMTP[1]), timeout=10) as s:
        s.sendmail('x@remote.test', [USER], f'Message-ID: <m{i}@remote.test>\r\nSubject: m{i}\r\n\r\nbody {i}\r\n')


def imap():
    c = ssl.create_default_context(cafile=os.environ['TERN_CERT'])
    c.check_hostname = False
    m = imaplib.IMAP4_SSL(IMAPS[0], int(IMAPS[1]), ssl_context=c, timeout=10)
    m.login(USER, PASS)
    return m


def maildir_files(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) not in ('cur', 'new'):
            continue
        folder = os.path.relpath(os.path.dirname(dirpath), root)
        for f in files:
            msg = email.message_from_binary_file(open(os.path.join(dirpath, f), 'rb'))
            flags = f.split(':2,')[1] if ':2,' in f else ''
            out.setdefault(folder, {})[msg['Message-ID']] = ''.join(sorted(c for c in flags if c in 'SFRD'))
    return out


def server_state():
    m = imap()
    out = {}
    for line in m.list()[1]:
        name = line.decode().rsplit(' "/" ', 1)[1].strip('"')
        typ, _ = m.select(f'"{name}"', readonly=True)
        typ, data = m.fetch('1:*', '(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])')
        box = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            flags = item[0].decode()
            mid = email.message_from_bytes(item[1])['Message-ID']
            f = ''.join(sorted(c for name, c in (('\\Seen', 'S'), ('\\Flagged', 'F'), ('\\Answered', 'R'), ('\\Draft', 'D')) if name in flags))
            box[mid] = f
        if box or name in ('Projects',):
            out[name] = box
    m.logout()
    return out


cmd = sys.argv[1]
if cmd == 'seed':
    for i in range(3):
        deliver(i)
elif cmd == 'local-change':
    root = sys.argv[2]
    inbox = os.path.join(root, 'INBOX')
    files = sorted(os.listdir(os.path.join(inbox, 'new')) + os.listdir(os.path.join(inbox, 'cur')))
    assert len(files) == 3, files
    def path(f):
        for sub in ('new', 'cur'):
            p = os.path.join(inbox, sub, f)
            if os.path.exists(p):
                return p
    os.rename(path(files[0]), os.path.join(inbox, 'cur', files[0].split(':2,')[0] + ':2,FS'))
    os.unlink(path(files[1]))
    proj = os.path.join(root, 'Projects')
    for sub in ('cur', 'new', 'tmp'):
        os.makedirs(os.path.join(proj, sub), exist_ok=True)
    with open(os.path.join(proj, 'new', f'{int(time.time())}.local.vm'), 'wb') as f:
        f.write(b'Message-ID: <local@near.test>\r\nSubject: local\r\n\r\nwritten locally\r\n')
    deliver(3)
elif cmd == 'compare':
    local = {k: v for k, v in maildir_files(sys.argv[2]).items() if v}
    remote = {k: v for k, v in server_state().items() if v}
    if local != remote:
        print('maildir:', local)
        print('server: ', remote)
        sys.exit(1)
    assert len(remote['INBOX']) == 3 and '<local@near.test>' in remote['Projects'], remote
    print('match:', {k: len(v) for k, v in remote.items()})
