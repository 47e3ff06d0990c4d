"""Near-duplicate groups of a whole index (photo-library clean-up): every pair of items whose
cosine is at least a threshold is found with FAISS range search over the stored fp16 vectors
(an exact fp16 index, queried a chunk of rows at a time), and the groups are the connected
components of those pairs."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .reader import IndexVersion

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.95  # resized / re-encoded / lightly cropped copies sit above this


@dataclass(frozen=True)
class DedupOptions:
    threshold: float = DEFAULT_THRESHOLD  # cosine at or above which two items are duplicates
    chunk: int = 4096  # query rows per range search (bounds the result buffers)

    def __post_init__(self) -> None:
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be a cosine in [-1, 1], got {self.threshold}")
        if self.chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {self.chunk}")


@dataclass
class DuplicateGroup:
    """Items that are near-duplicates of each other, linked by pairs at or above the threshold."""

    ids: list[int]  # ascending
    paths: list[str]  # same order as ids
    min_score: float  # the lowest cosine of a linked pair in the group
    max_score: float

    def to_dict(self) -> dict:
        return {
            "size": len(self.ids),
            "min_score": round(self.min_score, 4),
            "max_score": round(self.max_score, 4),
            "items": [{"id": str(i), "path": p} for i, p in zip(self.ids, self.paths, strict=True)],
        }


@dataclass
class DedupReport:
    version: str
    threshold: float
    count: int  # items in the version
    groups: list[DuplicateGroup] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Items that could go while keeping one per group."""
        return sum(len(g.ids) - 1 for g in self.groups)

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "threshold": self.threshold,
            "count": self.count,
            "duplicates": self.duplicates,
            "groups": [g.to_dict() for g in self.groups],
        }


def similar_pairs(vectors: np.ndarray, threshold: float, chunk: int = 4096) -> np.ndarray:
    """(m, 3) array of (row i, row j, cosine) with i < j and cosine >= threshold, for unit
    `vectors` (n, d). Range search over an exact fp16 index of the vectors."""
    import faiss

    n, d = vectors.shape
    index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    for start in range(0, n, 65536):
        index.add(np.ascontiguousarray(vectors[start : start + 65536], dtype=np.float32))
    out = []
    # the fp16 codes round the scores a little: search slightly below, filter exactly after
    radius = float(threshold) - 1e-3
    for start in range(0, n, chunk):
        q = np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32)
        lims, scores, rows = index.range_search(q, radius)
        src = np.repeat(np.arange(start, start + len(q)), np.diff(lims.astype(np.int64)))
        keep = (rows > src) & (scores >= threshold)
        scores = np.minimum(scores, 1.0)  # fp16 rounding can give 1.0001
        out.append(np.stack([src[keep], rows[keep], scores[keep]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 3))


def _components(n: int, pairs: np.ndarray) -> dict[int, list[int]]:
    """Union-find over the pairs → root row → the rows of its component (size ≥ 2 only)."""
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for i, j in pairs[:, :2].astype(np.int64):
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for r in np.unique(pairs[:, :2].astype(np.int64)):
        groups.setdefault(find(int(r)), []).append(int(r))
    return groups


def find_duplicates(
    index: str | Path | IndexVersion, options: DedupOptions | None = None
) -> DedupReport:
    """Near-duplicate groups of the live version of `index` (or of an open version), largest
    first, then by their smallest id."""
    from .reader import IndexVersion, open_index

    opts = options or DedupOptions()
    v = index if isinstance(index, IndexVersion) else open_index(index)
    try:
        vectors = np.load(v.path / "vectors.npy", mmap_mode="r")  # row i = i-th smallest id
        rows = {int(r["row"]): (int(r["id"]), r["path"]) for r in v.rows()}
        pairs = similar_pairs(vectors, opts.threshold, opts.chunk) if v.count else np.zeros((0, 3))
        report = DedupReport(str(v.id), opts.threshold, v.count)
        comps = _components(v.count, pairs)
        root_of = {r: root for root, members in comps.items() for r in members}
        scores: dict[int, list[float]] = {}
        for i, _, s in pairs:
            scores.setdefault(root_of[int(i)], []).append(float(s))
        for root, members in comps.items():
            items = sorted(rows[r] for r in members)
            report.groups.append(
                DuplicateGroup(
                    ids=[i for i, _ in items],
                    paths=[p for _, p in items],
                    min_score=min(scores[root]),
                    max_score=max(scores[root]),
                )
            )
        report.groups.sort(key=lambda g: (-len(g.ids), g.ids[0]))
        log.info("%d duplicate groups among %d items", len(report.groups), v.count)
        return report
    finally:
        if v is not index:
            v.close()


def distinct_hits(
    vectors: Iterable[np.ndarray | None], threshold: float, want: int
) -> tuple[list[int], int]:
    """Greedy near-duplicate removal over ranked hits: walk the hits best first and keep one
    unless its cosine to a hit already kept is at least `threshold`, until `want` are kept.
    `vectors` yields each hit's unit vector in rank order (None: the item is gone; skipped),
    lazily, so only the hits looked at are read. → (positions kept, positions looked at)."""
    kept_pos: list[int] = []
    kept: np.ndarray | None = None  # (want, d): the kept vectors, filled row by row
    seen = 0
    for pos, vec in enumerate(vectors):
        n = len(kept_pos)
        if n >= want:
            break
        seen = pos + 1
        if vec is None:
            continue
        v = np.asarray(vec, np.float32).reshape(-1)
        if kept is None:
            kept = np.empty((want, v.shape[0]), np.float32)
        elif n and float((kept[:n] @ v).max()) >= threshold:
            continue
        kept[n] = v
        kept_pos.append(pos)
    return kept_pos, seen
