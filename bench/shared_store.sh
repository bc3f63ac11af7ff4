#!/bin/bash
# Inbound accept-to-mailbox on the shared backends, Postfix side by side in one run (issue 14):
#   postfix         Postfix + Maildir (the peer)
#   sqlite          Tern, SQLite with bodies in the database (the embedded default)
#   pg              Tern on PostgreSQL, bodies in it ([blobs] backend = "local")
#   pg-2            two Tern nodes on that one PostgreSQL, the sessions split between them
#   pg-files        Tern on PostgreSQL, bodies in fsynced files
#   pg-s3           Tern on PostgreSQL, bodies in an S3-compatible bucket (moto's server: one
#                   Python process on loopback, itself the bottleneck; see bench/blobs.sh)
#   pg-replica      as pg, with a streaming read replica attached (pg_basebackup -R, asynchronous):
#                   how far behind a replica serving IMAP reads would be during the flood
#                   (pg_stat_replication's replay lag, sampled every 100 ms), what the replica
#                   costs the primary, and the replica's own CPU per message
#   relay-postfix, relay-sqlite, relay-pg
#                   relay instead of inbound: smtp-source submits 20,000 (20 sessions, 100 per
#                   session) for relay.test, delivered to smtp-sink; time to an empty queue
#                   while submitting (bench/tern_relay.py "concurrent"; DKIM-signed by Tern)
# A private PostgreSQL 15 (initdb in a temporary folder, loopback, default settings: fsync and
# synchronous_commit on) serves the pg runs. Same generator as bench/inbound.sh (smtp-source,
# 20 sessions, 5 KiB). After each pg run the database's own counters give the per-message
# cost: transactions, WAL records, WAL bytes and WAL flushes (fsyncs) per message.
# usage: bench/shared_store.sh   (N=20000 RUNS=1; SKIP_INSTALL=1 to skip apt; SETUPS="…";
#   PGSTATS=1 statement costs; PGOPTS="-c …" PostgreSQL settings; TERN=/path/to/tern another
#   build, for A/B runs; TERN_LOG=… KEEP_LOG=FILE keeps node A's log of the last setup)
set -euo pipefail
RUNS=${RUNS:-1}
source "$(dirname "$0")/common.sh"
TERN_BASE=${TERN_BASE:-36000}
SETUPS=${SETUPS:-postfix sqlite pg pg-2 pg-files pg-s3 pg-replica relay-postfix relay-sqlite relay-pg}
(cd "$ROOT" && cargo build --release -j2 --bin tern 2>&1 | tail -1)
command -v moto_server >/dev/null || python3 -m pip install -q 'moto[server]'
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); tern $(git -C "$ROOT" rev-parse --short HEAD); $("$PGBIN/postgres" --version)"
noise

PIDS=(); TMP=$(mktemp -d /tmp/tern-shared.XXXXXX); chmod 755 "$TMP"
PGDIR=$TMP/pg; PGPORT=$((TERN_BASE+950)); S3PORT=$((TERN_BASE+951))
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  [ ! -d "$PGDIR/standby" ] || as_pg "$PGBIN/pg_ctl" -D "$PGDIR/standby" -m immediate stop >/dev/null 2>&1 || true
  [ ! -d "$PGDIR/data" ] || as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
psql_() { "$PGBIN/psql" -X -q -t -A -h 127.0.0.1 -p "$PGPORT" -U tern "$@"; }

start_pg() {
  mkdir -p "$PGDIR"; [ "$(id -u)" != 0 ] || chown postgres "$PGDIR"
  as_pg "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U tern >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
    -o "-p $PGPORT -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=200 ${PGSTATS:+-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all} ${PGOPTS:-}" start >/dev/null
}
# A streaming replica of the cluster on PGPORT+2 (asynchronous, hot standby).
start_standby() {
  as_pg "$PGBIN/pg_basebackup" -h 127.0.0.1 -p "$PGPORT" -U tern -D "$PGDIR/standby" -R -X stream
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/standby" -l "$PGDIR/standby.log" -w \
    -o "-p $((PGPORT+2)) -k $PGDIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c hot_standby=on ${PGOPTS:-}" start >/dev/null \
    || { cat "$PGDIR/standby.log"; exit 1; }
}
stop_standby() {
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/standby" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR/standby"
}
# The standby's CPU seconds (its postmaster and children: the WAL receiver and startup process).
standby_cpu() {
  local pm; pm=$(head -1 "$PGDIR/standby/postmaster.pid")
  { cpu_of "$pm"; echo; for c in $(pgrep -P "$pm"); do cpu_of "$c" 2>/dev/null; echo; done; } | awk '{ s += $1 } END { printf "%.2f", s }'
}
# Samples the replica's replay lag (ms) and byte lag every 100 ms into $1 until killed.
sample_lag() {
  while sleep 0.1; do
    psql_ -d postgres -F' ' -c "SELECT COALESCE(EXTRACT(EPOCH FROM replay_lag) * 1000, 0),
      pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) FROM pg_stat_replication" >>"$1" 2>/dev/null
  done
}
fresh_db() {
  psql_ -d postgres -c "DROP DATABASE IF EXISTS tern" -c "CREATE DATABASE tern" 2>/dev/null
  [ -z "${PGSTATS:-}" ] || psql_ -d tern -c "CREATE EXTENSION pg_stat_statements" >/dev/null
}
# PGSTATS=1: where PostgreSQL's time goes, by statement (pg_stat_statements).
pg_top() {
  [ -n "${PGSTATS:-}" ] || return 0
  psql_ -d tern -F' | ' -c "SELECT round(total_exec_time::numeric * 1000 / $1) AS us_per_msg, calls,
      left(regexp_replace(query, '\s+', ' ', 'g'), 110) FROM pg_stat_statements
      WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'tern')
      ORDER BY total_exec_time DESC LIMIT 15"
}
pg_counters() {  # transactions, WAL records, WAL bytes, WAL syncs
  psql_ -d tern -F' ' -c "SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = 'tern'),
    wal_records, wal_bytes, wal_sync FROM pg_stat_wal"
}

# CPU seconds used so far by a process, and by the PostgreSQL server (its backends included).
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
# The postmaster's own and its ended backends' time (cutime, cstime), and its live backends'.
pg_cpu() {
  local pm; pm=$(head -1 "$PGDIR/data/postmaster.pid")
  { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15 + $16 + $17) / hz }' "/proc/$pm/stat"
    for c in $(pgrep -P "$pm"); do cpu_of "$c" 2>/dev/null; echo; done; } | awk '{ s += $1 } END { printf "%.2f", s }'
}

# A Tern data folder for `setup` on port base $2, node name $3.
tern_data() {
  local setup=$1 base=$2 node=$3 d
  d=$(mktemp -d "$TMP/tern.XXXXXX")
  "$TERN" init --data "$d" --domain example.test --port-base "$base" >/dev/null
  sed -i 's/^max_connections_per_ip = .*/max_connections_per_ip = 5000/; s/^max_connections = .*/max_connections = 5000/' "$d/tern.toml"
  sed -i 's/^authenticate = true/authenticate = false/; s/^enabled = true/enabled = false/; s/^nameservers = \[\]/nameservers = ["127.0.0.1:9"]/' "$d/tern.toml"
  sed -i "s/^name = \"\"/name = \"$node\"/" "$d/tern.toml"
  case $setup in
    pg*)
      sed -i "s|^backend = \"sqlite\"|backend = \"postgres\"|; s|^url = \"\"|url = \"postgres://tern@127.0.0.1:$PGPORT/tern\"|" "$d/tern.toml" ;;
  esac
  case $setup in
    pg-files) sed -i "s|^backend = \"local\"|backend = \"files\"|; s|^path = \"blobs\"|path = \"$TMP/blobs\"|" "$d/tern.toml" ;;
    pg-s3)
      sed -i "s|^backend = \"local\"|backend = \"s3\"|; s|^bucket = \"\"|bucket = \"tern-mail\"|;
              s|^endpoint = \"\"|endpoint = \"http://127.0.0.1:$S3PORT\"|;
              s|^access_key_id = \"\"|access_key_id = \"bench\"|; s|^secret_access_key = \"\"|secret_access_key = \"bench\"|" "$d/tern.toml" ;;
  esac
  echo "$d"
}

serve() {  # data folder, smtp port; the pid in $SERVED
  TERN_LOG=${TERN_LOG:-warn} "$TERN" serve --data "$1" 2>"$1/tern.log" & SERVED=$!; PIDS+=("$SERVED")
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$2) 2>/dev/null && return; sleep 0.1; done
  echo "tern did not start:"; cat "$1/tern.log"; exit 1
}

for setup in $SETUPS; do
  echo "== $setup"
  case $setup in
    relay-postfix)
      "$SHARED/postfix/stop.sh" >/dev/null; "$SHARED/postfix/setup.sh" >/dev/null
      MPID=$("$SHARED/postfix/start.sh"); echo "postfix master pid $MPID ($(postconf -d mail_version))"
      python3 "$SHARED/postfix/bench_smtp.py" outbound --n "$N" --pid "$MPID" --runs "$RUNS" --modes concurrent
      "$SHARED/postfix/stop.sh" >/dev/null
      continue ;;
    relay-*)
      if [ "$setup" = relay-pg ]; then
        [ -d "$PGDIR/data" ] || start_pg; fresh_db
      fi
      R=$(tern_data "${setup#relay-}" "$TERN_BASE" mx-a)
      [ "$setup" != relay-pg ] || "$TERN" domain add example.test --data "$R" >/dev/null
      sed -i 's/^max_messages_per_hour = .*/max_messages_per_hour = 0/; s/^max_messages_per_day = .*/max_messages_per_day = 0/;
              s|^trusted_networks = \[\]|trusted_networks = ["127.0.0.0/8"]|; s/^retry = .*/retry = ["1h"]/' "$R/tern.toml"
      printf '\n[[queue.transport]]\ndomain = "relay.test"\nhost = "127.0.0.1"\nport = %s\n' "$SINK_PORT" >>"$R/tern.toml"
      [ "$setup" != relay-pg ] || { BEFORE=$(pg_counters); PGCPU0=$(pg_cpu); }
      PSQL_ARGS=()
      [ "$setup" != relay-pg ] || PSQL_ARGS=(--psql "$PGBIN/psql -h 127.0.0.1 -p $PGPORT -U tern -d tern")
      python3 "$ROOT/bench/tern_relay.py" --tern "$TERN" --data "$R" --port $((TERN_BASE+587)) \
        --sink-port "$SINK_PORT" --n "$N" --runs "$RUNS" --modes concurrent --label "tern-$setup" "${PSQL_ARGS[@]}"
      if [ "$setup" = relay-pg ]; then
        pg_top $((N * RUNS))
        echo "CPU per message: PostgreSQL $(awk -v a="$PGCPU0" -v b="$(pg_cpu)" -v m=$((N * RUNS)) 'BEGIN { printf "%.0f", (b - a) * 1e6 / m }') µs"
        AFTER=$(pg_counters); read -r x0 r0 b0 s0 <<<"$BEFORE"; read -r x1 r1 b1 s1 <<<"$AFTER"
        awk -v m=$((N * RUNS)) -v x=$((x1-x0)) -v s=$((s1-s0)) 'BEGIN {
          printf "per message: %.2f transactions, %.3f WAL flushes\n", x/m, s/m }'
      fi
      continue ;;
    postfix)
      "$SHARED/postfix/stop.sh" >/dev/null; "$SHARED/postfix/setup.sh" >/dev/null
      MPID=$("$SHARED/postfix/start.sh"); echo "postfix master pid $MPID ($(postconf -d mail_version))"
      python3 "$SHARED/postfix/bench_smtp.py" inbound --n "$N" --pid "$MPID" --runs "$RUNS" --per-session 1
      "$SHARED/postfix/stop.sh" >/dev/null
      continue ;;
    pg*) [ -d "$PGDIR/data" ] || start_pg; fresh_db; rm -rf "$TMP/blobs" ;;
  esac
  [ "$setup" != pg-replica ] || start_standby
  if [ "$setup" = pg-s3 ]; then
    moto_server -H 127.0.0.1 -p "$S3PORT" >"$TMP/moto.log" 2>&1 & PIDS+=($!)
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$S3PORT/" && break; sleep 0.1; done
    curl -s -X PUT "http://127.0.0.1:$S3PORT/tern-mail" >/dev/null
  fi
  A=$(tern_data "$setup" "$TERN_BASE" mx-a)
  # `tern init` added the domain to its SQLite database; the shared store needs it too.
  [[ $setup != pg* ]] || "$TERN" domain add example.test --data "$A" >/dev/null
  echo pass | "$TERN" account add user@example.test --data "$A" --password-stdin --quota 0 >/dev/null
  serve "$A" $((TERN_BASE+25)); APID=$SERVED
  [[ $setup != pg* ]] || { BEFORE=$(pg_counters); PGCPU0=$(pg_cpu); }
  TCPU0=$(cpu_of "$APID")
  if [ "$setup" = pg-replica ]; then
    : >"$TMP/lag"; sample_lag "$TMP/lag" & LAGGER=$!; SCPU0=$(standby_cpu)
  fi
  if [[ $setup == *-2 ]]; then
    B=$(tern_data "$setup" $((TERN_BASE+100)) mx-b)
    serve "$B" $((TERN_BASE+125))
    echo "CMD: smtp-source -s 10 -l 5120 -m $((N/2)) on each of two nodes, at once"
    t0=$(date +%s.%N)
    smtp-source -s 10 -l 5120 -f bench@example.test -t user@example.test -m $((N/2)) 127.0.0.1:$((TERN_BASE+25)) &
    S1=$!
    smtp-source -s 10 -l 5120 -f bench@example.test -t user@example.test -m $((N/2)) 127.0.0.1:$((TERN_BASE+125))
    wait $S1
    t1=$(date +%s.%N)
    got=$("$TERN" account list --data "$A" | awk '$1 == "user@example.test" {print $2}')
    [ "$got" = "$N" ] || { echo "expected $N messages, found $got"; exit 1; }
    awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN { printf "two nodes: %d messages in %.2f s: %.0f msg/s\n", n, b-a, n/(b-a) }'
  else
    python3 "$ROOT/bench/tern_inbound.py" --tern "$TERN" --data "$A" --port $((TERN_BASE+25)) --pid "$APID" \
      --n "$N" --runs "$RUNS" --per-session 1
  fi
  echo "CPU per message: tern (node A) $(awk -v a="$TCPU0" -v b="$(cpu_of "$APID")" -v m=$((N * RUNS)) 'BEGIN { printf "%.0f", (b - a) * 1e6 / m }') µs"
  if [[ $setup == pg* ]]; then
    echo "CPU per message: PostgreSQL $(awk -v a="$PGCPU0" -v b="$(pg_cpu)" -v m=$((N * RUNS)) 'BEGIN { printf "%.0f", (b - a) * 1e6 / m }') µs"
    pg_top $((N * RUNS))
    AFTER=$(pg_counters)
    read -r x0 r0 b0 s0 <<<"$BEFORE"; read -r x1 r1 b1 s1 <<<"$AFTER"
    M=$((N * RUNS))
    awk -v m="$M" -v x=$((x1-x0)) -v r=$((r1-r0)) -v b=$((b1-b0)) -v s=$((s1-s0)) 'BEGIN {
      printf "per message: %.2f transactions, %.1f WAL records, %.0f WAL bytes, %.3f WAL flushes (%d flushes for %d messages)\n",
        x/m, r/m, b/m, s/m, s, m }'
  fi
  if [ "$setup" = pg-replica ]; then
    kill "$LAGGER" 2>/dev/null; wait "$LAGGER" 2>/dev/null || true
    # Caught up: every message the primary acknowledged is readable on the replica.
    t0=$(date +%s.%N)
    until [ "$("$PGBIN/psql" -X -q -t -A -h 127.0.0.1 -p $((PGPORT+2)) -U tern -d tern \
        -c "SELECT COUNT(*) FROM mailbox_messages" 2>/dev/null)" = "$M" ]; do sleep 0.05; done
    t1=$(date +%s.%N)
    echo "CPU per message: the replica $(awk -v a="$SCPU0" -v b="$(standby_cpu)" -v m="$M" 'BEGIN { printf "%.0f", (b - a) * 1e6 / m }') µs"
    pct() { sort -n -k"$1","$1" "$TMP/lag" | awk -v k="$1" -v q="$2" '{ v[NR] = $k } END { i = int(NR * q) + 1; if (i > NR) i = NR; printf "%.1f", NR ? v[i] : 0 }'; }
    echo "replica replay lag during the flood ($(wc -l <"$TMP/lag") samples, every 100 ms): median $(pct 1 0.5) ms, p99 $(pct 1 0.99) ms, max $(pct 1 1) ms; WAL not yet replayed: median $(pct 2 0.5 | awk '{ printf "%.0f", $1 / 1024 }') KB, max $(pct 2 1 | awk '{ printf "%.0f", $1 / 1024 }') KB"
    awk -v a="$t0" -v b="$t1" -v m="$M" 'BEGIN { printf "replica: all %d messages readable there %.2f s after the last acknowledgement\n", m, b - a }'
    stop_standby
  fi
  [ -z "${KEEP_LOG:-}" ] || cp "$A/tern.log" "$KEEP_LOG"
  kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; PIDS=()
done
