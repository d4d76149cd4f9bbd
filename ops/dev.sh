#!/usr/bin/env bash
# Runs Gatehouse locally with everything it needs: installs build tools and PostgreSQL's server
# binaries when missing, then `gatehouse dev` (a private PostgreSQL cluster under ./.gatehouse,
# demo data, the gateway on http://127.0.0.1:8080). Extra arguments go to `gatehouse dev`,
# e.g. ops/dev.sh --listen 0.0.0.0:8080 --data-dir /var/tmp/gatehouse
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ops/lib/provision.sh
source ops/lib/provision.sh
ensure_build_tools
[ -n "${DATABASE_URL:-}" ] || ensure_postgres_binaries
exec cargo run --release --locked -- dev "$@"
