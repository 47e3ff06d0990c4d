"""items.sqlite (id → path, hash, size, caption, extra) and vectors.npy (fp16 rows by id)."""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .types import Item

SCHEMA = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY,   -- stable item id (int64), also the FAISS id
    row INTEGER NOT NULL,     -- row in vectors.npy
    path TEXT NOT NULL UNIQUE,-- relative to the corpus root, POSIX separators
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    caption TEXT,
    extra TEXT NOT NULL       -- JSON object of manifest metadata
);
CREATE INDEX items_sha ON items(sha256);
"""
TEXTS_SCHEMA = "CREATE TABLE texts (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"
ITEM_COLUMNS = "id, path, caption, width, height, size, sha256, extra"
_WHERE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,63}$")


def write_items(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Rows must come in id order (row numbers are assigned in that order)."""
    con = sqlite3.connect(path)
    try:
        con.executescript(SCHEMA)
        con.executemany(
            "INSERT INTO items VALUES (:id, :row, :path, :sha256, :size, :mtime_ns, :width, "
            ":height, :caption, :extra)",
            (
                {**r, "row": i, "extra": json.dumps(r.get("extra") or {}, ensure_ascii=False)}
                for i, r in enumerate(rows)
            ),
        )
        con.commit()
    finally:
        con.close()


def write_texts(path: Path, texts: list[str]) -> None:
    con = sqlite3.connect(path)
    try:
        con.executescript(TEXTS_SCHEMA)
        con.executemany("INSERT INTO texts VALUES (?, ?)", enumerate(texts))
        con.commit()
    finally:
        con.close()


def connect_readonly(path: Path) -> sqlite3.Connection:
    # immutable=1: a published version never changes, so SQLite can skip locking entirely.
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
    con.row_factory = sqlite3.Row
    return con


def row_to_item(r: sqlite3.Row) -> Item:
    return Item(
        id=int(r["id"]),
        path=r["path"],
        caption=r["caption"],
        width=int(r["width"]),
        height=int(r["height"]),
        size=int(r["size"]),
        sha256=r["sha256"],
        extra=json.loads(r["extra"]),
    )


def iter_items(con: sqlite3.Connection) -> Iterator[sqlite3.Row]:
    yield from con.execute(f"SELECT {ITEM_COLUMNS}, row, mtime_ns FROM items ORDER BY id")


def filter_sql(
    path_prefix: str | None, where: dict[str, str] | None
) -> tuple[str, list[Any]] | None:
    """SQL WHERE clause selecting the items that pass the filters (None: no filter)."""
    clauses: list[str] = []
    params: list[Any] = []
    if path_prefix:
        prefix = path_prefix.lstrip("/")
        clauses.append("substr(path, 1, ?) = ?")  # exact prefix; no LIKE wildcards to escape
        params += [len(prefix), prefix]
    for key, value in (where or {}).items():
        if not isinstance(key, str) or not _WHERE_KEY.match(key):
            raise ValueError(f"invalid metadata key {key!r} (letters, digits, _ . - space)")
        clauses.append("CAST(json_extract(extra, ?) AS TEXT) = ?")
        params += [f'$."{key}"', str(value)]
    if not clauses:
        return None
    return " AND ".join(clauses), params


class VectorWriter:
    """Streams (n, d) rows into an .npy file without holding them all in memory."""

    def __init__(self, path: Path, count: int, dim: int) -> None:
        self.path, self.count, self.dim, self.written = path, count, dim, 0
        self._f = path.open("wb")
        header = {"descr": "<f2", "fortran_order": False, "shape": (count, dim)}
        np.lib.format.write_array_header_1_0(self._f, header)

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype="<f2").reshape(-1, self.dim)
        self._f.write(rows.tobytes())
        self.written += len(rows)

    def close(self) -> None:
        if self.written != self.count:
            raise RuntimeError(f"wrote {self.written} vectors, promised {self.count}")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()


def read_npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an open .npy file, leaving it at the first data byte."""
    major, _ = np.lib.format.read_magic(f)
    read = (
        np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    )
    shape, _, dtype = read(f)
    return shape, dtype


def iter_vector_chunks(path: Path, chunk: int = 65536) -> Iterator[np.ndarray]:
    """float32 chunks of an fp16 .npy read with plain reads (no mmap: keeps the build's RSS low)."""
    with path.open("rb") as f:
        (n, d), dtype = read_npy_header(f)
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            buf = np.fromfile(f, dtype=dtype, count=m * d)
            yield buf.reshape(m, d).astype(np.float32)
