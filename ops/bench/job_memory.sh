#!/usr/bin/env bash
# Memory of one long alignment job: the report's 14 MB MP3 of silence (four hours, 8 kHz mono,
# 8 kbit/s) uploaded to POST /v1/audio/alignments/jobs of a release `gatehouse`, picked up by a
# job runner and cancelled; prints the server's resident memory before and its peak (VmHWM)
# after. It is tests/api/alignment_bounds.rs's memory test with other settings.
# Needs PostgreSQL at TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) and
# ffmpeg with libmp3lame. AUDIO_SECONDS (14400) and RATE (8000) change the audio; BIN runs another
# build of the server instead of target/release/gatehouse.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ -z "${BIN:-}" ]; then
  cargo build --locked --release --bin gatehouse
  BIN="$PWD/target/release/gatehouse"
fi
GATEHOUSE_TEST_BIN="$BIN" \
GATEHOUSE_MEMORY_TEST_SECONDS="${AUDIO_SECONDS:-14400}" \
GATEHOUSE_MEMORY_TEST_RATE="${RATE:-8000}" \
  cargo test --locked --test api alignment_bounds::a_long_low_bitrate -- --nocapture 2>&1 | grep -E '^memory:|panicked|grew by|test result'
