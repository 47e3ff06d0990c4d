"""Lazy package exports: `import model` (or `indexer`) stays cheap, and a name's module is
imported on first use. Each package keeps one table, name → submodule; `__all__` is derived."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(package: str, exports: dict[str, str], namespace: dict) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that imports `exports[name]` on demand and
    caches the value in the package's `namespace` (its globals)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    return __getattr__
