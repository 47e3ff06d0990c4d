"""`clipsearch index import|export` (clip-retrieval's embedding folders) and `clipsearch dedup`.

`import` and `export` join the `index` command that index_cmds registers (this module comes
after it in COMMAND_MODULES)."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from ._output import emit_json, fail, info, out
from .model_cmds import add_backend_arg

FMT = argparse.RawDescriptionHelpFormatter
FORMATS = ("clip-retrieval",)

IMPORT_EPILOG = """examples:
  clipsearch index import emb/ --from clip-retrieval --model hf:openai/clip-vit-base-patch32 \
      --index idx/
  clipsearch index import emb/ --from clip-retrieval --model SPEC --index idx/ --root /data/photos

DIR is the output folder of `clip-retrieval inference` (img_emb/, optional text_emb/, metadata/).
No image is re-encoded: --model must be the model clip-retrieval ran (its width is checked; its
text tower measures the recall and encodes the captions when text_emb/ is absent)."""

EXPORT_EPILOG = """examples:
  clipsearch index export --index idx/ --to clip-retrieval embeddings/
  clip-retrieval index --embeddings_folder embeddings/ --index_folder cr_index/"""

DEDUP_EPILOG = """examples:
  clipsearch dedup --index idx/
  clipsearch dedup --index idx/ --threshold 0.9 --json
  clipsearch dedup --index idx/ --csv > duplicates.csv

Groups of items whose images are near-duplicates (cosine >= threshold between linked pairs):
resized, re-encoded or lightly cropped copies. The CSV has one row per item: group, id, path."""


def register(sub: argparse._SubParsersAction) -> None:
    _register_dedup(sub)


def register_index_actions(isub: argparse._SubParsersAction) -> None:
    """`index import` and `index export` (app/cli/index_cmds.py hands over its ACTIONs)."""
    _register_import(isub)
    _register_export(isub)


def _register_import(isub: argparse._SubParsersAction) -> None:
    p = isub.add_parser(
        "import", help="publish another tool's embeddings as a version (no re-encoding)",
        formatter_class=FMT, epilog=IMPORT_EPILOG,
    )  # fmt: skip
    p.add_argument("folder", metavar="DIR", help="the embedding folder")
    p.add_argument("--from", dest="fmt", required=True, choices=FORMATS, help="its layout")
    p.add_argument("--model", required=True, metavar="SPEC", help="the model that computed them")
    p.add_argument("--index", required=True, metavar="DIR", help="index directory")
    p.add_argument(
        "--root", default=None, metavar="DIR",
        help="corpus root item paths are relative to (default: the images' common folder)",
    )  # fmt: skip
    p.add_argument("--factory", default=None, metavar="STR", help="FAISS factory string")
    p.add_argument("--memory-budget", default=None, metavar="SIZE", help="e.g. 2G or 512M")
    p.add_argument("--device", default=None, help="cpu, cuda … (default: CUDA if present)")
    add_backend_arg(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_import)


def _register_export(isub: argparse._SubParsersAction) -> None:
    p = isub.add_parser(
        "export", help="write the live version as another tool's embedding folder",
        formatter_class=FMT, epilog=EXPORT_EPILOG,
    )  # fmt: skip
    p.add_argument("out", metavar="OUT", help="a new or empty folder")
    p.add_argument("--index", required=True, metavar="DIR", help="index directory")
    p.add_argument("--to", dest="fmt", required=True, choices=FORMATS, help="the layout")
    p.set_defaults(func=cmd_export)


def _register_dedup(sub: argparse._SubParsersAction) -> None:
    from indexer.dedup import DEFAULT_THRESHOLD  # plain module constants: no torch, no FAISS

    p = sub.add_parser(
        "dedup", help="list near-duplicate images of an index", formatter_class=FMT,
        epilog=DEDUP_EPILOG,
    )  # fmt: skip
    p.add_argument("--index", required=True, metavar="DIR", help="index directory")
    p.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="T",
        help=f"cosine at or above which two images are duplicates (default {DEFAULT_THRESHOLD})",
    )  # fmt: skip
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print the groups as JSON")
    shape.add_argument("--csv", action="store_true", help="print group,id,path,min_score rows")
    p.set_defaults(func=cmd_dedup)


# -- commands -------------------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    from indexer.clip_retrieval import ImportOptions, import_embeddings
    from model import load_encoder

    if not Path(args.folder).is_dir():
        fail(f"{args.folder}: no such folder")
    if args.root is not None and not Path(args.root).is_dir():
        fail(f"--root {args.root}: no such folder")
    try:
        enc = load_encoder(args.model, device=args.device, backend=args.backend)
        opts = ImportOptions(root=args.root, factory=args.factory, memory_budget=args.memory_budget)
        report = import_embeddings(args.folder, args.index, enc, opts)
    except ValueError as e:
        fail(str(e))
    if args.json:
        emit_json(report.to_dict())
    else:
        for line in report.summary_lines():
            info(line)
        out(report.version or "")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from indexer.clip_retrieval import export_embeddings

    try:
        n = export_embeddings(args.index, args.out)
    except (ValueError, OSError) as e:
        fail(str(e))
    info(f"wrote {n} embeddings to {args.out}")
    out(str(args.out))
    return 0


def cmd_dedup(args: argparse.Namespace) -> int:
    from indexer.dedup import DedupOptions, find_duplicates

    try:
        report = find_duplicates(args.index, DedupOptions(threshold=args.threshold))
    except ValueError as e:
        fail(str(e).replace("threshold", "--threshold", 1))
    if args.json:
        emit_json(report.to_dict())
    elif args.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["group", "id", "path", "min_score"])
        for n, g in enumerate(report.groups):
            for i, p in zip(g.ids, g.paths, strict=True):
                w.writerow([n, i, p, round(g.min_score, 4)])
    else:
        for n, g in enumerate(report.groups):
            out(f"group {n}  ({len(g.ids)} items, cosine {g.min_score:.3f}…{g.max_score:.3f})")
            for i, p in zip(g.ids, g.paths, strict=True):
                out(f"  {i}  {p}")
        info(f"{len(report.groups)} groups, {report.duplicates} duplicates among {report.count}")
    return 0
