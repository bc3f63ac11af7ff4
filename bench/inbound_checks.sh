#!/bin/bash
# What Tern's checks on inbound mail cost (issue "Trust what arrives"), in one run:
#   Tern with SPF, DKIM, ARC, DMARC and the spam filter all off, then all on, and Postfix
#   with the OpenDKIM milter verifying DKIM (Debian's opendkim, Mode v), all receiving the
#   same DKIM-signed 5 KiB message (dkimpy-signed; the sender domain's SPF, DKIM and DMARC
#   p=reject records are served by a local DNS server, which OpenDKIM reaches through
#   libunbound's forwarding), 20 smtp-source sessions, 100 messages per session.
# Targets: the checks cost at most 30% of the unchecked rate; Tern checked >= 2x
#   Postfix+OpenDKIM. Tern runs alternate off/on (TERN_PAIRS=5 pairs, fresh data folders); the cost
#   is the median of the pairs' costs.
# usage: sudo bench/inbound_checks.sh      (N=20000 RUNS=3; SKIP_INSTALL=1 to skip apt)
set -euo pipefail
source "$(dirname "$0")/common.sh"
TERN_BASE=${TERN_BASE:-33000}; TERN_PORT=$((TERN_BASE+25)); DNS_PORT=${DNS_PORT:-53}
command -v opendkim >/dev/null || [ -x /usr/sbin/opendkim ] || {
  apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get install -y -q opendkim >/dev/null; }
(cd "$ROOT" && cargo build --release -j2 --bin tern 2>&1 | tail -1 &&
  cargo build --release -j2 -p tern-testkit --example zone_dns 2>&1 | tail -1)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); tern $(git -C "$ROOT" rev-parse --short HEAD)"
noise
WORK=$(mktemp -d /tmp/tern-checks.XXXXXX); chmod 755 "$WORK"  # opendkim reads its files as postfix
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

echo "== sender domain bench.example in a local DNS server; one DKIM-signed message"
openssl genrsa -out "$WORK/dkim.pem" 2048 2>/dev/null
P=$(openssl rsa -in "$WORK/dkim.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
cat >"$WORK/zone.txt" <<EOZ
bench.example TXT v=spf1 ip4:127.0.0.0/8 -all
s1._domainkey.bench.example TXT v=DKIM1; k=rsa; p=$P
_dmarc.bench.example TXT v=DMARC1; p=reject
EOZ
"$ROOT/target/release/examples/zone_dns" "127.0.0.1:$DNS_PORT" "$WORK/zone.txt" &
PIDS+=($!)
python3 - "$WORK/plain.eml" <<'EOP'
import sys
words = "the quick brown fox jumps over the lazy dog and keeps running through the field ".split()
body, i = [], 0
while sum(len(l) + 2 for l in body) < 5000:
    body.append(" ".join(words[(i + k) % len(words)] for k in range(12))); i += 1
msg = ("From: Sender <sender@bench.example>\r\nTo: user@example.test\r\nSubject: benchmark\r\n"
       "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@bench.example>\r\n\r\n"
       + "\r\n".join(body) + "\r\n")
open(sys.argv[1], "wb").write(msg.encode())
EOP
/usr/bin/python3 "$ROOT/crates/tern/tests/tools/dkim_sign.py" s1 bench.example "$WORK/dkim.pem" \
  <"$WORK/plain.eml" | sed 's/\r$//' >"$WORK/msg.eml"
echo "message: $(wc -c <"$WORK/msg.eml") bytes, $(grep -c '^DKIM-Signature' "$WORK/msg.eml") signature"

echo "== Postfix inbound, no checks (the same signed message)"
"$SHARED/postfix/stop.sh" >/dev/null; "$SHARED/postfix/setup.sh" >/dev/null
MPID=$("$SHARED/postfix/start.sh"); echo "postfix master pid $MPID ($(postconf -d mail_version))"
python3 "$ROOT/bench/postfix_inbound_file.py" --file "$WORK/msg.eml" --maildir "$PF_MAIL/$TEST_USER/new" \
  --n "$N" --runs "$RUNS" --label postfix-no-checks
"$SHARED/postfix/stop.sh" >/dev/null

echo "== Postfix + OpenDKIM milter (DKIM verification)"
# Debian's opendkim resolves with libunbound. Nameservers makes it forward to the local DNS
# without a configuration file (with one, libunbound re-reads it per lookup and crashes under
# concurrency); the sender domain is under .example because unbound answers NXDOMAIN for
# .test by itself.
cat >"$WORK/opendkim.conf" <<EOC
Mode v
Socket inet:8891@127.0.0.1
Nameservers 127.0.0.1
PidFile $WORK/opendkim.pid
Syslog no
AlwaysAddARHeader yes
AuthservID postfix.bench
On-Default accept
On-BadSignature accept
On-NoSignature accept
On-DNSError accept
UserID postfix
# smtp-source connects from 127.0.0.1, which OpenDKIM treats as internal (signing, not
# verifying) unless told otherwise.
InternalHosts 192.0.2.254
# Cache keys in OpenDKIM itself: far fewer libunbound lookups (and configuration re-reads).
QueryCache yes
EOC
opendkim -f -x "$WORK/opendkim.conf" &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/8891) 2>/dev/null && break; sleep 0.1; done
(exec 3<>/dev/tcp/127.0.0.1/8891) 2>/dev/null || { echo "opendkim did not start"; exit 1; }
"$SHARED/postfix/setup.sh" >/dev/null
postconf -c "$PF_ETC" -e "smtpd_milters = inet:127.0.0.1:8891" "milter_default_action = accept" "milter_protocol = 6"
MPID=$("$SHARED/postfix/start.sh"); echo "postfix master pid $MPID with the OpenDKIM milter"
python3 "$ROOT/bench/postfix_inbound_file.py" --file "$WORK/msg.eml" --maildir "$PF_MAIL/$TEST_USER/new" \
  --n "$N" --runs "$RUNS" --label postfix-opendkim || echo "postfix-opendkim: failed (see above)"
python3 - "$PF_MAIL/$TEST_USER/new" <<'EOP' || true
import collections, os, re, sys
d = sys.argv[1]
seen = collections.Counter()
for f in os.listdir(d):
    head = open(os.path.join(d, f), errors="replace").read(4096)
    m = re.search(r"Authentication-Results: postfix.bench;\s*dkim=(\w+)", head)
    seen[m.group(1) if m else "none"] += 1
print("  OpenDKIM results in the Maildir:", dict(seen))
EOP
"$SHARED/postfix/stop.sh" >/dev/null

run_tern() {  # $1 = label (a fresh data folder each time), $2 = on|off
  local data="$WORK/$1"
  "$TERN" init --data "$data" --domain example.test --port-base "$TERN_BASE" \
    --nameserver "127.0.0.1:$DNS_PORT" >/dev/null
  sed -i 's/^max_connections_per_ip = .*/max_connections_per_ip = 5000/; s/^max_connections = .*/max_connections = 5000/' "$data/tern.toml"
  if [ "$2" = off ]; then
    sed -i 's/^authenticate = true/authenticate = false/; s/^enabled = true/enabled = false/' "$data/tern.toml"
  fi
  echo pass | "$TERN" account add user@example.test --data "$data" --password-stdin --quota 0 >/dev/null
  TERN_LOG=warn "$TERN" serve --data "$data" 2>"$data/tern.log" &
  local pid=$!
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$TERN_PORT) 2>/dev/null && break; sleep 0.1; done
  (exec 3<>/dev/tcp/127.0.0.1/$TERN_PORT) 2>/dev/null || { echo "tern did not start:"; cat "$data/tern.log"; exit 1; }
  python3 "$ROOT/bench/tern_inbound.py" --tern "$TERN" --data "$data" --port "$TERN_PORT" --pid "$pid" \
    --n "$N" --runs 1 --per-session 100 --file "$WORK/msg.eml" --sender sender@bench.example --label "tern-checks-$2" \
    | tee -a "$WORK/tern-results.txt"
  python3 - "$data/tern.db" <<'EOP'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
raw = c.execute("SELECT data FROM blobs ORDER BY id DESC LIMIT 1").fetchone()[0].decode(errors="replace")
for line in raw.split("\r\n\r\n")[0].replace("\r\n\t", " ").split("\r\n"):
    if line.startswith(("Authentication-Results", "X-Spam-Status")):
        print("  last message:", line[:200])
EOP
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

# Off and on alternate, each run on a fresh data folder, so the machine's drift over the
# minutes of the benchmark falls on both alike; the cost is taken per pair.
for r in $(seq "${TERN_PAIRS:-5}"); do
  echo "== Tern pair $r: checks off"
  run_tern "off-$r" off
  echo "== Tern pair $r: checks on (SPF, DKIM, ARC, DMARC, spam filter)"
  run_tern "on-$r" on
done
python3 - "$WORK/tern-results.txt" <<'EOP'
import re, statistics, sys
rates = {"off": [], "on": []}
for line in open(sys.argv[1]):
    m = re.match(r"RESULT tern-checks-(on|off) .* median=([\d.]+)", line)
    if m:
        rates[m.group(1)].append(float(m.group(2)))
costs = [1 - on / off for off, on in zip(rates["off"], rates["on"])]
print("RESULT tern-checks-off median=%.1f runs=%s" % (statistics.median(rates["off"]), [round(x) for x in rates["off"]]))
print("RESULT tern-checks-on median=%.1f runs=%s" % (statistics.median(rates["on"]), [round(x) for x in rates["on"]]))
print("RESULT checks-cost per pair=%s median=%.1f%%" % (["%.1f%%" % (100 * c) for c in costs], 100 * statistics.median(costs)))
EOP
