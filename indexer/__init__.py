"""clipsearch.indexer: corpus → published, crash-safe, incremental FAISS index versions.

Exports resolve lazily, so `indexer.faiss_build` or `indexer.reader` can be used without
importing torch (the build pipeline needs it; opening and searching an index does not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model._lazy import lazy_getattr

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
__all__ = sorted(_EXPORTS)

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


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
