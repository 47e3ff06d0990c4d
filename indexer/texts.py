"""add_texts: a caption/label corpus (texts.faiss + texts.sqlite) for image→text search."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from .assemble import TEXT_FILES
from .derive import derive_version
from .reader import IndexVersion
from .resolve import backend_of, check_model, encoder_for_index
from .store import write_texts

if TYPE_CHECKING:
    from model import Encoder

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 2000


def add_texts(
    index_dir: str | Path, texts: list[str] | None, encoder: Encoder | None = None
) -> str:
    """Publish a new version equal to the live one plus `texts` (None: the items' captions) as
    an image→text corpus, encoded with `encoder` (default: the live version's model).
    Returns the new version id."""
    enc = encoder if encoder is not None else encoder_for_index(index_dir)
    if texts is not None:
        texts = _clean(texts)

    def make(live: IndexVersion, staging: Path) -> dict[str, Any]:
        check_model(live, enc.fingerprint, enc.spec, backend_of(enc))
        corpus = texts if texts is not None else _clean(_captions(live))
        vecs = enc.encode_texts(corpus).astype(np.float16).astype(np.float32)
        index = faiss.IndexFlatIP(enc.dim)  # text ids are row numbers
        index.add(vecs)
        faiss.write_index(index, str(staging / "texts.faiss"))
        write_texts(staging / "texts.sqlite", corpus)
        source = "file" if texts is not None else "captions"
        return {"texts_count": len(corpus), "texts_source": source}

    manifest = derive_version(index_dir, TEXT_FILES, make)
    log.info("added %d texts in version %s", manifest.texts_count, manifest.version)
    return str(manifest.version)


def _captions(live: IndexVersion) -> list[str]:
    rows = live._db().execute(
        "SELECT DISTINCT caption FROM items WHERE caption IS NOT NULL AND caption != ''"
        " ORDER BY caption"
    )
    return [r[0] for r in rows]


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
