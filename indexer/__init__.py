"""clipsearch.indexer: corpus → published, crash-safe, incremental FAISS index versions.

Exports resolve lazily, so `indexer.faiss_build` or `indexer.reader` can be used without
importing torch (the build pipeline needs it; opening and searching an index does not).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "BuildReport": "report",
    "Skip": "report",
    "Hit": "types",
    "Item": "types",
    "TextHit": "types",
    "IndexBusyError": "errors",
    "IndexOpenError": "errors",
    "ModelMismatchError": "errors",
    "SourceError": "errors",
    "IndexVersion": "reader",
    "open_index": "reader",
    "live_version": "publish",
    "build_index": "pipeline",
    "update_index": "pipeline",
    "add_texts": "texts",
}
__all__ = [
    "BuildReport",
    "Hit",
    "IndexBusyError",
    "IndexOpenError",
    "IndexVersion",
    "Item",
    "ModelMismatchError",
    "Skip",
    "SourceError",
    "TextHit",
    "add_texts",
    "build_index",
    "live_version",
    "open_index",
    "update_index",
]

if TYPE_CHECKING:
    from .errors import IndexBusyError, IndexOpenError, ModelMismatchError, SourceError
    from .pipeline import build_index, update_index
    from .publish import live_version
    from .reader import IndexVersion, open_index
    from .report import BuildReport, Skip
    from .texts import add_texts
    from .types import Hit, Item, TextHit


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'indexer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
