"""add_texts: a caption/label corpus (texts.faiss + texts.sqlite) for image→text search."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import faiss
import numpy as np

from model import Encoder, load_encoder

from ._fsutil import exclusive_lock
from .errors import ModelMismatchError
from .publish import (
    MANIFEST,
    WORK,
    clean_staging,
    link_or_copy,
    new_version_id,
    publish,
    staging_dir,
)
from .reader import open_index
from .store import write_texts

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000


def add_texts(
    index_dir: str | Path, texts: list[str] | None, encoder: Encoder | str | None = None
) -> str:
    """Publish a new version equal to the live one plus `texts` (None: the items' captions) as
    an image→text corpus. Returns the new version id."""
    index_dir = Path(index_dir)
    with exclusive_lock(index_dir / WORK / "lock"):
        clean_staging(index_dir)
        live = open_index(index_dir)
        try:
            if texts is None:
                rows = live._db().execute(
                    "SELECT DISTINCT caption FROM items WHERE caption IS NOT NULL AND caption != ''"
                    " ORDER BY caption"
                )
                texts = [r[0] for r in rows]
                source = "captions"
            else:
                source = "file"
            texts = _clean(texts)
            enc = (
                load_encoder(encoder or live.model_spec)
                if not isinstance(encoder, Encoder)
                else encoder
            )
            if enc.fingerprint != live.fingerprint:
                raise ModelMismatchError(
                    f"index version {live.id} was built with model {live.model_spec!r}; texts must "
                    f"be encoded with the same model (got {enc.spec!r})"
                )
            vecs = enc.encode_texts(texts).astype(np.float16).astype(np.float32)
            version = new_version_id()
            staging = staging_dir(index_dir, version)
            for p in live.path.iterdir():
                if p.is_file() and p.name not in (MANIFEST, "texts.faiss", "texts.sqlite"):
                    link_or_copy(p, staging / p.name)
            index = faiss.IndexFlatIP(enc.dim)  # text ids are row numbers
            index.add(vecs)
            faiss.write_index(index, str(staging / "texts.faiss"))
            write_texts(staging / "texts.sqlite", texts)
            manifest = json.loads((live.path / MANIFEST).read_text())
            manifest.pop("files", None)
            manifest.update(parent=live.id, texts_count=len(texts), texts_source=source)
            publish(index_dir, staging, version, manifest)
        finally:
            live.close()
    log.info("added %d texts in version %s", len(texts), version)
    return version


def _clean(texts: list[str]) -> list[str]:
    out, seen = [], set()
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__}")
        t = " ".join(t.split())[:MAX_TEXT_CHARS]
        if t and t not in seen:
            seen.add(t)
            out.append(t)
    if not out:
        raise ValueError("no texts to add (all empty)")
    return out
