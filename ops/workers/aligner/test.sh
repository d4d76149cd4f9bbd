#!/usr/bin/env bash
# Contract tests for the aligner worker, against a fake model (no GPU, torch or qwen-asr needed).
# Creates ./.venv on first use (or when it is broken) and installs requirements-test.txt into it.
set -euo pipefail
cd "$(dirname "$0")"

venv=.venv
imports='import fastapi, httpx, numpy, pytest, uvicorn'
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "$imports" >/dev/null 2>&1; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv"; then
    rm -rf "$venv"
    echo "error: python3 -m venv failed; install the python3-venv package (ensurepip is missing)" >&2
    exit 1
  fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r requirements-test.txt
exec "$venv/bin/python" -m pytest -q "$@"
