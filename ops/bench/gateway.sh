#!/usr/bin/env bash
# Gateway overhead, measured side by side in one run: the same worker simulator called directly,
# through a plain nginx reverse proxy (the floor of one proxy hop), and through Gatehouse (API-key
# auth, validation, fair scheduling, relay). Two upstreams, each a table: a simulator whose
# model takes 1 ms per answer (--ttft-ms 1: the fastest a worker could plausibly answer), and one
# that answers at once (--ttft-ms 0), where only the proxies' own CPU cost remains. Tokens
# stream with no delay (--tpot-ms 0), so a stream's whole time is also its time to first byte.
# Non-streaming and streaming. Each table: p50/p99 latency and requests/s at concurrency 1, 32
# and 64, and the latency Gatehouse and nginx add over calling the simulator directly.
#
# Then the overhead table against a zero-cost upstream: a separate nginx with one worker that
# answers a canned 369-byte chat completion (and, on a second port, a canned SSE stream with its
# usage chunk) without reading anything, so the upstream costs less CPU than either proxy. For
# each target (the upstream directly, nginx with 2 workers proxying to it, Gatehouse): requests/s,
# p50/p99, CPU time per request (utime + stime of the target's own processes from /proc/PID/stat,
# before and after each cell) and resident memory, and the ratios to direct.
#
# Then open loop against the same zero-cost upstream: oha sends at a fixed arrival rate (64
# connections, latency measured from each request's scheduled send, so a stall counts for every
# request it delays), at half of nginx's capacity and at half of Gatehouse's (both as measured by
# the overhead table just before), and reports p50/p99/p99.9 and the latency added over direct.
#   DURATION (default 10s), GATEHOUSE_THREADS (server.threads, default 0 = one per core),
#   TABLES (default "sim zero open"; "zero open" runs only the zero-cost tables), TEST_DATABASE_URL
#   as in ops/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/provision.sh
source ops/lib/provision.sh
# shellcheck source=ops/lib/bench.sh
source ops/lib/bench.sh
command -v wrk >/dev/null 2>&1 || apt_install wrk
# oha: an open-loop load generator (a fixed arrival rate, latency corrected for late sends).
OHA_VERSION=1.16.0
OHA=$(command -v oha || echo "$HOME/.cargo/bin/oha")
[ -x "$OHA" ] || cargo install --locked --version "$OHA_VERSION" oha
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx-light
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
cargo build --release --locked -q
BIN=target/release/gatehouse
DURATION=${DURATION:-10s}
ADMIN=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB="gh_bench_gw_$$"
WORK=$(mktemp -d)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SIM_PORT=$(free_port); SIM0_PORT=$(free_port); NGINX_PORT=$(free_port); NGINX0_PORT=$(free_port); GH_PORT=$(free_port)
ZERO_PORT=$(free_port); ZEROS_PORT=$(free_port); NGINXZ_PORT=$(free_port); NGINXZS_PORT=$(free_port)
MODEL=Qwen/Qwen2.5-7B-Instruct MODEL0=bench/no-latency MODELZ=bench/zero MODELZS=bench/zero-stream
TABLES=${TABLES:-sim zero open}
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill -QUIT "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/up/nginx.pid" ] && kill -QUIT "$(cat "$WORK/up/nginx.pid")" 2>/dev/null || true
  wait 2>/dev/null || true
  psql "$ADMIN" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" simulate-worker --kind llm --listen "127.0.0.1:$SIM_PORT" --model "$MODEL" --ttft-ms 1 --tpot-ms 0 --max-concurrent 1024 2>"$WORK/sim.log" &
PIDS+=($!)
"$BIN" simulate-worker --kind llm --listen "127.0.0.1:$SIM0_PORT" --model "$MODEL0" --ttft-ms 0 --tpot-ms 0 --max-concurrent 1024 2>"$WORK/sim0.log" &
PIDS+=($!)

cat >"$WORK/nginx.conf" <<NGINX
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy; fastcgi_temp_path $WORK/fcgi;
  uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
  upstream sim { server 127.0.0.1:$SIM_PORT; keepalive 128; }
  upstream sim0 { server 127.0.0.1:$SIM0_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { proxy_pass http://sim; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
  server {
    listen 127.0.0.1:$NGINX0_PORT;
    location / { proxy_pass http://sim0; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
  upstream zero { server 127.0.0.1:$ZERO_PORT; keepalive 128; }
  upstream zeros { server 127.0.0.1:$ZEROS_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINXZ_PORT;
    location / { proxy_pass http://zero; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
  server {
    listen 127.0.0.1:$NGINXZS_PORT;
    location / { proxy_pass http://zeros; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
NGINX
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -g "user $(id -un);" 2>"$WORK/nginx.log"

# The zero-cost upstream: its own nginx (one worker), canned answers, request bodies discarded.
mkdir -p "$WORK/up"
CANNED='{"id":"chatcmpl-bench","object":"chat.completion","created":1764460800,"model":"bench/zero","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today? I am a canned answer."},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}'
SSE='data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764460800,"model":"bench/zero-stream","choices":[{"index":0,"delta":{"role":"assistant","content":"Hello!"},"finish_reason":null}]}\n\ndata: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764460800,"model":"bench/zero-stream","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1764460800,"model":"bench/zero-stream","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}\n\ndata: [DONE]\n\n'
cat >"$WORK/up/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/up/body; proxy_temp_path $WORK/up/proxy; fastcgi_temp_path $WORK/up/fcgi;
  uwsgi_temp_path $WORK/up/uwsgi; scgi_temp_path $WORK/up/scgi;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$ZERO_PORT;
    location = /health { return 200 "ok"; }
    location / { default_type application/json; return 200 '$CANNED'; }
  }
  server {
    listen 127.0.0.1:$ZEROS_PORT;
    location = /health { return 200 "ok"; }
    location / { default_type text/event-stream; return 200 '$SSE'; }
  }
}
NGINX
"$NGINX" -p "$WORK/up" -c "$WORK/up/nginx.conf" -g "user $(id -un);" 2>"$WORK/up/nginx.log"

export GATEHOUSE__SERVER__THREADS=${GATEHOUSE_THREADS:-0}
bench_gatehouse "$BIN" "$ADMIN" "$DB" "$GH_PORT"
"$BIN" pool add --name bench --model "$MODEL" --json >/dev/null
"$BIN" worker add --pool bench --url "http://127.0.0.1:$SIM_PORT" --slots 1024 --json >/dev/null
"$BIN" pool add --name bench0 --model "$MODEL0" --json >/dev/null
"$BIN" worker add --pool bench0 --url "http://127.0.0.1:$SIM0_PORT" --slots 1024 --json >/dev/null
for pair in "benchz $MODELZ $ZERO_PORT" "benchzs $MODELZS $ZEROS_PORT"; do
  read -r pool model port <<<"$pair"
  "$BIN" pool add --name "$pool" --model "$model" --json >/dev/null
  "$BIN" worker add --pool "$pool" --url "http://127.0.0.1:$port" --slots 1024 --json >/dev/null
done
psql "$DATABASE_URL" -qAtc "UPDATE worker_pools SET max_queue_per_tenant = 100000, max_queue_total = 100000" >/dev/null
"$BIN" serve 2>"$WORK/gatehouse.log" &
GH_PID=$!
PIDS+=($GH_PID)
for port in "$SIM_PORT" "$SIM0_PORT" "$GH_PORT"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 || curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
done

# run TARGET_URL AUTH BODY CONNECTIONS -> "p50_ms p99_ms rps errors"
run() {
  local out
  out=$(AUTH="$2" BODY="$3" wrk -t1 -c"$4" -d"$DURATION" --latency -s ops/bench/post.lua "$1/v1/chat/completions")
  python3 - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def ms(label):
    m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
errors = int(re.search(r"non-200 responses: (\d+)", out).group(1))
print(f"{ms('50'):.3f} {ms('99'):.3f} {rps:.0f} {errors}")
PY
}

body() { # MODEL STREAM
  printf '{"model":"%s","messages":[{"role":"user","content":"hello there"}],"max_tokens":16,"stream":%s}' "$1" "$2"
}
# Warm up every path (connections, caches).
for target in "$SIM_PORT $MODEL" "$NGINX_PORT $MODEL" "$GH_PORT $MODEL" "$SIM0_PORT $MODEL0" "$NGINX0_PORT $MODEL0" "$GH_PORT $MODEL0"; do
  read -r port model <<<"$target"
  AUTH="$KEY" BODY="$(body "$model" false)" wrk -t1 -c8 -d2s -s ops/bench/post.lua "http://127.0.0.1:$port/v1/chat/completions" >/dev/null
done

# table TITLE SIM_PORT NGINX_PORT MODEL
table() {
  echo
  echo "$1"
  echo
  echo "| mode | concurrency | direct p50 / p99 ms | nginx p50 / p99 ms | gatehouse p50 / p99 ms | added p50 / p99 ms nginx | added p50 / p99 ms gatehouse | rps direct / nginx / gatehouse | nginx / direct rps | gatehouse / direct rps | non-200 |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for mode in plain stream; do
    local b
    b=$(body "$4" "$([ "$mode" = stream ] && echo true || echo false)")
    for c in 1 32 64; do
      read -r d50 d99 drps derr <<<"$(run "http://127.0.0.1:$2" "" "$b" "$c")"
      read -r n50 n99 nrps nerr <<<"$(run "http://127.0.0.1:$3" "" "$b" "$c")"
      read -r g50 g99 grps gerr <<<"$(run "http://127.0.0.1:$GH_PORT" "$KEY" "$b" "$c")"
      python3 - "$mode" "$c" "$d50" "$d99" "$drps" "$n50" "$n99" "$nrps" "$g50" "$g99" "$grps" "$((derr + nerr + gerr))" <<'PY'
import sys
mode, c, d50, d99, drps, n50, n99, nrps, g50, g99, grps, err = sys.argv[1:]
f = lambda x: float(x)
print(f"| {mode} | {c} | {f(d50):.2f} / {f(d99):.2f} | {f(n50):.2f} / {f(n99):.2f} | {f(g50):.2f} / {f(g99):.2f} "
      f"| {f(n50)-f(d50):.2f} / {f(n99)-f(d99):.2f} | {f(g50)-f(d50):.2f} / {f(g99)-f(d99):.2f} "
      f"| {drps} / {nrps} / {grps} | {f(nrps)/f(drps):.2f} | {f(grps)/f(drps):.2f} | {err} |")
PY
    done
  done
}

if [[ " $TABLES " == *" sim "* ]]; then
  table "Upstream model latency 1 ms (simulator --ttft-ms 1)" "$SIM_PORT" "$NGINX_PORT" "$MODEL"
  table "No upstream latency (simulator --ttft-ms 0)" "$SIM0_PORT" "$NGINX0_PORT" "$MODEL0"
fi

# The processes of a target: an nginx master's workers, or one pid.
procs() { if [ -f "$1" ]; then pgrep -P "$(cat "$1")" | tr '\n' ' '; else echo "$1"; fi; }
# cpu_ticks PIDS... -> utime + stime (clock ticks); rss_kb PIDS... -> summed VmRSS
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
rss_kb() { local t=0 p; for p in "$@"; do t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo "$t"; }
HZ=$(getconf CLK_TCK)

# cell URL AUTH BODY CONNECTIONS PIDS... -> "p50 p99 rps errors cpu_ms_per_request"
cell() {
  local url=$1 auth=$2 body=$3 c=$4; shift 4
  local before after out
  before=$(cpu_ticks "$@")
  out=$(run "$url" "$auth" "$body" "$c")
  after=$(cpu_ticks "$@")
  read -r p50 p99 rps err <<<"$out"
  python3 -c "import sys; p50,p99,rps,err,ticks,hz,secs=sys.argv[1:]; n=float(rps)*float(secs); print(p50,p99,rps,err,f'{int(ticks)*1000/int(hz)/max(n,1):.4f}')" \
    "$p50" "$p99" "$rps" "$err" "$((after - before))" "$HZ" "${DURATION%s}"
}

declare -A CAPACITY=()
if [[ " $TABLES " == *" zero "* ]]; then
  for target in "$ZERO_PORT $MODELZ" "$NGINXZ_PORT $MODELZ" "$GH_PORT $MODELZ" "$ZEROS_PORT $MODELZS" "$NGINXZS_PORT $MODELZS" "$GH_PORT $MODELZS"; do
    read -r port model <<<"$target"
    AUTH="$KEY" BODY="$(body "$model" false)" wrk -t1 -c8 -d2s -s ops/bench/post.lua "http://127.0.0.1:$port/v1/chat/completions" >/dev/null
  done
  echo
  echo "Zero-cost upstream (nginx, 1 worker, canned answers): the proxies' own cost; wrk -t1, $DURATION per cell"
  echo
  echo "| mode | target | rps c=1 | rps c=32 | rps c=64 | p50 / p99 ms c=1 | added p50 c=1 | p99 ms c=32 | CPU per request c=32 | RSS after |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for mode in plain stream; do
    if [ "$mode" = plain ]; then up=$ZERO_PORT ng=$NGINXZ_PORT model=$MODELZ stream=false; else up=$ZEROS_PORT ng=$NGINXZS_PORT model=$MODELZS stream=true; fi
    b=$(body "$model" "$stream")
    direct_p50="" direct_rps=""
    for target in "direct $up $WORK/up/nginx.pid" "nginx $ng $WORK/nginx.pid" "gatehouse $GH_PORT $GH_PID"; do
      read -r name port pidref <<<"$target"
      auth=""; [ "$name" = gatehouse ] && auth=$KEY
      # shellcheck disable=SC2046
      read -r a50 a99 arps _ _ <<<"$(cell "http://127.0.0.1:$port" "$auth" "$b" 1 $(procs "$pidref"))"
      # shellcheck disable=SC2046
      read -r _ b99 brps berr bcpu <<<"$(cell "http://127.0.0.1:$port" "$auth" "$b" 32 $(procs "$pidref"))"
      # shellcheck disable=SC2046
      read -r _ _ crps _ _ <<<"$(cell "http://127.0.0.1:$port" "$auth" "$b" 64 $(procs "$pidref"))"
      # shellcheck disable=SC2046
      rss=$(rss_kb $(procs "$pidref"))
      [ "$name" = direct ] && direct_p50=$a50 direct_rps=$brps direct_cpu=$bcpu
      [ "$mode" = plain ] && CAPACITY[$name]=$(python3 -c "print(int(max(float('$brps'), float('$crps'))))")
      python3 - "$mode" "$name" "$arps" "$brps" "$crps" "$a50" "$a99" "$b99" "$bcpu" "$rss" "$direct_p50" "$direct_rps" "$direct_cpu" "$berr" <<'PY'
import sys
mode, name, arps, brps, crps, a50, a99, b99, cpu, rss, d50, drps, dcpu, err = sys.argv[1:]
f = float
ratio = "" if name == "direct" else f" ({f(brps) / f(drps):.2f}×)"
added = "—" if name == "direct" else f"+{f(a50) - f(d50):.3f} ms"
cpu_ratio = "" if name == "direct" else f" ({f(cpu) / f(dcpu):.1f}× direct)"
errors = "" if err == "0" else f" ({err} non-200)"
print(f"| {mode} | {name} | {f(arps):,.0f} | {f(brps):,.0f}{ratio}{errors} | {f(crps):,.0f} | {f(a50):.3f} / {f(a99):.3f} | {added} | {f(b99):.2f} | {f(cpu):.4f} ms{cpu_ratio} | {int(rss) / 1024:.0f} MB |")
PY
    done
  done
fi

OHA_SUMMARY=$(cat <<'PY'
import json, sys
r = json.load(sys.stdin)
p = r["latencyPercentiles"]
# Requests still in flight when the duration ends are aborted by oha: not errors of the target.
errors = {e: n for e, n in r.get("errorDistribution", {}).items() if "deadline" not in e}
bad = sum(n for c, n in r.get("statusCodeDistribution", {}).items() if c != "200") + sum(errors.values())
print(f"{p['p50'] * 1000:.3f} {p['p99'] * 1000:.3f} {p['p99.9'] * 1000:.3f} {r['summary']['requestsPerSec']:.0f} {bad}")
PY
)
# open_loop URL AUTH BODY RATE -> "p50 p99 p999 rps non200" (ms), oha at a fixed arrival rate.
open_loop() {
  local args=(-z "$DURATION" -c 64 -q "$4" --latency-correction --no-tui --output-format json -m POST
    -H "content-type: application/json" -d "$3")
  [ -n "$2" ] && args+=(-H "authorization: Bearer $2")
  "$OHA" "${args[@]}" "$1/v1/chat/completions" | python3 -c "$OHA_SUMMARY"
}

if [[ " $TABLES " == *" open "* ]]; then
  [ -n "${CAPACITY[nginx]:-}" ] || { echo "the open-loop table needs the zero table's capacities (TABLES=\"zero open\")" >&2; exit 1; }
  b=$(body "$MODELZ" false)
  echo
  echo "Open loop against the zero-cost upstream: oha -c 64 at a fixed rate, $DURATION per cell, latency from each request's scheduled send"
  echo
  echo "| rate (requests/s) | target | achieved rps | p50 / p99 / p99.9 ms | added p50 / p99 ms | CPU per request | non-200 |"
  echo "|---|---|---|---|---|---|---|"
  for which in nginx gatehouse; do
    rate=$((CAPACITY[$which] / 2))
    d50="" d99=""
    for target in "direct $ZERO_PORT $WORK/up/nginx.pid" "nginx $NGINXZ_PORT $WORK/nginx.pid" "gatehouse $GH_PORT $GH_PID"; do
      read -r name port pidref <<<"$target"
      auth=""; [ "$name" = gatehouse ] && auth=$KEY
      # shellcheck disable=SC2046
      before=$(cpu_ticks $(procs "$pidref"))
      read -r p50 p99 p999 rps bad <<<"$(open_loop "http://127.0.0.1:$port" "$auth" "$b" "$rate")"
      # shellcheck disable=SC2046
      after=$(cpu_ticks $(procs "$pidref"))
      [ "$name" = direct ] && d50=$p50 d99=$p99
      python3 - "$rate ($which/2)" "$name" "$rps" "$p50" "$p99" "$p999" "$d50" "$d99" "$((after - before))" "$HZ" "${DURATION%s}" "$bad" <<'PY'
import sys
rate, name, rps, p50, p99, p999, d50, d99, ticks, hz, secs, bad = sys.argv[1:]
f = float
added = "—" if name == "direct" else f"+{f(p50) - f(d50):.3f} / +{f(p99) - f(d99):.3f}"
cpu = int(ticks) * 1000 / int(hz) / max(f(rps) * f(secs), 1)
print(f"| {rate} | {name} | {f(rps):,.0f} | {f(p50):.3f} / {f(p99):.3f} / {f(p999):.3f} | {added} | {cpu:.4f} ms | {bad} |")
PY
    done
  done
fi
