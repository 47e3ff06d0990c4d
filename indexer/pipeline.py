"""build_index / update_index: scan → hash → decode (workers) → encode → shards → publish."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model import Encoder
from model.preprocess import decode_size

from ._fsutil import exclusive_lock
from .assemble import TEXT_FILES, Plan, assign_ids, write_version_files
from .decode import DeviceDecoder, image_loader
from .errors import IndexOpenError
from .layout import WORK, live_version
from .live.guard import LIVE_STATE, check_no_live_writes, live_state_file
from .manifest import Manifest
from .media import is_media_path, media_file
from .options import BuildOptions
from .publish import clean_staging, link_or_copy, new_version_id, publish, staging_dir
from .reader import IndexVersion, open_index
from .recall import recall_queries
from .report import BuildReport, Skip
from .resolve import backend_of
from .scan import Entry, ScanResult, hash_entries, scan_source
from .shards import Encoded, ShardStore, ShardWriter

log = logging.getLogger(__name__)


@dataclass
class Previous:
    """What an update can reuse from the live version."""

    version: IndexVersion
    by_path: dict[str, dict[str, Any]]  # rel path → item row (id, sha256, size, mtime_ns, row …)
    vectors: np.ndarray | None  # memmap of the fp16 vectors; None if the model changed


def build_index(
    source: str | Path,
    index_dir: str | Path,
    encoder: Encoder,
    options: BuildOptions | None = None,
    **fields: Any,
) -> BuildReport:
    """Index every image under `source` (folder or CSV/JSONL manifest) into a new live version.
    A killed build resumes from its embedding shards when run again with the same arguments.
    `fields` override fields of `options` (e.g. `progress=False`)."""
    return run_build("build", source, index_dir, encoder, BuildOptions.of(options, **fields))


def update_index(
    source: str | Path,
    index_dir: str | Path,
    encoder: Encoder,
    options: BuildOptions | None = None,
    **fields: Any,
) -> BuildReport:
    """Publish a new version for the current state of `source`: only new or changed contents are
    encoded, deleted files dropped, renamed files keep their id and vector. The live version's
    model is `indexer.encoder_for_index(index_dir)`."""
    return run_build("update", source, index_dir, encoder, BuildOptions.of(options, **fields))


def require_encoder(encoder: Any) -> Encoder:
    if not isinstance(encoder, Encoder):
        raise TypeError(
            f"the indexer takes a loaded Encoder, not {type(encoder).__name__}: load it with "
            "model.load_encoder(spec), or indexer.encoder_for_index(index_dir) for an update"
        )
    return encoder


def default_workers(encoder: Encoder) -> int:
    cpus = len(os.sched_getaffinity(0))
    if encoder.device.type == "cuda":
        return max(2, min(16, cpus))  # a GPU is decode-bound: every core decodes
    return max(1, min(4, cpus // 2))  # a CPU is model-bound: keep cores for the model


def model_threads(encoder: Encoder, workers: int) -> int | None:
    """Torch threads for the model during a CPU build: the cores the decode workers leave free.
    Torch's default (one thread per core) oversubscribes the cores the workers decode on, and
    an OpenMP team that loses a core to a decoder stalls at every barrier: on 2 cores, 2 model
    threads beside 1 decode worker ran the forward far slower than 1 thread did. None (torch's
    default) on an accelerator, or when decoding runs in-process."""
    if encoder.device.type != "cpu" or workers <= 0:
        return None
    return max(1, len(os.sched_getaffinity(0)) - workers)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch intra-op threads (None: unchanged), then restore."""
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_build(
    mode: str, source: str | Path, index_dir: str | Path, encoder: Encoder, opts: BuildOptions
) -> BuildReport:
    """The whole build or update (mode "build" | "update") under the index's lock."""
    t0 = time.perf_counter()
    enc = require_encoder(encoder)
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(index_dir / WORK / "lock"):
        clean_staging(index_dir)
        check_no_live_writes(index_dir)
        report = BuildReport(source=str(source), mode=mode)
        scan = _scan(source, index_dir, report)
        prev = _previous(index_dir, enc) if mode == "update" else None
        _keep_uploads(scan, prev, index_dir)
        try:
            entries, hash_skips = hash_scanned(scan.entries, prev, opts.progress)
            report.skipped.extend(hash_skips)
            store = ShardStore(index_dir / WORK, enc.fingerprint)
            done = _encode_missing(enc, entries, prev, store, opts, report)
            plan = _plan(entries, done, prev, report)
            assign_ids(plan, prev.by_path if prev else None, report, _live_next_id(prev))
            _warn_if_empty(plan, scan, report)
            report.seconds = time.perf_counter() - t0  # as recorded in the manifest
            if prev is not None and _unchanged(plan, prev, scan):
                report.version, report.items = prev.version.id, len(plan.items)
                log.info("nothing changed: version %s stays live", report.version)
            else:
                _publish_plan(index_dir, scan, plan, enc, prev, opts, report)
        finally:
            if prev:
                prev.version.close()
        store.remove()  # the shards are inside the published version now
    report.seconds = time.perf_counter() - t0
    log.info("built %s: %d items, %d encoded", report.version, report.items, report.encoded)
    return report


def _scan(source: str | Path, index_dir: Path, report: BuildReport) -> ScanResult:
    scan = scan_source(source, exclude=[index_dir])
    report.ignored_files = scan.ignored_files
    report.skipped.extend(scan.skipped)
    report.scanned = len(scan.entries) + sum(
        s.code in ("file_not_found", "outside_corpus") for s in scan.skipped
    )
    return scan


def _encode_missing(
    enc: Encoder,
    entries: list[Entry],
    prev: Previous | None,
    store: ShardStore,
    opts: BuildOptions,
    report: BuildReport,
) -> Encoded:
    """Encode every content neither in the shards of a killed run nor reusable from `prev`;
    → every vector and failure in the shards (this run's included)."""
    store.clear_temp()
    done = store.load()
    reusable = _reusable(prev)
    first_path: dict[str, Path] = {}
    for e in entries:
        first_path.setdefault(e.sha256, e.abs)
    todo = [s for s in first_path if s not in done and s not in reusable]
    report.resumed = sum(s in done.vectors for s in first_path if s not in reusable)
    report.reused = sum(s in reusable for s in first_path)
    t_enc = time.perf_counter()
    out = ShardWriter(store, enc.dim, opts.shard_size, done)
    report.encoded = _encode(enc, todo, first_path, out, opts)
    report.encode_seconds = time.perf_counter() - t_enc
    report.images_per_s = report.encoded / report.encode_seconds if report.encoded else 0.0
    return done


def _warn_if_empty(plan: Plan, scan: ScanResult, report: BuildReport) -> None:
    if plan.items:
        return
    if not scan.entries:
        report.warnings.append(f"no images found in {report.source}: the index is empty")
    else:
        report.warnings.append("no image could be read: the index is empty (see skipped)")


def _publish_plan(
    index_dir: Path,
    scan: ScanResult,
    plan: Plan,
    enc: Encoder,
    prev: Previous | None,
    opts: BuildOptions,
    report: BuildReport,
) -> None:
    """Write the version's files, describe them in its manifest, make it live."""
    version = new_version_id()
    staging = staging_dir(index_dir, version)
    built = write_version_files(
        staging,
        plan,
        enc.dim,
        factory=opts.factory,
        memory_budget=opts.memory_budget,
        queries=lambda: recall_queries(enc),
    )
    texts = _carry_texts(prev, staging)
    live_state = live_state_file(index_dir)  # which log records versions already hold
    if live_state is not None:
        link_or_copy(live_state, staging / live_state.name)
    report.version = version
    report.items = len(plan.items)
    report.factory = built.factory
    report.recall_at_10 = None if built.recall_at_10 is None else round(built.recall_at_10, 4)
    manifest = Manifest(
        model=enc.spec,
        fingerprint=enc.fingerprint,
        dim=enc.dim,
        count=len(plan.items),
        backend=backend_of(enc),
        root=str(scan.root),
        source=str(Path(report.source).resolve()),
        parent=prev.version.id if prev else None,
        **built.manifest_fields(),
        **texts,
        build_report=report.to_dict(),
    )
    publish(index_dir, staging, version, manifest)


def _live_next_id(prev: Previous | None) -> int:
    """The next id a living index would hand out (0 when the version never was one)."""
    if prev is None or not (prev.version.path / LIVE_STATE).is_file():
        return 0
    return int(json.loads((prev.version.path / LIVE_STATE).read_text())["next_id"])


def _keep_uploads(scan: ScanResult, prev: Previous | None, index_dir: Path) -> None:
    """Images uploaded into a living index are not in the folder: an update keeps them."""
    if prev is None:
        return
    for rel, r in prev.by_path.items():
        if is_media_path(rel) and (p := media_file(index_dir, rel)) is not None:
            extra = json.loads(r["extra"])
            scan.entries.append(Entry(rel, p, r["caption"], extra, r["size"], r["mtime_ns"]))
    scan.entries.sort(key=lambda e: e.rel)


def _carry_texts(prev: Previous | None, staging: Path) -> dict[str, Any]:
    """An update with the same model keeps the image→text corpus (with its count and source).
    → the Manifest fields describing the texts ({} without)."""
    if prev is None or prev.vectors is None:
        return {}
    src = prev.version.path
    if not all((src / f).is_file() for f in TEXT_FILES):
        return {}
    for name in TEXT_FILES:
        link_or_copy(src / name, staging / name)
    m = prev.version.manifest
    return {"texts_count": m.texts_count, "texts_source": m.texts_source}


def _previous(index_dir: Path, enc: Encoder) -> Previous | None:
    if live_version(index_dir) is None:
        return None
    try:
        v = open_index(index_dir)
    except IndexOpenError as e:
        log.warning("the live version cannot be opened (%s): re-encoding everything", e)
        return None
    cols = "id, row, path, sha256, size, mtime_ns, width, height, caption, extra"
    by_path = {r["path"]: dict(r) for r in v._db().execute(f"SELECT {cols} FROM items")}
    same_model = v.fingerprint == enc.fingerprint
    if not same_model:
        log.warning(
            "the live version used another model (%s): re-encoding everything", v.model_spec
        )
    vectors = np.load(v.path / "vectors.npy", mmap_mode="r") if same_model else None
    return Previous(version=v, by_path=by_path, vectors=vectors)


def _unchanged(plan: Plan, prev: Previous, scan: ScanResult) -> bool:
    """True when publishing `plan` would give the live version again (same model, corpus root,
    items, contents, captions and metadata): an update then publishes nothing."""
    if prev.vectors is None or str(scan.root) != prev.version.manifest.root:
        return False
    if len(plan.items) != len(prev.by_path):
        return False
    for it in plan.items:
        r = prev.by_path.get(it.entry.rel)
        if r is None or (int(r["id"]), r["sha256"], r["caption"]) != (
            it.id,
            it.entry.sha256,
            it.entry.caption,
        ):
            return False
        if json.loads(r["extra"]) != (it.entry.extra or {}):
            return False
    return True


def hash_scanned(scanned: list, prev: Previous | None, progress: bool) -> tuple[list, list]:
    """Content hashes of the scanned files, with a progress bar; a file whose size and mtime
    match the previous version keeps its recorded hash without being read again."""
    known = {
        p: (r["size"], r["mtime_ns"], r["sha256"])
        for p, r in (prev.by_path if prev else {}).items()
    }
    with tqdm(
        total=len(scanned),
        desc="hashing",
        unit="file",
        disable=not progress,
        file=sys.stderr,
        leave=False,
    ) as bar:
        return hash_entries(scanned, known, on_progress=bar.update)


def _reusable(prev: Previous | None) -> dict[str, dict[str, Any]]:
    """sha256 → an item row of the previous version holding that content's vector."""
    if prev is None or prev.vectors is None:
        return {}
    return {r["sha256"]: r for r in prev.by_path.values()}


def decode_min_size(enc: Encoder) -> int:
    """The side the eval transform resizes to: JPEGs need not be decoded any larger than this
    (the same rule as Encoder.load_image, which the server and the CLI decode through)."""
    return decode_size(enc.preprocess_config)


def _encode(
    enc: Encoder,
    todo: list[str],
    first_path: dict[str, Path],
    out: ShardWriter,
    opts: BuildOptions,
) -> int:
    """Decode + encode `todo` contents into shards; → count encoded."""
    if not todo:
        return 0
    workers = default_workers(enc) if opts.workers is None else opts.workers
    loader = image_loader(
        [first_path[s] for s in todo],
        enc.preprocess,
        opts.batch_size,
        workers,
        pin_memory=enc.device.type == "cuda",
        min_size=decode_min_size(enc),
        device_decode=(
            DeviceDecoder(enc.preprocess_config, enc.preprocess, enc.device)
            if opts.device_decode
            else None
        ),
    )
    encoded = 0
    bar = tqdm(
        total=len(todo),
        desc="encoding",
        unit="img",
        disable=not opts.progress,
        file=sys.stderr,
        smoothing=0.05,
        dynamic_ncols=True,
    )
    with bar, torch_threads(model_threads(enc, workers)):
        for batch in loader:
            vecs = enc.encode_pixels(batch.pixels) if batch.positions else None
            out.add(
                [todo[p] for p in batch.positions],
                vecs if vecs is not None else np.zeros((0, enc.dim), np.float32),
                list(batch.sizes),
                [(todo[p], code, msg) for p, code, msg in batch.failures],
            )
            encoded += len(batch.positions)
            bar.update(len(batch.positions) + len(batch.failures))
        out.flush()
    return encoded


def _plan(entries: list[Entry], done: Encoded, prev: Previous | None, report: BuildReport) -> Plan:
    """Entries with a vector (from this run, its shards or the previous version) become items."""
    reusable = _reusable(prev)
    plan = Plan()
    seen: set[str] = set()
    for e in entries:
        if e.sha256 in done.failures:
            code, msg = done.failures[e.sha256]
            report.skipped.append(Skip(e.rel, code, msg))
            continue
        if e.sha256 in done.vectors:
            vec, (w, h) = done.vectors[e.sha256], done.sizes[e.sha256]
        elif e.sha256 in reusable:
            r = reusable[e.sha256]
            vec, w, h = prev.vectors[r["row"]], r["width"], r["height"]  # type: ignore[union-attr]
        else:  # cannot happen: every content was encoded, failed or reused
            report.skipped.append(Skip(e.rel, "internal_error", "no vector was produced"))
            continue
        if e.sha256 in seen:
            report.duplicates += 1
        seen.add(e.sha256)
        plan.add(e, np.asarray(vec, dtype=np.float16), int(w), int(h))
    report.skipped.sort(key=lambda s: s.path)
    return plan
