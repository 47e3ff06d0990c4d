"""clipsearch.indexer: corpus → published, crash-safe, incremental FAISS index versions."""

from .errors import IndexBusyError, IndexOpenError, ModelMismatchError, SourceError
from .pipeline import build_index, update_index
from .publish import live_version
from .reader import IndexVersion, open_index
from .report import BuildReport, Skip
from .texts import add_texts
from .types import Hit, Item, TextHit

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
