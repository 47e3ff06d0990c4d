"""POST /embed: vectors for texts and images (for people who bring their own vector store)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from .. import query
from ..bodies import read_body
from ..deps import EngineDep
from ..limits import decode_b64
from ..schemas import EmbedRequest, EmbedResponse, error_responses
from ._openapi import FILE, body

router = APIRouter(tags=["embed"])

OPENAPI = body(
    EmbedRequest,
    {
        "texts": {"texts": ["a red car", "a bicycle"]},
        "images": {"images_b64": ["<base64 bytes>"], "texts": ["a cat"]},
    },
    {
        "images": {"type": "array", "items": FILE},
        "texts": {"type": "array", "items": {"type": "string"}},
    },
    {"upload": {"images": ["<file>", "<file>"], "texts": ["a cat"]}},
)


@router.post(
    "/embed",
    response_model=EmbedResponse,
    responses=error_responses(401, 413, 415, 422, 503),
    openapi_extra=OPENAPI,
)
async def embed(request: Request, engine: EngineDep) -> EmbedResponse:
    """Embed texts and/or images into the model's space (unit vectors)."""
    req, files = await read_body(
        request,
        EmbedRequest,
        json_fields=("texts",),
        list_fields=("texts",),
        file_field="images",
        multiple_files=True,
    )
    images = [decode_b64(b, f"images_b64[{i}]") for i, b in enumerate(req.images_b64)] + files
    return await query.embed(engine, req.texts, images)
