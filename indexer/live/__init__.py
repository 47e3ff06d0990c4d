"""A living index: writes through a write-ahead log, an exact delta searched beside the
published version, tombstones for deletes, and compaction into new published versions."""

from __future__ import annotations

from .compact import CompactOptions, Compactor, compact
from .state import Added, LiveIndex, NewImage
from .view import LiveView
from .wal import WriteAheadLog

__all__ = [
    "Added",
    "CompactOptions",
    "Compactor",
    "LiveIndex",
    "LiveView",
    "NewImage",
    "WriteAheadLog",
    "compact",
]
