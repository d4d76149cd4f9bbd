"""Contract tests for the aligner worker (docs/aligner-contract.md), with a fake model."""

from __future__ import annotations

import base64
import io
import wave
from dataclasses import dataclass

import numpy as np
import pytest
from fastapi.testclient import TestClient

from server import SAMPLE_RATE, create_app

MODEL = "Qwen/Qwen3-ForcedAligner-0.6B"
URL = "/v1/align/batch"


@dataclass(frozen=True)
class Unit:
    text: str
    start_time: float
    end_time: float


class FakeAligner:
    """Mimics Qwen3ForcedAligner.align: one unit per word, 0.25 s apart, times in seconds."""

    def __init__(self, fail_on: set[str] | None = None) -> None:
        self.calls: list[dict] = []
        self.fail_on = fail_on or set()

    def align(self, audio, text, language):
        self.calls.append({"audio": list(audio), "text": list(text), "language": list(language)})
        if self.fail_on & set(text):
            raise RuntimeError("fake model failure")
        return [
            [Unit(word, round(0.25 * i + 0.0123, 3), round(0.25 * i + 0.2, 3)) for i, word in enumerate(t.split())]
            for t in text
        ]


def wav_b64(seconds: float = 1.0, *, channels: int = 1, rate: int = SAMPLE_RATE, width: int = 2) -> str:
    frames = int(seconds * rate)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x10\x00" * (width // 2) * channels * frames)
    return base64.b64encode(buf.getvalue()).decode()


def item(id: str, text: str = "the transcript", language: str = "English", data: str | None = None, **audio):
    return {
        "id": id,
        "audio": {"format": audio.get("format", "wav"), "data": wav_b64() if data is None else data},
        "text": text,
        "language": language,
    }


def batch(*items) -> dict:
    return {"model": MODEL, "items": list(items)}


@pytest.fixture
def fake() -> FakeAligner:
    return FakeAligner()


@pytest.fixture
def client(fake: FakeAligner) -> TestClient:
    return TestClient(create_app(fake, MODEL, max_items=4))


def assert_error(resp, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


# --- health and models ------------------------------------------------------------------------


def test_health_ok_when_loaded(client: TestClient) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_health_503_until_model_loaded(fake: FakeAligner) -> None:
    app = create_app(None, MODEL)
    client = TestClient(app)
    assert client.get("/health").status_code == 503
    assert_error(client.post(URL, json=batch(item("a"))), 503, "not_ready")
    app.state.model = fake
    assert client.get("/health").status_code == 200
    assert client.post(URL, json=batch(item("a"))).status_code == 200


def test_models_lists_served_model(client: TestClient) -> None:
    resp = client.get("/v1/models")
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "list"
    assert [(m["id"], m["object"]) for m in body["data"]] == [(MODEL, "model")]
    assert isinstance(body["data"][0]["owned_by"], str)


# --- batching ----------------------------------------------------------------------------------


def test_valid_batch_is_one_model_call_with_results_in_order(client: TestClient, fake: FakeAligner) -> None:
    texts = ["one two three", "four five", "six"]
    resp = client.post(
        URL,
        json=batch(
            item("a", texts[0], data=wav_b64(2.0)),
            item("b", texts[1], "english", data=wav_b64(1.5)),
            item("c", texts[2], "Chinese", data=wav_b64(0.5)),
        ),
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == MODEL

    assert len(fake.calls) == 1
    call = fake.calls[0]
    assert call["text"] == texts
    assert call["language"] == ["English", "English", "Chinese"]
    for (samples, rate), seconds in zip(call["audio"], [2.0, 1.5, 0.5]):
        assert rate == SAMPLE_RATE
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert len(samples) == int(seconds * SAMPLE_RATE)
        assert np.allclose(samples, 16 / 32768)

    results = body["results"]
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert [r["duration_ms"] for r in results] == [2000, 1500, 500]
    assert results[0]["items"] == [
        {"text": "one", "start_ms": 12, "end_ms": 200},
        {"text": "two", "start_ms": 262, "end_ms": 450},
        {"text": "three", "start_ms": 512, "end_ms": 700},
    ]
    assert [u["text"] for u in results[1]["items"]] == ["four", "five"]
    for result in results:
        assert "error" not in result
        for unit in result["items"]:
            assert isinstance(unit["start_ms"], int) and isinstance(unit["end_ms"], int)


def test_timestamps_are_clamped_to_the_audio_and_kept_in_order(client: TestClient, fake: FakeAligner) -> None:
    # The fake puts the fifth word at 1.0123-1.2 s; the audio is 1.1 s long.
    resp = client.post(URL, json=batch(item("a", "a b c d e", data=wav_b64(1.1))))
    units = resp.json()["results"][0]["items"]
    assert units[-1] == {"text": "e", "start_ms": 1012, "end_ms": 1100}
    flat = [t for u in units for t in (u["start_ms"], u["end_ms"])]
    assert flat == sorted(flat)


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (item("x", data="not base64!!"), "invalid_audio"),
        (item("x", data=base64.b64encode(b"RIFF....WAVEjunk").decode()), "invalid_audio"),
        (item("x", data=wav_b64(channels=2)), "invalid_audio"),
        (item("x", data=wav_b64(rate=8000)), "invalid_audio"),
        (item("x", data=wav_b64(width=4)), "invalid_audio"),
        (item("x", data=wav_b64(0)), "invalid_audio"),
        (item("x", format="mp3"), "invalid_audio"),
        (item("x", language="Klingon"), "unsupported_language"),
        (item("x", language="Arabic"), "unsupported_language"),
        (item("x", text=""), "invalid_text"),
        (item("x", text="   "), "invalid_text"),
        (item("x", text="?!"), "invalid_text"),
    ],
)
def test_bad_item_fails_only_itself(client: TestClient, fake: FakeAligner, bad: dict, code: str) -> None:
    resp = client.post(URL, json=batch(item("a", "first"), bad, item("c", "last")))
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["id"] for r in results] == ["a", "x", "c"]
    assert results[1]["error"]["code"] == code
    assert "items" not in results[1]
    assert [u["text"] for u in results[0]["items"]] == ["first"]
    assert [u["text"] for u in results[2]["items"]] == ["last"]
    assert len(fake.calls) == 1
    assert fake.calls[0]["text"] == ["first", "last"]


def test_batch_of_only_bad_items_never_calls_the_model(client: TestClient, fake: FakeAligner) -> None:
    resp = client.post(URL, json=batch(item("a", text=""), item("b", language="Elvish")))
    assert resp.status_code == 200
    assert [r["error"]["code"] for r in resp.json()["results"]] == ["invalid_text", "unsupported_language"]
    assert fake.calls == []


def test_model_failure_retries_item_by_item() -> None:
    fake = FakeAligner(fail_on={"poison"})
    client = TestClient(create_app(fake, MODEL))
    resp = client.post(URL, json=batch(item("a", "alpha"), item("b", "poison"), item("c", "gamma")))
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert [r["id"] for r in results] == ["a", "b", "c"]
    assert [u["text"] for u in results[0]["items"]] == ["alpha"]
    assert results[1]["error"]["code"] == "alignment_failed"
    assert [u["text"] for u in results[2]["items"]] == ["gamma"]
    assert [c["text"] for c in fake.calls] == [["alpha", "poison", "gamma"], ["alpha"], ["poison"], ["gamma"]]


def test_model_answering_out_of_shape_is_an_item_failure() -> None:
    class Short(FakeAligner):
        def align(self, audio, text, language):
            return super().align(audio, text, language)[:-1]

    fake = Short()
    resp = TestClient(create_app(fake, MODEL)).post(URL, json=batch(item("a", "x"), item("b", "y")))
    assert resp.status_code == 200
    assert [r["error"]["code"] for r in resp.json()["results"]] == ["alignment_failed"] * 2


# --- whole-batch errors ------------------------------------------------------------------------


def test_too_many_items_is_413(client: TestClient, fake: FakeAligner) -> None:
    assert_error(client.post(URL, json=batch(*[item(str(i)) for i in range(5)])), 413, "too_many_items")
    assert fake.calls == []


def test_body_over_the_limit_is_413(fake: FakeAligner) -> None:
    client = TestClient(create_app(fake, MODEL, max_body_bytes=4096))
    assert_error(client.post(URL, json=batch(item("a", data=wav_b64(1.0)))), 413, "payload_too_large")
    assert fake.calls == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[]", "invalid_request"),
        (b'{"model": "Qwen/Qwen3-ForcedAligner-0.6B"}', "invalid_request"),
        (b'{"items": []}', "invalid_request"),
        (b'{"items": [42]}', "invalid_request"),
        (b'{"items": [{"id": "a", "text": "t", "language": "English"}]}', "invalid_request"),
        (b'{"items": [{"id": "a", "audio": {"format": "wav"}, "text": "t", "language": "English"}]}', "invalid_request"),
        (b'{"items": [{"id": 1, "audio": {"format": "wav", "data": ""}, "text": "t", "language": "English"}]}',
         "invalid_request"),
        (b'{"items": [{"id": "a", "audio": {"format": "wav", "data": ""}, "language": "English"}]}',
         "invalid_request"),
        (b'{"model": "other/model", "items": [{"id": "a", "audio": {"format": "wav", "data": ""}, '
         b'"text": "t", "language": "English"}]}', "model_mismatch"),
    ],
)
def test_malformed_body_is_400(client: TestClient, fake: FakeAligner, body: bytes, code: str) -> None:
    resp = client.post(URL, content=body, headers={"content-type": "application/json"})
    assert_error(resp, 400, code)
    assert fake.calls == []


def test_model_field_is_optional(client: TestClient) -> None:
    resp = client.post(URL, json={"items": [item("a")]})
    assert resp.status_code == 200
    assert resp.json()["model"] == MODEL


def test_unknown_route_is_json_404(client: TestClient) -> None:
    assert_error(client.get("/v1/nothing"), 404, "not_found")


# --- api key -----------------------------------------------------------------------------------


def test_api_key_is_enforced(fake: FakeAligner) -> None:
    client = TestClient(create_app(fake, MODEL, api_key="s3cret"))
    assert client.get("/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        assert_error(client.get("/v1/models", headers=headers), 401, "unauthorized")
        resp = client.post(URL, json=batch(item("a")), headers=headers)
        assert_error(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"] == "Bearer"
    assert fake.calls == []

    good = {"Authorization": "Bearer s3cret"}
    assert client.get("/v1/models", headers=good).status_code == 200
    assert client.post(URL, json=batch(item("a")), headers=good).status_code == 200
    assert len(fake.calls) == 1
