"""`serve(settings)`: the one way the HTTP service starts, used by `clipsearch serve` and
`clipsearch demo` alike. A server that can never become ready (the model or the index cannot
load) stops and raises instead of answering 503 forever."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from model.errors import ClipsearchError

from .settings import Settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

    from model import Encoder

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 10  # requests in flight at SIGTERM get this long to finish


class ServeError(ClipsearchError):
    """The service cannot start or can never become ready."""

    code = "serve_failed"


def serve(settings: Settings, *, encoder: Encoder | None = None) -> None:
    """Run the service until it is stopped. `encoder` hands over a model the caller already
    loaded (it must match the index); with several workers each process loads its own."""
    check_index(settings)
    logging.getLogger("app").setLevel(logging.INFO)  # the "ready" line and load errors show
    limit_blas_threads()
    try:
        if settings.workers > 1:
            _serve_workers(settings)
        else:
            _serve_in_process(settings, encoder)
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl+C it drained on: a normal stop
        log.info("stopped")


def check_index(settings: Settings) -> None:
    """Fail fast on a missing or unpublished index rather than serving 503 forever."""
    from indexer import live_version

    indexes = settings.index_map()
    if not indexes:
        raise ServeError("no index given: pass --index DIR or set CLIPSEARCH_INDEX")
    for path in indexes.values():
        if not path.is_dir():
            raise ServeError(f"{path}: no such index directory")
        if live_version(path) is None:
            raise ServeError(
                f"{path}: no published index version (run `clipsearch index build` first)"
            )


def limit_blas_threads() -> None:
    """One BLAS thread: the server's numpy work is one small query at a time, and OpenBLAS's
    idle workers spin beside the model (~1 ms of CPU per request, docs/benchmarks.md, Service).
    The variable covers libraries loaded later and worker processes; threadpoolctl those
    already loaded. A value set by the user wins."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from threadpoolctl import threadpool_limits

    threadpool_limits(int(os.environ["OPENBLAS_NUM_THREADS"]), user_api="blas")


def _serve_in_process(settings: Settings, encoder: Encoder | None) -> None:
    import uvicorn

    from .main import create_app

    failures: list[str] = []
    server: uvicorn.Server | None = None

    def stop_on_load_error(message: str) -> None:
        failures.append(message)
        if server is not None:
            server.should_exit = True

    app = create_app(settings, encoder=encoder, on_load_error=stop_on_load_error)
    server = uvicorn.Server(_uvicorn_config(app, settings))
    server.run()
    if failures:
        raise ServeError(f"could not load the model and index: {failures[0]}")


def _serve_workers(settings: Settings) -> None:
    """Several processes: uvicorn imports the app factory in each, so the settings travel in
    the environment. The models are loaded and checked against the indexes here first, so a
    misconfiguration exits at once instead of every worker answering 503."""
    import uvicorn

    from .engine import load_encoders

    load_encoders(settings)
    os.environ.update(settings.to_env())
    uvicorn.run(
        "app.server:create_app_from_env",
        factory=True,
        workers=settings.workers,
        **_uvicorn_kwargs(settings),
    )


def create_app_from_env() -> FastAPI:
    """The factory each of several uvicorn worker processes imports (`serve` puts the settings
    in CLIPSEARCH_* variables for them)."""
    from .main import create_app

    limit_blas_threads()
    return create_app(Settings())


def _uvicorn_kwargs(settings: Settings) -> dict:
    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }


def _uvicorn_config(app: object, settings: Settings) -> uvicorn.Config:
    import uvicorn

    return uvicorn.Config(app, **_uvicorn_kwargs(settings))
