"""GET /indexes: the indexes this server serves (several with `serve --index a=DIR --index
b=DIR2`), each with its model; requests choose one with their `index` field."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..deps import EngineDep
from ..engine import SearchEngine
from ..schemas import IndexesResponse, IndexInfo, error_responses

router = APIRouter(tags=["indexes"])


@router.get("/indexes", response_model=IndexesResponse, responses=error_responses(401, 503))
async def indexes(request: Request, default: EngineDep) -> IndexesResponse:
    """The served indexes, the default first: names, sizes, models and dimensions."""
    engines = request.app.state.engines
    return IndexesResponse(
        default=default.name,
        indexes=[_info(name, engine, engine is default) for name, engine in engines.items()],
    )


def _info(name: str, engine: SearchEngine, default: bool) -> IndexInfo:
    with engine.lease() as v:  # a living index: its version with the writes since
        return IndexInfo(
            name=name,
            default=default,
            model=engine.model_spec,
            backend=engine.backend,
            dim=engine.dim,
            count=v.count,
            index_version=v.id,
            has_texts=v.has_texts,
            writable=engine.writable,
        )
