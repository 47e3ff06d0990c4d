"""POST /search: text→image, image→image, image→text, vector and weighted queries."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from .. import query
from ..bodies import FormSpec, read_body, read_where
from ..deps import engine_for
from ..schemas import SearchRequest, SearchResponse, error_responses
from ._openapi import body_placeholder

router = APIRouter(tags=["search"])

# A form carries an uploaded image; every other query form is JSON.
FORM = FormSpec(
    readers={"where": read_where},
    # exclude_self is about image_id queries, which a form cannot carry; dedup goes as JSON too
    json_only=("text", "image_id", "image_b64", "embedding", "terms", "exclude_self", "dedup"),
)


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=error_responses(401, 404, 413, 415, 422, 503),
    openapi_extra=body_placeholder("search"),
)
async def search(request: Request) -> Response:
    """Search the index with a text, an image, a vector or weighted terms."""
    req, files = await read_body(request, SearchRequest, FORM)
    engine = engine_for(request, req.index)
    result = await query.search(engine, req, files[0] if files else None)
    # Already a validated model: serialise it once here instead of FastAPI re-validating it.
    # Image hits carry no "text" (the wire shape of DESIGN.md); text hits keep their nulls.
    exclude = {"hits": {"__all__": {"text"}}} if req.target == "images" else None
    return Response(result.model_dump_json(exclude=exclude), media_type="application/json")
