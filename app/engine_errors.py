"""What the search engine refuses, as domain errors: each has a `code`; app/errors.py alone
decides which HTTP status a code gets, so the engine knows nothing of HTTP."""

from __future__ import annotations

from model.errors import ClipsearchError


class NoIndexError(ClipsearchError):
    code = "no_index"


class ItemNotFoundError(ClipsearchError, LookupError):
    code = "not_found"


class ImageUnavailableError(ClipsearchError):
    """An indexed file that can no longer be read: the corpus changed, not the client's fault."""

    code = "image_unavailable"


class InvalidFilterError(ClipsearchError, ValueError):
    code = "invalid_filter"


class UnknownIndexError(ClipsearchError, LookupError):
    """A request named an index this server does not serve (`index` field, `indice_name`)."""

    code = "unknown_index"
