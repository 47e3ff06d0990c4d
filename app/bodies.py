"""Reading one request model from either a JSON body or a multipart form with image files, and
answering every malformed body with a message that says what to send instead.

JSON is validated strictly (`"k": "5"` is refused, as the schema says: a number, not a string);
a form's fields are text by nature, so there `k=5` is read as the number 5."""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import ApiError
from .limits import strip_text
from .settings import Settings

M = TypeVar("M", bound=BaseModel)

MIN_FORM_PARTS = 64  # parts a form may always have; more only as the limits in force allow

# Names people reach for, and the field that does it here.
FIELD_HINTS = {
    "query": "text",
    "q": "text",
    "prompt": "text",
    "caption": "text",
    "id": "image_id",
    "image_url": "image_id or image_b64",
    "vector": "embedding",
    "top_k": "k",
    "limit": "k",
    "n": "k",
    "page": "offset",
    "skip": "offset",
    "label": "labels",
    "classes": "labels",
    "text": "texts",
    "image": "image_b64",
    "images": "images_b64",
}


@dataclass(frozen=True)
class FormSpec:
    """How one route reads a multipart form: the file field, the fields that may repeat, and
    custom readers for fields whose text needs parsing (e.g. where=key=value)."""

    file_field: str = "image"
    multiple_files: bool = False
    lists: tuple[str, ...] = ()
    readers: dict[str, Callable[[list[str], Settings], Any]] = field(default_factory=dict)
    json_only: tuple[str, ...] = ()  # fields a form cannot carry: send JSON for those
    plain: tuple[str, ...] = ()  # text fields where a leading { means JSON sent as a form


def validation_message(e: ValidationError, model: type[BaseModel], form: bool = False) -> str:
    parts = [_explain(err, model, form) for err in e.errors()[:5]]
    return "; ".join(parts) or "invalid request"


def _explain(err: dict, model: type[BaseModel], form: bool) -> str:
    loc = ".".join(str(x) for x in err.get("loc", ()))
    kind, given = err.get("type", ""), err.get("input")
    msg = err.get("msg", "invalid value").removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return f"{loc}: {unknown_field(str(err['loc'][-1]), model, form)}"
    if kind in ("int_type", "float_type") and isinstance(given, str):
        msg = f"send a JSON number, not a string ({given!r} → {given.strip()})"
    elif kind == "string_type" and isinstance(given, int | float) and not isinstance(given, bool):
        msg = f'send a JSON string, not a number ("{given}" instead of {given})'
    return f"{loc}: {msg}" if loc else msg


def unknown_field(name: str, model: type[BaseModel], form: bool = False) -> str:
    fields = list(model.model_fields)
    if form:
        fields = ["image" if "image_b64" in fields else "images", *fields]
    hint = FIELD_HINTS.get(name)
    if hint is None or hint.split()[0] not in fields:
        close = difflib.get_close_matches(name, fields, n=1)
        hint = close[0] if close else None
    said = f"unknown field; did you mean {hint}? " if hint else "unknown field; "
    return said + f"{model.__name__} takes {', '.join(fields)}"


def validate(model: type[M], data: Any, *, strict: bool, form: bool = False) -> M:
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as e:
        raise ApiError(422, "validation_error", validation_message(e, model, form)) from e


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise ApiError(422, "validation_error", "the request body is empty")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(422, "invalid_json", f"the body is not valid JSON ({e})") from e


async def read_body(
    request: Request, model: type[M], spec: FormSpec | None = None
) -> tuple[M, list[bytes]]:
    """→ (validated model, uploaded file contents)."""
    spec = spec or FormSpec()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("application/json", "") or ctype.endswith("+json"):
        data = await read_json(request)
        if not isinstance(data, dict):
            raise ApiError(422, "validation_error", "the JSON body must be an object")
        return validate(model, data, strict=True), []
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send application/json or multipart/form-data, not {ctype}",
        )
    try:
        settings: Settings = request.app.state.settings
        max_files, max_fields = form_limits(settings)
        form = await request.form(max_files=max_files, max_fields=max_fields)
    except StarletteHTTPException as e:
        # Starlette answers a malformed form, or one with too many parts, with a bare 400; the
        # API documents every bad body as 422 in the one error shape.
        raise ApiError(422, "invalid_form", f"the form cannot be read: {e.detail}") from e
    try:
        _refuse_json_as_form(form, ctype)
        return await _read_form(form, model, spec, settings)
    finally:
        await form.close()


def _refuse_json_as_form(form: FormData, ctype: str) -> None:
    """`curl -d '{"text": …}'` sends JSON labelled as a form: one field named by the whole body."""
    keys = list(form.keys())
    if len(keys) == 1 and keys[0].lstrip()[:1] in ("{", "[") and not form.get(keys[0]):
        raise ApiError(
            415,
            "json_sent_as_form",
            f"the body is JSON but its Content-Type is {ctype}: send it with "
            "Content-Type: application/json (curl: -H 'Content-Type: application/json')",
        )


def form_limits(s: Settings) -> tuple[int, int]:
    """(file parts, text fields) a form may hold: as many as the largest valid request needs,
    and no more (a form of thousands of parts is refused before it is read)."""
    files = max(MIN_FORM_PARTS, s.max_embed_items)
    fields = MIN_FORM_PARTS + s.max_labels + s.max_templates + s.max_embed_items
    return files, fields


async def _read_form(
    form: FormData, model: type[M], spec: FormSpec, settings: Settings
) -> tuple[M, list[bytes]]:
    data: dict[str, Any] = {}
    files: list[bytes] = []
    for key in dict.fromkeys(form.keys()):
        values = form.getlist(key)
        uploads = [v for v in values if isinstance(v, UploadFile)]
        if key == spec.file_field:
            if len(uploads) != len(values):
                raise ApiError(
                    422, "validation_error", f"{key} must be a file (curl: -F {key}=@photo.jpg)"
                )
            files += [await v.read() for v in uploads]
            if len(files) > 1 and not spec.multiple_files:
                raise ApiError(422, "validation_error", f"send one {key} file, not {len(files)}")
            continue
        if uploads:
            raise ApiError(
                422,
                "validation_error",
                f"{key}: a file sent in a field that takes text; send the image file as "
                f"{spec.file_field} (curl: -F {spec.file_field}=@photo.jpg)",
            )
        if key in spec.json_only:
            raise ApiError(
                422,
                "validation_error",
                f"{key}: a form carries an uploaded {spec.file_field}; send {key} in a JSON body "
                f'instead (Content-Type: application/json), e.g. {{"{key}": …}}',
            )
        if key not in model.model_fields:
            msg = unknown_field(key, model, form=True)
            raise ApiError(422, "validation_error", f"{key}: {msg}")
        if len(values) > 1 and key not in spec.lists and key not in spec.readers:
            raise ApiError(
                422, "validation_error", f"{key}: give this field once, not {len(values)} times"
            )
        texts = [str(v) for v in values]
        if key in spec.plain and any(t.startswith("{") for t in texts):
            raise ApiError(
                422,
                "json_sent_as_form",
                f"{key}: a form field that starts with {{ looks like JSON; send JSON as the body "
                "with Content-Type: application/json, or one plain form field per value",
            )
        if key in spec.readers:
            data[key] = spec.readers[key](texts, settings)
        else:
            data[key] = texts if key in spec.lists else texts[0]
    return validate(model, data, strict=False, form=True), files


def read_where(values: list[str], _: Settings) -> dict[str, str]:
    """Form filters: `where=color=red`, one field per filter."""
    out: dict[str, str] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise ApiError(
                422,
                "validation_error",
                f"where: {v!r} is not key=value; send one field per filter, e.g. "
                "-F where=color=red -F where=season=summer",
            )
        out[key] = value
    return out


def read_labels(values: list[str], s: Settings) -> list[str]:
    """Form labels: repeat the field, or comma-separate them in one (or both)."""
    out = []
    for v in values:
        if len(v) > s.max_text_chars:
            raise ApiError(
                422, "text_too_long", f"labels: a field is over {s.max_text_chars:,} characters"
            )
        pieces = [p for p in v.split(",") if strip_text(p)]
        if not pieces:
            raise ApiError(
                422, "invalid_labels", f"labels: {v!r} holds no label; e.g. -F labels='a cat'"
            )
        out += pieces
    return out
