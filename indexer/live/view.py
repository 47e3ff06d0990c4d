"""A read-only snapshot of a living index: the published version, the exact delta of images
added since, and the tombstones of ids deleted or re-encoded since. Searched like a version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .._search import as_f32, check_queries
from ..media import is_media_path, media_file
from ..reader import IndexVersion
from ..store import filter_sql
from ..types import Hit, Item, TextHit
from .wal import AddRecord


def item_of(r: AddRecord) -> Item:
    return Item(r.id, r.path, r.caption, r.width, r.height, r.size, r.sha256, dict(r.extra))


def _as_sql_text(v: Any) -> str | None:
    """What SQLite's CAST(json_extract(...) AS TEXT) gives for a metadata value."""
    if v is None or isinstance(v, dict | list):
        return None
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def _matches(item: Item, path_prefix: str | None, where: dict[str, str] | None) -> bool:
    if path_prefix and not item.path.startswith(path_prefix.lstrip("/")):
        return False
    return all(_as_sql_text(item.extra.get(k)) == str(v) for k, v in (where or {}).items())


class LiveView:
    """Immutable. Has the read surface of an `IndexVersion` (search, get_item, image_path …)."""

    def __init__(
        self, base: IndexVersion, delta: list[AddRecord], masked: set[int], seq: int, base_seq: int
    ) -> None:
        self.base = base
        self.seq = seq
        self.id = base.id if seq == base_seq else f"{base.id}+{seq}"
        for name in ("path", "dim", "model_spec", "fingerprint", "factory", "root", "manifest"):
            setattr(self, name, getattr(base, name))
        self.has_texts = base.has_texts
        self.index_dir = Path(base.path).parent.parent
        self._items = {r.id: item_of(r) for r in delta}
        self._order = [r.id for r in delta]
        self._row = {id_: i for i, id_ in enumerate(self._order)}
        self._vectors = (
            np.stack([np.asarray(r.vector, np.float16) for r in delta])
            if delta
            else np.zeros((0, base.dim), np.float16)
        )  # (m, dim)
        self._masked = frozenset(masked)
        hidden = int(base.contains(np.fromiter(masked, np.int64, len(masked))).sum())
        self.count = base.count - hidden + len(delta)
        self.delta_size = len(delta)
        self.tombstones = len(masked)

    def __repr__(self) -> str:
        return f"LiveView({self.id!r}, count={self.count}, delta={self.delta_size})"

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        path_prefix: str | None = None,
        where: dict[str, str] | None = None,
        min_score: float | None = None,
    ) -> list[list[Hit]]:
        """Top min(k, matches) per query over the version and the delta, best first. The version
        is over-fetched by the number of tombstones, so hiding them never shortens a list."""
        q = check_queries(queries, self.dim)
        filter_sql(path_prefix, where)  # the same validation (ValueError) as the version's
        base = self.base.search(
            q, k + len(self._masked), path_prefix=path_prefix, where=where, min_score=min_score
        )
        rows = [
            i for i, id_ in enumerate(self._order) if _matches(self._items[id_], path_prefix, where)
        ]
        scores = as_f32(self._vectors[rows]) @ q.T if rows else np.zeros((0, len(q)), np.float32)
        out = []
        for j, hits in enumerate(base):
            merged = [h for h in hits if h.item.id not in self._masked]
            for r, s in zip(rows, scores[:, j], strict=True):
                if min_score is None or s >= min_score:
                    merged.append(Hit(self._items[self._order[r]], float(s)))
            merged.sort(key=lambda h: (-h.score, h.item.id))
            out.append(merged[:k])
        return out

    def delta(self) -> list[tuple[Item, np.ndarray]]:
        """The items added or re-encoded since the version, with their fp16 vectors, by id."""
        return [(self._items[i], self._vectors[r]) for r, i in enumerate(self._order)]

    def in_delta(self, item_id: int) -> bool:
        return int(item_id) in self._items

    def filter_warnings(
        self, path_prefix: str | None = None, where: dict[str, str] | None = None
    ) -> list[str]:
        if any(_matches(it, path_prefix, where) for it in self._items.values()):
            return []
        return self.base.filter_warnings(path_prefix, where)

    def search_texts(self, queries: np.ndarray, k: int) -> list[list[TextHit]]:
        return self.base.search_texts(queries, k)

    def get_item(self, item_id: int) -> Item | None:
        item_id = int(item_id)
        if item_id in self._items:
            return self._items[item_id]
        return None if item_id in self._masked else self.base.get_item(item_id)

    def get_vector(self, item_id: int) -> np.ndarray | None:
        item_id = int(item_id)
        if item_id in self._items:
            return as_f32(self._vectors[self._row[item_id]])
        return None if item_id in self._masked else self.base.get_vector(item_id)

    def image_path(self, item_id: int) -> Path | None:
        item = self.get_item(item_id)
        if item is None:
            return None
        if int(item_id) not in self._items:
            return self.base.image_path(item_id)
        if is_media_path(item.path):
            p = media_file(self.index_dir, item.path)
            return p if p is not None and p.is_file() else None
        root = self.root.resolve()
        try:
            p = (root / item.path).resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        return p if p.is_relative_to(root) and p.is_file() else None

    def close(self) -> None:
        """The living index owns the version; a view has nothing of its own to close."""
