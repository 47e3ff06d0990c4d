"""One error shape for every 4xx/5xx: {"error": {"code": "...", "message": "..."}}."""

from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from model.errors import ClipsearchError

from .batcher import Overloaded

log = logging.getLogger(__name__)

# Error codes raised by the model and indexer layers and the engine → HTTP status.
CODE_STATUS = {
    "not_found": 404,
    "unknown_index": 404,
    "image_unavailable": 404,
    "invalid_filter": 422,
    "no_index": 503,
    "unsupported_image_format": 415,
    "empty_image": 422,
    "invalid_image": 422,
    "image_too_large": 422,
    "file_not_found": 404,
    "index_not_found": 409,
    "index_corrupt": 409,
    "model_mismatch": 409,
}

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "unavailable",
}


class ApiError(Exception):
    """Raised by routes and the engine; rendered in the one error shape."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def from_clipsearch_error(e: ClipsearchError) -> ApiError:
    code = getattr(e, "code", "invalid_input")
    status = CODE_STATUS.get(code, 422)
    return ApiError(status, code, str(e), {"Retry-After": "5"} if status == 503 else None)


def method_not_allowed(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """`GET /search` and the like: say which methods the path takes, all that the OpenAPI
    document lists for it (Starlette's Allow names only the first route of a path, e.g. GET but
    not DELETE /images/{id})."""
    allowed = sorted(
        method.upper()
        for template, item in request.app.openapi().get("paths", {}).items()
        if re.fullmatch(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)), request.url.path)
        for method in item
    )
    if not allowed:
        allowed = [m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()]
    how = " with a JSON body or a multipart form" if "POST" in allowed else ""
    methods = " or ".join(allowed) or "another method"
    message = (
        f"{request.method} is not allowed on {request.url.path}: use {methods}{how} (see /docs)"
    )
    headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
    return error_response(405, "method_not_allowed", message, headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",))
        msg = err.get("msg", "invalid value")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(Overloaded)
    async def _overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)}
        return error_response(503, "overloaded", str(exc), headers)

    @app.exception_handler(ClipsearchError)
    async def _clipsearch_error(_: Request, exc: ClipsearchError) -> JSONResponse:
        e = from_clipsearch_error(exc)
        return error_response(e.status, e.code, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "validation_error", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            return method_not_allowed(request, exc)
        code = STATUS_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug, never a client mistake: log it with the traceback and say nothing internal.
        log.exception("unhandled error: %s", exc)
        return error_response(500, "internal_error", "internal server error")
