#!/bin/bash
# Durable acceptance over the HTTP API vs SMTP, side by side in one run (issue "Every message
# has a story", benchmark 1): 10 concurrent keep-alive clients, 1 recipient, 5 KiB each.
#   1. Postfix: smtp-source -s 10 into its queue (held: acceptance only), fsync before 250
#   2. Tern SMTP submission: smtp-source -s 10 (trusted loopback, no AUTH), fsync before 250
#   3. Tern HTTP API: crates/tern-api/examples/api_load.rs, 10 keep-alive clients, POST
#      /v1/messages; 202 only after message, queue rows and events are fsynced
# Tern signs every message with DKIM (RSA-2048 + Ed25519) on both of its paths; its queue
# sends relay.test to a closed port (deferred, retried in an hour), as Postfix holds its copies.
# usage: sudo bench/api.sh      (N=20000 RUNS=3; SKIP_INSTALL=1 to skip apt)
set -euo pipefail
source "$(dirname "$0")/common.sh"
TERN_BASE=${TERN_BASE:-33000}; SUB_PORT=$((TERN_BASE+587)); HTTP_PORT=$((TERN_BASE+80))
C=10; SIZE=5120
(cd "$ROOT" && cargo build --release -j2 --bin tern --example api_load -p tern -p tern-api 2>&1 | tail -1)
LOAD=$ROOT/target/release/examples/api_load
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); tern $(git -C "$ROOT" rev-parse --short HEAD); N=$N C=$C SIZE=$SIZE"
noise

rate() { python3 -c "import sys; print(f'{int(sys.argv[1])/float(sys.argv[2]):.0f}')" "$1" "$2"; }
source_cmd() { echo "smtp-source -s $C -l $SIZE -m $N -d -f bench@example.test -t $1 127.0.0.1:$2"; }

tern_data() { tern_bench_data api; }

start_tern() {
  TERN_LOG=warn "$TERN" serve --data "$1" 2>>"$1/tern.log" &
  TPID=$!
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT") 2>/dev/null && return; sleep 0.05; done
  echo "tern did not start"; exit 1
}

echo "== Postfix (smtp-source -> Postfix queue, held)"
"$SHARED/postfix/stop.sh" >/dev/null; "$SHARED/postfix/setup.sh" >/dev/null
MPID=$("$SHARED/postfix/start.sh"); echo "postfix master pid $MPID ($(postconf -d mail_version))"
echo "CMD: $(source_cmd x@hold.relay.test "$SMTP_PORT")"
PF=(); TS=(); TA=()
for r in $(seq "$RUNS"); do
  sync; t0=$(date +%s.%N)
  $(source_cmd x@hold.relay.test "$SMTP_PORT")
  t1=$(date +%s.%N); s=$(python3 -c "print($t1-$t0)")
  PF+=("$(rate "$N" "$s")"); echo "  run$r: ${s}s rate=${PF[-1]}/s loadavg=$(cut -d' ' -f1 /proc/loadavg)"
  postsuper -c "$PF_ETC" -d ALL >/dev/null 2>&1 || true
done
"$SHARED/postfix/stop.sh" >/dev/null

for r in $(seq "$RUNS"); do
  echo "== run $r: Tern SMTP submission (smtp-source -> Tern queue)"
  DATA=$(tern_data); start_tern "$DATA"
  [ "$r" = 1 ] && echo "CMD: $(source_cmd x@relay.test "$SUB_PORT")"
  sync; t0=$(date +%s.%N)
  $(source_cmd x@relay.test "$SUB_PORT")
  t1=$(date +%s.%N); s=$(python3 -c "print($t1-$t0)")
  TS+=("$(rate "$N" "$s")"); echo "  ${s}s rate=${TS[-1]}/s"
  kill -9 "$TPID"; wait "$TPID" 2>/dev/null || true; rm -rf "$DATA"

  echo "== run $r: Tern HTTP API (api_load -> Tern queue)"
  DATA=$(tern_data)
  KEY=$("$TERN" apikey create --scope send --data "$DATA" 2>/dev/null)
  start_tern "$DATA"
  [ "$r" = 1 ] && echo "CMD: api_load http://127.0.0.1:$HTTP_PORT KEY $N $C $SIZE"
  sync
  out=$("$LOAD" "http://127.0.0.1:$HTTP_PORT" "$KEY" "$N" "$C" "$SIZE"); echo "  $out"
  grep -q "failed=0 " <<<"$out" || { echo "API requests failed"; exit 1; }
  TA+=("$(sed 's/.*rate=\([0-9]*\).*/\1/' <<<"$out")")
  kill -9 "$TPID"; wait "$TPID" 2>/dev/null || true; rm -rf "$DATA"
done

med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "RESULT postfix smtp accepted msg/s median $(med "${PF[@]}") [${PF[*]}]"
echo "RESULT tern smtp-submission accepted msg/s median $(med "${TS[@]}") [${TS[*]}]"
echo "RESULT tern http-api accepted msg/s median $(med "${TA[@]}") [${TA[*]}]"
python3 -c "import sys; a,s,p=map(float,sys.argv[1:]); print(f'RATIO api/tern-smtp {a/s:.2f}  api/postfix {a/p:.2f}')" \
  "$(med "${TA[@]}")" "$(med "${TS[@]}")" "$(med "${PF[@]}")"
