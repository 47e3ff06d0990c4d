"""POST /classify: zero-shot labels for one image."""

from __future__ import annotations

from fastapi import APIRouter, Request

from .. import query
from ..bodies import read_body
from ..deps import EngineDep
from ..schemas import ClassifyRequest, ClassifyResponse, error_responses
from ._openapi import FILE, STR, body

router = APIRouter(tags=["classify"])

OPENAPI = body(
    ClassifyRequest,
    {
        "image_id": {"image_id": "1234", "labels": ["a cat", "a dog"]},
        "image_b64": {"image_b64": "<base64 bytes>", "labels": "day,night"},
        "templates": {
            "image_id": "1234",
            "labels": ["day", "night"],
            "templates": ["a photo taken at {}."],
        },
    },
    {
        "image": FILE,
        "labels": {"type": "string", "description": "comma-separated, or a JSON array"},
        "templates": {"type": "string", "description": "repeat the field, or a JSON array"},
        "image_id": STR,
    },
    {"upload": {"image": "<file>", "labels": "a cat,a dog"}},
)


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=error_responses(401, 404, 413, 415, 422, 503),
    openapi_extra=OPENAPI,
)
async def classify(request: Request, engine: EngineDep) -> ClassifyResponse:
    """Rank candidate labels for an image, with probabilities."""
    req, files = await read_body(
        request, ClassifyRequest, json_fields=("labels", "templates"), list_fields=("templates",)
    )
    return await query.classify(engine, req, files[0] if files else None)
