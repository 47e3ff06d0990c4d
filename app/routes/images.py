"""GET /images/{id} and /images/{id}/thumbnail: only files inside the indexed corpus."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse

from ..deps import IndexEngineDep
from ..schemas import error_responses

router = APIRouter(tags=["images"])

IMAGE = {200: {"content": {"image/*": {}}, "description": "The original image file"}}
THUMB = {200: {"content": {"image/jpeg": {}}, "description": "A JPEG thumbnail"}}


@router.get("/images/{image_id}", response_class=FileResponse,
            responses={**IMAGE, **error_responses(401, 404, 503)})  # fmt: skip
async def image(image_id: str, engine: IndexEngineDep) -> FileResponse:
    """The original file of an indexed image."""
    with engine.lease() as version:
        path = await engine.run_io(engine.image_file, version, image_id)
    return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


@router.get("/images/{image_id}/thumbnail", response_class=Response,
            responses={**THUMB, **error_responses(401, 404, 503)})  # fmt: skip
async def thumbnail(image_id: str, engine: IndexEngineDep) -> Response:
    """A small JPEG preview of an indexed image."""
    with engine.lease() as version:
        data = await engine.thumbnail(version, image_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})
