#!/usr/bin/env bash
# Runs Gatehouse locally with everything it needs: installs build tools and PostgreSQL's server
# binaries when missing, builds target/release/gatehouse, then runs `gatehouse dev` (a private
# PostgreSQL cluster under ./.gatehouse, demo data, worker simulators, the gateway on
# http://127.0.0.1:8080; its values for the README's examples go to ./.gatehouse/env.sh).
# Extra arguments go to `gatehouse dev`, e.g. ops/dev.sh --listen 127.0.0.1:9090 --data-dir /var/tmp/gatehouse
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ops/lib/provision.sh
source ops/lib/provision.sh
ensure_build_tools
[ -n "${DATABASE_URL:-}" ] || ensure_postgres_binaries
if [ ! -x target/release/gatehouse ]; then
  echo "ops/dev.sh: first build: compiling about 370 crates in release mode takes 5 to 10 minutes" >&2
fi
exec cargo run --release --locked -- dev "$@"
