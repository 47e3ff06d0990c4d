"""`clipsearch serve`: run the HTTP service (uvicorn) over a published index."""

from __future__ import annotations

import argparse
import os

from ._output import fail, info
from .model_cmds import BACKEND_CHOICES

EPILOG = """examples:
  clipsearch serve --index ./my-index
  clipsearch serve --index ./my-index --host 0.0.0.0 --port 8080 --workers 2
  CLIPSEARCH_INDEX=./my-index CLIPSEARCH_API_KEY=secret clipsearch serve

every option can also be set by an environment variable: CLIPSEARCH_INDEX, CLIPSEARCH_MODEL,
CLIPSEARCH_HOST, CLIPSEARCH_PORT, CLIPSEARCH_WORKERS, CLIPSEARCH_API_KEY, CLIPSEARCH_CORS_ORIGINS,
CLIPSEARCH_MAX_BODY_BYTES, CLIPSEARCH_BATCHING, … (see docs/api.md)
"""

# flag → settings field (environment variable CLIPSEARCH_<FIELD>)
FLAGS = {
    "index": "INDEX",
    "model": "MODEL",
    "device": "DEVICE",
    "backend": "BACKEND",
    "host": "HOST",
    "port": "PORT",
    "workers": "WORKERS",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve search over HTTP (OpenAPI docs at /docs)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--index", metavar="DIR", help="index directory (env CLIPSEARCH_INDEX)")
    p.add_argument(
        "--model", metavar="SPEC", help="model spec (default: the one the index was built with)"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: CUDA if present)")
    p.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        help="torch (default) or ONNX Runtime on the CPU: onnx, onnx-int8 (env CLIPSEARCH_BACKEND)",
    )
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--workers", type=int, help="worker processes, each with model + index")
    p.add_argument(
        "--no-batching", action="store_true", help="encode each request alone (for comparison)"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    # Flags win over the environment; the worker processes read the settings back from it.
    for flag, env in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            os.environ[f"CLIPSEARCH_{env}"] = str(value)
    if args.no_batching:
        os.environ["CLIPSEARCH_BATCHING"] = "false"

    from app.settings import Settings

    try:
        settings = Settings()
    except ValidationError as e:
        fail(f"invalid setting: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}")
    if settings.index is None:
        fail("no index given: pass --index DIR or set CLIPSEARCH_INDEX")
    _check_index(settings.index)

    import uvicorn

    info(f"serving {settings.index} on http://{settings.host}:{settings.port} (docs at /docs)")
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=args.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


def _check_index(path) -> None:
    """Fail fast on a missing or empty index rather than serving 503 forever."""
    from indexer import live_version

    if not path.is_dir():
        fail(f"{path}: no such index directory")
    if live_version(path) is None:
        fail(f"{path}: no published index version (run `clipsearch index build` first)")
