"""Images uploaded into a living index: stored under `<index>/media/`, named by content.

Their item path is `media:<sha256><ext>`, so it can never collide with a corpus-relative path
and a reader knows to look in the index's media folder instead of the corpus root."""

from __future__ import annotations

import os
from pathlib import Path

from ._fsutil import fsync_dir

MEDIA_DIR = "media"
MEDIA_PREFIX = "media:"


def is_media_path(path: str) -> bool:
    return path.startswith(MEDIA_PREFIX)


def media_item_path(sha256: str, suffix: str) -> str:
    return f"{MEDIA_PREFIX}{sha256}{suffix.lower()}"


def media_file(index_dir: Path, item_path: str) -> Path | None:
    """The stored file of a `media:` item path (None if the name could leave the folder)."""
    name = item_path[len(MEDIA_PREFIX) :]
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    return Path(index_dir) / MEDIA_DIR / name


def store_media(index_dir: Path, data: bytes, sha256: str, suffix: str) -> str:
    """Write `data` durably (tmp + fsync + rename + fsync dir) → its item path. Content-named, so
    storing the same bytes twice is harmless and a crash leaves at most an unused file."""
    item_path = media_item_path(sha256, suffix)
    final = media_file(index_dir, item_path)
    assert final is not None
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_file() and final.stat().st_size == len(data):
        return item_path
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return item_path
