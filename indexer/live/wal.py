"""The write-ahead log of a living index (`<index>/live/wal.log`).

One record per line, `<crc32 hex> <json>\n`, appended and fsynced before a write is acknowledged.
A crash can only tear the last line: opening the log cuts a torn tail off. A bad record followed
by good ones is damage, not a crash, and refuses to open. Records carry their vector (fp16), so
replaying needs no model and gives exactly the vectors that were acknowledged."""

from __future__ import annotations

import base64
import json
import os
import threading
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._fsutil import fsync_dir, write_atomic
from ..errors import IndexOpenError

LIVE_DIR = "live"
LOG_NAME = "wal.log"


@dataclass(frozen=True)
class AddRecord:
    """An image added, or re-encoded under its id (an edit in place)."""

    seq: int
    id: int
    path: str
    sha256: str
    size: int
    mtime_ns: int
    width: int
    height: int
    vector: np.ndarray = field(repr=False)  # (dim,) float16
    caption: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteRecord:
    seq: int
    id: int


Record = AddRecord | DeleteRecord


def encode_record(r: Record) -> bytes:
    if isinstance(r, AddRecord):
        d = asdict(r) | {"op": "add"}
        d["vector"] = base64.b64encode(np.asarray(r.vector, "<f2").tobytes()).decode()
    else:
        d = asdict(r) | {"op": "delete"}
    body = json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_record(line: bytes) -> Record | None:
    """None for a line that is torn or damaged."""
    if len(line) < 10 or line[8:9] != b" " or not line.endswith(b"\n"):
        return None
    body = line[9:-1]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        d = json.loads(body)
        if d.pop("op") == "delete":
            return DeleteRecord(**d)
        d["vector"] = np.frombuffer(base64.b64decode(d["vector"]), dtype="<f2")
        return AddRecord(**d)
    except (ValueError, TypeError, KeyError):
        return None


def read_log(path: Path) -> tuple[list[Record], int]:
    """Every intact record and the byte length of the intact prefix."""
    if not path.is_file():
        return [], 0
    data = path.read_bytes()
    records: list[Record] = []
    pos = 0
    lines = data.splitlines(keepends=True)
    for n, line in enumerate(lines):
        r = decode_record(line)
        if r is None:
            if any(decode_record(rest) is not None for rest in lines[n + 1 :]):
                raise IndexOpenError(f"{path}: record {n + 1} is damaged (not a torn tail)")
            break
        records.append(r)
        pos += len(line)
    return records, pos


class WriteAheadLog:
    """Append-only, fsynced. One writer process (the living index holds the writer lock)."""

    def __init__(self, index_dir: Path) -> None:
        self.path = Path(index_dir) / LIVE_DIR / LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records, good = read_log(self.path)
        self._lock = threading.Lock()
        if self.path.is_file() and self.path.stat().st_size != good:
            os.truncate(self.path, good)  # a torn tail of a crash: never acknowledged
        self._f = self.path.open("ab")
        os.fsync(self._f.fileno())
        fsync_dir(self.path.parent)

    def append(self, records: list[Record]) -> None:
        """Durable when this returns: the caller may acknowledge."""
        data = b"".join(encode_record(r) for r in records)
        with self._lock:
            self._f.write(data)
            self._f.flush()
            os.fsync(self._f.fileno())

    def size(self) -> int:
        return self._f.tell()

    def drop_through(self, seq: int) -> None:
        """Forget records up to `seq` (they are in a published version now)."""
        with self._lock:
            keep, _ = read_log(self.path)
            data = b"".join(encode_record(r) for r in keep if r.seq > seq)
            self._f.close()
            write_atomic(self.path, data)
            self._f = self.path.open("ab")

    def close(self) -> None:
        with self._lock:
            self._f.close()
