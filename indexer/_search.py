"""k-NN over a published version: FAISS candidates, exact re-rank from the stored fp16 vectors,
and filters that never make a result list short (exact search over a small allowed set, or
widening the candidate list, or an exact fallback)."""

from __future__ import annotations

import logging
import mmap
from dataclasses import dataclass

import faiss
import numpy as np

log = logging.getLogger(__name__)

EXACT_FILTER_LIMIT = 65_536  # allowed sets up to this size are searched exactly (cheap, complete)
TUNED_K = 10  # a build tunes nprobe and the re-rank depth for recall@TUNED_K
EXACT_CHUNK = 16_384  # rows per matmul in exact scans (~50 MB of fp16 + fp32 at d=512)
# Every fp16 bit pattern → its float32 value: on a long scan (the 256 KB table stays in cache) a
# table lookup widens stored vectors about twice as fast as numpy's fp16 → fp32 cast.
_F16_TO_F32 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
# ... but a re-rank widens a few rows right after a FAISS search has pushed the table out of the
# cache: then each lookup is a cache miss. Measured on 1M vectors at nprobe 20, 16 rows: table
# 84 µs, numpy cast 35 µs (100 rows: 175 vs 116 µs). Blocks up to this many values are cast.
_TABLE_MIN = 1 << 16


def as_f32(block: np.ndarray) -> np.ndarray:
    """Rows read from the vector store as float32 (exact: every fp16 value is a float32)."""
    if block.dtype == np.float16 and block.size >= _TABLE_MIN:
        return _F16_TO_F32.take(np.ascontiguousarray(block).view(np.uint16))
    return np.asarray(block, dtype=np.float32)


def check_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(queries)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must have shape (n, {dim}), got {tuple(np.shape(queries))}")
    q = np.ascontiguousarray(q, dtype=np.float32)
    if not np.isfinite(q).all():
        raise ValueError("queries contain NaN or Inf")
    return q


def topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest per row, best first.  scores: (nq, n) → (nq, min(k, n))"""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def exact_rows(
    vectors: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k over `rows` of `vectors` (all rows if None) → (scores, rows), (nq, <=k) each.

    Streams the rows in chunks sized so that the (nq, chunk) score block stays ~32 MB."""
    n = len(vectors) if rows is None else len(rows)
    chunk = int(min(EXACT_CHUNK, max(1024, (8 << 20) // max(1, len(queries)))))
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_r = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        if rows is None:  # a plain slice: sequential reads
            chunk_rows = np.arange(start, stop)
            block = as_f32(vectors[start:stop])  # (c, d)
        else:
            chunk_rows = rows[start:stop]
            block = as_f32(vectors[chunk_rows])
        s = queries @ block.T  # (nq, c)
        keep = topk(s, k)  # (nq, ≤k) positions in this chunk
        s = np.concatenate([best_s, np.take_along_axis(s, keep, axis=1)], axis=1)
        r = np.concatenate([best_r, chunk_rows[keep]], axis=1)
        keep = topk(s, k)
        best_s = np.take_along_axis(s, keep, axis=1)
        best_r = np.take_along_axis(r, keep, axis=1)
    return best_s, best_r


def prefetch_vectors(vectors: np.memmap, share_of_available: float = 0.5) -> bool:
    """Ask the kernel to read a memory-mapped vectors file into the page cache in the background
    (MADV_WILLNEED), if it is at most `share_of_available` of the memory available now. A re-rank
    reads ~rerank_k scattered rows per query: from the page cache that is ~1 µs a row, from the
    disk one random read each (measured ~8 ms per query for 100 rows of a 10 GB file). The page
    cache is shared by every process serving the version and the kernel may still evict it under
    memory pressure. → whether the advice was given."""
    mm = getattr(vectors, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise"):
        return False
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return False
    if len(mm) > share_of_available * available:
        log.info("vectors (%d MiB) not read ahead: over the memory share", len(mm) >> 20)
        return False
    try:
        mm.madvise(mmap.MADV_WILLNEED)
    except (OSError, ValueError):
        return False
    return True


@dataclass
class Searcher:
    index: faiss.Index
    vectors: np.ndarray  # (n, d) float16, row i holds item ids[i]
    ids: np.ndarray  # (n,) int64, sorted
    rerank: bool  # exact re-rank of candidates (for compressed or graph indexes)
    rerank_k: int = 100
    ivf: bool = False  # native-id IVF index: takes SearchParametersIVF
    nprobe: int = 0
    nlist: int = 0
    exact_filter_limit: int = EXACT_FILTER_LIMIT

    prefetch: bool = True  # ask the kernel to read a memory-mapped vectors file in the background

    def __post_init__(self) -> None:
        # Sorted unique ids with no gaps (a fresh build's 0..n-1) map to rows by subtraction; a
        # searchsorted over 10M ids costs ~0.2 ms per query in cache misses.
        n = len(self.ids)
        self._first = int(self.ids[0]) if n else 0
        self._dense = n > 0 and int(self.ids[-1]) - self._first == n - 1
        if isinstance(self.vectors, np.memmap):
            if self.prefetch and self.rerank:
                prefetch_vectors(self.vectors)
            # a plain ndarray over the same mapping: np.memmap's Python-level __getitem__ and
            # __array_finalize__ cost microseconds on every re-rank gather
            self.vectors = self.vectors.view(np.ndarray)

    def rerank_depth(self, k: int) -> int:
        """Candidates to re-rank for a top-k answer. The build tunes `rerank_k` for recall@10;
        a larger k keeps the same candidates-per-result ratio (k=100 at depth 12 re-ranks 120),
        so its recall does not fall to what `k` bare candidates give."""
        return max(k, self.rerank_k, -(-self.rerank_k * k // TUNED_K))

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        if self._dense:
            return np.asarray(ids, dtype=np.int64) - self._first
        return np.searchsorted(self.ids, ids)

    def recall_by_depth(
        self, queries: np.ndarray, truth: np.ndarray, depths: list[int]
    ) -> dict[int, float]:
        """recall@k (k = truth's width) of the re-ranked answer at each re-rank depth, from one
        FAISS search of max(depths) candidates: a shorter candidate list is a prefix of a longer
        one, so each depth re-ranks a prefix of the same list (as `search` would with that
        `rerank_k`). truth: (nq, k) ids of the exact top-k."""
        k = truth.shape[1]
        _, cand = self.index.search(queries, max(depths))
        hits = dict.fromkeys(depths, 0)
        for qi in range(len(queries)):
            c = cand[qi][cand[qi] >= 0]
            s = np.einsum("ij,j->i", as_f32(self.vectors[self.rows_of(c)]), queries[qi])
            want = set(truth[qi].tolist())
            for depth in depths:
                top = c[:depth][np.argsort(-s[:depth], kind="stable")[:k]]
                hits[depth] += len(want.intersection(top.tolist()))
        return {depth: h / (len(queries) * k) for depth, h in hits.items()}

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed_ids: np.ndarray | None = None,
        min_score: float | None = None,
    ) -> list[list[tuple[int, float]]]:
        """→ per query, up to min(k, matches) (id, score) pairs, best first."""
        if k < 1:
            raise ValueError("k must be at least 1")
        q = queries
        if len(self.ids) == 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return [[] for _ in range(len(q))]
        if allowed_ids is not None and (
            len(allowed_ids) <= self.exact_filter_limit or not (self.ivf or self.rerank)
        ):
            rows = np.sort(self.rows_of(np.asarray(allowed_ids, dtype=np.int64)))
            return self._exact(q, k, rows, min_score)
        n_allowed = len(self.ids) if allowed_ids is None else len(allowed_ids)
        want = min(k, n_allowed)
        sel = None if allowed_ids is None else faiss.IDSelectorBatch(allowed_ids.astype(np.int64))
        results: list[list[tuple[int, float]] | None] = [None] * len(q)
        todo = np.arange(len(q))
        kk = min(n_allowed, self.rerank_depth(k) if self.rerank else k)
        while len(todo):
            hits, below_min, full = self._ann(q[todo], k, kk, sel, min_score, n_allowed)
            retry = []
            for j, qi in enumerate(todo):
                h = hits[j][:k]
                if len(h) >= want or below_min[j]:
                    results[qi] = h  # complete, or min_score already cut the candidate list
                elif full[j] and kk < n_allowed:
                    retry.append(qi)  # more candidates may hold more matches: widen
                else:  # the ANN structure cannot reach more (few IVF lists probed): go exact
                    rows = None if allowed_ids is None else np.sort(self.rows_of(allowed_ids))
                    results[qi] = self._exact(q[qi : qi + 1], k, rows, min_score)[0]
            todo = np.array(retry, dtype=np.int64)
            kk = min(n_allowed, kk * 4)
        return results  # type: ignore[return-value]

    def _ann(
        self,
        q: np.ndarray,
        k: int,
        kk: int,
        sel: faiss.IDSelector | None,
        min_score: float | None,
        n_allowed: int,
    ) -> tuple[list[list[tuple[int, float]]], list[bool], list[bool]]:
        """→ the best ≤ k hits per query (after re-rank and min_score), whether a candidate
        already fell below min_score (more candidates cannot add hits), and whether all kk
        candidate slots came back."""
        params = None
        if sel is not None:
            if self.ivf:
                # A filter keeping a fraction f of the items leaves ~f of each probed list:
                # probe 1/f times more lists to see as many candidates as an unfiltered search.
                nprobe = min(self.nlist, -(-self.nprobe * len(self.ids) // n_allowed))
                params = faiss.SearchParametersIVF(sel=sel, nprobe=max(1, nprobe))
            else:
                params = faiss.SearchParameters(sel=sel)
        scores, cand = self.index.search(q, kk, params=params)
        out, below, full = [], [], []
        for qi in range(len(q)):
            c = cand[qi][cand[qi] >= 0]
            if self.rerank and len(c):
                # sorted ids → sorted rows: sequential reads of the memmap, and a searchsorted
                # with sorted needles (several times faster than with FAISS's score order)
                rows = self.rows_of(np.sort(c))
                # einsum, not `@`: a BLAS call wakes OpenBLAS's worker threads, which then spin
                # beside the next FAISS search (measured 0.61× raw FAISS per query at 1M on 2
                # cores); this product is only ~100 × d, one thread does it in microseconds
                s = np.einsum("ij,j->i", as_f32(self.vectors[rows]), q[qi])
                c = self.ids[rows]
                order = np.argsort(-s, kind="stable")
                c, s = c[order], s[order]
            else:
                s = scores[qi][: len(c)]
            full.append(len(c) >= kk)
            below.append(min_score is not None and len(s) > 0 and float(s[-1]) < min_score)
            if min_score is not None:
                keep = s >= min_score
                c, s = c[keep], s[keep]
            # only the k that can be returned become Python tuples (not all kk candidates)
            out.append(list(zip(c[:k].tolist(), s[:k].tolist(), strict=True)))
        return out, below, full

    def _exact(
        self, q: np.ndarray, k: int, rows: np.ndarray | None, min_score: float | None
    ) -> list[list[tuple[int, float]]]:
        scores, found = exact_rows(self.vectors, q, k, rows)
        out = []
        for s, r in zip(scores, found, strict=True):
            hits = [(int(self.ids[ri]), float(si)) for si, ri in zip(s, r, strict=True)]
            if min_score is not None:
                hits = [h for h in hits if h[1] >= min_score]
            out.append(hits)
        return out
