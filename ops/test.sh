#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts what is missing (build tools,
# PostgreSQL, Redis, ffmpeg, clamd, Python virtualenvs), then runs rustfmt, clippy, the
# single-crypto-provider gate, every Rust test, the Python conformance suite, the aligner
# worker's tests, the dashboard's browser test (headless Chromium) and the README's examples.
# Prints the time of every step, and drops the tests' template database at the end
# (docs/testing.md).
#   TEST_DATABASE_URL   server-level URL the tests create their databases on
#                       (default postgres://postgres@127.0.0.1:5432/postgres)
#   KEEP_TEST_TEMPLATE  1 = keep the template database (faster next run)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ops/lib/provision.sh
source ops/lib/provision.sh

suite_start=$SECONDS
current=""
current_start=$SECONDS
failed=""
timings=()

duration() { if [ "$1" -ge 60 ]; then printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); else printf '%ds' "$1"; fi; }

end_step() {
  [ -n "$current" ] || return 0
  local took=$((SECONDS - current_start))
  timings+=("$(printf '%8s  %s' "$(duration "$took")" "$current")")
  printf -- '--> %s: %s\n' "$current" "$(duration "$took")"
  current=""
}

step() {
  end_step
  current=$*
  current_start=$SECONDS
  printf '\n==> %s\n' "$*"
}

# The tests clone every database from a migrated template (gatehouse_tpl_<hash of migrations/>);
# drop it unless a test database still exists (another test run may be using the template).
drop_test_template() {
  [ "${KEEP_TEST_TEMPLATE:-}" != 1 ] && [ -n "${TEST_DATABASE_URL:-}" ] && command -v psql >/dev/null 2>&1 || return 0
  local busy templates t
  busy=$(psql "$TEST_DATABASE_URL" -qAtc "select count(*) from pg_database where datname like 't\_%'" 2>/dev/null) || return 0
  templates=$(psql "$TEST_DATABASE_URL" -qAtc "select datname from pg_database where datname like 'gatehouse\_tpl\_%'" 2>/dev/null) || return 0
  [ -n "$templates" ] || return 0
  if [ "$busy" != 0 ]; then
    echo "keeping the template database ($busy test databases exist: another test run?)"
    return 0
  fi
  for t in $templates; do
    psql "$TEST_DATABASE_URL" -qAtc "drop database if exists \"$t\"" >/dev/null 2>&1 && echo "dropped the template database $t"
  done
}

on_exit() {
  local status=$?
  if [ "$status" != 0 ]; then failed=$current; fi
  end_step
  if [ -n "${TEST_DATABASE_URL:-}" ]; then
    printf '\n==> clean-up\n'
    drop_test_template || true
  fi
  printf '\n==> time per step\n'
  printf '%s\n' "${timings[@]}"
  printf '%8s  total\n' "$(duration $((SECONDS - suite_start)))"
  if [ -n "$failed" ]; then printf '\nFAILED: %s (exit status %s)\n' "$failed" "$status"; fi
  exit "$status"
}
trap on_exit EXIT

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

step "ClamAV clamd for the malware-scanning tests (each test starts its own)"
ensure_clamd
"$(clamd_binary)" --version

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "one crypto provider (aws-lc-rs): cargo tree -i ring must be empty"
ring=$(cargo tree --locked -i ring --target all 2>/dev/null || true)
if [ -n "$ring" ]; then echo "ring is in the dependency tree:"; echo "$ring"; exit 1; fi
echo "ok"

step "Python virtualenv for the tests (client libraries, OpenAPI tools, aiosmtpd for the alert mails)"
ensure_test_venv

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi

step "Prometheus alerting rules (promtool check rules ops/prometheus/alerts.yml)"
command -v promtool >/dev/null 2>&1 || apt_install prometheus
promtool check rules ops/prometheus/alerts.yml

step "Python conformance (authlib, requests-oauthlib, PyJWT, openai; OpenAPI: openapi-spec-validator, schemathesis)"
bash ops/conformance.sh

step "aligner reference worker: contract tests against a fake model (ops/workers/aligner)"
bash ops/workers/aligner/test.sh

step "dashboard in headless Chromium: sign in, API key, usage, export, revoke, drain (tests/browser/dashboard_flow.py)"
command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v chromedriver >/dev/null 2>&1 || apt_install chromium-driver
[ -x target/debug/gatehouse ] || cargo build --locked
.venv-conf/bin/python tests/browser/dashboard_flow.py --gatehouse target/debug/gatehouse --screenshots target/screenshots

step "README examples against gatehouse dev (tests/readme/check_readme.py)"
[ -x target/debug/gatehouse ] || cargo build --locked
python3 tests/readme/check_readme.py --gatehouse target/debug/gatehouse --python .venv-conf/bin/python
