"""Reading one request model from either a JSON body or a multipart form with an image file."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import ApiError

M = TypeVar("M", bound=BaseModel)

MAX_FILES = 64  # file parts in one form (refused before reading the rest)
MAX_FIELDS = 256  # plain fields in one form


def validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        loc = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ApiError(422, "validation_error", validation_message(e)) from e


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise ApiError(422, "validation_error", "the request body is empty")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON ({e})") from e


async def read_body(
    request: Request,
    model: type[M],
    *,
    json_fields: tuple[str, ...] = (),
    list_fields: tuple[str, ...] = (),
    file_field: str = "image",
    multiple_files: bool = False,
) -> tuple[M, list[bytes]]:
    """→ (validated model, uploaded file contents). In a form, `json_fields` hold JSON text
    (e.g. embedding="[0.1, …]") and `list_fields` may repeat."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/json", "") or ctype.endswith("+json"):
        data = await read_json(request)
        if not isinstance(data, dict):
            raise ApiError(422, "validation_error", "the JSON body must be an object")
        return validate(model, data), []
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send application/json or multipart/form-data, not {ctype}",
        )
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=MAX_FIELDS)
    except StarletteHTTPException as e:
        # Starlette answers a malformed form, or one with too many parts, with a bare 400; the
        # API documents every bad body as 422 in the one error shape.
        raise ApiError(422, "invalid_form", f"the form cannot be read: {e.detail}") from e
    try:
        data: dict[str, Any] = {}
        files: list[bytes] = []
        for key in set(form.keys()):
            values = form.getlist(key)
            if key == file_field:
                for v in values:
                    if not isinstance(v, UploadFile):
                        raise ApiError(422, "validation_error", f"{key} must be a file upload")
                    files.append(await v.read())
                if len(files) > 1 and not multiple_files:
                    raise ApiError(422, "validation_error", f"send one {key} file")
                continue
            if any(isinstance(v, UploadFile) for v in values):
                raise ApiError(422, "validation_error", f"{key} must be a plain field, not a file")
            if key in list_fields:
                data[key] = [_field(key, v, key in json_fields) for v in values]
                if len(values) == 1 and isinstance(data[key][0], list):
                    data[key] = data[key][0]
            else:
                data[key] = _field(key, values[-1], key in json_fields)
    finally:
        await form.close()
    return validate(model, data), files


def _field(key: str, value: str, is_json: bool) -> Any:
    if value == "":
        return None
    if is_json and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError as e:
            raise ApiError(422, "invalid_json", f"{key} is not valid JSON ({e})") from e
    return value
