#!/usr/bin/env bash
# Alignment batching end to end (batch limit 16 vs 1, 64 clients, 5-30 s clips): see benches/alignment.rs.
# Needs PostgreSQL at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench --locked --bench alignment 2>/dev/null
