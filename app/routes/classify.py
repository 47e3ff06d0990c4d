"""POST /classify: zero-shot labels for one image."""

from __future__ import annotations

from fastapi import APIRouter, Request

from .. import query
from ..bodies import FormSpec, read_body, read_labels
from ..deps import engine_for
from ..schemas import ClassifyRequest, ClassifyResponse, error_responses
from ._openapi import body_placeholder

router = APIRouter(tags=["classify"])

FORM = FormSpec(
    lists=("templates",),
    readers={"labels": read_labels},
    json_only=("image_id", "image_b64"),
    plain=("labels",),
)


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=error_responses(401, 404, 413, 415, 422, 503),
    openapi_extra=body_placeholder("classify"),
)
async def classify(request: Request) -> ClassifyResponse:
    """Rank candidate labels for an image, with probabilities."""
    req, files = await read_body(request, ClassifyRequest, FORM)
    engine = engine_for(request, req.index)
    return await query.classify(engine, req, files[0] if files else None)
