"""Synthetic CLIP-like embeddings with a modality gap, for memory/recall benchmarks and tests.

Images are noisy members of concept clusters, shifted along an "image" direction; text queries
name a concept but sit along a different "text" direction, so they are far from every image
(cosine ≈ 0.3–0.5 to their own concept) — the geometry that makes text→image ANN search harder
than image→image search.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class GapSpace:
    def __init__(self, dim: int = 512, concepts: int = 2000, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.dim, self.seed = dim, seed
        self.centers = _unit(rng.standard_normal((concepts, dim), dtype=np.float32))
        self.image_dir = _unit(rng.standard_normal(dim, dtype=np.float32))
        self.text_dir = _unit(rng.standard_normal(dim, dtype=np.float32))
        # Zipf-like concept frequencies: a few concepts are common, most are rare.
        w = 1.0 / np.arange(1, concepts + 1) ** 0.7
        self.weights = w / w.sum()

    def images(self, n: int, chunk: int = 65_536) -> Iterator[np.ndarray]:
        """(≤chunk, dim) float32 unit vectors; deterministic for a given (seed, n, chunk)."""
        for i, start in enumerate(range(0, n, chunk)):
            rng = np.random.default_rng([self.seed, 1, i])
            m = min(chunk, n - start)
            c = rng.choice(len(self.centers), size=m, p=self.weights)
            noise = _unit(rng.standard_normal((m, self.dim), dtype=np.float32))
            yield _unit(self.centers[c] + 0.9 * noise + 0.8 * self.image_dir)

    def text_queries(self, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 2])
        c = rng.choice(len(self.centers), size=n, p=self.weights)
        noise = _unit(rng.standard_normal((n, self.dim), dtype=np.float32))
        return _unit(self.centers[c] + 0.6 * noise + 0.8 * self.text_dir)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)
