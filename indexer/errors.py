"""Errors the indexer raises for bad input or a bad index, with messages meant for end users."""

from __future__ import annotations

from model.errors import ClipsearchError


class IndexOpenError(ClipsearchError):
    """An index directory or version that cannot be opened: missing, corrupt or inconsistent."""

    code = "index_corrupt"

    def __init__(self, message: str, code: str = "index_corrupt") -> None:
        super().__init__(message)
        self.code = code


class ModelMismatchError(ClipsearchError):
    """The index was built with a different model than the one asked for."""

    code = "model_mismatch"


class SourceError(ClipsearchError, ValueError):
    """A corpus source (folder or manifest) that cannot be read."""

    code = "invalid_source"


class IndexBusyError(ClipsearchError):
    """Another build or update holds the index's lock."""

    code = "index_busy"
