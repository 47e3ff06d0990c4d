"""Synthetic CLIP-like embeddings with a modality gap, for memory/recall benchmarks and tests,
and `publish_vectors`, which publishes such vectors as an index version without images.

Images belong to concepts and, within a concept, to finer sub-concepts (a breed, a style), plus
per-image noise, all shifted along an "image" direction. A text query names a sub-concept but
sits along a different "text" direction, so it is far from every image (cosine ≈ 0.3–0.5 even
to its best matches, as with CLIP) — the geometry that makes text→image ANN search harder than
image→image search.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from indexer.ondisk import OnDiskOptions


class GapSpace:
    def __init__(self, dim: int = 512, concepts: int = 1000, subs: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.seed, self.subs = dim, seed, subs
        self.centers = _unit(rng.standard_normal((concepts, dim), dtype=np.float32))
        self.sub_dirs = _unit(rng.standard_normal((concepts * subs, dim), dtype=np.float32))
        self.image_dir = _unit(rng.standard_normal(dim, dtype=np.float32))
        self.text_dir = _unit(rng.standard_normal(dim, dtype=np.float32))
        # Zipf-like concept frequencies: a few concepts are common, most are rare.
        w = 1.0 / np.arange(1, concepts + 1) ** 0.7
        self.weights = w / w.sum()

    def _members(self, rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
        c = rng.choice(len(self.centers), size=m, p=self.weights)
        s = c * self.subs + rng.integers(0, self.subs, size=m)
        return c, s

    def images(self, n: int, chunk: int = 65_536) -> Iterator[np.ndarray]:
        """(≤chunk, dim) float32 unit vectors; deterministic for a given (seed, n, chunk)."""
        for i, start in enumerate(range(0, n, chunk)):
            rng = np.random.default_rng([self.seed, 1, i])
            m = min(chunk, n - start)
            c, s = self._members(rng, m)
            noise = _unit(rng.standard_normal((m, self.dim), dtype=np.float32))
            yield _unit(
                self.centers[c] + 0.7 * self.sub_dirs[s] + 0.35 * noise + 0.8 * self.image_dir
            )

    def text_queries(self, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2])
        c, s = self._members(rng, n)
        noise = _unit(rng.standard_normal((n, self.dim), dtype=np.float32))
        return _unit(self.centers[c] + 0.7 * self.sub_dirs[s] + 0.4 * noise + 0.9 * self.text_dir)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def publish_vectors(
    index_dir: str | Path,
    chunks: Iterable[np.ndarray],
    n: int,
    dim: int,
    *,
    model: str,
    fingerprint: str,
    ondisk: OnDiskOptions | None = None,
    queries: np.ndarray | None = None,
) -> str:
    """Publish a version from precomputed unit vectors (item i: id i, path `vectors/<i>`): with
    an exact Flat index, or, given `ondisk` (and the `queries` to tune it with), an on-disk IVF
    built and tuned in place. → the version id."""
    from indexer._fsutil import exclusive_lock
    from indexer.layout import WORK
    from indexer.manifest import Manifest
    from indexer.publish import new_version_id, publish, staging_dir

    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(index_dir / WORK / "lock"):
        version = new_version_id()
        staging = staging_dir(index_dir, version)
        _write_rows(staging, chunks, n, dim)
        if ondisk is None:
            fields = _flat_index(staging, dim)
        else:
            from indexer.ondisk import build_and_tune

            if queries is None:
                raise ValueError("an on-disk index needs queries to tune its recall")
            fields = build_and_tune(staging, np.arange(n, dtype=np.int64), queries, ondisk)
        manifest = Manifest(
            model=model,
            fingerprint=fingerprint,
            dim=dim,
            count=n,
            root=str(index_dir.resolve()),
            source="vectors",
            **fields,
        )
        publish(index_dir, staging, version, manifest)
        return version


def _write_rows(staging: Path, chunks: Iterable[np.ndarray], n: int, dim: int) -> None:
    from indexer.store import VectorWriter, write_items

    writer = VectorWriter(staging / "vectors.npy", n, dim)
    for c in chunks:
        writer.write(c)
    writer.close()
    rows = (
        {"id": i, "path": f"vectors/{i:09d}", "sha256": f"{i:064x}", "size": 0, "mtime_ns": 0,
         "width": 0, "height": 0, "caption": None, "extra": {}}
        for i in range(n)
    )  # fmt: skip
    write_items(staging / "items.sqlite", rows)


def _flat_index(staging: Path, dim: int) -> dict:
    """An exact IndexIDMap2(Flat) over staging/vectors.npy; → its Manifest fields."""
    import faiss

    from indexer.faiss_build import BuiltIndex
    from indexer.store import iter_vector_chunks
    from indexer.types import RERANK_K

    index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    start = 0
    for c in iter_vector_chunks(staging / "vectors.npy", 65_536):
        index.add_with_ids(c, np.arange(start, start + len(c), dtype=np.int64))
        start += len(c)
    faiss.write_index(index, str(staging / "images.faiss"))
    built = BuiltIndex(index=index, factory="Flat", rerank=False, rerank_k=RERANK_K)
    return built.manifest_fields()
