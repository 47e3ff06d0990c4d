"""Input limits enforced before any expensive work: request body size (also for chunked
uploads with no Content-Length), text length, image format and pixel count."""

from __future__ import annotations

import base64
import binascii
import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_body


class BodySizeLimit:
    """ASGI middleware: refuse bodies over `max_bytes` with 413.

    A declared Content-Length over the limit is refused before reading anything. Otherwise the
    body is read (at most `max_bytes` + one chunk) and replayed to the app, so a chunked upload
    that grows past the limit is cut off too — no route ever sees an oversize body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for the disconnect like the server does

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        payload = json.dumps(
            error_body(
                "payload_too_large", f"request body is over the limit of {self.max_bytes:,} bytes"
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# Blank characters: those that are whitespace both to `\s` in the OpenAPI schema's patterns
# (ECMA-262 regex, as JSON Schema validators read it) and to Python's str.isspace(). A text of
# only these is blank everywhere; one with anything else (U+0085, U+FEFF, U+001C…) is a text.
WHITESPACE = "\t\n\x0b\x0c\r \xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
)
VISIBLE = r"\S"  # the schema's pattern for a text that is not blank


def strip_text(text: str) -> str:
    return text.strip(WHITESPACE)


def check_text(text: str, max_chars: int, field: str = "text") -> str:
    """A query text: not blank, at most `max_chars` (before tokenising) and valid Unicode (no
    lone surrogates). Returns it stripped."""
    if len(text) > max_chars:
        raise ApiError(
            422, "text_too_long", f"{field} is {len(text):,} characters; the limit is {max_chars:,}"
        )
    stripped = strip_text(text)
    if not stripped:
        raise ApiError(422, "empty_text", f"{field} is empty")
    try:
        # JSON can escape an unpaired surrogate (\ud800); such a str has no UTF-8 form and would
        # crash the tokenizer.
        stripped.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(
            422, "invalid_text", f"{field} holds an unpaired surrogate at position {e.start}"
        ) from e
    return stripped


def decode_b64(data: str, field: str = "image_b64") -> bytes:
    """Standard or URL-safe base64, with or without a data: URL prefix."""
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    data = "".join(data.split())
    try:
        if "-" in data or "_" in data:
            return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ApiError(422, "invalid_base64", f"{field} is not valid base64 ({e})") from e
