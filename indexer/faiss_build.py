"""Choose, train, fill and tune the FAISS index of a version (autofaiss-style).

Small corpora get an exact `Flat` index. Larger ones get IVF with SQ8 (or PQ when the memory budget
is tight); their candidates are re-ranked exactly from the stored fp16 vectors, and `nprobe` is
raised until recall@10 against exact search reaches the target — measured with *text* queries,
which sit away from the image cluster (the modality gap) and are the hard case for ANN search.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import math
import os
import re
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ._search import EXACT_CHUNK, TUNED_K, Searcher, exact_rows
from .recall import smallest_rerank_k
from .store import iter_vector_chunks, read_npy_header
from .types import RERANK_K

log = logging.getLogger(__name__)

FLAT_MAX = 50_000  # up to here exact search costs a few ms per query: no reason to approximate
RECALL_TARGET = 0.95
TUNE_MARGIN = 0.02  # tune for target + margin, so the held-out half also clears the target
MAX_RERANK_K = 1600
TRAIN_PER_LIST = 48  # k-means training points per IVF list (FAISS warns below 39)
ADD_CHUNK = 16_384  # rows per add() call
BUDGET_ADD_CHUNK = 4096  # … under a memory budget (fp16 read + fp32 + FAISS's residuals: 40 MB)
MARGIN = 64 << 20  # allocator slack kept free inside the memory budget
GT_QUERIES = 128  # exact ground truth: queries per pass over the vectors (bounds its buffers)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(size: int | str | None) -> int | None:
    """'2G', '512M', '1.5g', 1048576 → bytes (None stays None)."""
    if size is None or isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(size).lower())
    if not m:
        raise ValueError(f"invalid size {size!r}; use e.g. 512M, 2G or a number of bytes")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    """This process's peak resident set: VmHWM where /proc has it. Not ru_maxrss first: Linux
    carries the peak of the parent's image over fork + exec, so a build started by a large
    process reported the parent's peak (measured: 744 MiB for a build that peaked at 516)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def choose_nlist(n: int) -> int:
    """A power of two near sqrt(n): ~1k vectors per list at 1M, cheap to train on a CPU."""
    nlist = 2 ** round(math.log2(max(1.0, math.sqrt(n))))
    return int(min(65_536, max(16, min(nlist, n // TRAIN_PER_LIST))))


def build_peak(n: int, dim: int, nlist: int, code_bytes: int, budgeted: bool = True) -> int:
    """Bytes an IVF build holds at its peak beyond the process's baseline: the largest of its
    phases, which never overlap (build_faiss frees each one's buffers before the next)."""
    chunk = BUDGET_ADD_CHUNK if budgeted else ADD_CHUNK
    train = 2 * min(n, max(nlist * TRAIN_PER_LIST, 10_000)) * dim * 4 + nlist * dim * 4
    # the exact ground truth runs between the two, alone: a 16k-row fp16 + fp32 block, its
    # scores, their negation and argpartition's int64 positions
    truth = EXACT_CHUNK * (dim * 6 + GT_QUERIES * 16)
    # codes + ids (mapped blocks: little slack) with one add chunk (fp16, fp32, residuals)
    # or one tuning search (a few MB)
    filled = n * (code_bytes + 8) * 1.05 + nlist * dim * 4 + max(chunk * dim * 10, 16 << 20)
    return int(max(train, truth, filled))


def choose_factory(n: int, dim: int, memory_budget: int | None = None, baseline: int = 0) -> str:
    """The cheapest index that fits the budget: Flat if small, else IVF + SQ8, then IVF + SQ4
    (4 bits a dimension), then IVF + PQ."""
    avail = math.inf if memory_budget is None else memory_budget - baseline - MARGIN
    chunk_bytes = ADD_CHUNK * dim * 6  # fp16 read + fp32 copy
    if n <= FLAT_MAX and n * (dim * 4 + 8) + chunk_bytes <= avail:
        return "Flat"
    nlist = choose_nlist(n)
    codes = [("SQ8", dim), ("SQ4", dim // 2)]
    codes += [(f"PQ{m}", m) for m in (64, 32, 16, 8) if dim % m == 0 and m < dim // 2]
    for name, code_bytes in codes:
        if build_peak(n, dim, nlist, code_bytes, memory_budget is not None) <= avail:
            return f"IVF{nlist},{name}"
    need = build_peak(n, dim, nlist, codes[-1][1]) + baseline + MARGIN
    raise ValueError(
        f"a memory budget of {memory_budget / 2**20:.0f} MiB cannot hold an index of {n:,} "
        f"vectors (dim {dim}); at least {need / 2**20:.0f} MiB is needed"
    )


def is_ivf(factory: str) -> bool:
    return factory.upper().startswith("IVF")


def needs_rerank(factory: str) -> bool:
    return factory != "Flat" and not (is_ivf(factory) and factory.endswith(",Flat"))


def make_index(factory: str, dim: int) -> faiss.Index:
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise ValueError(f"invalid FAISS factory string {factory!r}: {e}") from None
    if is_ivf(factory):
        faiss.extract_index_ivf(index).cp.niter = 15  # enough for search quality, 40% less time
        return index  # IVF keeps int64 ids natively
    return faiss.IndexIDMap2(index)


class PreadRows:
    """Rows of an fp16 .npy read with pread (no mmap), so tuning does not inflate the RSS."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as f:
            self.shape, self.dtype = read_npy_header(f)
            self.offset = f.tell()
        self.row_bytes = self.shape[1] * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: Any) -> np.ndarray:
        if isinstance(rows, slice):
            start, stop, _ = rows.indices(self.shape[0])
            data = os.pread(
                self.fd, (stop - start) * self.row_bytes, self.offset + start * self.row_bytes
            )
            return np.frombuffer(data, dtype=self.dtype).reshape(-1, self.shape[1])
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        for i, r in enumerate(rows.tolist()):
            out[i] = np.frombuffer(
                os.pread(self.fd, self.row_bytes, self.offset + r * self.row_bytes), self.dtype
            )
        return out

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class BuiltIndex:
    index: faiss.Index
    factory: str
    rerank: bool
    rerank_k: int
    search_params: dict[str, int] = field(default_factory=dict)  # e.g. {"nprobe": 32}
    recall_at_10: float | None = 1.0  # None: an empty index (nothing to measure)
    recall_queries: int = 0
    exact: bool = True
    peak_rss: int = 0

    def manifest_fields(self) -> dict[str, Any]:
        return {
            "factory": self.factory,
            "metric": "inner_product",
            "rerank": self.rerank,
            "rerank_k": self.rerank_k,
            "search_params": self.search_params,
            "recall_at_10": None if self.recall_at_10 is None else round(self.recall_at_10, 4),
            "recall_queries": self.recall_queries,
            "exact": self.exact,
        }


def apply_search_params(index: faiss.Index, params: dict[str, int]) -> None:
    if "nprobe" in params:
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
    if "efSearch" in params:
        hnsw = faiss.downcast_index(faiss.downcast_index(index).index)
        hnsw.hnsw.efSearch = int(params["efSearch"])


def searcher_for(
    index: faiss.Index, vectors: Any, ids: np.ndarray, factory: str, rerank_k: int, params: dict
) -> Searcher:
    apply_search_params(index, params)
    return Searcher(
        index=index,
        vectors=vectors,
        ids=ids,
        rerank=needs_rerank(factory),
        rerank_k=rerank_k,
        ivf=is_ivf(factory),
        nprobe=int(params.get("nprobe", 0)),
        nlist=faiss.extract_index_ivf(index).nlist if is_ivf(factory) else 0,
    )


def build_faiss(
    vectors_path: Path,
    ids: np.ndarray,
    dim: int,
    *,
    factory: str | None = None,
    memory_budget: int | str | None = None,
    queries: np.ndarray | Callable[[], np.ndarray] | None = None,
    recall_target: float = RECALL_TARGET,
    rerank_k: int = RERANK_K,
    seed: int = 0,
) -> BuiltIndex:
    """Index the fp16 vectors at `vectors_path` (rows in the order of the sorted int64 `ids`).

    `queries` (text embeddings, or a function making them: only called when the index is
    approximate) are used to tune the search parameters and to measure recall@10.
    """
    n = len(ids)
    budget = parse_size(memory_budget)
    if budget is not None:
        _fixed_mmap_threshold()
    factory = factory or choose_factory(n, dim, budget, baseline=current_rss())
    index = make_index(factory, dim)
    if not index.is_trained:
        _train(index, vectors_path, n, factory, seed)
        release_memory()  # the training sample and FAISS's copies of it
    q = gt = None
    if factory != "Flat" and n > 0:
        q = queries() if callable(queries) else queries
        if q is None or len(q) == 0:
            raise ValueError("an approximate index needs text queries to measure its recall")
        q = np.ascontiguousarray(q, dtype=np.float32)
        # before the codes exist: the exact scan's buffers and the codes never share the budget
        gt = ids[ground_truth(vectors_path, q, TUNED_K)]
    for start, chunk in _chunks(vectors_path, BUDGET_ADD_CHUNK if budget else ADD_CHUNK):
        index.add_with_ids(chunk, ids[start : start + len(chunk)])
    release_memory()
    built = BuiltIndex(
        index=index, factory=factory, rerank=needs_rerank(factory), rerank_k=rerank_k
    )
    if q is None or gt is None:
        built.peak_rss = peak_rss()
        built.recall_at_10 = 1.0 if n else None
        return built  # exact: recall 1 by construction (and nothing to recall when empty)
    _tune(built, vectors_path, ids, q, recall_target, gt)
    built.peak_rss = peak_rss()
    return built


def _chunks(path: Path, rows: int = ADD_CHUNK):
    start = 0
    for chunk in iter_vector_chunks(path, rows):
        yield start, chunk
        start += len(chunk)


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")  # may run ldconfig: once per process
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_memory() -> None:
    """Hand freed heap memory back to the OS (glibc keeps it otherwise, and a build's peak RSS
    then creeps up phase after phase); a no-op where there is no malloc_trim."""
    gc.collect()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _fixed_mmap_threshold(size: int = 256 << 10) -> None:
    """Under a memory budget: blocks ≥ `size` get their own mapping, returned to the OS when
    freed. glibc otherwise raises this threshold after the first large free (up to 32 MB), and
    the chunk, sample and ground-truth buffers then fragment the heap instead."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-3, size)  # M_MMAP_THRESHOLD (setting it also stops the dynamic raise)


def ground_truth(vectors_path: Path, q: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows for `q`, GT_QUERIES at a time: exact_rows's (queries, rows) score block
    and its sort then stay a few MB whatever the number of queries (one pass over the vectors
    per block of queries: the same arithmetic, more reads of the file)."""
    step, reader = GT_QUERIES, PreadRows(vectors_path)
    try:
        out = [exact_rows(reader, q[i : i + step], k)[1] for i in range(0, len(q), step)]
    finally:
        reader.close()
    release_memory()
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.int64)


def _train(index: faiss.Index, vectors_path: Path, n: int, factory: str, seed: int) -> None:
    nlist = faiss.extract_index_ivf(index).nlist if is_ivf(factory) else 1
    ntrain = min(n, max(nlist * TRAIN_PER_LIST, 10_000))
    if n < nlist:
        raise ValueError(f"{factory!r} needs at least {nlist} vectors to train, the corpus has {n}")
    rows = np.sort(np.random.default_rng(seed).choice(n, size=ntrain, replace=False))
    reader = PreadRows(vectors_path)
    try:
        sample = np.asarray(reader[rows], dtype=np.float32)
    finally:
        reader.close()
    log.info("training %s on %d vectors", factory, ntrain)
    index.train(sample)


def _recall(searcher: Searcher, q: np.ndarray, gt: np.ndarray) -> float:
    """Share of the exact top-k (k = gt's width: 10, or fewer in a tiny corpus) found."""
    k = gt.shape[1]
    got = searcher.search(q, k)
    hits = sum(len({i for i, _ in g} & set(t.tolist())) for g, t in zip(got, gt, strict=True))
    return hits / (len(q) * k)


def _tune(
    built: BuiltIndex,
    vectors_path: Path,
    ids: np.ndarray,
    q: np.ndarray,
    target: float,
    gt: np.ndarray | None = None,
) -> None:
    """Raise nprobe/efSearch until recall@10 ≥ target + margin on half of the queries and ≥
    target on the other, held-out half (if even the widest setting falls short, widen the exact
    re-rank); the recall recorded is the held-out half's. gt: (len(q), 10) exact top-10 ids
    (computed here when not given)."""
    if gt is None:
        gt = ids[ground_truth(vectors_path, q, TUNED_K)]
    reader = PreadRows(vectors_path)
    try:
        split = len(q) >= 20
        tune_q, tune_gt = (q[0::2], gt[0::2]) if split else (q, gt)
        test_q, test_gt = (q[1::2], gt[1::2]) if split else (q, gt)
        if is_ivf(built.factory):
            nlist = faiss.extract_index_ivf(built.index).nlist
            grid = [{"nprobe": p} for p in (2**i for i in range(17)) if p <= nlist]
        elif "HNSW" in built.factory.upper():
            grid = [{"efSearch": e} for e in (16, 32, 64, 128, 256, 512, 1024)]
        else:
            grid = [{}]

        def recall(params: dict[str, int], q_: np.ndarray, gt_: np.ndarray) -> float:
            s = searcher_for(built.index, reader, ids, built.factory, built.rerank_k, params)
            return _recall(s, q_, gt_)

        goal = min(1.0, target + TUNE_MARGIN)
        held_out = 0.0
        for p in grid:
            params = p
            r = recall(p, tune_q, tune_gt)
            log.info("%s %s rerank %d: recall@10 %.3f", built.factory, p, built.rerank_k, r)
            if r < goal:
                continue
            # the held-out half must clear the target too (the tuning half can be lucky)
            held_out = recall(p, test_q, test_gt)
            if held_out >= target:
                break
        while held_out < target and built.rerank and built.rerank_k < MAX_RERANK_K:
            built.rerank_k *= 2  # even the widest setting fell short: re-rank more candidates
            held_out = recall(params, test_q, test_gt)
        if built.rerank:  # then the smallest re-rank depth that keeps both halves' recall
            s = searcher_for(built.index, reader, ids, built.factory, built.rerank_k, params)
            halves = (tune_q, tune_gt), (test_q, test_gt)
            built.rerank_k = smallest_rerank_k(s, *halves, goal, target)
        built.search_params = params
        built.recall_at_10 = recall(params, test_q, test_gt)
        built.recall_queries = len(test_q)
        built.exact = False
    finally:
        reader.close()
