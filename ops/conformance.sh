#!/usr/bin/env bash
# Conformance of the auth server against real client libraries (docs/auth.md §14):
# authlib, requests-oauthlib, PyJWT and the openai SDK, plus a raw-httpx negative matrix; and of
# the inference gateway against the openai SDK (tests/conformance/test_openai_gateway.py); and of
# the management API's OpenAPI document against openapi-spec-validator and schemathesis
# (tests/conformance/test_openapi.py, last: its fuzzing changes the server's state).
# Creates a throwaway database, seeds tenants T1/T2, clients A/B/NOSCOPE, API key K and an
# operator with a management token (OPERATOR_TOKEN) with the gatehouse CLI, starts two worker
# simulators registered as pools `qwen` (fast, MODEL) and `slow` (SLOW_MODEL: one worker with one
# slot, a per-tenant queue of 1), serves on a free loopback port,
# runs tests/conformance with pytest, and always stops the server and the simulators and drops the
# database. Exits with pytest's status.
#   TEST_DATABASE_URL  server-level URL to create the database on
#                      (default postgres://postgres@127.0.0.1:5432/postgres)
#   GATEHOUSE_BIN      the gatehouse binary (default target/debug/gatehouse; built if missing)
#   PYTEST_ARGS        extra pytest arguments, e.g. "-k revoke -x"
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${GATEHOUSE_BIN:-target/debug/gatehouse}
VENV=.venv-conf
PY=$VENV/bin/python
TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}

# --- client libraries (pinned as in docs/auth.md §14) --------------------------------------------
# shellcheck source=ops/lib/provision.sh
source ops/lib/provision.sh
ensure_test_venv

# --- the binary ----------------------------------------------------------------------------------
if [ ! -x "$BIN" ]; then
  cargo build --locked
fi

# --- a fresh database ----------------------------------------------------------------------------
DB_NAME="gh_conf_$("$PY" -c 'import secrets; print(secrets.token_hex(6))')"
DATABASE_URL=$("$PY" - "$TEST_DATABASE_URL" "$DB_NAME" <<'EOF'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))
EOF
)
export DATABASE_URL

SERVER_PID=
SIM_PIDS=()
WORK=$(mktemp -d)
cleanup() {
  local rc=$?
  local pid
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  for pid in "${SIM_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${SIM_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ] && [ -s "$WORK/server.log" ]; then
    echo "--- gatehouse server log (last 60 lines) ---" >&2
    tail -n 60 "$WORK/server.log" >&2 || true
  fi
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK"/sim-*.log; do
      [ -s "$f" ] || continue
      echo "--- $(basename "$f") (last 20 lines) ---" >&2
      tail -n 20 "$f" >&2 || true
    done
  fi
  psql "$TEST_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 \
    -c "DROP DATABASE IF EXISTS \"$DB_NAME\" WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v psql >/dev/null 2>&1 || { echo "psql is required (Debian: apt-get install postgresql-client)" >&2; exit 1; }
psql "$TEST_DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$DB_NAME\"" >/dev/null

export GATEHOUSE__AUTH__MASTER_KEY
GATEHOUSE__AUTH__MASTER_KEY=$("$PY" -c 'import base64, secrets; print(base64.b64encode(secrets.token_bytes(32)).decode())')
export GATEHOUSE__AUTH__PEPPER
GATEHOUSE__AUTH__PEPPER=$("$PY" -c 'import secrets, string; a = string.ascii_letters + string.digits; print("".join(secrets.choice(a) for _ in range(48)))')

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
PORT=$(free_port)
export GATEHOUSE__SERVER__LISTEN="127.0.0.1:$PORT"
export GATEHOUSE__AUTH__ISSUER="http://127.0.0.1:$PORT"
export GATEHOUSE__AUTH__TOKEN_CLIENT_PER_MIN=600 GATEHOUSE__AUTH__TOKEN_IP_PER_MIN=6000 GATEHOUSE__AUTH__TOKEN_IP_BURST=1000
export GATEHOUSE__LOG__FORMAT=${GATEHOUSE__LOG__FORMAT:-text}

"$BIN" migrate >"$WORK/migrate.log" 2>&1 || { cat "$WORK/migrate.log" >&2; exit 1; }

# --- seed ----------------------------------------------------------------------------------------
# field FIELD: reads the CLI's JSON on stdin and prints one top-level field.
field() { "$PY" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
gh() { "$BIN" "$@" 2>>"$WORK/seed.log" || { cat "$WORK/seed.log" >&2; return 1; }; }

gh tenant create --name T1 --json >/dev/null
gh tenant create --name T2 --json >/dev/null
out=$(gh client create --tenant t1 --name A --scopes "chat:completions models:read" --json)
CID_A=$(field client_id <<<"$out"); CS_A=$(field client_secret <<<"$out")
out=$(gh client create --tenant t2 --name B --scopes "chat:completions models:read" --json)
CID_B=$(field client_id <<<"$out"); CS_B=$(field client_secret <<<"$out")
out=$(gh client create --tenant t1 --name NOSCOPE --scopes "chat:completions" --json)
CID_NOSCOPE=$(field client_id <<<"$out"); CS_NOSCOPE=$(field client_secret <<<"$out")
out=$(gh api-key create --tenant t1 --name K --scopes "models:read chat:completions" --json)
KEY=$(field key <<<"$out")
# Limits and quotas (issue: rate limits): T3 may run one request at a time; T4 may make one request a day.
gh plan create --name serial --concurrent-requests 1 --json >/dev/null
gh plan create --name one-a-day --daily-request-quota 1 --json >/dev/null
gh tenant create --name T3 --plan serial --json >/dev/null
gh tenant create --name T4 --plan one-a-day --json >/dev/null
out=$(gh api-key create --tenant t3 --name SERIAL --scopes "models:read chat:completions" --json)
KEY_SERIAL=$(field key <<<"$out")
out=$(gh api-key create --tenant t4 --name QUOTA --scopes "models:read chat:completions" --json)
KEY_QUOTA=$(field key <<<"$out")
# A platform operator and its management token (tests/conformance/test_openapi.py).
gh operator create --email operator@conformance.test --json >/dev/null
OPERATOR_TOKEN=$(gh operator token create --email operator@conformance.test --name conformance --json | field token)
unset out
export CID_A CS_A CID_B CS_B CID_NOSCOPE CS_NOSCOPE KEY KEY_SERIAL KEY_QUOTA OPERATOR_TOKEN

# --- worker simulators and their pools -----------------------------------------------------------
# wait_healthy URL PID NAME: polls URL until it answers 200 (at most 20 s), failing if PID exits.
wait_healthy() {
  "$PY" - "$1" "$2" "$3" <<'EOF'
import os, sys, time, httpx
url, pid, name, deadline = sys.argv[1], int(sys.argv[2]), sys.argv[3], time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(f"simulator {name} exited during start-up")
    try:
        if httpx.get(url, timeout=1).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.1)
sys.exit(f"simulator {name} did not answer {url} within 20 s")
EOF
}

export MODEL=Qwen/Qwen2.5-7B-Instruct SLOW_MODEL=slow-model
SIM_FAST_PORT=$(free_port)
"$BIN" simulate-worker --kind llm --listen "127.0.0.1:$SIM_FAST_PORT" --model "$MODEL" \
  --ttft-ms 5 --tpot-ms 1 >"$WORK/sim-fast.log" 2>&1 &
SIM_PIDS+=($!)
wait_healthy "http://127.0.0.1:$SIM_FAST_PORT/health" "${SIM_PIDS[-1]}" fast
SIM_SLOW_PORT=$(free_port)
"$BIN" simulate-worker --kind llm --listen "127.0.0.1:$SIM_SLOW_PORT" --model "$SLOW_MODEL" \
  --ttft-ms 2500 --max-concurrent 8 >"$WORK/sim-slow.log" 2>&1 &
SIM_PIDS+=($!)
wait_healthy "http://127.0.0.1:$SIM_SLOW_PORT/health" "${SIM_PIDS[-1]}" slow

gh pool add --name qwen --model "$MODEL" --json >/dev/null
gh worker add --pool qwen --url "http://127.0.0.1:$SIM_FAST_PORT" --slots 8 --json >/dev/null
gh pool add --name slow --model "$SLOW_MODEL" --json >/dev/null
gh worker add --pool slow --url "http://127.0.0.1:$SIM_SLOW_PORT" --slots 1 --json >/dev/null
# Queue bounds are read when serve loads a pool, so set this one before serving: one request runs
# on the single slot, one waits, any further one from the same tenant is 429 queue_full.
psql "$DATABASE_URL" -qAt -v ON_ERROR_STOP=1 \
  -c "UPDATE worker_pools SET max_queue_per_tenant = 1 WHERE name = 'slow'" >/dev/null

# --- serve ---------------------------------------------------------------------------------------
"$BIN" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
export AS="http://127.0.0.1:$PORT" AUD="http://127.0.0.1:$PORT/v1"
"$PY" - "$AS/readyz" "$SERVER_PID" <<'EOF'
import os, sys, time, httpx
url, pid, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("gatehouse serve exited during start-up")
    try:
        if httpx.get(url, timeout=1).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.1)
sys.exit(f"gatehouse did not become ready at {url} within 30 s")
EOF
echo "gatehouse ready on $AS (database $DB_NAME)"

# --- the suite -----------------------------------------------------------------------------------
export OAUTHLIB_INSECURE_TRANSPORT=1 GATEHOUSE_SERVER_LOG="$WORK/server.log"
set +e
# shellcheck disable=SC2086
"$PY" -m pytest -q -p no:cacheprovider tests/conformance ${PYTEST_ARGS:-}
status=$?
set -e
exit "$status"
