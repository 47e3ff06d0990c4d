"""The living index: a published version plus the write-ahead log's changes since.

Writes are serialised, logged and fsynced before they are applied and acknowledged; reads take
the current immutable `LiveView` without any lock. Opening replays the log over the live
version, so a crash at any moment loses no acknowledged change and applies no torn one."""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._fsutil import exclusive_lock
from ..errors import IndexOpenError
from ..reader import IndexVersion, open_index
from ..types import Item
from .guard import LIVE_STATE
from .view import LiveView, item_of
from .wal import LIVE_DIR, AddRecord, DeleteRecord, Record, WriteAheadLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NewImage:
    """An image to add: where it is (corpus-relative or `media:` path), its content and vector."""

    path: str
    sha256: str
    size: int
    width: int
    height: int
    vector: np.ndarray  # (dim,) unit vector
    mtime_ns: int = 0
    caption: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Added:
    item: Item
    duplicate_of: int | None  # set: the content was already indexed under this id


def _ms(seconds: float) -> float:
    return round(1e3 * float(seconds), 3)


def read_live_state(version: IndexVersion) -> tuple[int, int]:
    """(last log seq folded into the version, next free id) of a published version."""
    p = version.path / LIVE_STATE
    top = int(version._ids[-1]) + 1 if version.count else 0
    if not p.is_file():
        return 0, top
    d = json.loads(p.read_text())
    return int(d["wal_seq"]), max(top, int(d["next_id"]))


class LiveIndex:
    """One writer process per index (it holds `live/writer.lock` while open)."""

    def __init__(self, index_dir: Path, base: IndexVersion, wal: WriteAheadLog) -> None:
        self.index_dir = index_dir
        self.wal = wal
        self._lock = threading.RLock()
        self._reset(base)
        self.last_write = 0.0
        self.last_compaction: float | None = None
        self._write_s: collections.deque[float] = collections.deque(maxlen=1000)  # recent writes
        for r in wal.records:
            if r.seq > self._base_seq:
                self._apply(r)
        self._view = self._make_view()

    def _reset(self, base: IndexVersion) -> None:
        """Start from `base` alone (the log's records after its seq are applied next)."""
        self._base = base
        self._base_seq, self._next_id = read_live_state(base)
        self._seq = self._base_seq
        self._delta: dict[int, AddRecord] = {}
        self._masked: dict[int, int] = {}  # id → seq of the delete or edit hiding its old vector

    @classmethod
    def open(cls, index_dir: str | Path, expected_fingerprint: str | None = None) -> LiveIndex:
        """Open the live version, take the writer lock, replay the log."""
        index_dir = Path(index_dir)
        stack = contextlib.ExitStack()
        stack.enter_context(exclusive_lock(index_dir / LIVE_DIR / "writer.lock"))
        try:
            base = open_index(index_dir, expected_fingerprint=expected_fingerprint)
            live = cls(index_dir, base, WriteAheadLog(index_dir))
        except BaseException:
            stack.close()
            raise
        live._stack = stack
        return live

    # -- reads ----------------------------------------------------------------------------------
    def view(self) -> LiveView:
        return self._view

    @property
    def base(self) -> IndexVersion:
        return self._base

    @property
    def base_seq(self) -> int:
        return self._base_seq

    def pending(self) -> int:
        """Changes not yet folded into a published version."""
        return self._seq - self._base_seq

    def find_sha(self, sha256: str) -> int | None:
        """A visible item with this content (the lowest id)."""
        with self._lock:
            ids = [i for i, r in self._delta.items() if r.sha256 == sha256]
            ids += [i for i in self._base.ids_with_sha(sha256) if i not in self._masked]
            return min(ids) if ids else None

    def find_path(self, path: str) -> Item | None:
        with self._lock:
            for r in self._delta.values():
                if r.path == path:
                    return item_of(r)
            item = self._base.item_with_path(path)
            return None if item is None or item.id in self._masked else item

    def stats(self) -> dict[str, Any]:
        v = self._view
        with self._lock:
            lat = list(self._write_s)  # fsync included: the latency a client waits for
        return {
            "delta": v.delta_size,
            "tombstones": v.tombstones,
            "log_bytes": self.wal.size(),
            "pending": self.pending(),
            "last_compaction": self.last_compaction,
            "write_ms_p50": _ms(np.percentile(lat, 50)) if lat else None,
            "write_ms_p99": _ms(np.percentile(lat, 99)) if lat else None,
        }

    # -- writes ---------------------------------------------------------------------------------
    def add(self, new: NewImage) -> Added:
        """An upload: an exact duplicate of a visible item answers that item's id."""
        with self._lock:
            dup = self.find_sha(new.sha256)
            if dup is not None:
                item = self._view.get_item(dup)
                assert item is not None
                return Added(item, dup)
            return Added(self.put(new), None)

    def put(self, new: NewImage, item_id: int | None = None) -> Item:
        """Add `new` under a fresh id, or re-encode item `item_id` (an edit in place or a move)."""
        if np.shape(new.vector) != (self._base.dim,):
            raise ValueError(f"vector must have shape ({self._base.dim},)")
        with self._lock:
            rec = AddRecord(
                seq=self._seq + 1,
                id=self._next_id if item_id is None else int(item_id),
                path=new.path, sha256=new.sha256, size=new.size, mtime_ns=new.mtime_ns,
                width=new.width, height=new.height,
                vector=np.asarray(new.vector, np.float16), caption=new.caption,
                extra=dict(new.extra),
            )  # fmt: skip
            self._commit([rec])
            return item_of(rec)

    def delete(self, item_id: int) -> bool:
        """False: no such (visible) item."""
        with self._lock:
            if self._view.get_item(item_id) is None:
                return False
            self._commit([DeleteRecord(seq=self._seq + 1, id=int(item_id))])
            return True

    def _commit(self, records: list[Record]) -> None:
        t0 = time.perf_counter()
        self.wal.append(records)  # durable from here on
        for r in records:
            self._apply(r)
        self._view = self._make_view()
        self.last_write = time.time()
        self._write_s.append(time.perf_counter() - t0)

    def _apply(self, r: Record) -> None:
        fresh = isinstance(r, AddRecord) and r.id >= self._next_id
        if not fresh:  # an edit or a delete hides whatever the version holds under that id
            self._masked[r.id] = r.seq
        if isinstance(r, AddRecord):
            self._delta[r.id] = r
            self._next_id = max(self._next_id, r.id + 1)
        else:
            self._delta.pop(r.id, None)
        self._seq = r.seq

    def _make_view(self) -> LiveView:
        delta = sorted(self._delta.values(), key=lambda r: r.id)
        return LiveView(self._base, delta, set(self._masked), self._seq, self._base_seq)

    # -- compaction -----------------------------------------------------------------------------
    def snapshot(self) -> tuple[LiveView, int, int]:
        """(view, its seq, next id) for a compaction."""
        with self._lock:
            return self._view, self._seq, self._next_id

    def rebase(self, version: IndexVersion, seq: int) -> None:
        """`version` holds every change up to `seq`: keep only the later ones in the delta."""
        with self._lock:
            if version.dim != self._base.dim:
                raise IndexOpenError(f"{version.path}: dim {version.dim} ≠ {self._base.dim}")
            self._base, self._base_seq = version, seq
            self._delta = {i: r for i, r in self._delta.items() if r.seq > seq}
            self._masked = {i: s for i, s in self._masked.items() if s > seq}
            self._view = self._make_view()
            self.last_compaction = time.time()
        self.wal.drop_through(seq)

    def close(self) -> None:
        self.wal.close()
        self._base.close()
        stack = getattr(self, "_stack", None)
        if stack is not None:
            stack.close()
