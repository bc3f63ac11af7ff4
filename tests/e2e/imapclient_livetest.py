#!/usr/bin/env python3
"""Runs IMAPClient's live test suite (imapclient 2.3.1 from PyPI, `imapclient/livetest.py`,
BSD licence, by Menno Smits: an independent suite written against Gmail, Dovecot, Fastmail and
Exchange) against a running Tern, over implicit TLS.

usage: imapclient_livetest.py [--plain] HOST:PORT USER PASSWORD [unittest arguments]
  --plain: IMAP without TLS (a peer set up that way); otherwise implicit TLS.

The suite predates Python 3.12; two names it imports that 3.12 removed are put back first
(`imp.new_module`, `SafeConfigParser.readfp`), nothing else is changed.
"""
import configparser
import os
import sys
import tempfile
import types

if not hasattr(configparser, 'SafeConfigParser'):
    configparser.SafeConfigParser = configparser.ConfigParser
if not hasattr(configparser.ConfigParser, 'readfp'):
    configparser.ConfigParser.readfp = configparser.ConfigParser.read_file
try:
    import imp  # noqa: F401
except ImportError:
    sys.modules['imp'] = types.SimpleNamespace(new_module=types.ModuleType)

from imapclient import livetest  # noqa: E402

args = sys.argv[1:]
plain = bool(args) and args[0] == '--plain'
if plain:
    args = args[1:]
hostport, user, password = args[:3]
host, port = hostport.rsplit(':', 1)
with tempfile.NamedTemporaryFile('w', suffix='.ini', delete=False) as ini:
    ini.write(f"""[DEFAULT]
host = {host}
port = {port}
ssl = {'false' if plain else 'true'}
ssl_verify_cert = false
ssl_check_hostname = false
username = {user}
password = {password}
""")
sys.argv = [sys.argv[0], ini.name] + args[3:]
try:
    livetest.main()
finally:
    os.unlink(ini.name)
