# Sourced by every bench/*.sh: where things are, the shared peer settings
# (../shared/bench/common/env.sh), run sizes, file limits, the peers' install.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
export SHARED_BENCH=$SHARED
source "$SHARED/common/env.sh"
N=${N:-20000}; RUNS=${RUNS:-3}; export RUNS
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
[ -n "${SKIP_INSTALL:-}" ] || "$SHARED/install.sh" >/dev/null
TERN=${TERN:-$ROOT/target/release/tern}

# A fresh Tern data folder for the API-side benchmarks, its path on stdout: example.test on
# port base $TERN_BASE, limits lifted for one client address, loopback trusted, no DNS
# (127.0.0.1:9), and mail for relay.test sent to a closed port (deferred, retried in an hour).
tern_bench_data() {
  local d; d=$(mktemp -d "/tmp/tern-$1.XXXXXX")
  "$TERN" init --data "$d" --domain example.test --port-base "$TERN_BASE" >/dev/null
  sed -i 's/^max_connections_per_ip = .*/max_connections_per_ip = 5000/;
          s/^max_messages_per_hour = .*/max_messages_per_hour = 0/; s/^max_messages_per_day = .*/max_messages_per_day = 0/;
          s|^trusted_networks = \[\]|trusted_networks = ["127.0.0.0/8"]|; s/^retry = .*/retry = ["1h"]/;
          s/^requests_per_second = .*/requests_per_second = 0/;
          s/^nameservers = \[\]/nameservers = ["127.0.0.1:9"]/' "$d/tern.toml"
  cat >>"$d/tern.toml" <<EOC

[[queue.transport]]
domain = "relay.test"
host = "127.0.0.1"
port = 9
EOC
  echo "$d"
}
