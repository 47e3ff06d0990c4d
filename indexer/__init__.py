"""clipsearch.indexer: corpus → published, crash-safe, incremental FAISS index versions.

Exports resolve lazily, so `indexer.faiss_build` or `indexer.reader` can be used without
importing torch (the build pipeline needs it; opening and searching an index does not).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "MAX_K": "types",
    "BuildOptions": "options",
    "Manifest": "manifest",
    "VersionInfo": "manifest",
    "list_versions": "manifest",
    "read_manifest": "manifest",
    "check_model": "resolve",
    "encoder_for_index": "resolve",
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
    "live_version": "layout",
    "build_index": "pipeline",
    "update_index": "pipeline",
    "add_texts": "texts",
}
__all__ = [
    "MAX_K",
    "BuildOptions",
    "BuildReport",
    "Hit",
    "IndexBusyError",
    "IndexOpenError",
    "IndexVersion",
    "Item",
    "Manifest",
    "ModelMismatchError",
    "Skip",
    "SourceError",
    "TextHit",
    "VersionInfo",
    "add_texts",
    "build_index",
    "check_model",
    "encoder_for_index",
    "list_versions",
    "live_version",
    "open_index",
    "read_manifest",
    "update_index",
]

if TYPE_CHECKING:
    from .errors import IndexBusyError, IndexOpenError, ModelMismatchError, SourceError
    from .layout import live_version
    from .manifest import Manifest, VersionInfo, list_versions, read_manifest
    from .options import BuildOptions
    from .pipeline import build_index, update_index
    from .reader import IndexVersion, open_index
    from .report import BuildReport, Skip
    from .resolve import check_model, encoder_for_index
    from .texts import add_texts
    from .types import MAX_K, Hit, Item, TextHit


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'indexer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
