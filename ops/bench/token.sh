#!/usr/bin/env bash
# Token endpoint throughput (issue: ≥ 5,000 tokens/s on a 2-core machine): `gatehouse serve`
# (release build) on a scratch database, one OAuth2 client, and wrk issuing client-credentials
# requests over keep-alive connections. The brute-force limits (docs/auth.md §11) are raised for the run:
# they would otherwise cap one client at 30 tokens/min, which is the point of them.
#   CONNECTIONS (default 32), DURATION (default 15s), TEST_DATABASE_URL as in ops/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/provision.sh
source ops/lib/provision.sh
command -v wrk >/dev/null 2>&1 || apt_install wrk
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
cargo build --release --locked -q
BIN=target/release/gatehouse
ADMIN=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB="gh_bench_$$"
export DATABASE_URL="${ADMIN%/*}/$DB"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export GATEHOUSE__SERVER__LISTEN="127.0.0.1:$PORT" GATEHOUSE__AUTH__ISSUER="http://127.0.0.1:$PORT"
export GATEHOUSE__AUTH__MASTER_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
export GATEHOUSE__AUTH__PEPPER=$(python3 -c 'import secrets; print(secrets.token_urlsafe(40))')
export GATEHOUSE__AUTH__TOKEN_CLIENT_PER_MIN=100000000 GATEHOUSE__AUTH__TOKEN_IP_PER_MIN=100000000 GATEHOUSE__AUTH__TOKEN_IP_BURST=1000000
export GATEHOUSE__LOG__FILTER=warn
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill -TERM "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  psql "$ADMIN" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql "$ADMIN" -qAtc "CREATE DATABASE $DB" >/dev/null
"$BIN" migrate >/dev/null
"$BIN" tenant create --name Bench --json >/dev/null
out=$("$BIN" client create --tenant bench --name bench --scopes models:read --json)
BASIC=$(python3 -c 'import base64, json, sys; d = json.loads(sys.argv[1]); print(base64.b64encode((d["client_id"] + ":" + d["client_secret"]).encode()).decode())' "$out")
export BASIC
"$BIN" serve 2>/dev/null &
SERVER=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done
echo "warm-up"; wrk -t1 -c8 -d3s -s ops/bench/token.lua "http://127.0.0.1:$PORT/oauth2/token" >/dev/null
echo "token endpoint, ${CONNECTIONS:-32} connections, ${DURATION:-15s}, $(nproc) cores shared by server and load generator:"
wrk -t1 -c"${CONNECTIONS:-32}" -d"${DURATION:-15s}" --latency -s ops/bench/token.lua "http://127.0.0.1:$PORT/oauth2/token"
