"""POST /embed: vectors for texts and images (for people who bring their own vector store)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from .. import query
from ..bodies import FormSpec, read_body
from ..deps import engine_for
from ..limits import decode_b64
from ..schemas import EmbedRequest, EmbedResponse, error_responses
from ._openapi import body_placeholder

router = APIRouter(tags=["embed"])

FORM = FormSpec(
    file_field="images",
    multiple_files=True,
    lists=("texts",),
    json_only=("images_b64",),
    plain=("texts",),
)


@router.post(
    "/embed",
    response_model=EmbedResponse,
    responses=error_responses(401, 404, 413, 415, 422, 503),
    openapi_extra=body_placeholder("embed"),
)
async def embed(request: Request) -> EmbedResponse:
    """Embed texts and/or images into the model's space (unit vectors)."""
    req, files = await read_body(request, EmbedRequest, FORM)
    engine = engine_for(request, req.index)
    images = [decode_b64(b, f"images_b64[{i}]") for i, b in enumerate(req.images_b64)] + files
    return await query.embed(engine, req.texts, images)
