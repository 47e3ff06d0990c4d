"""The `clipsearch` command. Subcommands live in small modules that each add their parsers;
heavy imports (torch, faiss) happen inside the commands so `--help` stays instant."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from . import demo_cmd, index_cmds, interop_cmds, model_cmds, serve_cmd, train_cmds
from ._output import fail

# Each module exposes register(subparsers); order here is the order in `clipsearch --help`.
COMMAND_MODULES = [model_cmds, index_cmds, interop_cmds, serve_cmd, demo_cmd, train_cmds]

EPILOG = """examples:
  clipsearch demo                                build a demo index and serve the web page
  clipsearch model starter                       build the offline starter model (once)
  clipsearch classify cat.jpg --labels "a cat,a dog,a cup of coffee"
  clipsearch embed --text "a red car" --text "a bicycle"
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipsearch",
        description="Semantic image search: encode, index, search and serve images with CLIP.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--version", action="version", version=f"clipsearch {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clipsearch")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (
        logging.WARNING
        if args.verbose == 0
        else logging.INFO
        if args.verbose == 1
        else logging.DEBUG
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # a first load exports the model to ONNX for the default backend: say so while it runs
    logging.getLogger("model.onnx_export").setLevel(min(level, logging.INFO))
    if args.verbose == 0:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from model.errors import ClipsearchError

    try:
        return int(args.func(args) or 0)
    except ClipsearchError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except BrokenPipeError:  # e.g. `clipsearch embed … | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
