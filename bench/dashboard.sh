#!/bin/bash
# Dashboard overview (issue "A dashboard people would rather look at…", benchmark): a month
# holding 10 million events — their hourly counters, as Tern writes them with every event —
# over 20 domains, then the overview of the month (all domains, and one domain) rendered by
# `tern serve` for a logged-in user. Prints p50/p99/max of REQUESTS page loads each.
# Target: under 200 ms. No peer: Postfix, Mox and KumoMTA have no dashboard.
# usage: bench/dashboard.sh   (EVENTS=10000000 DOMAINS=20 REQUESTS=200)
set -euo pipefail
SKIP_INSTALL=1 source "$(dirname "$0")/common.sh"
EVENTS=${EVENTS:-10000000}; DOMAINS=${DOMAINS:-20}; REQUESTS=${REQUESTS:-200}
TERN_BASE=${TERN_BASE:-35000}
(cd "$ROOT" && cargo build --release -j2 --bin tern 2>&1 | tail -1)
DATA=$(tern_bench_data dashboard)
trap 'kill $PID 2>/dev/null || true; rm -rf "$DATA"' EXIT
echo 'bench-pw' | "$TERN" admin add bench@example.test --data "$DATA" --password-stdin >/dev/null
python3 - "$DATA/tern.db" "$EVENTS" "$DOMAINS" <<'EOP'
# The counters of EVENTS events over the last 30 days: per hour, domain, type and detail.
import random, sqlite3, sys, time
db, events, domains = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(1)
mix = [("accepted", "", 30), ("delivered", "", 28), ("deferred", "rate_limited", 2),
       ("deferred", "greylisted", 1), ("bounced", "bad_mailbox", 1), ("bounced", "mailbox_full", 0.3),
       ("bounced", "spam_block", 0.2), ("complained", "", 0.05), ("unsubscribed", "", 0.1),
       ("opened", "human", 8), ("opened", "machine", 4), ("clicked", "human", 2),
       ("clicked", "machine", 0.5), ("received", "", 20), ("rejected", "", 3)]
weight = sum(w for _, _, w in mix)
now_h = int(time.time()) // 3600
hours = range(now_h - 30 * 24 + 1, now_h + 1)
rows = []
per_cell = events / (len(hours) * domains)
for h in hours:
    for d in range(domains):
        for t, detail, w in mix:
            n = int(per_cell * w / weight * random.uniform(0.5, 1.5))
            if n:
                rows.append((h, f"shop{d}.example", t, detail, n))
c = sqlite3.connect(db)
c.executemany("INSERT INTO event_counts(hour, domain, dim, type, detail, n) VALUES (?,?,'',?,?,?) "
              "ON CONFLICT(domain, dim, hour, type, detail) DO UPDATE SET n = n + excluded.n", rows)
# Every domain together, as Tern keeps it beside each domain's.
c.execute("INSERT INTO event_counts(hour, domain, dim, type, detail, n) "
          "SELECT hour, '*', '', type, detail, sum(n) FROM event_counts WHERE domain <> '*' "
          "GROUP BY hour, type, detail")
c.commit()
total = c.execute("SELECT sum(n), count(*) FROM event_counts WHERE domain <> '*'").fetchone()
print(f"seeded {total[0]:,} events as {total[1]:,} hourly counters ({domains} domains, 30 days)")
EOP
"$TERN" serve --data "$DATA" >"$DATA/serve.log" 2>&1 &
PID=$!
HTTP=127.0.0.1:$((TERN_BASE+80))
for _ in $(seq 100); do curl -s -o /dev/null "http://$HTTP/healthz" && break; sleep 0.1; done
JAR=$DATA/jar
curl -s -c "$JAR" -b "$JAR" "http://$HTTP/login" >"$DATA/login.html"
TOKEN=$(grep -o 'name="csrf" value="[0-9a-f]*"' "$DATA/login.html" | head -1 | sed 's/.*value="//; s/"//')
curl -s -c "$JAR" -b "$JAR" -o /dev/null -d "email=bench@example.test&password=bench-pw&csrf=$TOKEN&next=/" "http://$HTTP/login"
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); tern $(git -C "$ROOT" rev-parse --short HEAD)"
measure() {
  local what=$1 url=$2
  for _ in $(seq 5); do curl -s -o /dev/null -b "$JAR" "$url"; done   # warm the page cache
  python3 - "$what" "$REQUESTS" <<EOP
import subprocess, sys
what, n = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(n):
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
                          "-b", "$JAR", "$url"], capture_output=True, text=True).stdout.split()
    assert out[0] == "200", out
    times.append(float(out[1]) * 1000)
times.sort()
p = lambda q: times[min(len(times) - 1, int(q * len(times)))]
print(f"{what}: {n} loads, p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, max {times[-1]:.1f} ms (target < 200 ms)")
EOP
}
measure "overview, month, all domains" "http://$HTTP/?range=month"
measure "overview, month, one domain" "http://$HTTP/?range=month&domain=shop3.example"
measure "overview, day, all domains" "http://$HTTP/?range=day"
