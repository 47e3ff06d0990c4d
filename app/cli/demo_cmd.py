"""`clipsearch demo`: starter model + a captioned demo corpus + its index, then serve."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._output import info

EPILOG = """examples:
  clipsearch demo                          build everything under ./data/demo (once) and serve
  clipsearch demo --port 8080 --no-serve   only build; serve later with `clipsearch serve`
  clipsearch demo --rebuild                throw away the demo index and build it again
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="build the starter model and a demo index, then serve the web page",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dir", default="data/demo", type=Path, help="where the demo lives")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--no-serve", action="store_true", help="build only, do not start the server")
    p.add_argument("--rebuild", action="store_true", help="rebuild the corpus and the index")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    import shutil

    from indexer import add_texts, build_index, live_version, open_index
    from model import load_encoder
    from model.starter import ensure_starter

    root: Path = args.dir
    corpus, index = root / "corpus", root / "index"
    if args.rebuild:
        shutil.rmtree(root, ignore_errors=True)

    info(f"starter model: {ensure_starter()}")
    manifest = corpus / "manifest.csv"
    if not manifest.is_file():
        from app.demo import write_demo_corpus

        manifest = write_demo_corpus(corpus)
        info(f"demo corpus written to {corpus}")
    if live_version(index) is None:
        encoder = load_encoder("starter")
        build_index(manifest, index, encoder, progress=True)
        add_texts(index, None, encoder)  # the captions, for image → text search
    version = open_index(index)
    info(f"demo index {index}: version {version.id}, {version.count} images")
    version.close()
    if args.no_serve:
        return 0

    from .serve_cmd import cmd_serve

    serve_args = argparse.Namespace(
        index=str(index),
        model=None,
        device=None,
        host=args.host,
        port=args.port,
        workers=None,
        no_batching=False,
        log_level="warning",
    )
    info(f"open http://{args.host}:{args.port} in a browser (Ctrl+C stops)")
    return cmd_serve(serve_args)
