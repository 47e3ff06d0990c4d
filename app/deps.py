"""FastAPI dependencies as Annotated aliases; tests swap fakes in with dependency_overrides.

All are `async def`: they never block, and FastAPI would run a plain `def` dependency on its
thread pool — a thread hand-off per dependency per request."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from .engine import SearchEngine
from .engine_errors import UnknownIndexError
from .errors import ApiError
from .settings import Settings

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
bearer = HTTPBearer(auto_error=False)


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_engine(request: Request) -> SearchEngine:
    """The default index's engine (the first one served); 503 until every index is loaded."""
    return engine_for(request, None)


def engine_for(request: Request, name: str | None) -> SearchEngine:
    """The engine of the index called `name` (None: the default, the first one given to
    `serve`). 503 `not_ready` while loading; an unknown name is UnknownIndexError (404
    `unknown_index`). Plain `def`: routes call it after reading the body that names the index."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        error = getattr(request.app.state, "load_error", None)
        raise ApiError(
            503,
            "not_ready",
            f"the service is not ready: {error}" if error else "the service is still loading",
            headers={"Retry-After": "5"},
        )
    if name is None:
        return engine
    engines: dict[str, SearchEngine] = getattr(request.app.state, "engines", None) or {}
    found = engines.get(name)
    if found is None:
        known = ", ".join(engines) or "none"
        raise UnknownIndexError(f"no index named {name!r} on this server (it serves: {known})")
    return found


def index_names(request: Request) -> list[str]:
    """The served indexes' names, the default first (empty while loading)."""
    return list(getattr(request.app.state, "engines", None) or {})


async def get_index_engine(
    request: Request,
    index: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description="which index (GET /indexes lists them; default: the first one)",
        ),
    ] = None,
) -> SearchEngine:
    """The engine of the `?index=` query parameter (routes without a body: images, writes)."""
    return engine_for(request, index)


def _key_matches(given: str | None, expected: SecretStr) -> bool:
    if not given:
        return False
    # compare_digest takes constant time in the length of the inputs: no timing oracle.
    return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())


def _given_key(header: str | None, creds: HTTPAuthorizationCredentials | None) -> str | None:
    return header or (creds.credentials if creds is not None else None)


async def require_api_key(
    settings: Annotated[Settings, Depends(get_settings)],
    header: Annotated[str | None, Security(api_key_header)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    if settings.api_key is not None and not _key_matches(
        _given_key(header, creds), settings.api_key
    ):
        raise ApiError(
            401,
            "unauthorized",
            "missing or invalid API key (send X-API-Key or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def require_admin_key(
    settings: Annotated[Settings, Depends(get_settings)],
    header: Annotated[str | None, Security(api_key_header)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    key = settings.admin_key()
    if key is None:
        raise ApiError(403, "admin_disabled", "set an admin or API key to enable /admin routes")
    if not _key_matches(_given_key(header, creds), key):
        raise ApiError(
            401, "unauthorized", "missing or invalid admin key", {"WWW-Authenticate": "Bearer"}
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[SearchEngine, Depends(get_engine)]
IndexEngineDep = Annotated[SearchEngine, Depends(get_index_engine)]
