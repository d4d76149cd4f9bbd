#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what is missing (build tools,
# PostgreSQL, Redis), then runs rustfmt, clippy, the single-crypto-provider gate and every test.
#   TEST_DATABASE_URL  server-level URL the tests create their databases on
#                      (default postgres://postgres@127.0.0.1:5432/postgres)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ops/lib/provision.sh
source ops/lib/provision.sh

step() { printf '\n==> %s\n' "$*"; }

step "build tools"
ensure_build_tools
if command -v rustup >/dev/null 2>&1; then rustup component add rustfmt clippy >/dev/null 2>&1 || true; fi

step "PostgreSQL"
ensure_postgres_binaries
PGBIN=$(pg_bindir)
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
export TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
if ! psql "$TEST_DATABASE_URL" -qAtc 'select 1' >/dev/null 2>&1; then
  # Nothing usable there: run a private, trust-auth cluster for the tests (port 5432 if free).
  port=5432
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then port=55432; fi
  dir=${TMPDIR:-/tmp}/gatehouse-test-pg
  run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  if [ ! -f "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    chmod 700 "$dir"
    run_pg "$PGBIN/initdb" -D "$dir" -U postgres --auth=trust --no-locale -E UTF8 --no-instructions >/dev/null
  fi
  run_pg "$PGBIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -s \
    -o "-p $port -h 127.0.0.1 -k $dir -c max_connections=300" start || true
  export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
  psql "$TEST_DATABASE_URL" -qAtc 'select 1' >/dev/null || { echo "PostgreSQL is not reachable at $TEST_DATABASE_URL" >&2; exit 1; }
fi
echo "using $TEST_DATABASE_URL"

step "Redis"
if ! (command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1); then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null

step "audio tools (ffmpeg, sox) for the alignment tests"
command -v ffmpeg >/dev/null 2>&1 || apt_install ffmpeg
command -v sox >/dev/null 2>&1 || apt_install sox libsox-fmt-all
ffmpeg -version | head -1

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "one crypto provider (aws-lc-rs): cargo tree -i ring must be empty"
ring=$(cargo tree --locked -i ring --target all 2>/dev/null || true)
if [ -n "$ring" ]; then echo "ring is in the dependency tree:"; echo "$ring"; exit 1; fi
echo "ok"

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi

step "Python conformance (authlib, requests-oauthlib, PyJWT, openai)"
command -v python3 >/dev/null 2>&1 || apt_install python3
# Debian/Ubuntu ship venv's ensurepip separately: try a throwaway venv, install python3-venv if it fails.
if [ ! -x .venv-conf/bin/python ]; then
  venv_probe=$(mktemp -d)
  if ! python3 -m venv "$venv_probe/v" >/dev/null 2>&1; then apt_install python3-venv; fi
  rm -rf "$venv_probe"
fi
bash ops/conformance.sh

step "aligner reference worker: contract tests against a fake model (ops/workers/aligner)"
bash ops/workers/aligner/test.sh
