"""`clipsearch index build|update|info|texts` and `clipsearch search`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ._output import emit_json, fail, info, out
from .model_cmds import add_backend_arg

BUILD_EPILOG = """examples:
  clipsearch index build photos/ --index idx/
  clipsearch index build captions.csv --index idx/ --model hf:openai/clip-vit-base-patch32
  clipsearch index build photos/ --index idx/ --memory-budget 4G --workers 8
  clipsearch index update photos/ --index idx/
  clipsearch index build /shared/photos --index /shared/idx --engine ray --ray-address head:6379

SOURCE is a folder (searched recursively) or a CSV/TSV/JSONL manifest with a `path` column and
optional `caption` and metadata columns. Unreadable files are skipped and listed in the report.
A killed build resumes from its finished embedding shards when the same command is run again."""

SEARCH_EPILOG = """examples:
  clipsearch search "a cup of coffee" --index idx/
  clipsearch search --image query.jpg --index idx/ -k 20 --json
  clipsearch search "a red car" --index idx/ --path-prefix cars/ --where color=red
  clipsearch search --image photo.jpg --index idx/ --texts      (image → captions/labels)"""


def register(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    idx = sub.add_parser(
        "index",
        help="build, update and inspect image indexes",
        formatter_class=fmt,
        epilog=BUILD_EPILOG,
    )
    isub = idx.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    for name, helptext in (
        ("build", "index every image of a folder or manifest into a new version"),
        ("update", "re-index only new/changed files, drop deleted ones, keep renamed ones"),
    ):
        b = isub.add_parser(name, help=helptext, formatter_class=fmt, epilog=BUILD_EPILOG)
        b.add_argument("source", metavar="SOURCE", help="image folder or CSV/TSV/JSONL manifest")
        b.add_argument("--index", required=True, metavar="DIR", help="index directory")
        b.add_argument(
            "--model",
            default="starter" if name == "build" else None,
            metavar="SPEC",
            help="starter (default), hf:<hub id or dir>, or a checkpoint dir"
            + ("" if name == "build" else " (default: the live version's model)"),
        )
        b.add_argument("--device", default=None, help="cpu, cuda … (default: CUDA if present)")
        add_backend_arg(b)
        b.add_argument("--batch-size", type=int, default=32, metavar="N")
        b.add_argument(
            "--workers",
            type=int,
            default=None,
            metavar="N",
            help="decode processes (default: by device and cores)",
        )
        b.add_argument(
            "--factory",
            default=None,
            metavar="STR",
            help='FAISS factory string, e.g. "Flat", "IVF1024,SQ8", "HNSW32" '
            "(default: chosen by corpus size and memory budget)",
        )
        b.add_argument(
            "--memory-budget",
            default=None,
            metavar="SIZE",
            help="cap for the index build, e.g. 2G or 512M",
        )
        b.add_argument(
            "--shard-size",
            type=int,
            default=None,
            metavar="N",
            help="images per resumable embedding shard (default 2048)",
        )
        b.add_argument(
            "--engine",
            choices=("local", "ray"),
            default="local",
            help="where decode + encode run: this machine (default) or a Ray cluster "
            "(needs the distributed extra)",
        )
        b.add_argument(
            "--ray-address",
            default=None,
            metavar="ADDR",
            help="Ray cluster to join, e.g. head:6379 (default: a private local Ray instance)",
        )
        b.add_argument("--no-progress", action="store_true", help="no progress bar")
        b.add_argument("--json", action="store_true", help="print the build report as JSON")
        b.set_defaults(func=cmd_build, mode=name)

    i = isub.add_parser(
        "info",
        help="show versions, model, counts, recall and sizes",
        formatter_class=fmt,
        epilog="examples:\n  clipsearch index info idx/\n  clipsearch index info idx/ --json",
    )
    i.add_argument("index", metavar="DIR", help="index directory")
    i.add_argument("--version", default=None, help="a version id (default: the live one)")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)

    t = isub.add_parser(
        "texts",
        help="add a caption/label corpus for image→text search",
        formatter_class=fmt,
        epilog="examples:\n  clipsearch index texts labels.txt --index idx/\n"
        "  clipsearch index texts --index idx/     (use the items' captions)",
    )
    t.add_argument(
        "file",
        nargs="?",
        default=None,
        help="text file, one text per line (default: the manifest's captions)",
    )
    t.add_argument("--index", required=True, metavar="DIR", help="index directory")
    t.add_argument("--model", default=None, metavar="SPEC", help="default: the index's model")
    t.set_defaults(func=cmd_texts)

    o = isub.add_parser(
        "ondisk",
        help="republish the live version with an on-disk IVF index (for indexes larger than RAM)",
        formatter_class=fmt,
        epilog="examples:\n  clipsearch index ondisk --index idx/\n"
        "  clipsearch index ondisk --index idx/ --code SQ8 --nlist 65536 --shards 16\n\n"
        "The inverted lists go to images.ivfdata, which the server maps instead of loading;\n"
        "nprobe is tuned to recall@10 >= 0.95 with caption-like text queries.",
    )
    o.add_argument("--index", required=True, metavar="DIR", help="index directory")
    o.add_argument("--code", default="Flat", help="list codes: Flat (default), SQ8 or SQfp16")
    o.add_argument("--nlist", type=int, default=None, help="IVF lists (default: ~sqrt(n))")
    o.add_argument("--shards", type=int, default=None, help="row shards built in parallel")
    o.add_argument("--workers", type=int, default=None, help="shards built at once")
    o.set_defaults(func=cmd_ondisk)

    s = sub.add_parser(
        "search", help="search an index by text or image", formatter_class=fmt, epilog=SEARCH_EPILOG
    )
    s.add_argument("text", nargs="?", default=None, help="query text")
    s.add_argument("--image", default=None, metavar="FILE", help="query image instead of text")
    s.add_argument("--index", required=True, metavar="DIR", help="index directory")
    s.add_argument("-k", type=int, default=10, metavar="N", help="number of hits (default 10)")
    s.add_argument("--path-prefix", default=None, help="only items whose path starts with this")
    s.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only items whose metadata KEY equals VALUE (repeatable)",
    )
    s.add_argument("--min-score", type=float, default=None, help="drop hits below this cosine")
    s.add_argument("--texts", action="store_true", help="search the caption/label corpus")
    s.add_argument("--model", default=None, metavar="SPEC", help="default: the index's model")
    s.add_argument("--device", default=None, help="cpu, cuda … (default: CUDA if present)")
    add_backend_arg(s)
    s.add_argument("--json", action="store_true", help='print {"hits": [...], ...}')
    s.set_defaults(func=cmd_search)


def _encoder(spec: str, device: str | None, backend: str = "torch"):
    from model import load_encoder

    try:
        return load_encoder(spec, device=device, backend=backend)
    except ValueError as e:  # e.g. an unavailable device
        fail(str(e))


def cmd_build(args: argparse.Namespace) -> int:
    from indexer import build_index, update_index
    from indexer.pipeline import live_model_spec

    if args.batch_size < 1 or (args.workers is not None and args.workers < 0):
        fail("--batch-size must be ≥ 1 and --workers ≥ 0")
    if args.shard_size is not None and args.shard_size < 1:
        fail("--shard-size must be ≥ 1")
    if not Path(args.source).exists():
        fail(f"{args.source}: no such folder or manifest")
    if args.ray_address and args.engine != "ray":
        fail("--ray-address needs --engine ray")
    if args.engine == "ray" and args.backend != "torch":
        fail("--backend applies to the local engine; Ray workers run the model in PyTorch")
    spec = args.model
    if spec is None:  # update: the live version's model
        spec = live_model_spec(args.index) or "starter"
    enc = _encoder(spec, args.device, args.backend)
    run = build_index if args.mode == "build" else update_index
    if args.engine == "ray":
        run = _ray_runner(args)
    try:
        report = run(
            args.source,
            args.index,
            enc,
            batch_size=args.batch_size,
            workers=args.workers,
            factory=args.factory,
            memory_budget=args.memory_budget,
            progress=not args.no_progress,
            shard_size=args.shard_size,
        )
    except ValueError as e:
        fail(str(e))
    if args.json:
        emit_json(report.to_dict())
    else:
        for line in report.summary_lines():
            info(line)
        out(report.version or "")
    return 0


def _ray_runner(args: argparse.Namespace):
    import functools
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        fail("--engine ray needs Ray: pip install 'clipsearch[distributed]'")
    from indexer.ray_engine import RayOptions, ray_build_index

    opts = RayOptions(address=args.ray_address)
    return functools.partial(ray_build_index, mode=args.mode, ray=opts)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def cmd_info(args: argparse.Namespace) -> int:
    from indexer import live_version, open_index

    v = open_index(args.index, version=args.version)
    try:
        m = v.manifest
        versions = []
        for d in sorted((Path(args.index) / "versions").iterdir()):
            try:
                vm = json.loads((d / "manifest.json").read_text())
            except (OSError, ValueError):
                vm = {}
            versions.append(
                {
                    "version": d.name,
                    "created_at": vm.get("created_at"),
                    "count": vm.get("count"),
                    "live": d.name == live_version(args.index),
                    "size_bytes": _dir_size(d),
                }
            )
        report = m.get("build_report", {})
        data = {
            "version": v.id,
            "model": v.model_spec,
            "fingerprint": v.fingerprint,
            "count": v.count,
            "dim": v.dim,
            "metric": m.get("metric"),
            "factory": v.factory,
            "search_params": m.get("search_params", {}),
            "recall_at_10": m.get("recall_at_10"),
            "created_at": m.get("created_at"),
            "root": m.get("root"),
            "has_texts": v.has_texts,
            "texts_count": m.get("texts_count", 0),
            "skipped": len(report.get("skipped", [])),
            "size_bytes": _dir_size(v.path),
            "files": {k: f["size"] for k, f in m["files"].items()},
            "versions": versions,
        }
    finally:
        v.close()
    if args.json:
        emit_json(data)
        return 0
    for key in (
        "version",
        "model",
        "count",
        "dim",
        "factory",
        "search_params",
        "recall_at_10",
        "created_at",
        "root",
        "texts_count",
        "skipped",
        "size_bytes",
    ):
        out(f"{key:14} {data[key]}")
    out("versions:")
    for ver in versions:
        mark = "*" if ver["live"] else " "
        out(f" {mark} {ver['version']}  {ver['count']} items  {ver['size_bytes']:,} bytes")
    return 0


def cmd_texts(args: argparse.Namespace) -> int:
    from indexer import add_texts

    texts = None
    if args.file:
        try:
            texts = Path(args.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            fail(f"{args.file}: cannot read ({e})")
    try:
        version = add_texts(args.index, texts, args.model)
    except (ValueError, TypeError) as e:
        fail(str(e))
    out(version)
    return 0


def cmd_ondisk(args: argparse.Namespace) -> int:
    from indexer.ondisk import make_ondisk_version

    for name in ("nlist", "shards", "workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            fail(f"--{name} must be ≥ 1")
    try:
        manifest = make_ondisk_version(
            args.index, nlist=args.nlist, code=args.code, shards=args.shards, workers=args.workers
        )
    except ValueError as e:
        fail(str(e))
    info(
        f"{manifest['factory']} on disk, {manifest['search_params']}, "
        f"recall@10 {manifest['recall_at_10']}"
    )
    out(manifest["version"])
    return 0


def _parse_where(pairs: list[str]) -> dict[str, str]:
    where = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            fail(f"--where takes KEY=VALUE, got {p!r}")
        where[key] = value
    return where


def cmd_search(args: argparse.Namespace) -> int:
    from indexer import open_index
    from model import load_image

    if (args.text is None) == (args.image is None):
        fail(
            'give either a query text or --image FILE, e.g. clipsearch search "a cat" --index idx/'
        )
    if args.k < 1 or args.k > 10_000:
        fail("-k must be between 1 and 10000")
    where = _parse_where(args.where)
    image = load_image(args.image) if args.image else None
    spec = args.model or open_index(args.index).model_spec
    enc = _encoder(spec, args.device, args.backend)
    v = open_index(args.index, expected_fingerprint=enc.fingerprint)
    try:
        q = enc.encode_images([image]) if image is not None else enc.encode_texts([args.text])
        if args.texts:
            hits = [
                {"id": str(h.id), "score": round(h.score, 6), "text": h.text}
                for h in v.search_texts(q, args.k)[0]
            ]
        else:
            try:
                found = v.search(
                    q,
                    args.k,
                    path_prefix=args.path_prefix,
                    where=where or None,
                    min_score=args.min_score,
                )[0]
            except ValueError as e:
                fail(str(e))
            hits = [_hit_json(h) for h in found]
        result = {"hits": hits, "model": enc.spec, "index_version": v.id}
    finally:
        v.close()
    if args.json:
        emit_json(result)
        return 0
    for rank, h in enumerate(hits, start=1):
        out(f"{rank:3}  {h['score']:.4f}  {h.get('path') or h.get('text')}")
    return 0


def _hit_json(h) -> dict:
    item = h.item
    return {
        "id": str(item.id),
        "score": round(h.score, 6),
        "path": item.path,
        "url": f"/images/{item.id}",
        "thumbnail_url": f"/images/{item.id}/thumbnail",
        "caption": item.caption,
        "width": item.width,
        "height": item.height,
    }
