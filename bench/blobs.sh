#!/bin/bash
# Inbound accept-to-mailbox with message bodies in each blob backend, Postfix side by side in
# one run: Tern with bodies in the database ([blobs] backend = "local", the default), in fsynced
# files ("files") and in an S3-compatible bucket ("s3": moto's server on loopback, a
# single Python process). Same generator as bench/inbound.sh (smtp-source, 20 sessions, 5 KiB);
# a 250 means the body is stored (file+folder fsynced, or the PUT acknowledged) and the
# mailbox row committed.
# usage: bench/blobs.sh      (N=20000 RUNS=3; SKIP_INSTALL=1 to skip apt; BACKENDS="local files s3")
set -euo pipefail
source "$(dirname "$0")/common.sh"
TERN_BASE=${TERN_BASE:-35000}; TERN_PORT=$((TERN_BASE+25))
BACKENDS=${BACKENDS:-local files s3}
(cd "$ROOT" && cargo build --release -j2 --bin tern 2>&1 | tail -1)
command -v moto_server >/dev/null || python3 -m pip install -q 'moto[server]'
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); tern $(git -C "$ROOT" rev-parse --short HEAD)"
noise

echo "== Postfix inbound (accept + Maildir)"
"$SHARED/postfix/stop.sh" >/dev/null; "$SHARED/postfix/setup.sh" >/dev/null
MPID=$("$SHARED/postfix/start.sh"); echo "postfix master pid $MPID ($(postconf -d mail_version))"
python3 "$SHARED/postfix/bench_smtp.py" inbound --n "$N" --pid "$MPID"
"$SHARED/postfix/stop.sh" >/dev/null

TPID=; SPID=; DATA=
cleanup() { kill $TPID $SPID 2>/dev/null || true; [ -z "$DATA" ] || rm -rf "$DATA"; }
trap cleanup EXIT
for backend in $BACKENDS; do
  echo "== Tern inbound, bodies: $backend"
  DATA=$(mktemp -d /tmp/tern-blobs.XXXXXX)
  "$TERN" init --data "$DATA" --domain example.test --port-base "$TERN_BASE" >/dev/null
  sed -i 's/^max_connections_per_ip = .*/max_connections_per_ip = 5000/; s/^max_connections = .*/max_connections = 5000/' "$DATA/tern.toml"
  sed -i 's/^authenticate = true/authenticate = false/; s/^enabled = true/enabled = false/; s/^nameservers = \[\]/nameservers = ["127.0.0.1:9"]/' "$DATA/tern.toml"
  case $backend in
    files) sed -i 's/^backend = "local"/backend = "files"/' "$DATA/tern.toml" ;;
    s3)
      S3PORT=$((TERN_BASE+900))
      moto_server -H 127.0.0.1 -p "$S3PORT" >"$DATA/moto.log" 2>&1 & SPID=$!
      for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$S3PORT/" && break; sleep 0.1; done
      curl -s -X PUT "http://127.0.0.1:$S3PORT/tern-mail" >/dev/null
      sed -i "s|^backend = \"local\"|backend = \"s3\"|; s|^bucket = \"\"|bucket = \"tern-mail\"|;
              s|^endpoint = \"\"|endpoint = \"http://127.0.0.1:$S3PORT\"|;
              s|^access_key_id = \"\"|access_key_id = \"bench\"|; s|^secret_access_key = \"\"|secret_access_key = \"bench\"|" "$DATA/tern.toml"
      ;;
  esac
  echo pass | "$TERN" account add user@example.test --data "$DATA" --password-stdin --quota 0 >/dev/null
  TERN_LOG=warn "$TERN" serve --data "$DATA" 2>"$DATA/tern.log" &
  TPID=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$TERN_PORT) 2>/dev/null && break; sleep 0.1; done
  python3 "$ROOT/bench/tern_inbound.py" --tern "$TERN" --data "$DATA" --port "$TERN_PORT" --pid "$TPID" --n "$N" --runs "$RUNS"
  [ "$backend" != files ] || echo "files under blobs/: $(find "$DATA/blobs" -type f | wc -l)"
  kill $TPID; wait $TPID 2>/dev/null || true; TPID=
  [ -z "$SPID" ] || { kill $SPID; wait $SPID 2>/dev/null || true; SPID=; }
  rm -rf "$DATA"; DATA=
done
