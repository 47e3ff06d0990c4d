"""Property-based tests (hypothesis) for the text and vector validators and for the body-size
limit under arbitrary chunking of the request body."""

from __future__ import annotations

import asyncio
import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import ApiError
from app.limits import BodySizeLimit, check_text, strip_text
from app.query import given_vector

DIM = 8


@given(text=st.text(), max_chars=st.integers(1, 50))
def test_check_text_accepts_exactly_the_valid_texts(text, max_chars):
    try:
        out = check_text(text, max_chars)
    except ApiError as e:
        assert e.status == 422
        if len(text) > max_chars:
            assert e.code == "text_too_long"
        elif not strip_text(text):
            assert e.code == "empty_text"
        else:
            assert e.code == "invalid_text"
            assert any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)
        return
    assert out == strip_text(text) and out and len(out) <= max_chars
    out.encode("utf-8")  # what the tokenizer needs


@given(
    vec=st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=0, max_size=12
    )
)
def test_given_vector_is_unit_or_a_clear_422(vec):
    try:
        out = given_vector(vec, DIM)
    except ApiError as e:
        assert e.status == 422
        arr = np.asarray(vec, dtype=np.float64)
        if len(vec) != DIM:
            assert e.code == "dimension_mismatch"
        elif np.abs(arr).max() > np.finfo(np.float32).max:
            assert e.code == "invalid_embedding"
        else:
            assert e.code == "zero_query"
            assert not arr.any()  # only all zeros has no direction
        return
    assert out.dtype == np.float32 and out.shape == (DIM,)
    assert np.isfinite(out).all() and abs(float(np.linalg.norm(out)) - 1.0) < 1e-5


def _run(limit: int, chunks: list[bytes], declared: bool) -> tuple[int, bytes | None]:
    """Send `chunks` through BodySizeLimit in front of an echo app → (status, body seen)."""
    seen: list[bytes] = []

    async def echo(scope, receive, send) -> None:
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body", False):
                break
        seen.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    total = sum(len(c) for c in chunks)
    headers = [(b"content-length", str(total).encode())] if declared else []
    scope = {"type": "http", "method": "POST", "headers": headers, "path": "/search"}
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ] or [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(BodySizeLimit(echo, max_bytes=limit)(scope, receive, send))
    status = sent[0]["status"]
    if status == 413:
        body = json.loads(sent[1]["body"])
        assert body["error"]["code"] == "payload_too_large"
    return status, (seen[0] if seen else None)


@settings(max_examples=200)
@given(
    limit=st.integers(0, 64),
    chunks=st.lists(st.binary(max_size=24), max_size=8),
    declared=st.booleans(),
)
def test_body_limit_holds_for_any_chunking(limit, chunks, declared):
    status, seen = _run(limit, chunks, declared)
    body = b"".join(chunks)
    if len(body) > limit:
        assert status == 413 and seen is None  # the app never sees an oversize body
    else:
        assert status == 200 and seen == body  # a body within the limit arrives intact
