"""Opening a published version for search: checksums verified, model checked, thread-safe reads."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ._search import check_queries
from .errors import IndexOpenError, ModelMismatchError
from .faiss_build import searcher_for
from .publish import MANIFEST, VERSIONS, live_version, sha256_file
from .store import ITEM_COLUMNS, connect_readonly, filter_sql, row_to_item
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
    root = Path(index_dir)
    if not root.is_dir():
        raise IndexOpenError(f"{root}: no index directory here", code="index_not_found")
    version = version or live_version(root)
    if version is None:
        raise IndexOpenError(
            f"{root}: no published version (run `clipsearch index build` first)",
            code="index_not_found",
        )
    path = root / VERSIONS / version
    if "/" in version or not path.is_dir():
        raise IndexOpenError(f"{root}: no version {version!r}", code="index_not_found")
    return IndexVersion(path, expected_fingerprint)


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except FileNotFoundError:
        raise IndexOpenError(f"{path}: manifest.json is missing") from None
    except (OSError, ValueError) as e:
        raise IndexOpenError(f"{path}: manifest.json is unreadable ({e})") from None
    for key in ("fingerprint", "dim", "count", "factory", "files", "model"):
        if key not in manifest:
            raise IndexOpenError(f"{path}: manifest.json lacks {key!r}")
    return manifest


def _verify(path: Path, manifest: dict[str, Any]) -> None:
    files = manifest["files"]
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
        self.manifest = _read_manifest(path)
        m = self.manifest
        if expected_fingerprint and expected_fingerprint != m["fingerprint"]:
            raise ModelMismatchError(
                f"index version {self.id} was built with model {m['model']!r} "
                f"(fingerprint {m['fingerprint'][:12]}…), but the loaded model's fingerprint is "
                f"{expected_fingerprint[:12]}…; load the same model or rebuild the index"
            )
        _verify(path, m)
        self.model_spec: str = m["model"]
        self.fingerprint: str = m["fingerprint"]
        self.dim: int = int(m["dim"])
        self.count: int = int(m["count"])
        self.factory: str = m["factory"]
        self.root = Path(m["root"])
        self._local = threading.local()
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        try:
            if m.get("ondisk"):  # IVF whose lists are mapped from images.ivfdata beside it
                from .ondisk import read_ondisk_index

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
        self._searcher = searcher_for(
            index,
            vectors,
            ids,
            self.factory,
            int(m.get("rerank_k", 100)),
            m.get("search_params") or {},
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

    def image_path(self, item_id: int) -> Path | None:
        """The item's file, only if it resolves (symlinks included) inside the corpus root."""
        item = self.get_item(item_id)
        if item is None:
            return None
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
