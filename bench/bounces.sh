#!/bin/bash
# Bounce intake (issue "Close the loop with mailbox providers", benchmark): RFC 3464 DSNs
# through Tern's MX to `bounced` events, against Tern's own plain inbound rate in the same run
# (target: at least half of it). Same client (crates/tern/examples/bounce_load.rs), same
# message size (~1.5 KiB), 10 concurrent SMTP sessions:
#   plain:   N messages from remote senders to a mailbox, stored, fsync before 250. Inbound
#            checks (SPF/DKIM/DMARC, spam filter) are off: the bounce path runs none of them
#            (the signed return path is its authentication), so both paths do the same
#            protocol and commit work and the difference is what bounce intake adds.
#   bounces: N DSNs, each to the signed return path of a message sent earlier through the API;
#            each is matched to its message and recipient and written as a `bounced` event,
#            a `suppressed` event and a suppression (fsync before 250)
# usage: bench/bounces.sh      (N=5000 RUNS=3; SKIP_INSTALL=1 to skip apt)
set -euo pipefail
N=${N:-5000}
source "$(dirname "$0")/common.sh"
TERN_BASE=${TERN_BASE:-34000}; SMTP_PORT=$((TERN_BASE+25)); HTTP_PORT=$((TERN_BASE+80))
(cd "$ROOT" && cargo build --release -j2 --bin tern --example bounce_load -p tern 2>&1 | tail -1)
LOAD=$ROOT/target/release/examples/bounce_load
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); tern $(git -C "$ROOT" rev-parse --short HEAD); N=$N C=10"
noise
PLAIN=(); BOUNCE=()
for r in $(seq "$RUNS"); do
  DATA=$(tern_bench_data bounces)
  # Inbound checks off, as on the bounce path (SPF/DKIM/DMARC, then the spam filter: the
  # first `enabled` after its section header).
  sed -i 's/^authenticate = true/authenticate = false/' "$DATA/tern.toml"
  sed -i '/^\[filter\]/,/^enabled/ s/^enabled = true/enabled = false/' "$DATA/tern.toml"
  "$TERN" account add postmaster@example.test --data "$DATA" >/dev/null
  KEY=$("$TERN" apikey create --scope send --data "$DATA" 2>/dev/null)
  TERN_LOG=warn "$TERN" serve --data "$DATA" 2>>"$DATA/tern.log" &
  TPID=$!
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT") 2>/dev/null && break; sleep 0.05; done
  CMD="$LOAD --smtp 127.0.0.1:$SMTP_PORT --http 127.0.0.1:$HTTP_PORT --key KEY --data $DATA --to postmaster@example.test --n $N --c 10"
  [ "$r" = 1 ] && echo "CMD: $CMD"
  out=$(${CMD/KEY/$KEY}); echo "$out" | sed 's/^/  /'
  grep -q "(0 failed)" <<<"$(grep bounce <<<"$out")" || { echo "bounces failed"; exit 1; }
  PLAIN+=("$(sed -n 's/^plain inbound: .* = \([0-9]*\)\/s.*/\1/p' <<<"$out")")
  BOUNCE+=("$(sed -n 's/^bounce intake: .* = \([0-9]*\)\/s.*/\1/p' <<<"$out")")
  kill -9 "$TPID"; wait "$TPID" 2>/dev/null || true; rm -rf "$DATA"
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "RESULT tern plain inbound msg/s median $(med "${PLAIN[@]}") [${PLAIN[*]}]"
echo "RESULT tern bounce intake DSN/s median $(med "${BOUNCE[@]}") [${BOUNCE[*]}]"
python3 -c "import sys; b,p=map(float,sys.argv[1:]); print(f'RATIO bounces/plain {b/p:.2f} (target >= 0.50)')" \
  "$(med "${BOUNCE[@]}")" "$(med "${PLAIN[@]}")"
