"""Probes and introspection: /healthz, /readyz, /stats, /metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from ..deps import EngineDep
from ..metrics import live_lines
from ..schemas import error_responses

probes = APIRouter(tags=["health"])  # open even when an API key is set
router = APIRouter(tags=["health"])


@probes.get("/healthz")
async def healthz() -> dict[str, str]:
    """Alive: the process answers (the model may still be loading)."""
    return {"status": "ok"}


@probes.get("/readyz", responses=error_responses(503))
async def readyz(request: Request, engine: EngineDep) -> dict[str, Any]:
    """Ready: every index and its model are loaded and warmed up (the fields describe the
    default index; `indexes` names them all)."""
    return {
        "status": "ready",
        "model": engine.model_spec,
        "backend": engine.backend,
        "index_version": engine.version.id,
        "writable": engine.writable,
        "index": engine.name,
        "indexes": list(request.app.state.engines),
    }


@router.get("/stats", responses=error_responses(401, 503))
async def stats(request: Request, engine: EngineDep) -> dict[str, Any]:
    """Model, index version, counts, batching and cache statistics of the default index, and
    under `indexes` the same for every index by name."""
    engines = request.app.state.engines
    base = engine.stats()
    every = {name: base if e is engine else e.stats() for name, e in engines.items()}
    return {**base, "index": engine.name, "indexes": every}


@router.get("/metrics", response_class=PlainTextResponse, responses=error_responses(401))
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus metrics: requests, latency per route and per stage, batch sizes, caches, and a
    living index's delta, tombstones, log size, last compaction and write latency."""
    m = request.app.state.metrics
    engine = getattr(request.app.state, "engine", None)
    m.set_gauge("ready", 1.0 if engine is not None else 0.0)
    text = ""
    if engine is not None:
        m.set_gauge("index_items", engine.version.count)
        m.set_gauge("encoder_queue", engine.queued())
        m.set_gauge("writable", 1.0 if engine.writable else 0.0)
        if engine.live is not None:
            text = "\n".join(live_lines(engine.live.stats(), time.time())) + "\n"
    return PlainTextResponse(m.render() + text, media_type="text/plain; version=0.0.4")
