"""BuildOptions: how a build or update runs, one object shared by every engine and the CLI."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

DEFAULT_SHARD_SIZE = 2048  # images per embedding shard: the most work a crash can lose


@dataclass(frozen=True)
class BuildOptions:
    """Knobs of `build_index`, `update_index` and `ray_build_index` (validated when made)."""

    batch_size: int = 32  # images per forward
    workers: int | None = None  # decode processes; None: by device and cores, 0: in-process
    factory: str | None = None  # FAISS factory string; None: chosen by size and memory budget
    memory_budget: int | str | None = None  # e.g. "2G": caps the FAISS build
    progress: bool = True  # progress bars on stderr
    shard_size: int = DEFAULT_SHARD_SIZE
    # decode plain JPEGs in one batch on the encoder's device (nvJPEG on CUDA; the workers only
    # read bytes): faster than CPU workers when a GPU is decode-bound (benchmarks/gpu_check.py)
    device_decode: bool = False

    def __post_init__(self) -> None:
        from .faiss_build import parse_size

        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.workers is not None and self.workers < 0:
            raise ValueError("workers must be at least 0")
        if self.shard_size < 1:
            raise ValueError("shard_size must be at least 1")
        parse_size(self.memory_budget)  # fail fast on a bad size

    @classmethod
    def of(cls, options: BuildOptions | None = None, **fields: Any) -> BuildOptions:
        """`options` (default: the defaults) with `fields` replaced; an unknown name is a
        TypeError."""
        return dataclasses.replace(options or cls(), **fields)
