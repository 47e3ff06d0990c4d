"""POST /search: text→image, image→image, image→text, vector and weighted queries."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from .. import query
from ..bodies import read_body
from ..deps import EngineDep
from ..schemas import SearchRequest, SearchResponse, error_responses
from ._openapi import FILE, INT, NUM, STR, body

router = APIRouter(tags=["search"])

OPENAPI = body(
    SearchRequest,
    {
        "text": {"text": "a cat", "k": 5},
        "image_id": {"image_id": "1234", "k": 10},
        "image_b64": {"image_b64": "<base64 bytes>", "k": 5, "target": "texts"},
        "embedding": {"embedding": [0.01, -0.02, 0.03], "k": 10},
        "terms": {"terms": [{"text": "a beach"}, {"text": "people", "weight": -0.5}], "k": 10},
        "filtered": {"text": "a cat", "k": 5, "path_prefix": "pets/", "min_score": 0.2},
    },
    {
        "image": FILE,
        "text": STR,
        "image_id": STR,
        "embedding": {"type": "string", "description": "JSON array"},
        "terms": {"type": "string", "description": "JSON array of terms"},
        "k": INT,
        "target": {"type": "string", "enum": ["images", "texts"]},
        "min_score": NUM,
        "path_prefix": STR,
        "where": {"type": "string", "description": "JSON object"},
    },
    {
        "image upload": {"image": "<file>", "k": "5"},
        "image → texts": {"image": "<file>", "k": "5", "target": "texts"},
    },
)


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=error_responses(401, 404, 413, 415, 422, 503),
    openapi_extra=OPENAPI,
)
async def search(request: Request, engine: EngineDep) -> Response:
    """Search the index with a text, an image, a vector or weighted terms."""
    req, files = await read_body(
        request, SearchRequest, json_fields=("embedding", "terms", "where")
    )
    result = await query.search(engine, req, files[0] if files else None)
    # Already a validated model: serialise it once here instead of FastAPI re-validating it.
    # Image hits carry no "text" (the wire shape of DESIGN.md); text hits keep their nulls.
    exclude = {"hits": {"__all__": {"text"}}} if req.target == "images" else None
    return Response(result.model_dump_json(exclude=exclude), media_type="application/json")
