"""The on-disk IVF format: an `images.faiss` holding the coarse quantizer (and codec) whose
inverted lists live in `images.ivfdata` beside it, mapped into memory by the reader instead of
read. Only the format lives here (the reader needs it); the builder is `indexer.ondisk`."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import faiss

IVFDATA = "images.ivfdata"
INDEX_FILE = "images.faiss"
READ_FLAGS = faiss.IO_FLAG_READ_ONLY | faiss.IO_FLAG_ONDISK_SAME_DIR


def read_ondisk_index(path: Path) -> faiss.Index:
    """Open an on-disk IVF index: the inverted lists are memory-mapped from the `.ivfdata` file in
    the same directory (wherever the version was moved since it was written)."""
    with c_stdout_to_stderr():
        return faiss.read_index(str(path), READ_FLAGS)


@contextlib.contextmanager
def c_stdout_to_stderr() -> Iterator[None]:
    """FAISS's on-disk code prints progress with C printf to stdout; send it to stderr so that a
    command's stdout stays machine-readable (`clipsearch search --json` on an on-disk index)."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
