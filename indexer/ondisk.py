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

import dataclasses
import logging
import math
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .derive import derive_version
from .faiss_build import (
    RECALL_TARGET,
    TRAIN_PER_LIST,
    BuiltIndex,
    PreadRows,
    _tune,
    choose_nlist,
    peak_rss,
)
from .manifest import Manifest
from .ondisk_format import INDEX_FILE, IVFDATA, c_stdout_to_stderr, read_ondisk_index
from .reader import IndexVersion
from .store import read_npy_header
from .types import RERANK_K

log = logging.getLogger(__name__)

CODES = ("Flat", "SQ8", "SQfp16")
ADD_CHUNK = 65_536


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


@dataclass(frozen=True)
class OnDiskOptions:
    """How to build an on-disk IVF: None means chosen by corpus size and cores."""

    nlist: int | None = None  # IVF lists (default ~sqrt(n))
    code: str = "Flat"  # list codes: Flat, SQ8 or SQfp16
    shards: int | None = None  # row shards filled in parallel
    workers: int | None = None  # shards filled at once
    recall_target: float = RECALL_TARGET

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"code must be one of {', '.join(CODES)}, not {self.code!r}")
        for name in ("nlist", "shards", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")


def make_ondisk_version(
    index_dir: str | Path,
    queries: np.ndarray | Callable[[], np.ndarray],
    options: OnDiskOptions | None = None,
    **fields: Any,
) -> Manifest:
    """Publish a copy of the live version whose FAISS index is an on-disk IVF (items and vectors
    are shared by hard link). `queries` (text embeddings, or a function making them, e.g.
    `lambda: recall_queries(encoder)`) tune nprobe to the recall target. `fields` override
    fields of `options`. → the published manifest."""
    opts = dataclasses.replace(options or OnDiskOptions(), **fields)

    def make(live: IndexVersion, staging: Path) -> dict[str, Any]:
        ids = live._searcher.ids.copy()
        return build_and_tune(staging, ids, queries() if callable(queries) else queries, opts)

    manifest = derive_version(index_dir, (INDEX_FILE, IVFDATA), make)
    log.info("published on-disk version %s (%s)", manifest.version, manifest.factory)
    return manifest


def build_and_tune(
    staging: Path, ids: np.ndarray, queries: np.ndarray, opts: OnDiskOptions
) -> dict[str, Any]:
    """On-disk IVF into `staging` (which holds vectors.npy), tuned; → the Manifest fields
    describing it."""
    built = build_ondisk_ivf(
        staging / "vectors.npy",
        ids,
        staging,
        nlist=opts.nlist,
        code=opts.code,
        shards=opts.shards,
        workers=opts.workers,
    )
    tuned = tune_ondisk(staging, ids, built.factory, queries, opts.recall_target)
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
