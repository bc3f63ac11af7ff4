#!/bin/bash
# IMAP benchmark, Tern and Dovecot side by side in one run, same 10,000-message mailbox,
# same client scripts (../shared/bench/dovecot/imap_bench.py, imap_concurrent.py, idle_conns.py).
# usage: bench/imap.sh          (SKIP_INSTALL=1 to skip apt; N_IDLE=1000)
set -euo pipefail
source "$(dirname "$0")/common.sh"
N_IDLE=${N_IDLE:-1000}; TERN_BASE=${TERN_BASE:-32000}
OUT=$(mktemp -d /tmp/tern-imapbench.XXXXXX); chmod 755 "$OUT"
(cd "$ROOT" && cargo build --release -j2 --bin tern 2>&1 | tail -1)
echo "# $(date -u +%FT%TZ) $(nproc) cores; tern $(git -C "$ROOT" rev-parse --short HEAD); $(dovecot --version | head -1)"
noise

echo "== Dovecot"
"$SHARED/dovecot/stop.sh" >/dev/null 2>&1 || true
"$SHARED/dovecot/setup.sh" >/dev/null
DPID=$("$SHARED/dovecot/start.sh"); "$SHARED/dovecot/reset_mailbox.sh"
echo "CMD: python3 dovecot/imap_bench.py imap --pid $DPID"
python3 "$SHARED/dovecot/imap_bench.py" imap --pid "$DPID" --json "$OUT/dovecot.jsonl"
echo "CMD: python3 dovecot/imap_concurrent.py --sessions 50 --per 100 --pid $DPID"
python3 "$SHARED/dovecot/imap_concurrent.py" --sessions 50 --per 100 --pid "$DPID" --json "$OUT/dovecot-conc.jsonl"
"$SHARED/dovecot/stop.sh" >/dev/null; DPID=$("$SHARED/dovecot/start.sh")
echo "CMD: python3 common/idle_conns.py --proto imap-auth --port $IMAP_PORT --n $N_IDLE --pid $DPID"
python3 "$SHARED/common/idle_conns.py" --proto imap-auth --port "$IMAP_PORT" --n "$N_IDLE" --pid "$DPID"
"$SHARED/dovecot/stop.sh" >/dev/null

echo "== Dovecot LOGIN with the password stored as argon2id (doveadm pw -s ARGON2ID), as Tern stores it"
HASH=$(doveadm pw -s ARGON2ID -p "$TEST_PASS")
python3 -c 'import sys; p=sys.argv[1]; s=open(p).read().replace("{PLAIN}"+sys.argv[2], sys.argv[3], 1); open(p,"w").write(s)' \
  "$DV_DIR/users" "$TEST_PASS" "$HASH"
echo "  dovecot hash parameters: $(echo "$HASH" | cut -d'$' -f3-4)"
DPID=$("$SHARED/dovecot/start.sh")
python3 "$ROOT/bench/imap_login.py" 127.0.0.1 "$IMAP_PORT" "$TEST_USER" "$TEST_PASS" --n 5 --label dovecot
"$SHARED/dovecot/stop.sh" >/dev/null

echo "== Tern"
DATA=$OUT/tern
"$TERN" init --data "$DATA" --domain example.test --port-base "$TERN_BASE" >/dev/null
sed -i 's/^max_connections_per_ip = .*/max_connections_per_ip = 5000/' "$DATA/tern.toml"
# The mailbox is loaded over SMTP: no SPF/DKIM/DMARC lookups (Dovecot's is loaded from files).
sed -i 's/^authenticate = true/authenticate = false/; s/^enabled = true/enabled = false/; s/^nameservers = \[\]/nameservers = ["127.0.0.1:9"]/' "$DATA/tern.toml"
echo pass | "$TERN" account add user@example.test --data "$DATA" --password-stdin --quota 0 >/dev/null
TERN_LOG=warn "$TERN" serve --data "$DATA" 2>"$OUT/tern.log" &
TPID=$!
trap 'kill $TPID 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$((TERN_BASE+143))) 2>/dev/null && break; sleep 0.1; done
python3 "$ROOT/bench/load_maildir.py" "$DV_DIR/template/Maildir" "127.0.0.1:$((TERN_BASE+25))" user@example.test --threads 1
TI="--imap-port $((TERN_BASE+143)) --user user@example.test --password pass"
echo "CMD: python3 dovecot/imap_bench.py imap $TI --pid $TPID"
python3 "$SHARED/dovecot/imap_bench.py" imap $TI --pid "$TPID" --json "$OUT/tern.jsonl"
echo "CMD: python3 dovecot/imap_concurrent.py --port $((TERN_BASE+143)) --user user@example.test --password pass --sessions 50 --per 100 --pid $TPID"
python3 "$SHARED/dovecot/imap_concurrent.py" --port $((TERN_BASE+143)) --user user@example.test --password pass \
  --sessions 50 --per 100 --pid "$TPID" --json "$OUT/tern-conc.jsonl"
echo "CMD: python3 common/idle_conns.py --proto imap-auth --port $((TERN_BASE+143)) --n $N_IDLE --pid $TPID --user user@example.test --password pass"
python3 "$SHARED/common/idle_conns.py" --proto imap-auth --port $((TERN_BASE+143)) --n "$N_IDLE" --pid "$TPID" \
  --user user@example.test --password pass

echo "== Tern LOGIN of an account nobody has logged in as yet (argon2id m=19456,t=2,p=1; later ones from the auth cache)"
echo fresh | "$TERN" account add login@example.test --data "$DATA" --password-stdin >/dev/null
python3 "$ROOT/bench/imap_login.py" 127.0.0.1 $((TERN_BASE+143)) login@example.test fresh --n 5 --label tern

echo "== side by side (ms; ratio = Dovecot / Tern, >1 means Tern is faster)"
python3 - "$OUT/dovecot.jsonl" "$OUT/tern.jsonl" <<'EOP'
import json, sys
d = json.loads(open(sys.argv[1]).readline()); t = json.loads(open(sys.argv[2]).readline())
d = d.get('results', d); t = t.get('results', t)
for k in d:
    if k.startswith('_'): continue
    if isinstance(d[k], (int, float)) and k in t and isinstance(t[k], (int, float)) and t[k] > 0:
        print(f'  {k:<44} dovecot {d[k]*1000:9.1f}  tern {t[k]*1000:9.1f}  ratio {d[k]/t[k]:6.2f}')
EOP
