"""POST /images and DELETE /images/{id}: writes to a living index (a server started writable).

Acknowledged = durable: each answer is sent after the change is fsynced in the index's
write-ahead log (and an uploaded file in its media folder); it is searchable at once."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from PIL import Image
from pydantic import BaseModel, Field

from ..bodies import FormSpec, read_body
from ..deps import IndexEngineDep, SettingsDep
from ..engine import SearchEngine, parse_id
from ..errors import ApiError
from ..schemas import ErrorResponse, error_responses

MAX_WRITE_ITEMS = 64  # images or paths per request


async def require_writable(settings: SettingsDep) -> None:
    if not settings.writable:
        raise ApiError(
            403,
            "writes_disabled",
            "this server is read-only: start it with --writable (CLIPSEARCH_WRITABLE=true)",
        )


FORBIDDEN = {403: {"description": "The server is not writable", "model": ErrorResponse}}
router = APIRouter(tags=["writes"], dependencies=[Depends(require_writable)])


class AddImagesRequest(BaseModel):
    """Form fields beside the `image` files, or a JSON body naming files under the corpus root."""

    paths: list[str] | None = Field(None, max_length=MAX_WRITE_ITEMS, description="JSON only")
    caption: list[str] = Field([], max_length=MAX_WRITE_ITEMS, description="one per image")
    meta: list[str | dict[str, Any]] = Field([], max_length=MAX_WRITE_ITEMS,
                                             description="a JSON object per image")  # fmt: skip


class AddedItem(BaseModel):
    id: str
    path: str
    width: int
    height: int
    caption: str | None
    duplicate_of: str | None


class AddImagesResponse(BaseModel):
    items: list[AddedItem]
    index_version: str


class DeleteResponse(BaseModel):
    deleted: str


FORM = FormSpec(file_field="image", multiple_files=True, lists=("caption", "meta"),
                json_only=("paths",))  # fmt: skip


def _meta(raw: str | dict[str, Any] | None, n: int) -> dict[str, Any]:
    if raw is None or isinstance(raw, dict):
        return raw or {}
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError as e:
        raise ApiError(422, "validation_error", f"meta[{n}]: not JSON ({e})") from e
    if not isinstance(value, dict):
        raise ApiError(422, "validation_error", f"meta[{n}]: must be a JSON object")
    return value


def _stored_size(data: bytes) -> tuple[int, int]:
    """(width, height) of the stored file after EXIF orientation (the indexer's rule)."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            w, h = h, w
    return w, h


def _suffix(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as im:
        fmt = (im.format or "jpeg").lower()
    return {"jpeg": ".jpg", "tiff": ".tif"}.get(fmt, f".{fmt}")


def _corpus_file(engine: SearchEngine, rel: str) -> tuple[Path, str]:
    from indexer.media import is_media_path

    if is_media_path(rel):  # the prefix of uploaded images' paths: never a corpus file
        raise ApiError(422, "outside_corpus", f"{rel}: not a path under the corpus root")
    root = engine.live.base.root.resolve()
    try:
        p = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        raise ApiError(
            404, "file_not_found", f"{rel}: no such file under the corpus root"
        ) from None
    if not p.is_relative_to(root):
        raise ApiError(422, "outside_corpus", f"{rel}: outside the corpus root")
    if not p.is_file():
        raise ApiError(404, "file_not_found", f"{rel}: not a file")
    return p, p.relative_to(root).as_posix()


async def _add_one(engine: SearchEngine, data: bytes, where: str | None, caption, meta):
    """Decode (the server's caps), encode, store, log → (item, duplicate_of)."""
    from indexer.live import NewImage
    from indexer.media import store_media

    img = await engine.decode_image(data)
    sha = hashlib.sha256(data).hexdigest()
    live = engine.live
    existing = await engine.run_io(live.find_path, where) if where else None
    if existing is not None and existing.sha256 == sha:
        return existing, existing.id
    if existing is None:
        dup = await engine.run_io(live.find_sha, sha)
        if dup is not None:
            return live.view().get_item(dup), dup
    vector = await engine.embed_image(img)
    w, h = _stored_size(data)
    if where is None:  # an upload: stored in the index's media folder, deduplicated by content
        where = await engine.run_io(store_media, engine.index_dir, data, sha, _suffix(data))
        new = NewImage(where, sha, len(data), w, h, vector, caption=caption, extra=meta)
        added = await engine.run_io(live.add, new)
        return added.item, added.duplicate_of
    new = NewImage(where, sha, len(data), w, h, vector, caption=caption, extra=meta)
    item = await engine.run_io(live.put, new, existing.id if existing else None)
    return item, None


def _item(item, dup: int | None) -> AddedItem:
    return AddedItem(
        id=str(item.id),
        path=item.path,
        width=item.width,
        height=item.height,
        caption=item.caption,
        duplicate_of=None if dup is None else str(dup),
    )


@router.post("/images", status_code=201, response_model=AddImagesResponse,
             responses={**FORBIDDEN, **error_responses(401, 404, 413, 415, 422, 503)})  # fmt: skip
async def add_images(request: Request, engine: IndexEngineDep) -> AddImagesResponse:
    """Add images (multipart `image` files, or JSON `paths` under the corpus root)."""
    req, files = await read_body(request, AddImagesRequest, FORM)
    if engine.live is None:
        raise ApiError(403, "writes_disabled", "this server serves no living index")
    sources: list[tuple[bytes, str | None]] = []
    for rel in req.paths or []:
        p, rel = _corpus_file(engine, rel)
        sources.append((await engine.run_io(p.read_bytes), rel))
    sources += [(data, None) for data in files]
    if not sources:
        raise ApiError(422, "validation_error", "send one or more image files (or JSON paths)")
    if len(sources) > MAX_WRITE_ITEMS:
        raise ApiError(422, "validation_error", f"at most {MAX_WRITE_ITEMS} images per request")
    for name, values in (("caption", req.caption), ("meta", req.meta)):
        if len(values) > len(sources):
            raise ApiError(422, "validation_error", f"more {name} values than images")
    items = []
    for n, (data, rel) in enumerate(sources):
        caption = req.caption[n] if n < len(req.caption) else None
        meta = _meta(req.meta[n] if n < len(req.meta) else None, n)
        items.append(_item(*await _add_one(engine, data, rel, caption or None, meta)))
    return AddImagesResponse(items=items, index_version=engine.live.view().id)


@router.delete("/images/{image_id}", response_model=DeleteResponse,
               responses={**FORBIDDEN, **error_responses(401, 404, 503)})  # fmt: skip
async def delete_image(image_id: str, engine: IndexEngineDep) -> DeleteResponse:
    """Delete an image: it never appears again (also not through /images/{id})."""
    if engine.live is None:
        raise ApiError(403, "writes_disabled", "this server serves no living index")
    if not await engine.run_io(engine.live.delete, parse_id(image_id)):
        raise ApiError(404, "not_found", f"no image with id {image_id}")
    return DeleteResponse(deleted=image_id)
