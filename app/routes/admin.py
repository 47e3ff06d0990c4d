"""POST /admin/reload: swap to the live (or a named) index version without downtime."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from ..deps import IndexEngineDep, require_admin_key
from ..schemas import ReloadResponse, error_responses

router = APIRouter(tags=["admin"], dependencies=[Depends(require_admin_key)])


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    responses={
        403: {"description": "No admin key configured", "model": None},
        **error_responses(401, 404, 409, 503),
    },
)
async def reload(
    engine: IndexEngineDep,
    version: str | None = Query(None, max_length=128, description="default: CURRENT"),
) -> ReloadResponse:
    """Open the live index version, check it, and swap it in atomically."""
    old, new, v = await engine.reload(version)
    return ReloadResponse(
        index_version=new, previous_version=old, changed=old != new, count=v.count
    )
