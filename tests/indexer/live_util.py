"""A published version made from random unit vectors (no model), for living-index tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from indexer.assemble import Plan, write_version_files
from indexer.live import NewImage
from indexer.manifest import Manifest
from indexer.publish import new_version_id, publish, staging_dir
from indexer.scan import Entry

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make_vector_index(index_dir: Path, n: int, seed: int = 0) -> np.ndarray:
    """A version of `n` items `img_<i>.jpg` (id i) → their vectors (fp16 as stored, as float32)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    vecs = unit(np.random.default_rng(seed), n).astype(np.float16)
    plan = Plan()
    for i in range(n):
        sha = hashlib.sha256(f"base-{i}".encode()).hexdigest()
        e = Entry(f"img_{i:03d}.jpg", index_dir / f"img_{i:03d}.jpg", None, {"n": i}, 10, 0, sha)
        plan.add(e, vecs[i], 8, 8)
        plan.items[-1].id = i
    version = new_version_id()
    staging = staging_dir(index_dir, version)
    built = write_version_files(
        staging, plan, DIM, factory="Flat", memory_budget=None, queries=lambda: None
    )
    m = Manifest(model="fake", fingerprint="fake-fp", dim=DIM, count=n, factory=built.factory,
                 root=str(index_dir))  # fmt: skip
    publish(index_dir, staging, version, m)
    return vecs.astype(np.float32)


def new_image(vec: np.ndarray, name: str, **kw) -> NewImage:
    sha = hashlib.sha256(name.encode()).hexdigest()
    return NewImage(path=f"media:{sha}.jpg", sha256=sha, size=10, width=8, height=8,
                    vector=vec, **kw)  # fmt: skip
