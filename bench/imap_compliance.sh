#!/bin/bash
# An independent IMAP suite, IMAPClient's live tests (PyPI imapclient 2.3.1), against Dovecot
# and Tern side by side in one run: how many of its 52 tests pass, fail and are skipped (a
# skip is a capability the server does not announce: Gmail's, XLIST, ACL).
# usage: bench/imap_compliance.sh          (SKIP_INSTALL=1 to skip apt)
set -euo pipefail
source "$(dirname "$0")/common.sh"
TERN_BASE=${TERN_BASE:-33000}
OUT=$(mktemp -d /tmp/tern-imapcompliance.XXXXXX); chmod 755 "$OUT"
(cd "$ROOT" && cargo build --release -j2 --bin tern 2>&1 | tail -1)
python3 -m pip install -q --target "$OUT/pylib" imapclient==2.3.1 six >/dev/null 2>&1 \
  || python3 -m pip install -q --break-system-packages --target "$OUT/pylib" imapclient==2.3.1 six >/dev/null
echo "# $(date -u +%FT%TZ); tern $(git -C "$ROOT" rev-parse --short HEAD); $(dovecot --version | head -1); imapclient 2.3.1"
summary() { grep -E '^(Ran|OK|FAILED)' "$1" | tr '\n' ' '; echo; grep -E '^(FAIL|ERROR):' "$1" | sed 's/^/    /' || true; }

echo "== Dovecot (plain IMAP on 127.0.0.1:$IMAP_PORT)"
"$SHARED/dovecot/stop.sh" >/dev/null 2>&1 || true
"$SHARED/dovecot/setup.sh" >/dev/null
"$SHARED/dovecot/start.sh" >/dev/null
(cd "$OUT" && PYTHONPATH="$OUT/pylib" python3 "$ROOT/tests/e2e/imapclient_livetest.py" --plain \
  "127.0.0.1:$IMAP_PORT" "$TEST_USER" "$TEST_PASS" >"$OUT/dovecot.txt" 2>&1) || true
"$SHARED/dovecot/stop.sh" >/dev/null
echo -n "  dovecot: "; summary "$OUT/dovecot.txt"

echo "== Tern (IMAPS on 127.0.0.1:$((TERN_BASE+993)))"
DATA=$OUT/tern
"$TERN" init --data "$DATA" --domain example.test --port-base "$TERN_BASE" >/dev/null
sed -i 's/^nameservers = \[\]/nameservers = ["127.0.0.1:9"]/' "$DATA/tern.toml"
echo pass | "$TERN" account add user@example.test --data "$DATA" --password-stdin >/dev/null
TERN_LOG=warn "$TERN" serve --data "$DATA" 2>"$OUT/tern.log" &
TPID=$!
trap 'kill $TPID 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$((TERN_BASE+993))) 2>/dev/null && break; sleep 0.1; done
(cd "$OUT" && PYTHONPATH="$OUT/pylib" python3 "$ROOT/tests/e2e/imapclient_livetest.py" \
  "127.0.0.1:$((TERN_BASE+993))" user@example.test pass >"$OUT/tern.txt" 2>&1) || true
echo -n "  tern:    "; summary "$OUT/tern.txt"
echo "(full output in $OUT)"
