"""Resumable embedding shards: every few thousand images the vectors so far are written atomically
(tmp + fsync + rename) under work/, keyed by content hash and model fingerprint. A killed build
finds them on its next run and encodes only what is missing."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._fsutil import fsync_dir

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """Vectors by content hash (fp16, unit length up to rounding) plus decode failures."""

    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    failures: dict[str, tuple[str, str]] = field(default_factory=dict)  # sha → (code, message)

    def __contains__(self, sha: str) -> bool:
        return sha in self.vectors or sha in self.failures


class ShardStore:
    """`work/shards/<fingerprint prefix>/shard-NNNNNN.npz` files, each complete or absent."""

    def __init__(self, work_dir: Path, fingerprint: str) -> None:
        self.dir = work_dir / "shards" / fingerprint[:16]
        self.dir.mkdir(parents=True, exist_ok=True)
        self._seq = 1 + max((self._seq_of(p) for p in self.dir.glob("shard-*.npz")), default=-1)

    @staticmethod
    def _seq_of(p: Path) -> int:
        try:
            return int(p.stem.split("-")[1])
        except (IndexError, ValueError):
            return -1

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("shard-*.npz"))

    def load(self) -> Encoded:
        out = Encoded()
        for p in self.files():
            try:
                with np.load(p, allow_pickle=False) as z:
                    shas, vecs, wh = z["sha"], z["vec"], z["wh"]
                    for sha, v, (w, h) in zip(shas.tolist(), vecs, wh.tolist(), strict=True):
                        out.vectors[sha] = v
                        out.sizes[sha] = (int(w), int(h))
                    for sha, code, msg in zip(
                        z["fail_sha"].tolist(),
                        z["fail_code"].tolist(),
                        z["fail_msg"].tolist(),
                        strict=True,
                    ):
                        out.failures[sha] = (code, msg)
            except (OSError, ValueError, KeyError) as e:  # cannot happen with atomic writes
                log.warning("%s: unreadable shard ignored (%s)", p, e)
        return out

    def write(
        self,
        shas: list[str],
        vectors: np.ndarray,
        sizes: list[tuple[int, int]],
        failures: list[tuple[str, str, str]],
    ) -> Path:
        """Persist one shard: written aside, fsynced, renamed; a crash leaves it whole or absent."""
        final = self.dir / f"shard-{self._seq:06d}.npz"
        tmp = self.dir / f".shard-{self._seq:06d}.tmp-{os.getpid()}.npz"
        self._seq += 1
        with tmp.open("wb") as f:
            np.savez(
                f,
                sha=np.array(shas, dtype="U64"),
                vec=_rows(vectors, len(shas)),
                wh=np.array(sizes, dtype=np.int32).reshape(len(shas), 2),
                fail_sha=np.array([x[0] for x in failures], dtype="U64"),
                fail_code=np.array([x[1] for x in failures], dtype=str),
                fail_msg=np.array([x[2] for x in failures], dtype=str),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(self.dir)
        return final

    def clear_temp(self) -> None:
        for p in self.dir.glob(".shard-*"):
            p.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _rows(vectors: np.ndarray, n: int) -> np.ndarray:
    """(n, dim) fp16; a shard of only failures keeps its (0, dim) shape (reshape(0, -1) fails)."""
    v = np.asarray(vectors, dtype=np.float16)
    return v if v.ndim == 2 and len(v) == n else v.reshape(n, -1)


class ShardWriter:
    """Rows encoded since the last shard, written as a shard every `shard_size` rows (and at
    `close`); each written row is also recorded in `done` when given."""

    def __init__(
        self, store: ShardStore, dim: int, shard_size: int, done: Encoded | None = None
    ) -> None:
        self.store, self.dim, self.shard_size, self.done = store, dim, shard_size, done
        self.sha: list[str] = []
        self.vec: list[np.ndarray] = []
        self.wh: list[tuple[int, int]] = []
        self.fail: list[tuple[str, str, str]] = []

    def add(
        self,
        shas: list[str],
        vectors: np.ndarray,
        sizes: list[tuple[int, int]],
        failures: list[tuple[str, str, str]],
    ) -> None:
        """`vectors`: (len(shas), dim) float32; `failures`: (sha, code, message)."""
        self.sha.extend(shas)
        self.vec.append(np.asarray(vectors, dtype=np.float32).reshape(len(shas), self.dim))
        self.wh.extend(sizes)
        self.fail.extend(failures)
        if len(self.sha) + len(self.fail) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.sha and not self.fail:
            return
        vecs = np.concatenate(self.vec) if self.vec else np.zeros((0, self.dim), np.float32)
        self.store.write(self.sha, vecs, self.wh, self.fail)
        if self.done is not None:
            rows = zip(self.sha, vecs.astype(np.float16), self.wh, strict=True)
            for sha, v, wh in rows:
                self.done.vectors[sha], self.done.sizes[sha] = v, wh
            for sha, code, msg in self.fail:
                self.done.failures[sha] = (code, msg)
        self.sha, self.vec, self.wh, self.fail = [], [], [], []
