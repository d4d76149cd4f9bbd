"""The management API's OpenAPI document, `/api/openapi.json`, against real tools.

- openapi-spec-validator (OpenAPI 3.1) must accept the served document as it is;
- schemathesis fuzzes every /api/v1 operation from it with an operator's management token
  (tests/conformance/schemathesis.toml: a fixed seed, 50 examples per operation and phase) and
  must find no 5xx, no undocumented status code or content type, and no body that breaks its
  declared schema.

The fuzzing changes the server's state (it disables a tenant, revokes keys, rotates the signing
keys), so conftest.py runs it after every other conformance test. Environment (ops/conformance.sh):
  AS               Gatehouse's base URL (no trailing slash)
  OPERATOR_TOKEN   a platform operator's management token (`gatehouse operator token create`)
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

_missing = [n for n in ("AS", "OPERATOR_TOKEN") if not os.environ.get(n)]
if _missing:
    raise RuntimeError(f"set {', '.join(_missing)} (run the suite through ops/conformance.sh)")

AS = os.environ["AS"]
OPERATOR_TOKEN = os.environ["OPERATOR_TOKEN"]
CONFIG = Path(__file__).with_name("schemathesis.toml")
# The bound on the fuzzing step: it takes about 30 s on the 2-core development machine.
FUZZ_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def api():
    with httpx.Client(base_url=f"{AS}/api/v1", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def document():
    r = httpx.get(f"{AS}/api/openapi.json", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1.")
    validate(document)  # raises OpenAPIValidationError (or a reference error) if it is not


def test_the_document_lists_the_operations_the_api_reference_names(document):
    ops = {(m.upper(), p) for p, item in document["paths"].items() for m in item if m in ("get", "post", "put", "patch", "delete")}
    for op in [
        ("GET", "/api/v1/tenants/{tenant_id}/usage"),
        ("GET", "/api/v1/tenants/{tenant_id}/usage/export"),
        ("GET", "/api/v1/usage/export"),
        ("POST", "/api/v1/tenants/{tenant_id}/api-keys/{key_id}/rotate"),
        ("DELETE", "/api/v1/oauth2/tokens"),
        ("POST", "/api/v1/signing-keys/rotate"),
    ]:
        assert op in ops, f"{op} missing from the OpenAPI document"
    assert len(ops) >= 41


def create(api, path, body):
    r = api.post(path, json=body)
    assert r.status_code == 201, f"POST {path}: {r.status_code} {r.text}"
    return r.json()


@pytest.mark.last
def test_schemathesis_finds_nothing(api, document, tmp_path):
    # A tenant of the fuzzer's own, with one of everything, so that generated requests reach the
    # handlers (schemathesis.toml fixes these path and query parameters).
    suffix = str(int(time.time() * 1000))
    tenant = create(api, "/tenants", {"name": f"Fuzz {suffix}"})
    client = create(api, f"/tenants/{tenant['id']}/clients", {"name": "fuzz", "scopes": ["models:read"]})
    key = create(api, f"/tenants/{tenant['id']}/api-keys", {"name": "fuzz", "scopes": ["models:read"]})
    plan = create(api, "/plans", {"name": f"fuzz-{suffix}"})
    pool = create(api, "/pools", {"name": f"fuzz-{suffix}", "kind": "llm", "models": [f"fuzz-model-{suffix}"]})
    # Port 9 (discard) on loopback: nothing answers, and the health checks stay on this machine.
    worker = create(api, f"/pools/{pool['name']}/workers", {"base_url": "http://127.0.0.1:9", "slots": 1})
    recipient = create(api, "/alerts/recipients", {"email": f"fuzz-{suffix}@example.test", "tenant_id": tenant["id"]})
    silence = create(api, "/alerts/silences", {"rule": None, "object": pool["id"], "duration_s": 3600, "reason": "fuzz"})

    env = dict(
        os.environ,
        OPERATOR_TOKEN=OPERATOR_TOKEN,
        FUZZ_TENANT_ID=tenant["id"],
        FUZZ_CLIENT_ID=client["client_id"],
        FUZZ_KEY_ID=key["id"],
        FUZZ_PLAN=plan["name"],
        FUZZ_POOL=pool["name"],
        FUZZ_WORKER_ID=worker["id"],
        FUZZ_RECIPIENT_ID=recipient["id"],
        FUZZ_SILENCE_ID=silence["id"],
        NO_COLOR="1",
    )
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(CONFIG),
        "run",
        f"{AS}/api/openapi.json",
        "--url",
        AS,
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    started = time.monotonic()
    run = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=FUZZ_TIMEOUT_S)
    took = time.monotonic() - started
    output = run.stdout + run.stderr
    print(output[-4000:])
    print(f"schemathesis took {took:.1f} s")
    assert run.returncode == 0, f"schemathesis found problems (exit {run.returncode}):\n{output[-20000:]}"
    operations = sum(1 for item in document["paths"].values() for method in item if method in {"get", "post", "put", "patch", "delete"})
    assert f"{operations}/{operations}" in output, f"schemathesis did not test all {operations} operations:\n{output[-4000:]}"
