# Shared by ops/dev.sh and ops/test.sh: install what is missing (Debian/Ubuntu via apt-get; other
# systems get the exact command to run) and find PostgreSQL's server binaries.
# shellcheck shell=bash

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else echo "ops: need root to run: $*" >&2; return 1
  fi
}

_apt_updated=
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ops: please install: $* (no apt-get here; on macOS: brew install postgresql@16 redis)" >&2
    return 1
  fi
  if [ -z "$_apt_updated" ]; then
    as_root apt-get update -qq >/dev/null
    _apt_updated=1
  fi
  echo "ops: installing $*" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Prints the directory holding initdb and pg_ctl (PATH first, then Debian's versioned folders).
pg_bindir() {
  local d
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"; return 0
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  return 1
}

ensure_build_tools() {
  command -v cargo >/dev/null 2>&1 || { echo "ops: Rust is required: see https://rustup.rs" >&2; return 1; }
  command -v cc >/dev/null 2>&1 || apt_install gcc libc6-dev
  if ! command -v pkg-config >/dev/null 2>&1 || ! pkg-config --exists libpq 2>/dev/null; then
    apt_install pkg-config libpq-dev
  fi
}

ensure_postgres_binaries() {
  pg_bindir >/dev/null || apt_install postgresql postgresql-client
  pg_bindir >/dev/null || { echo "ops: PostgreSQL server binaries still not found" >&2; return 1; }
}

# The Python virtualenv the tests use (.venv-conf): the conformance suite's client libraries,
# aiosmtpd, the SMTP server the alert tests start, and selenium, which drives Debian's chromium in
# the dashboard's browser test. Created (or completed) when something is missing.
ensure_test_venv() {
  local venv=.venv-conf
  command -v python3 >/dev/null 2>&1 || apt_install python3
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import authlib, requests_oauthlib, jwt, openai, httpx, pytest, aiosmtpd, openapi_spec_validator, schemathesis, selenium' >/dev/null 2>&1; then
    return 0
  fi
  # Debian/Ubuntu ship venv's ensurepip separately: try a throwaway venv, install python3-venv if it fails.
  local probe
  probe=$(mktemp -d)
  if ! python3 -m venv "$probe/v" >/dev/null 2>&1; then apt_install python3-venv; fi
  rm -rf "$probe"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    authlib==1.9.6 requests requests-oauthlib==2.0.0 "pyjwt[crypto]==2.15.1" openai==3.51.0 httpx pytest aiosmtpd==1.4.6 \
    openapi-spec-validator==0.9.0 schemathesis==4.32.5 selenium==4.50.0
}

# ClamAV's clamd, for the malware-scanning tests (tests/api/malware.rs). They start their own clamd
# with a configuration and signature database they write; the system service and freshclam are
# not used (Debian installs clamd in /usr/sbin, which is not on every user's PATH).
clamd_binary() {
  command -v clamd 2>/dev/null || { [ -x /usr/sbin/clamd ] && echo /usr/sbin/clamd; }
}

ensure_clamd() {
  clamd_binary >/dev/null || apt_install clamav-daemon
  clamd_binary >/dev/null || { echo "ops: clamd still not found (Debian package clamav-daemon)" >&2; return 1; }
}
