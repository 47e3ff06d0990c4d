"""Opening a published version for search: checksums verified, model checked, thread-safe reads."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ._search import check_queries
from .errors import IndexOpenError
from .faiss_build import searcher_for
from .manifest import Manifest, version_dir
from .media import is_media_path, media_file
from .ondisk_format import read_ondisk_index
from .publish import sha256_file
from .resolve import check_model
from .store import ITEM_COLUMNS, connect_readonly, filter_sql, iter_items, row_to_item
from .types import Hit, Item, TextHit

log = logging.getLogger(__name__)

REQUIRED_FILES = ("images.faiss", "items.sqlite", "vectors.npy")


def open_index(
    index_dir: str | Path,
    *,
    version: str | None = None,
    expected_fingerprint: str | None = None,
) -> IndexVersion:
    """Open the live (or a named) version. Raises IndexOpenError (code index_not_found or
    index_corrupt) or ModelMismatchError when `expected_fingerprint` differs from the manifest's."""
    return IndexVersion(version_dir(index_dir, version), expected_fingerprint)


def _verify(path: Path, manifest: Manifest) -> None:
    files = manifest.files
    for name in (*REQUIRED_FILES, *files):
        p = path / name
        meta = files.get(name)
        if meta is None:
            raise IndexOpenError(f"{path}: {name} is not listed in the manifest")
        if not p.is_file():
            raise IndexOpenError(f"{path}: {name} is missing")
        if p.stat().st_size != meta["size"] or sha256_file(p) != meta["sha256"]:
            raise IndexOpenError(f"{path}: {name} is corrupt (checksum mismatch)")


class IndexVersion:
    """One immutable published version. Safe to call from many threads at once: SQLite gets one
    read-only connection per thread, FAISS searches are read-only (and release the GIL)."""

    def __init__(self, path: Path, expected_fingerprint: str | None = None) -> None:
        self.path = path
        self.id = path.name
        self.manifest = m = Manifest.read(path)
        if m.version is None:  # written before versions named themselves
            m.version = self.id
        if expected_fingerprint:
            check_model(m, expected_fingerprint)
        _verify(path, m)
        self.model_spec: str = m.model
        self.fingerprint: str = m.fingerprint
        self.dim: int = m.dim
        self.count: int = m.count
        self.factory: str = m.factory
        self.root = Path(m.root)
        self._local = threading.local()
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        try:
            if m.ondisk:  # IVF whose lists are mapped from images.ivfdata beside it
                index = read_ondisk_index(path / "images.faiss")
            else:
                index = faiss.read_index(str(path / "images.faiss"), faiss.IO_FLAG_READ_ONLY)
            vectors = np.load(path / "vectors.npy", mmap_mode="r")
            ids = np.array(
                [r[0] for r in self._db().execute("SELECT id FROM items ORDER BY id")],
                dtype=np.int64,
            )
        except (RuntimeError, ValueError, OSError, sqlite3.Error) as e:
            # sqlite3.Error: an items.sqlite whose checksum was forged or recomputed after damage
            raise IndexOpenError(f"{path}: cannot read the index ({e})") from None
        if index.d != self.dim or vectors.shape != (self.count, self.dim):
            raise IndexOpenError(
                f"{path}: inconsistent index: manifest dim {self.dim} count {self.count}, "
                f"faiss dim {index.d}, vectors {vectors.shape}"
            )
        if index.ntotal != self.count or len(ids) != self.count:
            raise IndexOpenError(f"{path}: item count differs between files")
        self._ids = ids  # sorted
        self._searcher = searcher_for(
            index,
            vectors,
            ids,
            self.factory,
            m.rerank_k,
            m.search_params,
        )
        self.has_texts = (path / "texts.faiss").is_file()
        self._texts_index = faiss.read_index(str(path / "texts.faiss")) if self.has_texts else None

    def __repr__(self) -> str:
        return f"IndexVersion({self.id!r}, model={self.model_spec!r}, count={self.count})"

    # -- per-thread SQLite ----------------------------------------------------------------------
    def _db(self, name: str = "items.sqlite"):
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        con = conns.get(name)
        if con is None:
            con = conns[name] = connect_readonly(self.path / name)
            with self._conns_lock:
                self._conns.append(con)
        return con

    # -- queries --------------------------------------------------------------------------------
    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        path_prefix: str | None = None,
        where: dict[str, str] | None = None,
        min_score: float | None = None,
    ) -> list[list[Hit]]:
        """Top min(k, matches) items per query (unit vectors, (n, dim)), best first."""
        q = check_queries(queries, self.dim)
        allowed = None
        clause = filter_sql(path_prefix, where)
        if clause is not None:
            sql, params = clause
            allowed = np.array(
                [r[0] for r in self._db().execute(f"SELECT id FROM items WHERE {sql}", params)],
                dtype=np.int64,
            )
        found = self._searcher.search(q, int(k), allowed, min_score)
        items = self._items({i for hits in found for i, _ in hits})
        return [[Hit(items[i], s) for i, s in hits] for hits in found]

    def filter_warnings(
        self, path_prefix: str | None = None, where: dict[str, str] | None = None
    ) -> list[str]:
        """Why filters can match nothing: a prefix no item path starts with, a metadata field
        no item has. (A value no item has is an ordinary empty result.)"""
        out = []
        clause = filter_sql(path_prefix, None)
        if clause is not None and not self._exists(*clause):
            example = self._db().execute("SELECT path FROM items LIMIT 1").fetchone()
            hint = (
                f" (paths are relative to the corpus root, e.g. {example[0]!r})" if example else ""
            )
            out.append(f"no item path starts with {path_prefix!r}{hint}")
        for key in where or {}:
            filter_sql(None, {key: ""})  # validates the key
            if not self._exists("json_type(extra, ?) IS NOT NULL", [f'$."{key}"']):
                out.append(f"no item has the metadata field {key!r}")
        return out

    def _exists(self, sql: str, params: list[Any]) -> bool:
        return (
            self._db().execute(f"SELECT 1 FROM items WHERE {sql} LIMIT 1", params).fetchone()
            is not None
        )

    def search_texts(self, queries: np.ndarray, k: int) -> list[list[TextHit]]:
        if self._texts_index is None:
            raise IndexOpenError(
                f"index version {self.id} has no texts (run `clipsearch index texts`)",
                code="index_has_no_texts",
            )
        q = check_queries(queries, self.dim)
        scores, ids = self._texts_index.search(q, min(int(k), self._texts_index.ntotal))
        wanted = {int(i) for i in ids.ravel() if i >= 0}
        texts = dict(
            self._db("texts.sqlite").execute(
                f"SELECT id, text FROM texts WHERE id IN ({','.join('?' * len(wanted))})",
                list(wanted),
            )
        )
        return [
            [
                TextHit(int(i), texts[int(i)], float(s))
                for s, i in zip(sr, ir, strict=True)
                if i >= 0
            ]
            for sr, ir in zip(scores, ids, strict=True)
        ]

    def _items(self, ids: set[int]) -> dict[int, Item]:
        if not ids:
            return {}
        ids_l = list(ids)
        out = {}
        for start in range(0, len(ids_l), 500):  # SQLite's bound-parameter limit
            part = ids_l[start : start + 500]
            rows = self._db().execute(
                f"SELECT {ITEM_COLUMNS} FROM items WHERE id IN ({','.join('?' * len(part))})", part
            )
            out.update((int(r["id"]), row_to_item(r)) for r in rows)
        return out

    def get_item(self, item_id: int) -> Item | None:
        r = self._db().execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id = ?", (int(item_id),))
        row = r.fetchone()
        return row_to_item(row) if row else None

    def get_vector(self, item_id: int) -> np.ndarray | None:
        row = self._db().execute("SELECT row FROM items WHERE id = ?", (int(item_id),)).fetchone()
        if row is None:
            return None
        return np.asarray(self._searcher.vectors[row[0]], dtype=np.float32)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Which of `ids` are items of this version (bool array)."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self._ids, ids)
        pos[pos >= len(self._ids)] = 0
        return (self._ids[pos] == ids) if len(self._ids) else np.zeros(len(ids), bool)

    def ids_with_sha(self, sha256: str) -> list[int]:
        rows = self._db().execute("SELECT id FROM items WHERE sha256 = ? ORDER BY id", (sha256,))
        return [int(r[0]) for r in rows]

    def item_with_path(self, path: str) -> Item | None:
        r = self._db().execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE path = ?", (path,))
        row = r.fetchone()
        return row_to_item(row) if row else None

    def rows(self):
        """Every item row (columns of `store.iter_items`, with `row` and `mtime_ns`), by id."""
        return iter_items(self._db())

    def image_path(self, item_id: int) -> Path | None:
        """The item's file, only if it resolves (symlinks included) inside the corpus root
        (an uploaded image: inside the index's media folder)."""
        item = self.get_item(item_id)
        if item is None:
            return None
        if is_media_path(item.path):
            p = media_file(self.path.parent.parent, item.path)
            return p if p is not None and p.is_file() else None
        root = self.root.resolve()
        try:
            p = (root / item.path).resolve(strict=True)
        except (OSError, RuntimeError):  # missing file, symlink loop
            return None
        if not p.is_relative_to(root) or not p.is_file():
            return None
        return p

    def close(self) -> None:
        with self._conns_lock:
            for con in self._conns:
                try:
                    con.close()
                except Exception as e:  # a connection made on another thread; best effort
                    log.debug("closing a SQLite connection: %s", e)
            self._conns.clear()
