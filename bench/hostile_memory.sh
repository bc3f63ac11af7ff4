#!/bin/bash
# Memory under hostile and large input, Tern and its peers side by side in one run
# (bench/hostile_memory.py does the measuring: RSS of the whole process tree, peak sampled):
#  1. 24 clients at once each send a 100 MB message, over the 50 MiB size limit both servers
#     are given: Postfix (message_size_limit) and Tern (max_message_size, max_data_memory).
#  2. SELECT, FETCH 1:* (FLAGS) and a header SEARCH on the same generated mailbox of each size
#     in SIZES (../shared/bench/dovecot/gen_maildir.py, ~5 KiB messages): Dovecot and Tern.
# usage: bench/hostile_memory.sh     (SKIP_INSTALL=1 to skip apt; SIZES="10000 100000";
#        READ_MMAP_SIZE=0 to run Tern with [store] read_mmap_size = 0)
set -euo pipefail
source "$(dirname "$0")/common.sh"
SIZES=${SIZES:-"10000 100000"}; TERN_BASE=${TERN_BASE:-33000}
OUT=$(mktemp -d /tmp/tern-membench.XXXXXX); chmod 755 "$OUT"
(cd "$ROOT" && cargo build --release -j2 --bin tern 2>&1 | tail -1)
echo "# $(date -u +%FT%TZ) $(nproc) cores; tern $(git -C "$ROOT" rev-parse --short HEAD); $(postconf -d mail_version 2>/dev/null); dovecot $(dovecot --version | head -1)"
noise
HM="python3 $ROOT/bench/hostile_memory.py"
TPID=
trap '[ -n "$TPID" ] && kill $TPID 2>/dev/null; true' EXIT

start_tern() { # data folder → TPID
  "$TERN" init --data "$1" --domain example.test --port-base "$TERN_BASE" >/dev/null
  sed -i 's/^max_connections_per_ip = .*/max_connections_per_ip = 5000/' "$1/tern.toml"
  [ -z "${READ_MMAP_SIZE:-}" ] || sed -i "s/^read_mmap_size = .*/read_mmap_size = $READ_MMAP_SIZE/" "$1/tern.toml"
  # Loaded over SMTP: no SPF/DKIM/DMARC lookups and no filter (Dovecot's is loaded from files).
  sed -i 's/^authenticate = true/authenticate = false/; s/^enabled = true/enabled = false/; s/^nameservers = \[\]/nameservers = ["127.0.0.1:9"]/' "$1/tern.toml"
  echo pass | "$TERN" account add user@example.test --data "$1" --password-stdin --quota 0 >/dev/null
  TERN_LOG=warn "$TERN" serve --data "$1" 2>"$1.log" &
  TPID=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$((TERN_BASE+143))) 2>/dev/null && break; sleep 0.1; done
}
stop_tern() { kill "$TPID"; wait "$TPID" 2>/dev/null || true; TPID=; }

echo "== 24 x 100 MB over a 50 MiB limit"
"$SHARED/postfix/stop.sh" >/dev/null 2>&1 || true
"$SHARED/postfix/setup.sh" >/dev/null
postconf -c "$PF_ETC" -e message_size_limit=52428800
PFPID=$("$SHARED/postfix/start.sh")
echo "CMD: hostile_memory.py oversize --port $SMTP_PORT --pid $PFPID   # Postfix"
$HM oversize --port "$SMTP_PORT" --pid "$PFPID" | tee "$OUT/postfix-oversize.json"
"$SHARED/postfix/stop.sh" >/dev/null
start_tern "$OUT/tern-oversize"
echo "CMD: hostile_memory.py oversize --port $((TERN_BASE+25)) --pid $TPID   # Tern"
$HM oversize --port $((TERN_BASE+25)) --pid "$TPID" | tee "$OUT/tern-oversize.json"
stop_tern

for n in $SIZES; do
  echo "== mailbox of $n messages"
  "$SHARED/dovecot/stop.sh" >/dev/null 2>&1 || true
  N_MSGS=$n "$SHARED/dovecot/setup.sh" >/dev/null
  DPID=$("$SHARED/dovecot/start.sh"); "$SHARED/dovecot/reset_mailbox.sh"
  echo "CMD: hostile_memory.py mailbox --port $IMAP_PORT --pid $DPID   # Dovecot"
  $HM mailbox --port "$IMAP_PORT" --pid "$DPID" | tee "$OUT/dovecot-$n.json"
  "$SHARED/dovecot/stop.sh" >/dev/null
  start_tern "$OUT/tern-$n"
  python3 "$ROOT/bench/load_maildir.py" "$DV_DIR/template/Maildir" "127.0.0.1:$((TERN_BASE+25))" user@example.test --threads 4
  echo "CMD: hostile_memory.py mailbox --port $((TERN_BASE+143)) --user user@example.test --pid $TPID   # Tern"
  $HM mailbox --port $((TERN_BASE+143)) --user user@example.test --password pass --pid "$TPID" | tee "$OUT/tern-$n.json"
  stop_tern
done

echo "== side by side (MiB; ms)"
python3 - "$OUT" $SIZES <<'EOP'
import json, sys, os
d = sys.argv[1]
j = lambda f: json.load(open(os.path.join(d, f)))
p, t = j('postfix-oversize.json'), j('tern-oversize.json')
print(f"  oversize peak RSS      postfix {p['peak_rss_kib']/1024:8.1f}  tern {t['peak_rss_kib']/1024:8.1f}   (anon: postfix {p['peak_anon_kib']/1024:.1f}, tern {t['peak_anon_kib']/1024:.1f}; after 5 s: postfix {p['rss_after_5s_kib']/1024:.1f}, tern {t['rss_after_5s_kib']/1024:.1f})")
print(f"  oversize replies       postfix {p['replies']}  tern {t['replies']}")
for n in sys.argv[2:]:
    dv, tn = j(f'dovecot-{n}.json'), j(f'tern-{n}.json')
    for op in ('select', 'fetch_flags', 'search_header'):
        print(f"  {n:>7} {op:<14} dovecot {dv[op]['ms']:8.1f} ms +{dv[op]['peak_growth_kib']/1024:6.1f} MiB (anon +{dv[op]['peak_anon_growth_kib']/1024:6.1f})   tern {tn[op]['ms']:8.1f} ms +{tn[op]['peak_growth_kib']/1024:6.1f} MiB (anon +{tn[op]['peak_anon_growth_kib']/1024:6.1f})")
    print(f"  {n:>7} after LOGOUT       dovecot {dv['rss_after_logout_kib']/1024:6.1f} MiB (anon {dv['anon_after_logout_kib']/1024:6.1f})   tern {tn['rss_after_logout_kib']/1024:6.1f} MiB (anon {tn['anon_after_logout_kib']/1024:6.1f}; before login {tn['rss_before_kib']/1024:.1f}, anon {tn['anon_before_kib']/1024:.1f})")
EOP
