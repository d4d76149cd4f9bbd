"""Conformance of Gatehouse's inference gateway with the official openai SDK, used unchanged.

Drives a running Gatehouse (started and seeded by ops/conformance.sh) in front of two worker
SIMULATORS: pool `qwen` serves MODEL quickly; pool `slow` serves SLOW_MODEL with one worker of one
slot, a 2.5 s time to first token and a per-tenant queue bound of 1. Every happy path runs twice,
with a JWT access token of client A (client-credentials grant) and with API key K. Environment:
  AS                  Gatehouse's base URL (no trailing slash)
  CID_A, CS_A         client A, tenant T1, scopes "chat:completions models:read"
  KEY                 API key K of T1, scopes "models:read chat:completions"
  MODEL, SLOW_MODEL   the model names of the `qwen` and `slow` pools
"""

import os
import threading
import time

import httpx
import openai
import pytest

_NAMES = ("AS", "CID_A", "CS_A", "KEY", "MODEL", "SLOW_MODEL")
_missing = [n for n in _NAMES if not os.environ.get(n)]
if _missing:
    raise RuntimeError(f"set {', '.join(_missing)} (run the suite through ops/conformance.sh)")

AS = os.environ["AS"]
CID_A, CS_A = os.environ["CID_A"], os.environ["CS_A"]
KEY = os.environ["KEY"]
MODEL = os.environ["MODEL"]
SLOW_MODEL = os.environ["SLOW_MODEL"]

TOKEN_URL = f"{AS}/oauth2/token"
SIMULATED = "(simulated)"
MESSAGES = [{"role": "user", "content": "Say hello to the conformance suite."}]


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def access_token():
    """A JWT for client A from the client-credentials grant (HTTP Basic)."""
    r = httpx.post(TOKEN_URL, data={"grant_type": "client_credentials"}, auth=(CID_A, CS_A), timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"].lower() == "bearer", body
    assert "chat:completions" in body["scope"].split(), body
    return body["access_token"]


@pytest.fixture(params=["jwt", "api_key"])
def credential(request, access_token):
    return access_token if request.param == "jwt" else KEY


def client(api_key, **kwargs):
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("timeout", 30)
    return openai.OpenAI(base_url=f"{AS}/v1", api_key=api_key, **kwargs)


def collect(stream):
    with stream:
        return list(stream)


def streamed_text(chunks):
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --- happy paths ---------------------------------------------------------------------------------


def test_models_list_contains_model(credential):
    page = client(credential).models.list()
    ids = [m.id for m in page.data]
    assert MODEL in ids, ids
    for m in page.data:
        assert m.object == "model", m


def test_chat_completion(credential):
    r = client(credential).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=16)
    assert r.object == "chat.completion", r
    assert r.model == MODEL, r
    assert len(r.choices) == 1, r
    choice = r.choices[0]
    assert choice.message.role == "assistant", r
    assert choice.message.content.startswith(SIMULATED), r
    assert choice.finish_reason in ("stop", "length"), r
    assert r.usage is not None, r
    assert r.usage.completion_tokens > 0, r.usage
    assert r.usage.prompt_tokens > 0, r.usage
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage


def test_chat_stream_without_usage(credential):
    """Gatehouse asks the worker for the usage chunk; a client that did not must not see it."""
    chunks = collect(
        client(credential).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=16, stream=True)
    )
    assert len(chunks) > 1, chunks
    for c in chunks:
        assert c.object == "chat.completion.chunk", c
        assert c.usage is None, f"a usage object reached a client that did not ask for it: {c}"
        assert c.choices, f"a chunk without choices (the stripped usage chunk?): {c}"
    assert streamed_text(chunks).startswith(SIMULATED), chunks
    assert chunks[-1].choices[0].finish_reason in ("stop", "length"), chunks[-1]


def test_chat_stream_with_usage(credential):
    chunks = collect(
        client(credential).chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with_usage = [i for i, c in enumerate(chunks) if c.usage is not None]
    assert with_usage == [len(chunks) - 1], f"want exactly one usage chunk, last: {with_usage} of {len(chunks)}"
    last = chunks[-1]
    assert last.choices == [], last
    assert last.usage.completion_tokens > 0, last.usage
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens, last.usage
    assert streamed_text(chunks[:-1]).startswith(SIMULATED), chunks


def test_legacy_completion(credential):
    r = client(credential).completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8)
    assert r.object == "text_completion", r
    assert r.model == MODEL, r
    assert len(r.choices) == 1, r
    assert r.choices[0].text.startswith(SIMULATED), r
    assert r.usage is not None, r
    assert 0 < r.usage.completion_tokens <= 8, r.usage


# --- errors --------------------------------------------------------------------------------------


def _tampered_jwt(at):
    head, payload, sig = at.split(".")
    return ".".join((head, payload, sig[:-2] + ("AA" if not sig.endswith("AA") else "BB")))


@pytest.mark.parametrize("kind", ["api_key", "jwt", "garbage"])
def test_bad_credential_is_authentication_error(kind, access_token):
    bad = {
        "api_key": KEY[:-1] + ("x" if not KEY.endswith("x") else "y"),
        "jwt": _tampered_jwt(access_token),
        "garbage": "not-a-credential",
    }[kind]
    with pytest.raises(openai.AuthenticationError) as e:
        client(bad).chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=4)
    assert e.value.status_code == 401, e.value


def test_unknown_model_is_not_found(credential):
    with pytest.raises(openai.NotFoundError) as e:
        client(credential).chat.completions.create(model="no-such/model", messages=MESSAGES, max_tokens=4)
    assert e.value.status_code == 404, e.value
    assert "does not exist" in e.value.message, e.value.message


def test_queue_full_is_rate_limit_error(credential):
    """Pool `slow`: one slot, per-tenant queue of 1. Of three concurrent requests from one tenant,
    one runs, one waits, and the one beyond that is 429 queue_full with Retry-After."""
    c = client(credential, max_retries=0, timeout=60)
    n = 3
    barrier = threading.Barrier(n)
    outcomes = [None] * n

    def call(i):
        barrier.wait(timeout=10)
        try:
            outcomes[i] = c.chat.completions.create(model=SLOW_MODEL, messages=MESSAGES, max_tokens=4)
        except Exception as exc:  # noqa: BLE001 - every outcome is inspected below
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "a request to the slow pool did not finish"

    limited = [o for o in outcomes if isinstance(o, openai.RateLimitError)]
    succeeded = [o for o in outcomes if isinstance(o, openai.types.chat.ChatCompletion)]
    others = [o for o in outcomes if not isinstance(o, (openai.RateLimitError, openai.types.chat.ChatCompletion))]
    assert not others, f"unexpected outcomes: {others!r}"
    assert len(limited) == 1, f"expected exactly one RateLimitError among {outcomes!r}"
    assert len(succeeded) == 2, f"expected two successes among {outcomes!r}"
    for r in succeeded:
        assert r.choices[0].message.content.startswith(SIMULATED), r
    for e in limited:
        assert e.status_code == 429, e
        retry_after = e.response.headers.get("retry-after")
        assert retry_after is not None, dict(e.response.headers)
        assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
        assert e.code == "queue_full", (e.code, e.body)
        assert isinstance(e.body, dict) and e.body.get("code") == "queue_full", e.body


# --- rate limits and quotas ----------------------------------------------------------------------


def _counting_client(key, max_retries):
    """An SDK client whose every HTTP attempt is timestamped (the SDK's retries included)."""
    attempts = []

    def record(request):
        attempts.append(time.monotonic())

    http = httpx.Client(event_hooks={"request": [record]}, timeout=60)
    return openai.OpenAI(api_key=key, base_url=f"{AS}/v1", max_retries=max_retries, http_client=http), attempts


def test_rate_limit_error_carries_retry_after_and_the_sdk_honours_it():
    """Tenant T3's plan allows one request at a time. While a slow request holds the slot, a second
    one is 429 rate_limit_exceeded with Retry-After; the SDK waits that long, retries, and succeeds
    once the slot is free."""
    key = os.environ["KEY_SERIAL"]
    admitted = threading.Event()

    def hold():
        # Streamed, so the answer's headers say it was admitted; the slot is held until its end.
        stream = client(key, max_retries=0, timeout=60).chat.completions.create(
            model=SLOW_MODEL, messages=MESSAGES, max_tokens=2, stream=True
        )
        admitted.set()
        collect(stream)

    holder = threading.Thread(target=hold)
    holder.start()
    assert admitted.wait(timeout=30), "the slow request was not admitted"
    bare = client(key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as e:
        bare.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert e.value.code == "rate_limit_exceeded", e.value.body
    retry_after = int(e.value.response.headers["retry-after"])
    assert 1 <= retry_after <= 120, retry_after

    sdk, attempts = _counting_client(key, max_retries=8)
    r = sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    holder.join(timeout=60)
    assert r.choices[0].message.content.startswith(SIMULATED), r
    assert len(attempts) >= 2, attempts
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    # Each retry waited the server's Retry-After (1 s for a concurrency limit), not the SDK's own
    # 0.5 s first backoff.
    assert all(g >= retry_after * 0.9 for g in gaps), gaps


def test_quota_exceeded_is_not_retried():
    """Tenant T4's plan allows one request a day: the second is 429 quota_exceeded with
    x-should-retry: false, and the SDK raises at once instead of retrying."""
    sdk, attempts = _counting_client(os.environ["KEY_QUOTA"], max_retries=3)
    sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    with pytest.raises(openai.RateLimitError) as e:
        sdk.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2)
    assert e.value.code == "quota_exceeded", e.value.body
    assert e.value.response.headers["x-should-retry"] == "false"
    assert len(attempts) == 2, f"the SDK retried a quota_exceeded: {len(attempts)} attempts"
