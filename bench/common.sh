# Sourced by every bench/*.sh: where things are, the shared peer settings
# (../shared/bench/common/env.sh), run sizes, file limits, the peers' install.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
export SHARED_BENCH=$SHARED
source "$SHARED/common/env.sh"
N=${N:-20000}; RUNS=${RUNS:-3}; export RUNS
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true
[ -n "${SKIP_INSTALL:-}" ] || "$SHARED/install.sh" >/dev/null
TERN=$ROOT/target/release/tern
