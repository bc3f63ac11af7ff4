#!/bin/bash
# Relay benchmark, Tern and Postfix side by side in one run (issue "Send mail"):
#   20,000 x 5 KiB submitted by smtp-source (20 sessions, 100 per session) and relayed to
#   smtp-sink, both servers fsyncing their queue before 250.
#   1. Postfix: ../shared/bench/postfix/bench_smtp.py outbound (drain, concurrent)
#   2. Tern, DKIM-signing every message (RSA-2048 + Ed25519, its default), same modes
#   3. Tern without DKIM keys (the signing cost)
#   3b. Tern, DKIM-signed, every event (accepted, delivered) POSTed to a local webhook
#       receiver (bench/webhook_sink.py, batches of up to 100): the events' cost
#   4. DKIM signing rate per core vs raw RSA (crates/tern-auth/examples/dkim_rate.rs)
# usage: sudo bench/relay.sh      (N=20000 RUNS=3 by default; SKIP_INSTALL=1 to skip apt)
set -euo pipefail
source "$(dirname "$0")/common.sh"
TERN_BASE=${TERN_BASE:-32000}; SUB_PORT=$((TERN_BASE+587))
(cd "$ROOT" && cargo build --release -j2 --bin tern --example dkim_rate -p tern -p tern-auth 2>&1 | tail -1)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); tern $(git -C "$ROOT" rev-parse --short HEAD)"
noise

echo "== Postfix relay (smtp-source -> Postfix -> smtp-sink)"
"$SHARED/postfix/stop.sh" >/dev/null; "$SHARED/postfix/setup.sh" >/dev/null
MPID=$("$SHARED/postfix/start.sh"); echo "postfix master pid $MPID ($(postconf -d mail_version))"
python3 "$SHARED/postfix/bench_smtp.py" outbound --n "$N" --pid "$MPID"
"$SHARED/postfix/stop.sh" >/dev/null

tern_data() {
  local d; d=$(mktemp -d /tmp/tern-relay.XXXXXX)
  "$TERN" init --data "$d" --domain example.test --port-base "$TERN_BASE" >/dev/null
  # smtp-source cannot AUTH: trust loopback (as Postfix's mynetworks does), lift the
  # per-IP and per-account limits, and send relay.test to the sink.
  sed -i 's/^max_connections_per_ip = .*/max_connections_per_ip = 5000/; s/^max_connections = 2000/max_connections = 5000/;
          s/^max_messages_per_hour = .*/max_messages_per_hour = 0/; s/^max_messages_per_day = .*/max_messages_per_day = 0/;
          s|^trusted_networks = \[\]|trusted_networks = ["127.0.0.0/8"]|; s/^retry = .*/retry = ["1h"]/;
          s/^nameservers = \[\]/nameservers = ["127.0.0.1:9"]/' "$d/tern.toml"
  cat >>"$d/tern.toml" <<EOC

[[queue.transport]]
domain = "relay.test"
host = "127.0.0.1"
port = $SINK_PORT
EOC
  echo "$d"
}

echo "== Tern relay, DKIM-signed (submission -> queue -> smtp-sink)"
DATA=$(tern_data); trap 'rm -rf "$DATA"' EXIT
python3 "$ROOT/bench/tern_relay.py" --tern "$TERN" --data "$DATA" --port "$SUB_PORT" --sink-port "$SINK_PORT" \
  --n "$N" --runs "$RUNS" --label tern-dkim
rm -rf "$DATA"

echo "== Tern relay, no DKIM keys"
DATA=$(tern_data)
python3 - "$DATA/tern.db" <<'EOP'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1]); c.execute("DELETE FROM dkim_keys"); c.commit()
EOP
python3 "$ROOT/bench/tern_relay.py" --tern "$TERN" --data "$DATA" --port "$SUB_PORT" --sink-port "$SINK_PORT" \
  --n "$N" --runs "$RUNS" --label tern-nodkim
rm -rf "$DATA"

echo "== Tern relay, DKIM-signed, every event POSTed to a webhook receiver"
HOOK_PORT=$((TERN_BASE+900))
python3 "$ROOT/bench/webhook_sink.py" "$HOOK_PORT" & HOOK_PID=$!
DATA=$(tern_data)
sed -i 's/^allow_http = false/allow_http = true/' "$DATA/tern.toml"
TERN_LOG=warn "$TERN" webhook add "http://127.0.0.1:$HOOK_PORT/hook" --batch --data "$DATA" >/dev/null
python3 "$ROOT/bench/tern_relay.py" --tern "$TERN" --data "$DATA" --port "$SUB_PORT" --sink-port "$SINK_PORT" \
  --n "$N" --runs "$RUNS" --label tern-dkim-webhooks --modes concurrent \
  --events-url "http://127.0.0.1:$HOOK_PORT/count"
kill "$HOOK_PID"; rm -rf "$DATA"

echo "== DKIM signing rate (one core)"
"$ROOT/target/release/examples/dkim_rate" 3
