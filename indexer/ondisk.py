"""Indexes larger than RAM: IVF with on-disk inverted lists (FAISS `OnDiskInvertedLists`).

The index file holds only the coarse quantizer (and the codec); the inverted lists live in
`images.ivfdata` next to it, which the server maps into memory instead of reading: only the lists
a query probes are paged in, and the kernel shares those pages between every process (and
container) that serves the same version.

The build is sharded like a cluster build would be: train the coarse quantizer (and codec) once on
a sample, fill one empty copy of the trained index per shard of rows (in parallel; FAISS releases
the GIL), then merge the shards' inverted lists into the on-disk file (`merge_ondisk`). A shard's
lists are read memory-mapped during the merge, so no step holds the whole corpus in memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .faiss_build import (
    RECALL_TARGET,
    RERANK_K,
    TRAIN_PER_LIST,
    BuiltIndex,
    PreadRows,
    _tune,
    choose_nlist,
    peak_rss,
)
from .publish import (
    MANIFEST,
    WORK,
    link_or_copy,
    new_version_id,
    publish,
    staging_dir,
)
from .store import iter_vector_chunks, read_npy_header

log = logging.getLogger(__name__)

IVFDATA = "images.ivfdata"
INDEX_FILE = "images.faiss"
READ_FLAGS = faiss.IO_FLAG_READ_ONLY | faiss.IO_FLAG_ONDISK_SAME_DIR
CODES = ("Flat", "SQ8", "SQfp16")
ADD_CHUNK = 65_536


def read_ondisk_index(path: Path) -> faiss.Index:
    """Open an on-disk IVF index: the inverted lists are memory-mapped from the `.ivfdata` file in
    the same directory (wherever the version was moved since it was written)."""
    with c_stdout_to_stderr():
        return faiss.read_index(str(path), READ_FLAGS)


@contextlib.contextmanager
def c_stdout_to_stderr() -> Iterator[None]:
    """FAISS's on-disk code prints progress with C printf to stdout; send it to stderr so that a
    command's stdout stays machine-readable (`clipsearch search --json` on an on-disk index)."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)


@dataclass
class OnDiskBuild:
    factory: str
    nlist: int
    shards: int
    train_size: int
    index_bytes: int  # the .faiss file (quantizer) + the .ivfdata file (lists)


def build_ondisk_ivf(
    vectors_path: Path,
    ids: np.ndarray,
    out_dir: Path,
    *,
    nlist: int | None = None,
    code: str = "Flat",
    shards: int | None = None,
    workers: int | None = None,
    train_size: int | None = None,
    seed: int = 0,
) -> OnDiskBuild:
    """Build `out_dir/images.faiss` + `out_dir/images.ivfdata` from the fp16 rows of
    `vectors_path` (row i has id `ids[i]`)."""
    if code not in CODES:
        raise ValueError(f"code must be one of {', '.join(CODES)}, not {code!r}")
    with vectors_path.open("rb") as f:
        (n, dim), _ = read_npy_header(f)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} vectors")
    nlist = nlist or choose_nlist(n)
    if n < nlist:
        raise ValueError(f"an index with {nlist} lists needs at least {nlist} vectors, not {n}")
    workers = workers or max(1, min(4, len(os.sched_getaffinity(0))))
    shards = shards or max(workers, math.ceil(n / 1_000_000))
    factory = f"IVF{nlist},{code}"
    tmp = out_dir / ".ondisk-build"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        trained = _train(vectors_path, n, dim, factory, train_size, seed)
        trained_path = tmp / "trained.faiss"
        faiss.write_index(trained, str(trained_path))
        bounds = np.linspace(0, n, shards + 1).astype(np.int64)
        jobs = [(i, int(bounds[i]), int(bounds[i + 1])) for i in range(shards)]
        # FAISS parallelises add() internally too: split the cores between the shard workers.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(max(1, threads // workers))
        try:
            with ThreadPoolExecutor(workers) as pool:
                blocks = list(
                    pool.map(lambda j: _fill_shard(trained_path, vectors_path, ids, tmp, *j), jobs)
                )
        finally:
            faiss.omp_set_num_threads(threads)
        index = faiss.read_index(str(trained_path))
        log.info("merging %d shards into %s", len(blocks), out_dir / IVFDATA)
        with c_stdout_to_stderr():
            _merge(index, [str(b) for b in blocks], str(out_dir / IVFDATA))
            faiss.write_index(index, str(out_dir / INDEX_FILE))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = (out_dir / INDEX_FILE).stat().st_size + (out_dir / IVFDATA).stat().st_size
    return OnDiskBuild(factory, nlist, shards, min(n, _train_size(n, nlist, train_size)), size)


def _train_size(n: int, nlist: int, train_size: int | None) -> int:
    return min(n, train_size or max(nlist * TRAIN_PER_LIST, 10_000))


def _train(
    vectors_path: Path, n: int, dim: int, factory: str, train_size: int | None, seed: int
) -> faiss.Index:
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter = 15
    m = _train_size(n, ivf.nlist, train_size)
    rows = np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))
    reader = PreadRows(vectors_path)
    try:
        sample = np.asarray(reader[rows], dtype=np.float32)
    finally:
        reader.close()
    log.info("training %s on a sample of %d of %d vectors", factory, m, n)
    index.train(sample)
    return index


def _fill_shard(
    trained_path: Path, vectors_path: Path, ids: np.ndarray, tmp: Path, i: int, lo: int, hi: int
) -> Path:
    """Rows [lo, hi) into an empty copy of the trained index, written as block file i."""
    index = faiss.read_index(str(trained_path))
    reader = PreadRows(vectors_path)
    try:
        for start in range(lo, hi, ADD_CHUNK):
            stop = min(hi, start + ADD_CHUNK)
            index.add_with_ids(np.asarray(reader[start:stop], dtype=np.float32), ids[start:stop])
    finally:
        reader.close()
    out = tmp / f"block-{i:04d}.faiss"
    faiss.write_index(index, str(out))
    log.info("shard %d: rows %d–%d added", i, lo, hi)
    return out


def _merge(index: faiss.Index, block_paths: list[str], ivfdata: str) -> None:
    """faiss.contrib.ondisk.merge_ondisk, keeping every shard index alive until the merge is done
    (their inverted lists are borrowed, not owned, by the merge)."""
    ivf = faiss.extract_index_ivf(index)
    if index.ntotal != 0:
        raise ValueError("the target index must be empty")
    shards = [faiss.read_index(p, faiss.IO_FLAG_MMAP) for p in block_paths]
    vec = faiss.InvertedListsPtrVector()
    for s in shards:
        vec.push_back(faiss.extract_index_ivf(s).invlists)
    invlists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, ivfdata)
    ntotal = invlists.merge_from_multiple(vec.data(), vec.size(), False)
    index.ntotal = ivf.ntotal = ntotal
    ivf.replace_invlists(invlists, True)
    invlists.this.disown()
    del shards


def make_ondisk_version(
    index_dir: str | Path,
    *,
    nlist: int | None = None,
    code: str = "Flat",
    shards: int | None = None,
    workers: int | None = None,
    queries: np.ndarray | None = None,
    recall_target: float = RECALL_TARGET,
) -> dict[str, Any]:
    """Publish a copy of the live version whose FAISS index is an on-disk IVF (items and vectors
    are shared by hard link). `queries` (text embeddings) tune nprobe to the recall target; by
    default generic caption-like texts are encoded with the version's model. → the new manifest."""
    from ._fsutil import exclusive_lock
    from .reader import open_index

    index_dir = Path(index_dir)
    with exclusive_lock(index_dir / WORK / "lock"):
        live = open_index(index_dir)
        try:
            manifest = dict(live.manifest)
            src = live.path
            ids = live._searcher.ids.copy()
        finally:
            live.close()
        if queries is None:
            queries = _default_queries(manifest["model"])
        version = new_version_id()
        staging = staging_dir(index_dir, version)
        for p in src.iterdir():
            if p.is_file() and p.name not in (MANIFEST, INDEX_FILE, IVFDATA):
                link_or_copy(p, staging / p.name)
        manifest = {
            k: v for k, v in manifest.items() if k not in ("files", "version", "format_version")
        }
        manifest.update(
            _build_and_tune(staging, ids, nlist, code, shards, workers, queries, recall_target),
            parent=live.id,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        final = publish(index_dir, staging, version, manifest)
        log.info("published on-disk version %s (%s)", version, manifest["factory"])
        return {**manifest, "version": final.name}


def _build_and_tune(
    staging: Path,
    ids: np.ndarray,
    nlist: int | None,
    code: str,
    shards: int | None,
    workers: int | None,
    queries: np.ndarray,
    recall_target: float,
) -> dict[str, Any]:
    """On-disk IVF into `staging`, tuned; → the manifest fields describing it."""
    built = build_ondisk_ivf(
        staging / "vectors.npy",
        ids,
        staging,
        nlist=nlist,
        code=code,
        shards=shards,
        workers=workers,
    )
    tuned = tune_ondisk(staging, ids, built.factory, queries, recall_target)
    return {
        **tuned.manifest_fields(),
        "ondisk": True,
        "ivfdata": IVFDATA,
        "index_bytes": built.index_bytes,
        "ondisk_build": {"shards": built.shards, "train_size": built.train_size},
    }


def tune_ondisk(
    version_dir: Path,
    ids: np.ndarray,
    factory: str,
    queries: np.ndarray,
    recall_target: float = RECALL_TARGET,
) -> BuiltIndex:
    """Pick nprobe (and the re-rank depth for compressed codes) for the index in `version_dir`,
    searching it memory-mapped exactly as the server will."""
    index = read_ondisk_index(version_dir / INDEX_FILE)
    built = BuiltIndex(
        index=index,
        factory=factory,
        rerank=not factory.endswith(",Flat"),
        rerank_k=RERANK_K,
    )
    _tune(
        built,
        version_dir / "vectors.npy",
        ids,
        np.ascontiguousarray(queries, dtype=np.float32),
        recall_target,
    )
    built.peak_rss = peak_rss()
    return built


def publish_vectors(
    index_dir: str | Path,
    chunks: Iterable[np.ndarray],
    n: int,
    dim: int,
    *,
    model: str,
    fingerprint: str,
    ondisk: dict[str, Any] | None = None,
) -> str:
    """Publish a version from precomputed unit vectors (item i: id i, path `vectors/<i>`): with
    an exact Flat index, or, given `ondisk` (keyword arguments of `make_ondisk_version`, with
    `queries` required), an on-disk IVF built and tuned in place. For embeddings computed
    elsewhere, and for the large synthetic corpora of the on-disk tests and benchmark.
    → the version id."""
    from ._fsutil import exclusive_lock
    from .store import VectorWriter, write_items

    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(index_dir / WORK / "lock"):
        version = new_version_id()
        staging = staging_dir(index_dir, version)
        writer = VectorWriter(staging / "vectors.npy", n, dim)
        for c in chunks:
            writer.write(c)
        writer.close()
        write_items(
            staging / "items.sqlite",
            (
                {
                    "id": i,
                    "path": f"vectors/{i:09d}",
                    "sha256": f"{i:064x}",
                    "size": 0,
                    "mtime_ns": 0,
                    "width": 0,
                    "height": 0,
                    "caption": None,
                    "extra": {},
                }
                for i in range(n)
            ),
        )
        fields: dict[str, Any] = {
            "factory": "Flat",
            "metric": "inner_product",
            "rerank": False,
            "rerank_k": RERANK_K,
            "search_params": {},
            "recall_at_10": 1.0,
            "recall_queries": 0,
            "exact": True,
        }
        if ondisk is None:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            for start, c in enumerate_chunks(staging / "vectors.npy"):
                index.add_with_ids(c, np.arange(start, start + len(c), dtype=np.int64))
            faiss.write_index(index, str(staging / INDEX_FILE))
            del index
        else:
            opts = dict(ondisk)
            fields = _build_and_tune(
                staging,
                np.arange(n, dtype=np.int64),
                opts.get("nlist"),
                opts.get("code", "Flat"),
                opts.get("shards"),
                opts.get("workers"),
                opts["queries"],
                opts.get("recall_target", RECALL_TARGET),
            )
        manifest = {
            "model": model,
            "fingerprint": fingerprint,
            "dim": dim,
            "count": n,
            "root": str(index_dir.resolve()),
            "source": "vectors",
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "parent": None,
            **fields,
        }
        publish(index_dir, staging, version, manifest)
        return version


def enumerate_chunks(path: Path) -> Iterator[tuple[int, np.ndarray]]:
    start = 0
    for c in iter_vector_chunks(path, ADD_CHUNK):
        yield start, c
        start += len(c)


def _default_queries(model_spec: str) -> np.ndarray:
    from model import load_encoder

    from .pipeline import _recall_queries

    return _recall_queries(load_encoder(model_spec))
