"""Reference aligner worker for Gatehouse: serves docs/aligner-contract.md with Qwen3-ForcedAligner.

The HTTP layer takes any object with an ``align(audio=, text=, language=)`` method shaped like
``qwen_asr.Qwen3ForcedAligner.align``: batched lists in, one result per sample out, each result an
iterable of units with ``.text``, ``.start_time`` and ``.end_time`` in seconds. ``qwen_asr`` and
``torch`` are imported only when the real model is loaded, so the contract tests run without them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hmac
import io
import json
import logging
import math
import os
import threading
import time
import unicodedata
import wave
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("aligner")

DEFAULT_MODEL = "Qwen/Qwen3-ForcedAligner-0.6B"
SAMPLE_RATE = 16_000
DEFAULT_MAX_ITEMS = 32
# Qwen3-ForcedAligner-0.6B aligns up to 5 minutes of speech per sample.
DEFAULT_MAX_AUDIO_SECONDS = 300.0
# Room for DEFAULT_MAX_ITEMS items of DEFAULT_MAX_AUDIO_SECONDS each, base64-encoded.
DEFAULT_MAX_BODY_BYTES = 512 * 1024 * 1024

# The languages Qwen3-ForcedAligner-0.6B aligns (model card), by the names the contract uses.
SUPPORTED_LANGUAGES = (
    "Chinese",
    "English",
    "Cantonese",
    "French",
    "German",
    "Italian",
    "Japanese",
    "Korean",
    "Portuguese",
    "Russian",
    "Spanish",
)
_LANGUAGE_BY_KEY = {name.lower(): name for name in SUPPORTED_LANGUAGES}


class Aligner(Protocol):
    def align(self, audio: list[Any], text: list[str], language: list[str]) -> Sequence[Any]: ...


class BatchError(Exception):
    """A failure of the whole request, answered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ItemError(Exception):
    """A failure of one item; the rest of the batch goes on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AudioItem:
    """One item that passed validation, ready for the model."""

    index: int
    id: str
    samples: np.ndarray  # mono float32 in [-1, 1) at SAMPLE_RATE
    text: str
    language: str

    @property
    def duration_ms(self) -> int:
        return round(len(self.samples) * 1000 / SAMPLE_RATE)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# ---------------------------------------------------------------------------------------------
# Request validation and decoding
# ---------------------------------------------------------------------------------------------


def parse_batch(body: bytes, model_id: str, max_items: int) -> list[dict[str, Any]]:
    """Check the request's shape; returns its items. Content problems are left to ``prepare_item``."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BatchError(400, "invalid_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BatchError(400, "invalid_request", "body must be a JSON object")

    model = doc.get("model")
    if model is not None:
        if not isinstance(model, str):
            raise BatchError(400, "invalid_request", "model must be a string")
        if model != model_id:
            raise BatchError(400, "model_mismatch", f"this worker serves {model_id!r}, not {model!r}")

    items = doc.get("items")
    if not isinstance(items, list) or not items:
        raise BatchError(400, "invalid_request", "items must be a non-empty array")
    if len(items) > max_items:
        raise BatchError(413, "too_many_items", f"{len(items)} items; this worker takes at most {max_items}")

    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            raise BatchError(400, "invalid_request", f"{where} must be an object")
        for key in ("id", "text", "language"):
            if not isinstance(item.get(key), str):
                raise BatchError(400, "invalid_request", f"{where}.{key} must be a string")
        audio = item.get("audio")
        if not isinstance(audio, dict):
            raise BatchError(400, "invalid_request", f"{where}.audio must be an object")
        for key in ("format", "data"):
            if not isinstance(audio.get(key), str):
                raise BatchError(400, "invalid_request", f"{where}.audio.{key} must be a string")
    return items


def decode_wav(data: str) -> np.ndarray:
    """Base64 WAV (16-bit PCM, mono, 16 kHz) to float32 samples in [-1, 1)."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ItemError("invalid_audio", "audio.data is not valid base64") from None
    try:
        with wave.open(io.BytesIO(raw), "rb") as wav:
            channels = wav.getnchannels()
            width = wav.getsampwidth()
            rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ItemError("invalid_audio", f"not a 16-bit PCM WAV file: {exc}") from None
    if width != 2:
        raise ItemError("invalid_audio", f"WAV samples are {8 * width}-bit; expected 16-bit PCM")
    if channels != 1:
        raise ItemError("invalid_audio", f"WAV has {channels} channels; expected mono")
    if rate != SAMPLE_RATE:
        raise ItemError("invalid_audio", f"WAV is sampled at {rate} Hz; expected {SAMPLE_RATE} Hz")
    usable = len(frames) - len(frames) % 2
    if usable == 0:
        raise ItemError("invalid_audio", "audio is empty")
    pcm = np.frombuffer(frames[:usable], dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def _alignable(ch: str) -> bool:
    # qwen_asr keeps letters, digits and apostrophes when it splits a transcript into units.
    return unicodedata.category(ch)[0] in "LN"


def prepare_item(index: int, item: dict[str, Any], max_audio_seconds: float) -> AudioItem:
    language = _LANGUAGE_BY_KEY.get(item["language"].strip().lower())
    if language is None:
        raise ItemError(
            "unsupported_language",
            f"language {item['language']!r} is not supported; use one of: {', '.join(SUPPORTED_LANGUAGES)}",
        )
    text = item["text"].strip()
    if not text:
        raise ItemError("invalid_text", "text is empty")
    if not any(_alignable(ch) for ch in text):
        raise ItemError("invalid_text", "text has no letters or digits to align")
    audio = item["audio"]
    if audio["format"].lower() != "wav":
        raise ItemError("invalid_audio", f"audio.format {audio['format']!r} is not supported; expected 'wav'")
    samples = decode_wav(audio["data"])
    seconds = len(samples) / SAMPLE_RATE
    if seconds > max_audio_seconds:
        raise ItemError("invalid_audio", f"audio is {seconds:.1f} s long; at most {max_audio_seconds:g} s per item")
    return AudioItem(index=index, id=item["id"], samples=samples, text=text, language=language)


def prepare_batch(
    body: bytes, model_id: str, max_items: int, max_audio_seconds: float
) -> tuple[list[dict[str, Any] | None], list[AudioItem]]:
    """Returns one slot per item, holding its error if it has one, and the items to align."""
    items = parse_batch(body, model_id, max_items)
    results: list[dict[str, Any] | None] = [None] * len(items)
    ready: list[AudioItem] = []
    for i, item in enumerate(items):
        try:
            ready.append(prepare_item(i, item, max_audio_seconds))
        except ItemError as exc:
            results[i] = {"id": item["id"], **error_body(exc.code, exc.message)}
    return results, ready


# ---------------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------------


def _to_ms(seconds: Any) -> int:
    ms = float(seconds) * 1000.0
    if not math.isfinite(ms):
        raise ValueError(f"timestamp {seconds!r} is not a finite number")
    return round(ms)


def to_units(output: Any, duration_ms: int) -> list[dict[str, Any]]:
    """Model units (seconds) to contract units (integer ms), clamped to the audio and kept in order."""
    units = []
    cursor = 0
    for unit in output:
        start = min(max(_to_ms(unit.start_time), cursor), duration_ms)
        end = min(max(_to_ms(unit.end_time), start), duration_ms)
        units.append({"text": str(unit.text), "start_ms": start, "end_ms": end})
        cursor = end
    return units


def align_once(model: Aligner, batch: list[AudioItem]) -> list[dict[str, Any]]:
    """One model call for the whole batch; raises if the model fails or answers out of shape."""
    outputs = model.align(
        audio=[(item.samples, SAMPLE_RATE) for item in batch],
        text=[item.text for item in batch],
        language=[item.language for item in batch],
    )
    outputs = list(outputs)
    if len(outputs) != len(batch):
        raise RuntimeError(f"model returned {len(outputs)} results for {len(batch)} samples")
    return [
        {"id": item.id, "duration_ms": item.duration_ms, "items": to_units(output, item.duration_ms)}
        for item, output in zip(batch, outputs)
    ]


def _failed(item: AudioItem, exc: Exception) -> dict[str, Any]:
    return {"id": item.id, **error_body("alignment_failed", f"{type(exc).__name__}: {exc}"[:500])}


def align_batch(model: Aligner, batch: list[AudioItem]) -> list[dict[str, Any]]:
    """Aligns the batch in one call; if that fails, item by item so a bad item fails only itself."""
    if not batch:
        return []
    try:
        return align_once(model, batch)
    except Exception as exc:
        if len(batch) == 1:
            return [_failed(batch[0], exc)]
        log.warning("batch of %d failed (%s); retrying item by item", len(batch), type(exc).__name__)
    results = []
    for item in batch:
        try:
            results.extend(align_once(model, [item]))
        except Exception as exc:
            results.append(_failed(item, exc))
    return results


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytes:
    too_large = BatchError(413, "payload_too_large", f"body is larger than {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    model: Aligner | None,
    model_id: str = DEFAULT_MODEL,
    *,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS,
    api_key: str | None = None,
) -> FastAPI:
    """The worker's app. ``model`` may be None while it loads: set ``app.state.model`` when ready."""
    app = FastAPI(title="Gatehouse aligner worker", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.model = model
    gpu = asyncio.Lock()  # one model call at a time: one GPU
    created = int(time.time())
    expected_auth = f"Bearer {api_key}".encode() if api_key else None

    @app.exception_handler(BatchError)
    async def on_batch_error(_: Request, exc: BatchError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected %s", type(exc).__name__, exc_info=exc)
        return JSONResponse(error_body("internal_error", type(exc).__name__), status_code=500)

    def authorize(request: Request) -> None:
        if expected_auth is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected_auth):
            raise BatchError(401, "unauthorized", "missing or wrong bearer key")

    def ready_model() -> Aligner:
        loaded = app.state.model
        if loaded is None:
            raise BatchError(503, "not_ready", "the model is still loading")
        return loaded

    @app.get("/health")
    async def health() -> JSONResponse:
        if app.state.model is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        authorize(request)
        entry = {"id": model_id, "object": "model", "created": created, "owned_by": "qwen"}
        return JSONResponse({"object": "list", "data": [entry]})

    @app.post("/v1/align/batch")
    async def align(request: Request) -> JSONResponse:
        authorize(request)
        aligner = ready_model()
        body = await read_body(request, max_body_bytes)
        results, ready = await asyncio.to_thread(prepare_batch, body, model_id, max_items, max_audio_seconds)
        del body  # the decoded samples are all the model needs; drop the base64 before aligning
        async with gpu:
            started = time.perf_counter()
            aligned = await asyncio.to_thread(align_batch, aligner, ready)
            elapsed_ms = round((time.perf_counter() - started) * 1000)
        for item, result in zip(ready, aligned):
            results[item.index] = result
        failed = sum("error" in result for result in results)
        audio_s = sum(len(item.samples) for item in ready) / SAMPLE_RATE
        log.info(
            "align batch: items=%d aligned=%d failed=%d audio_s=%.1f ms=%d",
            len(results), len(results) - failed, failed, audio_s, elapsed_ms,
        )
        return JSONResponse({"model": model_id, "results": results})

    return app


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def load_model(path_or_id: str, device: str, dtype: str) -> Aligner:
    import torch
    from qwen_asr import Qwen3ForcedAligner

    return Qwen3ForcedAligner.from_pretrained(path_or_id, dtype=getattr(torch, dtype), device_map=device)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Gatehouse aligner worker (Qwen3-ForcedAligner).")
    p.add_argument("--model", default=DEFAULT_MODEL, help="Hugging Face id or local path (default: %(default)s)")
    p.add_argument(
        "--served-model-name",
        help="model id reported by /v1/models and expected in requests (default: --model)",
    )
    p.add_argument("--host", default="0.0.0.0", help="listen address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="listen port (default: %(default)s)")
    p.add_argument("--device", default="cuda:0", help="torch device_map (default: %(default)s)")
    p.add_argument(
        "--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"), help="(default: %(default)s)"
    )
    p.add_argument("--max-items", type=int, default=DEFAULT_MAX_ITEMS, help="items per batch (default: %(default)s)")
    p.add_argument(
        "--max-audio-seconds",
        type=float,
        default=DEFAULT_MAX_AUDIO_SECONDS,
        help="longest audio per item (default: %(default)s)",
    )
    p.add_argument(
        "--max-body-mb", type=int, default=DEFAULT_MAX_BODY_BYTES >> 20, help="request body limit (default: %(default)s)"
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("ALIGNER_API_KEY") or None,
        help="require 'Authorization: Bearer KEY' on /v1/* (default: $ALIGNER_API_KEY, else none)",
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = p.parse_args(argv)
    if args.max_items < 1 or args.max_audio_seconds <= 0 or args.max_body_mb < 1:
        p.error("--max-items, --max-audio-seconds and --max-body-mb must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(
        None,
        args.served_model_name or args.model,
        max_items=args.max_items,
        max_body_bytes=args.max_body_mb << 20,
        max_audio_seconds=args.max_audio_seconds,
        api_key=args.api_key,
    )
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level))
    load_failed = threading.Event()

    def load() -> None:
        started = time.perf_counter()
        try:
            app.state.model = load_model(args.model, args.device, args.dtype)
        except Exception:
            log.exception("loading %s failed", args.model)
            load_failed.set()
            server.should_exit = True
            return
        log.info("loaded %s on %s (%s) in %.1f s", args.model, args.device, args.dtype, time.perf_counter() - started)

    # Load beside the server so /health answers 503 until the model is ready.
    threading.Thread(target=load, name="model-loader", daemon=True).start()
    server.run()
    return 1 if load_failed.is_set() else 0


if __name__ == "__main__":
    raise SystemExit(main())
