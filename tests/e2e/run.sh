#!/bin/bash
# End-to-end tests with real peers against the real `tern` binary:
#   Python smtplib/poplib/imaplib, IMAPClient's live test suite, mbsync, swaks, fetchmail (POP3S), Postfix relaying
#   into Tern, and Tern delivering submitted mail (smtplib, swaks AUTH) to Postfix.
# usage: tests/e2e/run.sh PATH/TO/tern
set -euo pipefail
TERN=$(realpath "${1:?usage: run.sh PATH/TO/tern}")
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/tern-e2e.XXXXXX); chmod 755 "$WORK"  # postfix daemons must reach their folders
BASE=${TERN_E2E_PORT_BASE:-24000}
SMTP=127.0.0.1:$((BASE+25)); POP3=127.0.0.1:$((BASE+110)); POP3S=127.0.0.1:$((BASE+995))
IMAP=127.0.0.1:$((BASE+143)); IMAPS=127.0.0.1:$((BASE+993))
PF_PORT=$((BASE+2525))
PIDS=()
cleanup() {
  [ -f "$WORK/postfix/queue/pid/master.pid" ] && postfix -c "$WORK/postfix/etc" stop >/dev/null 2>&1 || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- tern log"; tail -30 "$WORK/tern.log" || true; exit 1; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; fail "nothing listening on $1"; }

echo "== setup: tern init + accounts in $WORK/data"
# DNS: a loopback responder answering NXDOMAIN (SPF/DKIM/DMARC lookups stay on this machine).
DNS_PORT=$((BASE+53))
python3 "$HERE/nxdns.py" "$DNS_PORT" &
PIDS+=($!)
"$TERN" init --data "$WORK/data" --domain example.test --port-base "$BASE" --nameserver "127.0.0.1:$DNS_PORT" >/dev/null
echo 'alice-pw' | "$TERN" account add alice@example.test --data "$WORK/data" --password-stdin >/dev/null
echo 'bob-pw' | "$TERN" account add bob@example.test --data "$WORK/data" --password-stdin >/dev/null
"$TERN" alias add postmaster@example.test alice@example.test --data "$WORK/data" >/dev/null
# Mail for remote.test goes to the Postfix instance below (a transport rule: no DNS here).
cat >>"$WORK/data/tern.toml" <<EOC

[[queue.transport]]
domain = "remote.test"
host = "127.0.0.1"
port = $PF_PORT

# Mail for stuck.test waits: nothing listens there (the dashboard test retries it).
[[queue.transport]]
domain = "stuck.test"
host = "127.0.0.1"
port = $((BASE+9))
EOC
TERN_LOG=info "$TERN" serve --data "$WORK/data" >"$WORK/tern.log" 2>&1 &
PIDS+=($!)
wait_port "$SMTP"; wait_port "$POP3"

export TERN_SMTP=$SMTP TERN_POP3=$POP3 TERN_POP3S=$POP3S TERN_IMAP=$IMAP TERN_IMAPS=$IMAPS
export TERN_CERT=$WORK/data/tls/cert.pem
export TERN_USER=alice@example.test TERN_PASS=alice-pw TERN_USER2=bob@example.test TERN_PASS2=bob-pw

echo "== python smtplib / poplib"
out=$(python3 "$HERE/clients.py" 2>&1) || { echo "$out"; fail "python clients"; }
tail -3 <<<"$out"

echo "== python imaplib"
out=$(TERN_USER=bob@example.test TERN_PASS=bob-pw python3 "$HERE/imap_clients.py" 2>&1) || { echo "$out"; fail "imaplib clients"; }
tail -3 <<<"$out"

echo "== IMAPClient live test suite (independent, PyPI imapclient 2.3.1)"
# Its own account: the suite creates and deletes folders under __imapclient.
echo 'erin-pw' | "$TERN" account add erin@example.test --data "$WORK/data" --password-stdin >/dev/null
python3 -m pip install -q --target "$WORK/pylib" imapclient==2.3.1 six >/dev/null 2>&1 \
  || python3 -m pip install -q --break-system-packages --target "$WORK/pylib" imapclient==2.3.1 six >/dev/null \
  || fail "imapclient could not be installed from PyPI"
out=$(cd "$WORK" && PYTHONPATH="$WORK/pylib" python3 "$HERE/imapclient_livetest.py" "$IMAPS" erin@example.test erin-pw 2>&1) \
  || { echo "$out"; fail "IMAPClient live tests"; }
grep -E '^(Ran|OK|FAILED)' <<<"$out"

echo "== mbsync (isync) both ways"
if command -v mbsync >/dev/null; then
  "$TERN" account add carol@example.test --data "$WORK/data" --password-stdin <<<"carol-pw" >/dev/null
  MB=$WORK/mbsync; mkdir -p "$MB/mail"
  cat >"$MB/rc" <<EOC
IMAPAccount tern
Host 127.0.0.1
Port $((BASE+993))
User carol@example.test
Pass carol-pw
SSLType IMAPS
CertificateFile $WORK/data/tls/cert.pem

IMAPStore remote
Account tern

MaildirStore local
Path $MB/mail/
Inbox $MB/mail/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
EOC
  python3 "$HERE/mbsync_check.py" seed
  mbsync -c "$MB/rc" -a >"$MB/log1" 2>&1 || { cat "$MB/log1"; fail "mbsync first sync"; }
  python3 "$HERE/mbsync_check.py" local-change "$MB/mail"
  mbsync -c "$MB/rc" -a >"$MB/log2" 2>&1 || { cat "$MB/log2"; fail "mbsync second sync"; }
  mbsync -c "$MB/rc" -a >"$MB/log3" 2>&1 || { cat "$MB/log3"; fail "mbsync third sync"; }
  python3 "$HERE/mbsync_check.py" compare "$MB/mail" || fail "mbsync: server and maildir differ"
  echo "mbsync: synchronised both ways (new mail, flags, deletions, a new folder); both sides match"
else
  fail "mbsync not installed"
fi

echo "== HTTP API: curl and schemathesis"
HTTP=127.0.0.1:$((BASE+80))
KEY=$("$TERN" apikey create --scope admin --name e2e --data "$WORK/data" 2>/dev/null)
out=$(curl -sS -w '\n%{http_code}' -X POST "http://$HTTP/v1/messages" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: e2e-1' \
  -d '{"from":"Alice <alice@example.test>","to":["bob@example.test"],"subject":"via the API","text":"hello from curl","tags":["e2e"]}')
[ "$(tail -1 <<<"$out")" = 202 ] || fail "curl POST /v1/messages: $out"
id=$(python3 -c 'import json,sys;print(json.loads(sys.argv[1])["id"])' "$(head -1 <<<"$out")")
again=$(curl -sS -D - -X POST "http://$HTTP/v1/messages" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' -H 'Idempotency-Key: e2e-1' \
  -d '{"from":"Alice <alice@example.test>","to":["bob@example.test"],"subject":"via the API","text":"hello from curl","tags":["e2e"]}')
grep -qi "idempotent-replayed: true" <<<"$again" && grep -q "\"$id\"" <<<"$again" || fail "idempotent replay: $again"
ev=$(curl -sS "http://$HTTP/v1/events?tag=e2e" -H "Authorization: Bearer $KEY")
grep -q '"type":"delivered"' <<<"$ev" || fail "events: $ev"
n=$(python3 -c "import poplib;p=poplib.POP3('127.0.0.1',$((BASE+110)));p.user('bob@example.test');p.pass_('bob-pw');print(sum(1 for i in range(p.stat()[0]) if b'via the API' in b'\n'.join(p.top(i+1,0)[1])))")
[ "$n" = 1 ] || fail "the API message is in bob's mailbox $n times"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$HTTP/v1/events")
[ "$code" = 401 ] || fail "no key: $code"
echo "curl: sent over the API (202), replayed by Idempotency-Key, delivered event listed, stored once"
if ! command -v schemathesis >/dev/null; then
  python3 -m pip install -q schemathesis 2>/dev/null || python3 -m pip install -q --break-system-packages schemathesis
fi
# The key gets no rate limit for the fuzzer (its requests are not abuse).
python3 - "$WORK/data/tern.toml" <<'EOP'
import sys; p = sys.argv[1]; s = open(p).read()
open(p, 'w').write(s.replace("requests_per_second = 100", "requests_per_second = 0"))
EOP
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
TERN_LOG=info "$TERN" serve --data "$WORK/data" >>"$WORK/tern.log" 2>&1 &
PIDS+=($!)
wait_port "$HTTP"; wait_port "$SMTP"
# One worker: with several, schemathesis 4 has been seen to fail on an internal KeyError (its
# own traceback machinery, all cases passing); a run that reports only such a runtime error
# and no failure is tried once more.
fuzz_api() {
  (cd "$WORK" && schemathesis run "http://$HTTP/v1/openapi.json" -H "Authorization: Bearer $KEY" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
    --max-examples 25 --workers 1 --seed 1 --request-timeout 60 --request-retries 2 >"$WORK/schemathesis.log" 2>&1)
}
if ! fuzz_api; then
  if grep -q "Runtime Error" "$WORK/schemathesis.log" && ! grep -q "^Failures:" "$WORK/schemathesis.log"; then
    echo "schemathesis: internal error, no failure reported; running it again"
    fuzz_api || { grep -v '^\s*$' "$WORK/schemathesis.log" | cut -c1-300 | head -150; fail "schemathesis"; }
  else
    grep -v '^\s*$' "$WORK/schemathesis.log" | cut -c1-300 | head -150; grep -n "panicked" "$WORK/tern.log"; fail "schemathesis"
  fi
fi
grep -E "generated|passed" "$WORK/schemathesis.log" | tail -1
echo "schemathesis: no 5xx, every response matches the OpenAPI document"

echo "== swaks"
out=$(swaks --server "$SMTP" --from swaks@remote.test --to bob@example.test --tls --pipeline \
  --header "Subject: via swaks" --body "swaks body" 2>&1) || fail "swaks STARTTLS delivery: $out"
grep -q "<~  250 2.0.0 OK: queued as" <<<"$out" || fail "swaks: no 250 over TLS: $out"
out=$(swaks --server "$SMTP" --from swaks@remote.test --to victim@elsewhere.test 2>&1) && fail "swaks: relay accepted"
grep -q "550 5.7.1" <<<"$out" || fail "swaks: relay not refused with 5.7.1: $out"
out=$(swaks --server "$SMTP" --from swaks@remote.test --to postmaster@example.test 2>&1) || fail "swaks to alias: $out"
echo "swaks: STARTTLS+PIPELINING delivery ok, relay refused (550 5.7.1), alias ok"

echo "== fetchmail over POP3S"
cat >"$WORK/fetchmailrc" <<EOC
set no syslog
poll 127.0.0.1 service $((BASE+995)) protocol POP3 uidl
  user "bob@example.test" password "bob-pw" is root here
  ssl sslcertck sslcertfile "$WORK/data/tls/cert.pem" sslcommonname mail.example.test
  mda "/bin/sh -c 'cat >> $WORK/fetched.mbox'"
EOC
chmod 600 "$WORK/fetchmailrc"
HOME=$WORK fetchmail -f "$WORK/fetchmailrc" -i "$WORK/fetchids" --nokeep -v >"$WORK/fetchmail.log" 2>&1 \
  || { cat "$WORK/fetchmail.log"; fail "fetchmail"; }
grep -q "Subject: via swaks" "$WORK/fetched.mbox" || fail "fetchmail did not fetch the swaks message"
n=$(python3 -c "import poplib;p=poplib.POP3('127.0.0.1',$((BASE+110)));p.user('bob@example.test');p.pass_('bob-pw');print(p.stat()[0])")
[ "$n" = 0 ] || fail "fetchmail --nokeep left $n messages"
echo "fetchmail: fetched over POP3S with certificate check, deleted on server"

if command -v postfix >/dev/null && [ "$(id -u)" = 0 ]; then
  echo "== Postfix relays into Tern (MTA to MTA, opportunistic STARTTLS)"
  PF=$WORK/postfix; mkdir -p "$PF/etc" "$PF/queue" "$PF/data" "$PF/vmail"; chown postfix:postfix "$PF/data"
  chown nobody "$PF/vmail"
  cat >"$PF/etc/main.cf" <<EOC
compatibility_level = 3.6
config_directory = $PF/etc
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = relay.remote.test
mydestination =
virtual_mailbox_domains = remote.test
virtual_mailbox_base = $PF/vmail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(id -g nobody)
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_peername_lookup = no
alias_maps =
alias_database =
local_recipient_maps =
relay_domains = example.test
transport_maps = inline:{example.test=smtp:[127.0.0.1]:$((BASE+25))}
smtp_tls_security_level = may
smtp_tls_loglevel = 1
smtputf8_enable = yes
maillog_file_prefixes = $WORK
maillog_file = $PF/maillog
EOC
  cat >"$PF/etc/master.cf" <<EOC
127.0.0.1:$PF_PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
virtual   unix  -       n       n       -       -       virtual
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
postlog   unix-dgram n  -       n       -       1       postlogd
EOC
  postfix -c "$PF/etc" set-permissions >/dev/null 2>&1 || true
  postfix -c "$PF/etc" start >/dev/null 2>&1 || fail "postfix start"
  wait_port "127.0.0.1:$PF_PORT"
  TOKEN=$(python3 -c "import uuid;print(uuid.uuid4().hex)")
  python3 - "$PF_PORT" "$TOKEN" <<'EOP'
import smtplib, sys
with smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=10) as s:
    s.sendmail('sender@remote.test', ['alice@example.test', 'bob@example.test'],
               f'From: sender@remote.test\r\nSubject: relayed {sys.argv[2]}\r\n\r\nvia postfix\r\n')
EOP
  for _ in $(seq 100); do grep -q "status=sent" "$PF/maillog" 2>/dev/null && break; sleep 0.2; done
  grep -q "status=sent" "$PF/maillog" || { cat "$PF/maillog"; fail "postfix did not deliver to Tern"; }
  python3 - "$BASE" "$TOKEN" <<'EOP' || fail "relayed message not in both mailboxes"
import poplib, sys
base, token = int(sys.argv[1]), sys.argv[2]
for user, pw in (('alice@example.test', 'alice-pw'), ('bob@example.test', 'bob-pw')):
    p = poplib.POP3('127.0.0.1', base + 110)
    p.user(user); p.pass_(pw)
    msgs = [b'\n'.join(p.retr(i + 1)[1]) for i in range(p.stat()[0])]
    p.quit()
    hit = [m for m in msgs if f'relayed {token}'.encode() in m]
    assert len(hit) == 1, (user, len(hit))
    assert b'by mail.example.test (Tern) with ESMTPS' in hit[0], hit[0][:400]
EOP
  grep -q "TLS connection established to 127.0.0.1" "$PF/maillog" || echo "note: postfix did not log TLS"
  echo "postfix: relayed to Tern over STARTTLS, one message delivered to both recipients"

  echo "== submission (smtplib on 587 and 465, swaks AUTH) delivered by Tern to Postfix"
  TOKEN2=$(python3 -c "import uuid;print(uuid.uuid4().hex)")
  TERN_SUBMISSION=127.0.0.1:$((BASE+587)) TERN_SUBMISSIONS=127.0.0.1:$((BASE+465)) \
    python3 "$HERE/submission.py" "$TOKEN2" || fail "smtplib submission"
  out=$(swaks --server "127.0.0.1:$((BASE+587))" --tls --auth PLAIN --auth-user alice@example.test \
    --auth-password alice-pw --from alice@example.test --to dave@remote.test \
    --header "From: alice@example.test" --header "Subject: swaks $TOKEN2" --body "via swaks" 2>&1) \
    || fail "swaks submission: $out"
  out=$(swaks --server "127.0.0.1:$((BASE+587))" --tls --auth PLAIN --auth-user alice@example.test \
    --auth-password alice-pw --from bob@example.test --to dave@remote.test 2>&1) && fail "swaks: sent as bob"
  grep -q "553 5.7.1" <<<"$out" || fail "swaks: wrong sender not refused with 553 5.7.1: $out"
  for _ in $(seq 150); do
    n=$(grep -l -e "$TOKEN2" "$PF/vmail/inbox/new/"* 2>/dev/null | wc -l)
    [ "$n" -ge 3 ] && break; sleep 0.2
  done
  [ "$n" -ge 3 ] || { tail -20 "$PF/maillog"; fail "Postfix received $n of 3 submitted messages"; }
  python3 - "$PF/vmail/inbox/new" "$TOKEN2" <<'EOP' || fail "messages at Postfix are not as submitted"
import email, email.policy, os, sys
d, token = sys.argv[1], sys.argv[2]
msgs = [open(os.path.join(d, f), 'rb').read() for f in os.listdir(d)]
msgs = [m for m in msgs if token.encode() in m]
assert len(msgs) == 3, len(msgs)
for raw in msgs:
    m = email.message_from_bytes(raw, policy=email.policy.default)
    assert m['Message-ID'] and m['Date'], raw[:600]
    assert b'by mail.example.test (Tern) with ESMTPSA' in raw, raw[:600]
    assert m['Return-Path'] == '<alice@example.test>', m['Return-Path']
print("postfix received", len(msgs), "messages with Date, Message-ID and Tern's ESMTPSA Received line")
EOP
  grep -q "queue: delivered" "$WORK/tern.log" || fail "no delivery log lines"
  echo "submission: smtplib (587 STARTTLS, 465 TLS) and swaks AUTH delivered to Postfix; wrong sender refused"
else
  echo "== Postfix relay skipped (needs postfix and root)"
fi

echo "== dashboard in Chromium (selenium)"
echo 'ops-pw-e2e' | "$TERN" admin add ops@example.test --data "$WORK/data" --password-stdin >/dev/null
SHOTS=${TERN_SCREENSHOTS:-$HERE/../../target/screenshots}
out=$(TERN_HTTP=$HTTP TERN_KEY=$KEY TERN_WEB_USER=ops@example.test TERN_WEB_PASS=ops-pw-e2e \
  TERN_SCREENSHOTS=$SHOTS python3 "$HERE/dashboard.py" 2>&1) || { echo "$out"; fail "dashboard"; }
tail -1 <<<"$out"

grep -q "smtp: message accepted" "$WORK/tern.log" || fail "no transaction log lines"
echo "e2e: all passed"
