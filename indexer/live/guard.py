"""What `index build` / `index update` must respect in a living index: they publish from the
folder alone, so they refuse while a writer (a writable server, `index watch`) runs or while the
write-ahead log holds changes no published version has folded in (they would be lost)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import IndexBusyError
from ..layout import VERSIONS, live_version
from .wal import LIVE_DIR, LOG_NAME, read_log

LIVE_STATE = "live.json"  # in a version: {"wal_seq": last record folded in, "next_id": …}


def live_state_file(index_dir: Path) -> Path | None:
    """The live version's live.json (a version made by compaction, or carried from one)."""
    v = live_version(index_dir)
    p = Path(index_dir) / VERSIONS / v / LIVE_STATE if v else None
    return p if p is not None and p.is_file() else None


def _writer_running(index_dir: Path) -> bool:
    lock = Path(index_dir) / LIVE_DIR / "writer.lock"
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the lock if we took it
    return False


def check_no_live_writes(index_dir: Path) -> None:
    """IndexBusyError while a living-index writer runs or the log holds unfolded changes."""
    import json

    if _writer_running(index_dir):
        raise IndexBusyError(
            f"{index_dir}: a writable server or `clipsearch index watch` is writing to this "
            "index; stop it first (or let `index watch` follow the folder)"
        )
    records, _ = read_log(Path(index_dir) / LIVE_DIR / LOG_NAME)
    state = live_state_file(index_dir)
    folded = int(json.loads(state.read_text())["wal_seq"]) if state else 0
    pending = sum(r.seq > folded for r in records)
    if pending:
        raise IndexBusyError(
            f"{index_dir}: {pending} changes in the write-ahead log are not in a published "
            f"version yet; fold them in first: clipsearch index watch SOURCE --index {index_dir} "
            "--once"
        )
