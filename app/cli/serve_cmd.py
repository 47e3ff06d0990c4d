"""`clipsearch serve`: run the HTTP service over a published index."""

from __future__ import annotations

import argparse

from ._settings_args import add_settings_args, settings_from_args

EPILOG = """examples:
  clipsearch serve --index ./my-index
  clipsearch serve --index ./my-index --host 0.0.0.0 --port 8080 --workers 2
  clipsearch serve --index ./my-index --backend onnx
  clipsearch serve --index photos=./photos-index --index products=./products-index
  clipsearch serve --index indices.json          # clip-retrieval's {"name": "folder", …}
  CLIPSEARCH_INDEX=./my-index CLIPSEARCH_API_KEY=secret clipsearch serve

every option can also be set by an environment variable: --max-batch is CLIPSEARCH_MAX_BATCH;
a flag wins over the variable (docs/api.md lists them all). With several indexes the first is the
default; requests choose another with their `index` field (GET /indexes lists them). The process
exits non-zero, with the reason, when a model or an index cannot be loaded.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve search over HTTP (OpenAPI docs at /docs)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_args(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from app.server import serve

    settings = settings_from_args(args)
    serve(settings)
    return 0
