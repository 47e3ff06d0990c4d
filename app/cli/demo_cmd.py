"""`clipsearch demo`: starter model + a captioned demo corpus + its index, then serve."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._output import info
from ._settings_args import add_settings_args, settings_from_args

EPILOG = """examples:
  clipsearch demo                          build everything under ./data/demo (once) and serve
  clipsearch demo --port 8080 --no-serve   only build; serve later with `clipsearch serve`
  clipsearch demo --rebuild                throw away the demo index and build it again
  clipsearch demo --backend onnx           serve the starter model through ONNX Runtime
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="build the starter model and a demo index, then serve the web page",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dir", default="data/demo", type=Path, help="where the demo lives")
    p.add_argument("--no-serve", action="store_true", help="build only, do not start the server")
    p.add_argument("--rebuild", action="store_true", help="rebuild the corpus and the index")
    add_settings_args(p, exclude=frozenset({"index", "model"}))
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from app.server import serve

    root: Path = args.dir.expanduser().resolve()
    defaults = {"log_level": "warning"} if args.log_level is None else {}
    settings = settings_from_args(args, index=root / "index", **defaults)
    encoder = build_demo(root, rebuild=args.rebuild, device=settings.device,
                         backend=settings.backend)  # fmt: skip
    if args.no_serve:
        return 0
    info(f"open http://{settings.host}:{settings.port} in a browser (Ctrl+C stops)")
    serve(settings, encoder=encoder)  # the model loaded for the build serves too
    return 0


def build_demo(root: Path, *, rebuild: bool, device: str | None, backend: str):
    """The starter model, the demo corpus and its index (each only once); → the encoder."""
    import shutil

    from indexer import add_texts, build_index, live_version, open_index
    from model import load_encoder
    from model.samples.demo import write_demo_corpus

    corpus, index = root / "corpus", root / "index"
    if rebuild:
        shutil.rmtree(root, ignore_errors=True)
    encoder = load_encoder("starter", device=device, backend=backend)
    info(f"starter model: {encoder.spec} ({encoder.backend} backend)")
    manifest = corpus / "manifest.csv"
    if not manifest.is_file():
        manifest = write_demo_corpus(corpus)
        info(f"demo corpus written to {corpus}")
    if live_version(index) is None:
        build_index(manifest, index, encoder)
        add_texts(index, None, encoder)  # the captions, for image → text search
    version = open_index(index, expected_fingerprint=encoder.fingerprint)
    info(f"demo index {index}: version {version.id}, {version.count} images")
    version.close()
    return encoder
