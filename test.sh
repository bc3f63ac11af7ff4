#!/bin/bash
# Tern's one test command (the README's; .ci/run calls it).
#  1. installs the real peers the tests use when missing (Debian packages; needs root):
#     postfix, swaks, fetchmail, isync (mbsync), dkimpy and opendkim (independent DKIM verifiers),
#     chromium and chromium-driver (the dashboard in a real browser); moto's S3-compatible
#     server (pip) for the blob-store tests; postgresql (private initdb clusters on loopback)
#  2. cargo fmt --check, cargo clippy -D warnings
#  3. unit and integration tests (cargo nextest when installed, else cargo test), then the
#     integration suite (SMTP, IMAP, POP3, submission, delivery, API…) again on PostgreSQL
#  4. end-to-end tests with real clients and Postfix against the tern binary, curl and
#     schemathesis (pip-installed when missing) against the HTTP API, selenium (pip) driving
#     Chromium through the dashboard (screenshots in target/screenshots)
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

missing=()
for tool in curl:curl postfix:postfix swaks:swaks fetchmail:fetchmail mbsync:isync dkimverify:python3-dkim opendkim-testmsg:opendkim-tools chromium:chromium chromedriver:chromium-driver; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${tool%%:*}" ] || missing+=("${tool#*:}")
done
# A private PostgreSQL (initdb + pg_ctl on a loopback port) for the PostgreSQL backend's tests.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# dkimpy checks Ed25519 signatures with PyNaCl and the tests point it at their DNS with dnspython.
/usr/bin/python3 -c "import nacl, dns.resolver" 2>/dev/null || missing+=(python3-nacl python3-dnspython)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${missing[*]}"
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  else
    echo "warning: ${missing[*]} missing and not root: the matching e2e tests will fail or be skipped"
  fi
fi

# schemathesis (PyPI) fuzzes the HTTP API from its OpenAPI document in the e2e tests.
if ! command -v schemathesis >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "== installing python3-pip"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip >/dev/null
  fi
  echo "== installing schemathesis (pip)"
  python3 -m pip install -q schemathesis 2>/dev/null \
    || python3 -m pip install -q --break-system-packages schemathesis \
    || echo "warning: schemathesis could not be installed: the e2e API fuzzing will fail"
fi

# selenium (PyPI) drives Chromium through the dashboard in the e2e tests.
if ! python3 -c "import selenium" >/dev/null 2>&1; then
  echo "== installing selenium (pip)"
  python3 -m pip install -q selenium 2>/dev/null \
    || python3 -m pip install -q --break-system-packages selenium \
    || echo "warning: selenium could not be installed: the e2e dashboard test will fail"
fi

# moto's server mode (PyPI) is the S3-compatible service the blob-store tests run against.
if ! command -v moto_server >/dev/null 2>&1; then
  echo "== installing moto[server] (pip)"
  python3 -m pip install -q 'moto[server]' 2>/dev/null \
    || python3 -m pip install -q --break-system-packages 'moto[server]' \
    || echo "warning: moto could not be installed: the S3 blob-store tests will fail"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets -- -D warnings
echo "== unit and integration tests"
nextest=false; cargo nextest --version >/dev/null 2>&1 && nextest=true
if $nextest; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi
# The protocol suites again on PostgreSQL: every integration test's server whose config does
# not choose a store of its own gets a fresh database on one private cluster (TERN_TEST_PG,
# crates/tern-testkit/src/pg.rs); nodes:: runs on PostgreSQL already.
echo "== integration tests on PostgreSQL"
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg_dir=$(mktemp -d /tmp/tern-suite-pg.XXXXXX)
pg_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" != 0 ] || chown postgres "$pg_dir"
as_postgres "$pg_bin/initdb" -D "$pg_dir/data" -A trust -U tern --no-instructions >/dev/null
as_postgres "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
stop_pg() { as_postgres "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$pg_dir"; }
trap stop_pg EXIT
suite=(cargo test --no-fail-fast -p tern --test integration -- --skip nodes::)
! $nextest || suite=(cargo nextest run --no-fail-fast -p tern --test integration -E 'not test(/^nodes::/)')
TERN_TEST_PG="postgres://tern@127.0.0.1:$pg_port" "${suite[@]}"
stop_pg; trap - EXIT

echo "== end-to-end tests"
cargo build --bin tern
tests/e2e/run.sh target/debug/tern
echo "== all tests passed"
