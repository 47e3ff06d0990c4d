"""Compaction: fold a living index's delta and tombstones into a new published version (the same
write-aside, fsync, rename, swap as a build), then drop the folded records from the log.

Reads and writes go on meanwhile: the fold works from a snapshot, and changes made during it
stay in the log and the delta (their seq is after the snapshot's)."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._fsutil import exclusive_lock
from ..assemble import TEXT_FILES, Plan, write_version_files
from ..errors import IndexBusyError
from ..layout import WORK
from ..publish import clean_staging, link_or_copy, new_version_id, publish, staging_dir
from ..reader import open_index
from ..scan import Entry
from .state import LIVE_STATE, LiveIndex
from .view import LiveView

log = logging.getLogger(__name__)

Queries = Callable[[], np.ndarray]  # text-query embeddings for the recall of an ANN index


@dataclass(frozen=True)
class CompactOptions:
    changes: int = 1000  # compact once this many changes are pending …
    idle_s: float = 30.0  # … or when some are and no write came for this long
    check_s: float = 1.0  # how often the background compactor looks
    factory: str | None = None  # FAISS factory of compacted versions (None: by size)


def _plan(view: LiveView) -> Plan:
    """Every visible item with its vector, by id."""
    base = view.base
    plan = Plan()
    vectors = np.load(base.path / "vectors.npy", mmap_mode="r") if base.count else None
    for r in base.rows():
        item = view.get_item(int(r["id"]))
        if item is None or view.in_delta(item.id):
            continue  # deleted, or re-encoded (the delta holds it)
        e = Entry(item.path, view.root / item.path, item.caption, item.extra, item.size,
                  int(r["mtime_ns"]), item.sha256)  # fmt: skip
        plan.add(e, np.asarray(vectors[int(r["row"])], np.float16), item.width, item.height)
        plan.items[-1].id = item.id
    for item, vec in view.delta():
        e = Entry(item.path, view.root / item.path, item.caption, item.extra, item.size, 0,
                  item.sha256)  # fmt: skip
        plan.add(e, np.asarray(vec, np.float16), item.width, item.height)
        plan.items[-1].id = item.id
    return plan


def compact(
    live: LiveIndex, queries: Queries | None = None, options: CompactOptions | None = None
) -> str | None:
    """Publish the delta folded into a new version → its id (None: nothing to fold).
    IndexBusyError when a build or another compaction holds the index's lock."""
    opts = options or CompactOptions()
    view, seq, next_id = live.snapshot()
    if seq == live.base_seq:
        return None
    index_dir = live.index_dir
    with exclusive_lock(Path(index_dir) / WORK / "lock"):
        clean_staging(index_dir)
        version = new_version_id()
        staging = staging_dir(index_dir, version)
        try:
            manifest = _write(view, staging, seq, next_id, queries, opts)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        publish(index_dir, staging, version, manifest)
    live.rebase(open_index(index_dir, version=version), seq)
    log.info("compacted the changes through #%d into version %s", seq, version)
    return version


def _write(view: LiveView, staging: Path, seq: int, next_id: int, queries, opts):
    base = view.base
    plan = _plan(view)
    built = write_version_files(
        staging,
        plan,
        base.dim,
        factory=opts.factory,
        memory_budget=None,
        queries=queries if queries is not None else _no_queries,
    )
    (staging / LIVE_STATE).write_text(json.dumps({"wal_seq": seq, "next_id": next_id}))
    texts = {}
    if all((base.path / f).is_file() for f in TEXT_FILES):
        for name in TEXT_FILES:
            link_or_copy(base.path / name, staging / name)
    else:
        texts = {"texts_count": 0, "texts_source": None}
    return base.manifest.derive(
        count=len(plan.items), build_report=None, **built.manifest_fields(), **texts
    )


def _no_queries() -> np.ndarray:
    raise ValueError("an approximate index needs text queries (pass queries=) to compact")


class Compactor:
    """Background thread folding the delta when enough changes are pending or writes pause."""

    def __init__(self, live: LiveIndex, queries: Queries | None, options: CompactOptions) -> None:
        self.live, self.queries, self.options = live, queries, options
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clipsearch-compact", daemon=True)
        self.errors = 0

    def start(self) -> Compactor:
        self._thread.start()
        return self

    def due(self) -> bool:
        n = self.live.pending()
        idle = time.time() - self.live.last_write >= self.options.idle_s
        return n >= self.options.changes or (n > 0 and idle)

    def _run(self) -> None:
        while not self._stop.wait(self.options.check_s):
            if not self.due():
                continue
            try:
                compact(self.live, self.queries, self.options)
            except IndexBusyError as e:
                log.info("compaction postponed: %s", e)
            except Exception:
                self.errors += 1
                log.exception("compaction failed (the log keeps every change; will retry)")

    def close(self, timeout: float | None = None) -> bool:
        """Stop looking; wait up to `timeout` s (None: for ever) for a compaction in progress.
        False: one is still running. It may be abandoned (the process exiting): a compaction
        writes aside and the log keeps every change, so the next start simply redoes it."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()
