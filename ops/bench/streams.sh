#!/usr/bin/env bash
# Memory per open stream: STREAMS clients (default 10,000) each hold a streaming chat completion
# open through Gatehouse. The upstream is the built-in simulator with a 10-minute gap between
# tokens, so every stream stays open after its first chunk: idle streams, as a slow model or a
# long generation leaves them (Gatehouse writes a keep-alive comment into each every
# `gateway.stream_heartbeat_ms`). Reports Gatehouse's resident memory (VmRSS) before, with all the
# streams open, and 15 s after the clients closed them (with Gatehouse's open files then: the
# keep-alive write is how it notices a departed client), and the memory per stream. Release build.
#   STREAMS (default 10000), TEST_DATABASE_URL as in ops/test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=ops/lib/provision.sh
source ops/lib/provision.sh
# shellcheck source=ops/lib/bench.sh
source ops/lib/bench.sh
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
cargo build --release --locked -q
BIN=target/release/gatehouse
STREAMS=${STREAMS:-10000}
# Each stream holds two sockets in Gatehouse (client and worker): raise the open-files limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
want=$((STREAMS * 2 + 1000))
[ "$(ulimit -n)" -ge "$want" ] || ulimit -n "$want" 2>/dev/null || {
  STREAMS=$((($(ulimit -n) - 1000) / 2))
  echo "open-files limit $(ulimit -n): measuring $STREAMS streams" >&2
}
ADMIN=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB="gh_bench_streams_$$"
WORK=$(mktemp -d)
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
GH_PORT=$(free_port)
MODEL=bench/idle
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$ADMIN" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A worker has at most 4096 slots: one simulator per 4,000 streams.
SIMS=$(((STREAMS + 3999) / 4000))
SIM_PORTS=()
for _ in $(seq "$SIMS"); do
  port=$(free_port)
  SIM_PORTS+=("$port")
  "$BIN" simulate-worker --kind llm --listen "127.0.0.1:$port" --model "$MODEL" --ttft-ms 0 --tpot-ms 600000 \
    --max-concurrent 4096 2>>"$WORK/sim.log" &
  PIDS+=($!)
done
export GATEHOUSE__USAGE__JOURNAL_DIR="$WORK/journal"
bench_gatehouse "$BIN" "$ADMIN" "$DB" "$GH_PORT"
"$BIN" pool add --name idle --model "$MODEL" --json >/dev/null
for port in "${SIM_PORTS[@]}"; do
  "$BIN" worker add --pool idle --url "http://127.0.0.1:$port" --slots 4096 --json >/dev/null
done
psql "$DATABASE_URL" -qAtc "UPDATE worker_pools SET max_queue_per_tenant = 100000, max_queue_total = 100000" >/dev/null
"$BIN" serve 2>"$WORK/gatehouse.log" &
GH_PID=$!
PIDS+=($GH_PID)
for port in "$GH_PORT" "${SIM_PORTS[@]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 || curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
done

python3 - "$GH_PORT" "$KEY" "$MODEL" "$STREAMS" "$GH_PID" <<'PY'
import asyncio, json, os, sys, time
port, key, model, streams, pid = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]

def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 16, "stream": True}).encode()
head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()

async def open_stream(sem, held):
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head + body)
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(status)
        got = b""
        while b"data: " not in got:  # headers, then the first event
            chunk = await reader.read(4096)
            if not chunk:
                raise RuntimeError("closed before the first event")
            got += chunk
        held.append(writer)

async def main():
    # A warm-up stream, closed, so one-time allocations are in the baseline.
    held = []
    await open_stream(asyncio.Semaphore(1), held)
    held[0].close()
    await asyncio.sleep(1)
    before = rss_mb()
    held, sem = [], asyncio.Semaphore(200)
    started = time.monotonic()
    results = await asyncio.gather(*(open_stream(sem, held) for _ in range(streams)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, Exception)]
    await asyncio.sleep(2)
    during = rss_mb()
    for w in held:
        w.close()
    # A departed client is noticed by the next keep-alive write (gateway.stream_heartbeat_ms).
    await asyncio.sleep(15)
    after = rss_mb()
    files = len(os.listdir(f"/proc/{pid}/fd"))
    print("| streams open | failed | RSS before | RSS with them open | per stream | 15 s after they closed: RSS, open files | opened in |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {len(held):,} | {len(failed)} | {before:.0f} MB | {during:.0f} MB | {(during - before) * 1024 / max(len(held), 1):.1f} KB "
          f"| {after:.0f} MB, {files} | {time.monotonic() - started:.1f} s |")
    if failed:
        print("first failure:", repr(failed[0]), file=sys.stderr)

asyncio.run(main())
PY
