# Shared steps of the load benches (sourced): a fresh database for one Gatehouse, its secrets,
# and a tenant "bench" with an API key for chat completions on the default plan.

# bench_gatehouse BIN ADMIN_URL DB PORT: exports DATABASE_URL and the GATEHOUSE__ settings for a
# server on 127.0.0.1:PORT logging warnings only, creates and migrates DB, and sets KEY.
bench_gatehouse() {
  local bin=$1 admin=$2 db=$3 port=$4
  export DATABASE_URL="${admin%/*}/$db"
  export GATEHOUSE__SERVER__LISTEN="127.0.0.1:$port" GATEHOUSE__AUTH__ISSUER="http://127.0.0.1:$port" GATEHOUSE__LOG__FILTER=warn
  GATEHOUSE__AUTH__MASTER_KEY=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
  GATEHOUSE__AUTH__PEPPER=$(python3 -c 'import secrets; print(secrets.token_urlsafe(40))')
  export GATEHOUSE__AUTH__MASTER_KEY GATEHOUSE__AUTH__PEPPER
  psql "$admin" -qAtc "CREATE DATABASE $db" >/dev/null
  "$bin" migrate >/dev/null
  "$bin" tenant create --name Bench --json >/dev/null
  KEY=$("$bin" api-key create --tenant bench --name bench --scopes "chat:completions" --json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
}
