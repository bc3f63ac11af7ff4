#!/bin/bash
# Event-log reads with 1 million stored events (issue "Every message has a story",
# benchmark 3): GET /v1/messages/{id} and GET /v1/events?recipient= p99, target <= 10 ms.
# No peer: Postfix and Dovecot keep no queryable history (their logs are text).
# usage: bench/events.sh      (EVENTS=1000000 REQUESTS=2000)
set -euo pipefail
SKIP_INSTALL=1 source "$(dirname "$0")/common.sh"
TERN_BASE=${TERN_BASE:-34000}; HTTP_PORT=$((TERN_BASE+80))
(cd "$ROOT" && cargo build --release -j2 --bin tern 2>&1 | tail -1)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); tern $(git -C "$ROOT" rev-parse --short HEAD)"
noise
DATA=$(mktemp -d /tmp/tern-events.XXXXXX); trap 'rm -rf "$DATA"' EXIT
"$TERN" init --data "$DATA" --domain example.test --port-base "$TERN_BASE" >/dev/null
sed -i 's/^requests_per_second = .*/requests_per_second = 0/; s/^nameservers = \[\]/nameservers = ["127.0.0.1:9"]/' "$DATA/tern.toml"
KEY=$("$TERN" apikey create --scope read --data "$DATA" 2>/dev/null)
python3 "$ROOT/bench/events_load.py" --tern "$TERN" --data "$DATA" --port "$HTTP_PORT" --key "$KEY" \
  --events "${EVENTS:-1000000}" --requests "${REQUESTS:-2000}"
