#!/bin/bash
# Inbound accept-to-mailbox benchmark, Tern and Postfix side by side in one run:
#   1. smtp-sink ceiling (protocol only, no disk)
#   2. Postfix -> Maildir (../shared/bench/postfix, fsync before 250)
#   3. Tern -> mailbox (fsync before 250, group commit)
#   4. 1,000 idle SMTP connections: Tern's memory per connection
# Same generator (smtp-source, 20 sessions, 5 KiB), same machine, same run.
# usage: sudo bench/inbound.sh      (N=20000 RUNS=3 by default; SKIP_INSTALL=1 to skip apt)
set -euo pipefail
source "$(dirname "$0")/common.sh"
TERN_BASE=${TERN_BASE:-31000}; TERN_PORT=$((TERN_BASE+25))
(cd "$ROOT" && cargo build --release -j2 --bin tern 2>&1 | tail -1)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); tern $(git -C "$ROOT" rev-parse --short HEAD)"
noise

echo "== smtp-sink ceiling"
python3 "$SHARED/postfix/bench_smtp.py" sink --n "$N"

echo "== Postfix inbound (accept + Maildir)"
"$SHARED/postfix/stop.sh" >/dev/null; "$SHARED/postfix/setup.sh" >/dev/null
MPID=$("$SHARED/postfix/start.sh"); echo "postfix master pid $MPID ($(postconf -d mail_version))"
python3 "$SHARED/postfix/bench_smtp.py" inbound --n "$N" --pid "$MPID"
"$SHARED/postfix/stop.sh" >/dev/null

echo "== Tern inbound (accept = fsynced in mailbox)"
DATA=$(mktemp -d /tmp/tern-bench.XXXXXX)
trap 'kill $TPID 2>/dev/null || true; rm -rf "$DATA"' EXIT
"$TERN" init --data "$DATA" --domain example.test --port-base "$TERN_BASE" >/dev/null
# All load comes from 127.0.0.1: lift the per-IP limits for the benchmark.
sed -i 's/^max_connections_per_ip = .*/max_connections_per_ip = 5000/; s/^max_connections = .*/max_connections = 5000/' "$DATA/tern.toml"
# Postfix here checks nothing either: SPF/DKIM/DMARC and the spam filter off (no DNS leaves the machine).
sed -i 's/^authenticate = true/authenticate = false/; s/^enabled = true/enabled = false/; s/^nameservers = \[\]/nameservers = ["127.0.0.1:9"]/' "$DATA/tern.toml"
echo pass | "$TERN" account add user@example.test --data "$DATA" --password-stdin --quota 0 >/dev/null
TERN_LOG=warn "$TERN" serve --data "$DATA" 2>"$DATA/tern.log" &
TPID=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$TERN_PORT) 2>/dev/null && break; sleep 0.1; done
python3 "$ROOT/bench/tern_inbound.py" --tern "$TERN" --data "$DATA" --port "$TERN_PORT" --pid "$TPID" --n "$N" --runs "$RUNS"
curl -s "127.0.0.1:$((TERN_BASE+80))/metrics" | grep -E '^tern_store_commit_(seconds|batch_size)_(sum|count)' || true

echo "== Tern: 1,000 idle SMTP connections"
echo "CMD: python3 common/idle_conns.py --proto smtp --port $TERN_PORT --n 1000 --pid $TPID"
python3 "$SHARED/common/idle_conns.py" --proto smtp --port "$TERN_PORT" --n 1000 --pid "$TPID"
