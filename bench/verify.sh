#!/bin/bash
# Bulk address verification (issue "Verify addresses", benchmark): ADDRESSES addresses over
# DOMAINS simulated domains, each with its own scripted MX host on a loopback address at port
# 25 (root) DELAY_MS of round trip away (the greeting and each reply to a command that needed a
# new read wait DELAY_MS; replies to pipelined commands follow at once), half the addresses existing mailboxes
# (crates/tern-verify/examples/verify_load.rs). Prints addresses per second, peak memory and
# connections opened per domain, and whether every answer matched the labels.
# No peer runs here: Reacher (check-if-email-exists) is not packaged for this machine.
# usage: bench/verify.sh   (ADDRESSES=10000 DOMAINS=200 DELAY_MS=20 CONCURRENCY=10)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ADDRESSES=${ADDRESSES:-10000}; DOMAINS=${DOMAINS:-200}; DELAY_MS=${DELAY_MS:-20}; CONCURRENCY=${CONCURRENCY:-10}
(cd "$ROOT" && cargo build --release -j2 -p tern-verify --example verify_load 2>&1 | tail -1)
echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -r); tern $(git -C "$ROOT" rev-parse --short HEAD)"
echo "CMD: verify_load $ADDRESSES $DOMAINS $DELAY_MS $CONCURRENCY"
"$ROOT/target/release/examples/verify_load" "$ADDRESSES" "$DOMAINS" "$DELAY_MS" "$CONCURRENCY"
