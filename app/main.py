"""`create_app(settings)` composes the service: settings → engine (loaded in the lifespan, off
the event loop) → middleware → routes. Nothing is loaded at import time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from model import Encoder

from .deps import require_api_key
from .engine import SearchEngine, load_engines
from .errors import error_body, install_error_handlers
from .limits import BodySizeLimit
from .metrics import Metrics
from .routes import admin, classify, embed, health, images, indexes, knn_service, search, writes
from .settings import Settings

log = logging.getLogger(__name__)

DEFAULT_STATIC = Path(__file__).resolve().parent / "static"


def create_app(
    settings: Settings | None = None,
    *,
    encoder: Encoder | None = None,
    engine: SearchEngine | None = None,
    on_load_error: Callable[[str], None] | None = None,
) -> FastAPI:
    """The ASGI app. `encoder` reuses an already loaded model (tests, the demo); `engine` injects
    a ready engine outright (tests with fakes); `on_load_error` hears why loading failed (the
    server stops on it; without it /readyz reports the reason)."""
    settings = settings or Settings()
    metrics = engine.metrics if engine is not None else Metrics()
    # Swagger UI from the package's own files: /docs works with no internet. (No ReDoc: its
    # bundle still fetches its logo from a CDN.)
    app = FastAPIOffline(
        redoc_url=None,
        title="clipsearch",
        summary="Semantic image search over a FAISS index with CLIP-style encoders",
        version="0.1.0",
        lifespan=_lifespan(settings, encoder, engine, metrics, on_load_error),
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.engine = None  # the default index's engine
    app.state.engines = {}  # every index's engine by name, the default first
    app.state.load_error = None
    install_error_handlers(app)
    _add_routes(app, settings)
    _add_middleware(app, settings, metrics)
    _openapi_from_config(app, settings)
    return app


def _lifespan(
    settings: Settings,
    encoder: Encoder | None,
    engine: SearchEngine | None,
    metrics: Metrics,
    on_load_error: Callable[[str], None] | None,
) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = None
        app.state.engines = {}
        app.state.load_error = None
        tasks = []
        if engine is not None:
            engine.start()
            app.state.engines = {engine.name: engine}
            app.state.engine = engine
        else:
            # Load in the background so /healthz answers at once and /readyz flips when done.
            load = _load(app, settings, encoder, metrics, on_load_error)
            tasks.append(asyncio.create_task(load))
        if settings.reload_poll_s > 0:
            tasks.append(asyncio.create_task(_follow_current(app, settings.reload_poll_s)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            engines = list(app.state.engines.values())
            app.state.engine = None
            app.state.engines = {}
            for e in engines:
                await e.close()

    return lifespan


def _add_routes(app: FastAPI, settings: Settings) -> None:
    secured = [Depends(require_api_key)]
    app.include_router(health.probes)
    for r in (search.router, classify.router, embed.router, images.router, health.router,
              writes.router, indexes.router, knn_service.router):  # fmt: skip
        app.include_router(r, dependencies=secured)
    app.include_router(admin.router)
    static = settings.static_dir or DEFAULT_STATIC
    if static.is_dir():
        app.router.routes.append(PageMount(static, app.router.routes))


def _add_middleware(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    # Middleware runs outermost-last-added: body limit → CORS → metrics → routes.
    app.add_middleware(RequestMetrics, metrics=metrics)
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ShutdownGuard)


async def _load(
    app: FastAPI,
    settings: Settings,
    encoder: Encoder | None,
    metrics: Metrics,
    on_load_error: Callable[[str], None] | None,
) -> None:
    t0 = time.perf_counter()
    try:
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        engines = await asyncio.to_thread(load_engines, settings, encoder, metrics)
        for engine in engines.values():
            engine.start()
            if settings.warmup:
                await asyncio.to_thread(engine.warmup)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - reported by /readyz, the process stays up
        log.error("could not load model and index: %s", e)
        app.state.load_error = str(e)
        if on_load_error is not None:
            on_load_error(str(e))
        return
    app.state.engines = engines
    app.state.engine = next(iter(engines.values()))  # set last: it is what "ready" means
    for name, engine in engines.items():
        log.info(
            "ready in %.1fs: index %s, model %s (%s backend), version %s (%d items)",
            time.perf_counter() - t0,
            name,
            engine.model_spec,
            engine.backend,
            engine.version.id,
            engine.version.count,
        )


async def _follow_current(app: FastAPI, interval: float) -> None:
    """Reload whenever CURRENT names another version: how every worker of a multi-process
    server picks up a newly published index (POST /admin/reload reaches just one of them)."""
    from indexer import live_version

    refused: dict[str, str | None] = {}  # a version that failed once is not retried
    while True:
        await asyncio.sleep(interval)
        engines: dict[str, SearchEngine] = app.state.engines
        for name, engine in list(engines.items()):
            live = None
            try:
                live = await asyncio.to_thread(live_version, engine.index_dir)
                if live is not None and live not in (engine.version.id, refused.get(name)):
                    await engine.reload()
            except Exception as e:  # noqa: BLE001 - keep serving the old version
                refused[name] = live
                log.warning(
                    "automatic reload of %s failed, still serving %s: %s",
                    name,
                    engine.version.id,
                    e,
                )


def _openapi_from_config(app: FastAPI, settings: Settings) -> None:
    """The OpenAPI document of this configuration (limits, keys, the model's dimension, real
    ids in examples). Cached once the engine is loaded; until then built on each request."""
    from .routes._openapi import Runtime, document

    base = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        engine: SearchEngine | None = app.state.engine
        rt = Runtime(settings)
        if engine is not None:
            names = tuple(app.state.engines)
            rt = Runtime(settings, engine.dim, engine.example_id(), engine.version.has_texts, names)
        spec = document(base(), rt)
        app.openapi_schema = spec if engine is not None else None
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


class PageMount(Mount):
    """The web page's static files at "/", without shadowing the API: a path that an API route
    knows under another method still answers 405, not the static 404."""

    def __init__(self, directory: Path, api_routes: list[BaseRoute]) -> None:
        super().__init__("/", app=StaticFiles(directory=directory, html=True), name="static")
        self._api_routes = list(api_routes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if any(r.matches(scope)[0] == Match.PARTIAL for r in self._api_routes):
            return Match.NONE, {}
        return super().matches(scope)


class RequestMetrics:
    """Counts requests and their latency per route template (not per raw path, which would let
    clients blow up the label set)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(route, scope["method"], status, time.perf_counter() - t0)


class ShutdownGuard:
    """Outermost middleware: a request the server cancels (uvicorn does so to every request still
    running when its graceful-shutdown timeout ends) answers 503 + Retry-After, not uvicorn's
    500: a retry reaches another replica, or this one once restarted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            if started:
                raise
            log.warning("%s %s cancelled by shutdown: 503", scope["method"], scope["path"])
            await _send_json(send, 503, "shutting_down", SHUTDOWN_MESSAGE, {"retry-after": "5"})


SHUTDOWN_MESSAGE = "the server is shutting down; retry in a few seconds"


async def _send_json(send: Send, status: int, code: str, message: str, headers: dict) -> None:
    payload = json.dumps(error_body(code, message)).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
        *((k.encode(), v.encode()) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
