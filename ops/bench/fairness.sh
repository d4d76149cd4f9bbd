#!/usr/bin/env bash
# Fairness under saturation (weighted fair queuing vs FIFO): see benches/fairness.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench --locked --bench fairness 2>/dev/null
