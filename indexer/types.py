"""Plain records shared by the reader, the builder and the service."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Item:
    """One indexed image. `path` is relative to the corpus root (POSIX separators)."""

    id: int
    path: str
    caption: str | None
    width: int
    height: int
    size: int
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    item: Item
    score: float  # cosine similarity of unit vectors


@dataclass(frozen=True)
class TextHit:
    id: int
    text: str
    score: float


MAX_K = 1000  # the most hits one query may ask for (HTTP `k` and the CLI's `-k`)
RERANK_K = 100  # ANN candidates re-scored exactly per query by default (at least k)
