"""A read-only replica of a living index written by another process: it follows the published
versions (CURRENT) and the write-ahead log's records since, refreshed every few seconds."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..layout import live_version
from ..reader import open_index
from .state import LiveIndex
from .wal import LIVE_DIR, LOG_NAME, read_log

log = logging.getLogger(__name__)


class ReadOnlyLog:
    """The log as a follower sees it: read, never written or truncated."""

    def __init__(self, index_dir: Path) -> None:
        self.path = Path(index_dir) / LIVE_DIR / LOG_NAME
        self.records, _ = read_log(self.path)

    def append(self, records) -> None:
        raise RuntimeError("a follower does not write (the writable server does)")

    def size(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0

    def close(self) -> None:
        """Nothing is held open."""


class LiveFollower(LiveIndex):
    """`view()` is the writer's state as of the last `refresh()` (a torn tail being written is
    simply not there yet)."""

    @classmethod
    def open_follower(cls, index_dir: str | Path, expected_fingerprint: str | None = None):
        index_dir = Path(index_dir)
        base = open_index(index_dir, expected_fingerprint=expected_fingerprint)
        return cls(index_dir, base, ReadOnlyLog(index_dir))

    def refresh(self) -> bool:
        """Pick up a newly published version and new log records → whether anything changed."""
        for _ in range(3):  # a compaction may trim the log between our two reads: look again
            current = live_version(self.index_dir)
            records, _ = read_log(self.wal.path)
            with self._lock:
                changed = current is not None and current != self._base.id
                if changed:
                    self._reset(open_index(self.index_dir, version=current))
                new = [r for r in records if r.seq > self._seq]
                if new and new[0].seq != self._seq + 1:
                    continue  # records folded into a version we have not opened yet
                for r in new:
                    self._apply(r)
                if changed or new:
                    self._view = self._make_view()
                return changed or bool(new)
        return False


class FollowThread:
    """Refreshes a follower every `interval` seconds in the background."""

    def __init__(self, follower: LiveFollower, interval: float) -> None:
        self.follower, self.interval = follower, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipsearch-follow", daemon=True)

    def start(self) -> FollowThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.follower.refresh()
            except Exception:
                log.exception("following the living index failed (will retry)")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
