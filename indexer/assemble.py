"""From encoded entries to a version's files: ids, vectors.npy, items.sqlite, images.faiss."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from .faiss_build import BuiltIndex, build_faiss
from .report import BuildReport
from .scan import Entry
from .store import VectorWriter, write_items

log = logging.getLogger(__name__)

TEXT_FILES = ("texts.faiss", "texts.sqlite")


@dataclass
class PlannedItem:
    entry: Entry
    vector: np.ndarray  # (dim,) float16
    width: int
    height: int
    id: int = -1


@dataclass
class Plan:
    items: list[PlannedItem] = field(default_factory=list)  # sorted by path

    def add(self, entry: Entry, vector: np.ndarray, width: int, height: int) -> None:
        self.items.append(PlannedItem(entry, vector, width, height))


def assign_ids(
    plan: Plan,
    prev_by_path: dict[str, dict[str, Any]] | None,
    report: BuildReport,
    min_next_id: int = 0,
) -> None:
    """A fresh build numbers items 0… in path order (so a resumed build equals a clean one).
    An update keeps the id of every unchanged path, gives a renamed file (same content, its old
    path gone) its old id, and numbers the rest after the previous maximum, in path order."""
    if not prev_by_path:
        for i, it in enumerate(plan.items):
            it.id = i
        report.added = len(plan.items)
        return
    new_paths = {it.entry.rel for it in plan.items}
    vanished: dict[str, list[int]] = defaultdict(list)  # sha → ids of paths that are gone
    for path, r in sorted(prev_by_path.items()):
        if path not in new_paths:
            vanished[r["sha256"]].append(int(r["id"]))
    # min_next_id: ids a living index handed out (and maybe deleted since) are never reused
    next_id = max(min_next_id, 1 + max((int(r["id"]) for r in prev_by_path.values()), default=-1))
    for it in plan.items:
        p = prev_by_path.get(it.entry.rel)
        if p is not None and p["sha256"] == it.entry.sha256:
            it.id = int(p["id"])
        elif p is not None:
            it.id = int(p["id"])  # same path, new content: re-encoded under the same id
            report.changed += 1
        elif vanished.get(it.entry.sha256):
            it.id = vanished[it.entry.sha256].pop(0)
            report.renamed += 1
        else:
            report.added += 1
    for it in plan.items:
        if it.id < 0:
            it.id = next_id
            next_id += 1
    report.removed = sum(len(v) for v in vanished.values())


def write_version_files(
    staging: Path,
    plan: Plan,
    dim: int,
    *,
    factory: str | None,
    memory_budget: int | str | None,
    queries: Callable[[], np.ndarray],
) -> BuiltIndex:
    """vectors.npy, items.sqlite and images.faiss of the planned items into `staging`."""
    items = sorted(plan.items, key=lambda it: it.id)
    writer = VectorWriter(staging / "vectors.npy", len(items), dim)
    for start in range(0, len(items), 8192):
        chunk = items[start : start + 8192]
        writer.write(np.stack([it.vector for it in chunk]))
    writer.close()
    write_items(
        staging / "items.sqlite",
        (
            {
                "id": it.id,
                "path": it.entry.rel,
                "sha256": it.entry.sha256,
                "size": it.entry.size,
                "mtime_ns": it.entry.mtime_ns,
                "width": it.width,
                "height": it.height,
                "caption": it.entry.caption,
                "extra": it.entry.extra,
            }
            for it in items
        ),
    )
    ids = np.array([it.id for it in items], dtype=np.int64)
    built = build_faiss(
        staging / "vectors.npy",
        ids,
        dim,
        factory=factory,
        memory_budget=memory_budget,
        queries=queries,
    )
    faiss.write_index(built.index, str(staging / "images.faiss"))
    return built
