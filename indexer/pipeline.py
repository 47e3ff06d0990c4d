"""build_index / update_index: scan → hash → decode (workers) → encode → shards → publish."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model import Encoder, load_encoder
from model.preprocess import decode_size

from ._fsutil import exclusive_lock
from .assemble import Plan, assign_ids, write_version_files
from .decode import image_loader
from .errors import IndexOpenError
from .faiss_build import parse_size
from .publish import WORK, clean_staging, live_version, new_version_id, publish, staging_dir
from .reader import open_index
from .report import BuildReport, Skip
from .scan import Entry, hash_entries, scan_source
from .shards import Encoded, ShardStore

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 2048  # images per embedding shard: the most work a crash can lose
RECALL_PROMPT = "a photo of a {}."


@dataclass
class Previous:
    """What an update can reuse from the live version."""

    version: Any  # IndexVersion
    by_path: dict[str, dict[str, Any]]  # rel path → item row (id, sha256, size, mtime_ns, row …)
    vectors: np.ndarray | None  # memmap of the fp16 vectors; None if the model changed


def build_index(
    source: str | Path,
    index_dir: str | Path,
    encoder: Encoder | str = "starter",
    *,
    batch_size: int = 32,
    workers: int | None = None,
    factory: str | None = None,
    memory_budget: int | str | None = None,
    progress: bool = True,
    shard_size: int | None = None,
) -> BuildReport:
    """Index every image under `source` (folder or CSV/JSONL manifest) into a new live version.
    A killed build resumes from its embedding shards when run again with the same arguments."""
    return _run(
        "build",
        source,
        index_dir,
        encoder,
        batch_size,
        workers,
        factory,
        memory_budget,
        progress,
        shard_size,
    )


def update_index(
    source: str | Path,
    index_dir: str | Path,
    encoder: Encoder | str | None = None,
    *,
    batch_size: int = 32,
    workers: int | None = None,
    factory: str | None = None,
    memory_budget: int | str | None = None,
    progress: bool = True,
    shard_size: int | None = None,
) -> BuildReport:
    """Publish a new version for the current state of `source`: only new or changed contents are
    encoded, deleted files dropped, renamed files keep their id and vector. The encoder defaults
    to the live version's model."""
    if encoder is None:
        encoder = live_model_spec(index_dir) or "starter"
    return _run(
        "update",
        source,
        index_dir,
        encoder,
        batch_size,
        workers,
        factory,
        memory_budget,
        progress,
        shard_size,
    )


def live_model_spec(index_dir: str | Path) -> str | None:
    """The model spec of the live version, or None if nothing was published yet."""
    if live_version(index_dir) is None:
        return None
    v = open_index(index_dir)
    try:
        return v.model_spec
    finally:
        v.close()


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


def _run(
    mode: str,
    source: str | Path,
    index_dir: str | Path,
    encoder: Encoder | str,
    batch_size: int,
    workers: int | None,
    factory: str | None,
    memory_budget: int | str | None,
    progress: bool,
    shard_size: int | None,
) -> BuildReport:
    t0 = time.perf_counter()
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    parse_size(memory_budget)  # fail fast on a bad size
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    shard_size = shard_size or int(os.environ.get("CLIPSEARCH_SHARD_SIZE", DEFAULT_SHARD_SIZE))
    with exclusive_lock(index_dir / WORK / "lock"):
        clean_staging(index_dir)
        enc = load_encoder(encoder) if isinstance(encoder, str) else encoder
        report = BuildReport(source=str(source), mode=mode)
        scan = scan_source(source, exclude=[index_dir])
        report.ignored_files = scan.ignored_files
        report.skipped.extend(scan.skipped)
        report.scanned = len(scan.entries) + sum(
            s.code in ("file_not_found", "outside_corpus") for s in scan.skipped
        )
        prev = _previous(index_dir, enc) if mode == "update" else None
        entries, hash_skips = hash_scanned(scan.entries, prev, progress)
        report.skipped.extend(hash_skips)

        store = ShardStore(index_dir / WORK, enc.fingerprint)
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
        report.encoded = _encode(
            enc, todo, first_path, done, store, batch_size, workers, shard_size, progress
        )
        report.encode_seconds = time.perf_counter() - t_enc
        report.images_per_s = report.encoded / report.encode_seconds if report.encoded else 0.0

        plan = _plan(entries, done, prev, report)
        assign_ids(plan, prev.by_path if prev else None, report)
        version = new_version_id()
        staging = staging_dir(index_dir, version)
        built = write_version_files(
            staging,
            plan,
            enc,
            factory=factory,
            memory_budget=memory_budget,
            queries=lambda: _recall_queries(enc),
            carry_texts_from=prev.version.path if prev and prev.vectors is not None else None,
        )
        report.version = version
        report.items = len(plan.items)
        report.factory = built.factory
        report.recall_at_10 = round(built.recall_at_10, 4)
        report.seconds = time.perf_counter() - t0
        manifest = {
            "model": enc.spec,
            "fingerprint": enc.fingerprint,
            "dim": enc.dim,
            "count": len(plan.items),
            "root": str(scan.root),
            "source": str(Path(source).resolve()),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "parent": prev.version.id if prev else None,
            **built.manifest_fields(),
            "build_report": report.to_dict(),
        }
        publish(index_dir, staging, version, manifest)
        store.remove()  # the shards are inside the published version now
        if prev:
            prev.version.close()
        log.info("built %s: %d items, %d encoded", version, report.items, report.encoded)
        return report


def _previous(index_dir: Path, enc: Encoder) -> Previous | None:
    if live_version(index_dir) is None:
        return None
    try:
        v = open_index(index_dir)
    except IndexOpenError as e:
        log.warning("the live version cannot be opened (%s): re-encoding everything", e)
        return None
    cols = "id, row, path, sha256, size, mtime_ns, width, height"
    by_path = {r["path"]: dict(r) for r in v._db().execute(f"SELECT {cols} FROM items")}
    same_model = v.fingerprint == enc.fingerprint
    if not same_model:
        log.warning(
            "the live version used another model (%s): re-encoding everything", v.model_spec
        )
    vectors = np.load(v.path / "vectors.npy", mmap_mode="r") if same_model else None
    return Previous(version=v, by_path=by_path, vectors=vectors)


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
    done: Encoded,
    store: ShardStore,
    batch_size: int,
    workers: int | None,
    shard_size: int,
    progress: bool,
) -> int:
    """Decode + encode `todo` contents, writing a shard every `shard_size`; → count encoded."""
    if not todo:
        return 0
    workers = default_workers(enc) if workers is None else workers
    loader = image_loader(
        [first_path[s] for s in todo],
        enc.preprocess,
        batch_size,
        workers,
        pin_memory=enc.device.type == "cuda",
        min_size=decode_min_size(enc),
    )
    pending: dict[str, list] = {"sha": [], "vec": [], "wh": [], "fail": []}
    encoded = 0

    def flush() -> None:
        if not pending["sha"] and not pending["fail"]:
            return
        vecs = np.concatenate(pending["vec"]) if pending["vec"] else np.zeros((0, enc.dim))
        store.write(pending["sha"], vecs, pending["wh"], pending["fail"])
        for sha, v, wh in zip(pending["sha"], vecs.astype(np.float16), pending["wh"], strict=True):
            done.vectors[sha], done.sizes[sha] = v, wh
        for sha, code, msg in pending["fail"]:
            done.failures[sha] = (code, msg)
        for key in pending:
            pending[key] = []

    with (
        tqdm(
            total=len(todo),
            desc="encoding",
            unit="img",
            disable=not progress,
            file=sys.stderr,
            smoothing=0.05,
            dynamic_ncols=True,
        ) as bar,
        torch_threads(model_threads(enc, workers)),
    ):
        for batch in loader:
            if len(batch.positions):
                vecs = enc.encode_pixels(batch.pixels)
                pending["vec"].append(vecs)
                pending["sha"].extend(todo[p] for p in batch.positions)
                pending["wh"].extend(batch.sizes)
                encoded += len(batch.positions)
            pending["fail"].extend((todo[p], code, msg) for p, code, msg in batch.failures)
            bar.update(len(batch.positions) + len(batch.failures))
            if len(pending["sha"]) + len(pending["fail"]) >= shard_size:
                flush()
        flush()
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


def _recall_queries(enc: Encoder, limit: int = 500) -> np.ndarray:
    """Generic caption-like texts (ImageNet class prompts) to measure ANN recall with."""
    from model.starter import imagenet_class_synonyms

    names = [syns[0] for syns in imagenet_class_synonyms() if syns]
    step = max(1, len(names) // limit)
    return enc.encode_texts([RECALL_PROMPT.format(n) for n in names[::step][:limit]])
