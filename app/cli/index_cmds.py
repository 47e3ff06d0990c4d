"""`clipsearch index build|update|info|texts|ondisk` and `clipsearch search`."""

from __future__ import annotations

import argparse
import contextlib
import threading
from pathlib import Path
from typing import Any

from indexer.types import MAX_K  # a plain constant: loads neither torch nor faiss
from model.backends import INT8_BACKENDS

from . import interop_cmds
from ._output import emit_json, fail, info, out
from .model_cmds import DEFAULT_HELP, add_backend_arg, resolve_model_arg

FMT = argparse.RawDescriptionHelpFormatter

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

INFO_EPILOG = """examples:
  clipsearch index info --index idx/
  clipsearch index info --index idx/ --json"""

TEXTS_EPILOG = """examples:
  clipsearch index texts labels.txt --index idx/
  clipsearch index texts --index idx/     (use the items' captions)"""

ONDISK_EPILOG = """examples:
  clipsearch index ondisk --index idx/
  clipsearch index ondisk --index idx/ --code SQ8 --nlist 65536 --shards 16

The inverted lists go to images.ivfdata, which the server maps instead of loading;
nprobe is tuned to recall@10 >= 0.95 with caption-like text queries."""

INFO_KEYS = (
    "version",
    "model",
    "backend",
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
)


def register(sub: argparse._SubParsersAction) -> None:
    idx = sub.add_parser(
        "index", help="build, update and inspect image indexes", formatter_class=FMT,
        epilog=BUILD_EPILOG,
    )  # fmt: skip
    isub = idx.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    _register_build(isub, "build", "index every image of a folder or manifest into a new version")
    _register_build(
        isub, "update", "re-index only new/changed files, drop deleted ones, keep renamed ones"
    )
    _register_info(isub)
    _register_texts(isub)
    _register_ondisk(isub)
    _register_watch(isub)
    interop_cmds.register_index_actions(isub)
    _register_search(sub)


def _index_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", required=True, metavar="DIR", help="index directory")


def _model_args(p: argparse.ArgumentParser, default: str | None, default_help: str) -> None:
    p.add_argument(
        "--model",
        default=default,
        metavar="SPEC",
        help=f"model spec, any form `clipsearch model list` shows (default: {default_help})",
    )
    p.add_argument("--device", default=None, help="cpu, cuda … (default: CUDA if present)")
    add_backend_arg(p)


def _register_build(isub: argparse._SubParsersAction, name: str, helptext: str) -> None:
    b = isub.add_parser(name, help=helptext, formatter_class=FMT, epilog=BUILD_EPILOG)
    b.add_argument("source", metavar="SOURCE", help="image folder or CSV/TSV/JSONL manifest")
    _index_arg(b)
    if name == "build":
        _model_args(b, "default", DEFAULT_HELP.removeprefix("default: "))
    else:
        _model_args(b, None, "the live version's model")
    b.add_argument("--batch-size", type=int, default=32, metavar="N")
    b.add_argument(
        "--workers", type=int, default=None, metavar="N",
        help="decode processes (default: by device and cores)",
    )  # fmt: skip
    b.add_argument(
        "--factory", default=None, metavar="STR",
        help='FAISS factory string, e.g. "Flat", "IVF1024,SQ8", "HNSW32" '
        "(default: chosen by corpus size and memory budget)",
    )  # fmt: skip
    b.add_argument(
        "--memory-budget", default=None, metavar="SIZE",
        help="cap for the index build, e.g. 2G or 512M",
    )  # fmt: skip
    b.add_argument(
        "--device-decode", action="store_true",
        help="decode JPEGs in batches on the model's device (nvJPEG on a GPU; docs/benchmarks.md)",
    )  # fmt: skip
    b.add_argument(
        "--shard-size", type=int, default=None, metavar="N",
        help="images per resumable embedding shard (default 2048)",
    )  # fmt: skip
    b.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="where decode + encode run: this machine (default) or a Ray cluster "
        "(needs the distributed extra)",
    )  # fmt: skip
    b.add_argument(
        "--ray-address", default=None, metavar="ADDR",
        help="Ray cluster to join, e.g. head:6379 (default: a private local Ray instance)",
    )  # fmt: skip
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument("--json", action="store_true", help="print the build report as JSON")
    b.set_defaults(func=cmd_build, mode=name)


def _register_info(isub: argparse._SubParsersAction) -> None:
    i = isub.add_parser(
        "info", help="show versions, model, counts, recall and sizes", formatter_class=FMT,
        epilog=INFO_EPILOG,
    )  # fmt: skip
    _index_arg(i)
    i.add_argument("--version", default=None, help="a version id (default: the live one)")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)


def _register_texts(isub: argparse._SubParsersAction) -> None:
    t = isub.add_parser(
        "texts", help="add a caption/label corpus for image→text search", formatter_class=FMT,
        epilog=TEXTS_EPILOG,
    )  # fmt: skip
    t.add_argument(
        "file", nargs="?", default=None,
        help="text file, one text per line (default: the manifest's captions)",
    )  # fmt: skip
    _index_arg(t)
    _model_args(t, None, "the index's model")
    t.set_defaults(func=cmd_texts)


def _register_ondisk(isub: argparse._SubParsersAction) -> None:
    o = isub.add_parser(
        "ondisk",
        help="republish the live version with an on-disk IVF index (for indexes larger than RAM)",
        formatter_class=FMT,
        epilog=ONDISK_EPILOG,
    )
    _index_arg(o)
    o.add_argument("--code", default="Flat", help="list codes: Flat (default), SQ8 or SQfp16")
    o.add_argument("--nlist", type=int, default=None, help="IVF lists (default: ~sqrt(n))")
    o.add_argument("--shards", type=int, default=None, help="row shards built in parallel")
    o.add_argument("--workers", type=int, default=None, help="shards built at once")
    o.set_defaults(func=cmd_ondisk)


STOP_WAIT_S = 2.0  # how long Ctrl-C waits for a compaction in progress

WATCH_EPILOG = """examples:
  clipsearch index watch photos/ --index idx/
  clipsearch index watch photos/ --index idx/ --poll --interval 5   (a network mount)
  clipsearch index watch photos/ --index idx/ --once     (one pass, then exit)

DIR is the folder the index was built from. New files are added, changed ones re-encoded under
their id, moved ones keep their id, deleted ones are deleted: through the index's write-ahead
log, folded into new versions in the background. Changes are noticed through the operating
system's file events (watchfiles); --poll looks at the folder every --interval seconds instead,
for folders whose events do not arrive (NFS, SMB, some container mounts). One writer per index
(not beside a --writable server)."""


def _register_watch(isub: argparse._SubParsersAction) -> None:
    w = isub.add_parser(
        "watch", help="follow a folder into the index (adds, edits, moves, deletes)",
        formatter_class=FMT, epilog=WATCH_EPILOG,
    )  # fmt: skip
    w.add_argument("folder", metavar="DIR", help="the index's corpus folder")
    _index_arg(w)
    _model_args(w, None, "the live version's model")
    w.add_argument(
        "--interval", type=float, default=1.0, metavar="S",
        help="seconds a burst of changes is gathered before its pass (with --poll: between looks)",
    )  # fmt: skip
    w.add_argument("--poll", action="store_true", help="poll the folder instead of file events")
    w.add_argument("--once", action="store_true", help="one pass, fold it in, and exit")
    w.set_defaults(func=cmd_watch)


def _register_search(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "search", help="search an index by text or image", formatter_class=FMT, epilog=SEARCH_EPILOG
    )
    s.add_argument("text", nargs="?", default=None, help="query text")
    s.add_argument("--image", default=None, metavar="FILE", help="query image instead of text")
    _index_arg(s)
    s.add_argument(
        "-k", type=int, default=10, metavar="N", help=f"number of hits, 1…{MAX_K} (default 10)"
    )
    s.add_argument("--path-prefix", default=None, help="only items whose path starts with this")
    s.add_argument(
        "--where", action="append", default=[], metavar="KEY=VALUE",
        help="only items whose metadata KEY equals VALUE (repeatable)",
    )  # fmt: skip
    s.add_argument("--min-score", type=float, default=None, help="drop hits below this cosine")
    s.add_argument("--texts", action="store_true", help="search the caption/label corpus")
    _model_args(s, None, "the index's model")
    s.add_argument("--json", action="store_true", help='print {"hits": [...], ...}')
    s.set_defaults(func=cmd_search)


# -- commands -------------------------------------------------------------------------------------


def _index_encoder(index: str, args: argparse.Namespace):
    """The model the index was built with (or --model), checked against it."""
    from indexer import encoder_for_index

    try:
        model = resolve_model_arg(args.model) if args.model is not None else None
        return encoder_for_index(index, model=model, device=args.device, backend=args.backend)
    except ValueError as e:  # e.g. an unavailable device
        fail(str(e))


def _load_encoder(spec: str, args: argparse.Namespace):
    from model import load_encoder

    try:
        return load_encoder(resolve_model_arg(spec), device=args.device, backend=args.backend)
    except ValueError as e:
        fail(str(e))


def _build_options(args: argparse.Namespace):
    from indexer import BuildOptions

    fields: dict[str, Any] = {
        "batch_size": args.batch_size,
        "workers": args.workers,
        "factory": args.factory,
        "memory_budget": args.memory_budget,
        "progress": not args.no_progress,
        "device_decode": args.device_decode,
    }
    if args.shard_size is not None:
        fields["shard_size"] = args.shard_size
    try:
        return BuildOptions(**fields)
    except ValueError as e:  # "batch_size must be …" → "--batch-size must be …"
        message = str(e)
        for name in ("batch_size", "workers", "shard_size"):
            message = message.replace(name, "--" + name.replace("_", "-"))
        fail(message)


def cmd_build(args: argparse.Namespace) -> int:
    from indexer import build_index, live_version, update_index

    opts = _build_options(args)
    if not Path(args.source).exists():
        fail(f"{args.source}: no such folder or manifest")
    if args.ray_address and args.engine != "ray":
        fail("--ray-address needs --engine ray")
    if args.engine == "ray" and args.backend in INT8_BACKENDS:
        fail(
            f"--backend {args.backend} applies to the local engine (its vectors differ, and GPU "
            "workers cannot run it); use --backend auto, torch or onnx with --engine ray"
        )
    if args.mode == "update" and args.model is None and live_version(args.index):
        enc = _index_encoder(args.index, args)
    else:  # a build, an update with another model (re-encodes all), or a first update
        enc = _load_encoder(args.model, args)  # None: the default model
    run = build_index if args.mode == "build" else update_index
    if args.engine == "ray":
        run = _ray_runner(args)
    try:
        report = run(args.source, args.index, enc, opts)
    except ValueError as e:
        fail(str(e))
    if args.json:
        for w in report.warnings:
            info(f"warning: {w}")
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

    return functools.partial(
        ray_build_index, mode=args.mode, ray=RayOptions(address=args.ray_address)
    )


def cmd_watch(args: argparse.Namespace) -> int:
    from indexer.live import CompactOptions, Compactor, LiveIndex, compact
    from indexer.live.watch import FolderWatcher
    from indexer.recall import recall_queries

    if args.interval <= 0:
        fail("--interval must be more than 0")
    if not Path(args.folder).is_dir():
        fail(f"{args.folder}: no such folder")
    enc = _index_encoder(args.index, args)
    live = LiveIndex.open(args.index, expected_fingerprint=enc.fingerprint)
    abandoned = False
    try:
        try:
            watcher = FolderWatcher(live, Path(args.folder), enc)
        except ValueError as e:
            fail(str(e))
        queries = lambda: recall_queries(enc)  # noqa: E731
        if args.once:
            _report_pass(watcher.sync())
            out(compact(live, queries) or live.base.id)
            return 0
        compactor = Compactor(live, queries, CompactOptions()).start()
        info(f"watching {args.folder} (Ctrl-C to stop)")
        stop = threading.Event()
        try:
            with _stop_on_signals(stop):
                watcher.run(stop, _report_pass, debounce_s=args.interval,
                            force_polling=args.poll)  # fmt: skip
        finally:
            # Ctrl-C does not wait for a compaction of a large index to finish
            abandoned = not compactor.close(timeout=STOP_WAIT_S)
            if abandoned:
                info("stopped during a compaction; the next start redoes it (no change is lost)")
    finally:
        if not abandoned:  # else the writer lock stays held until this process exits
            live.close()
    if stop.is_set():
        fail("interrupted", code=130)
    return 0


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event):
    """Ctrl-C or SIGTERM set `stop`: the watcher finishes the file in hand and returns, instead
    of a KeyboardInterrupt landing anywhere (inside a lock, a log write, a native call). A
    second Ctrl-C interrupts at once."""
    import signal

    def on_signal(signum, frame) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _report_pass(rep) -> None:
    if rep.any() or rep.failed:
        info(f"added {rep.added}, changed {rep.changed}, moved {rep.moved}, "
             f"deleted {rep.deleted}, failed {rep.failed}")  # fmt: skip


def cmd_info(args: argparse.Namespace) -> int:
    data = _info_data(args.index, args.version)
    if args.json:
        emit_json(data)
        return 0
    for key in INFO_KEYS:
        out(f"{key:14} {data[key]}")
    out("versions:")
    for ver in data["versions"]:
        mark = "*" if ver["live"] else " "
        out(f" {mark} {ver['version']}  {ver['count']} items  {ver['size_bytes']:,} bytes")
    return 0


def _info_data(index: str, version: str | None) -> dict[str, Any]:
    """The `index info --json` object (DESIGN.md: version, model, count, dim, factory, …)."""
    from indexer import list_versions, open_index
    from indexer.layout import dir_size

    v = open_index(index, version=version)
    try:
        m = v.manifest
        return {
            "version": v.id,
            "model": m.model,
            "backend": m.backend,
            "fingerprint": m.fingerprint,
            "count": m.count,
            "dim": m.dim,
            "metric": m.metric,
            "factory": m.factory,
            "search_params": m.search_params,
            "recall_at_10": m.recall_at_10,
            "created_at": m.created_at,
            "root": m.root,
            "has_texts": v.has_texts,
            "texts_count": m.texts_count,
            "skipped": len((m.build_report or {}).get("skipped", [])),
            "size_bytes": dir_size(v.path),
            "files": {name: f["size"] for name, f in m.files.items()},
            "versions": [
                {
                    "version": x.version,
                    "created_at": x.created_at,
                    "count": x.count,
                    "live": x.live,
                    "size_bytes": x.size_bytes,
                }
                for x in list_versions(index)
            ],  # fmt: skip
        }
    finally:
        v.close()


def cmd_texts(args: argparse.Namespace) -> int:
    from indexer import add_texts

    texts = None
    if args.file:
        try:
            texts = Path(args.file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            fail(f"{args.file}: cannot read ({e})")
    enc = _index_encoder(args.index, args)
    try:
        version = add_texts(args.index, texts, enc)
    except (ValueError, TypeError) as e:
        fail(str(e))
    out(version)
    return 0


def cmd_ondisk(args: argparse.Namespace) -> int:
    from indexer import encoder_for_index
    from indexer.ondisk import OnDiskOptions, make_ondisk_version
    from indexer.recall import recall_queries

    try:
        opts = OnDiskOptions(
            nlist=args.nlist, code=args.code, shards=args.shards, workers=args.workers
        )
        manifest = make_ondisk_version(
            args.index, lambda: recall_queries(encoder_for_index(args.index)), opts
        )
    except ValueError as e:
        fail(str(e))
    info(f"{manifest.factory} on disk, {manifest.search_params}, recall@10 {manifest.recall_at_10}")
    out(manifest.version or "")
    return 0


def _parse_where(pairs: list[str]) -> dict[str, str]:
    where = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            fail(f"--where takes KEY=VALUE, got {p!r}")
        where[key] = value
    return where


def _check_search_args(args: argparse.Namespace) -> None:
    if (args.text is None) == (args.image is None):
        fail(
            'give either a query text or --image FILE, e.g. clipsearch search "a cat" --index idx/'
        )
    if args.text is not None and not args.text.strip():
        fail("the query text is empty")
    if not 1 <= args.k <= MAX_K:
        fail(f"-k must be between 1 and {MAX_K}")


def cmd_search(args: argparse.Namespace) -> int:
    from indexer import open_index
    from model import load_image

    _check_search_args(args)
    where = _parse_where(args.where)
    image = load_image(args.image) if args.image else None
    enc = _index_encoder(args.index, args)
    v = open_index(args.index, expected_fingerprint=enc.fingerprint)
    try:
        q = enc.encode_images([image]) if image is not None else enc.encode_texts([args.text])
        if args.texts:
            hits = [
                {"id": str(h.id), "score": round(h.score, 6), "text": h.text}
                for h in v.search_texts(q, args.k)[0]
            ]
        else:
            hits = _search_images(v, q, args, where)
        result = {"hits": hits, "model": enc.spec, "index_version": v.id}
    finally:
        v.close()
    if not hits:
        info("no hits")
    if args.json:
        emit_json(result)
        return 0
    for rank, h in enumerate(hits, start=1):
        out(f"{rank:3}  {h['score']:.4f}  {h.get('path') or h.get('text')}")
    return 0


def _search_images(v, q, args: argparse.Namespace, where: dict[str, str]) -> list[dict]:
    """Hits as JSON objects; a filter that can match nothing gets a warning on stderr."""
    try:
        found = v.search(
            q, args.k, path_prefix=args.path_prefix, where=where or None, min_score=args.min_score
        )[0]
    except ValueError as e:
        fail(str(e))
    if not found:
        for w in v.filter_warnings(args.path_prefix, where):
            info(f"warning: {w}")
    return [_hit_json(h) for h in found]


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
