"""Synthetic CLIP-like embeddings with a modality gap, for memory/recall benchmarks and tests.

Images belong to concepts and, within a concept, to finer sub-concepts (a breed, a style), plus
per-image noise, all shifted along an "image" direction. A text query names a sub-concept but
sits along a different "text" direction, so it is far from every image (cosine ≈ 0.3–0.5 even
to its best matches, as with CLIP) — the geometry that makes text→image ANN search harder than
image→image search.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


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
