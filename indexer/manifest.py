"""The manifest of a published version: one typed record, read, validated and written only here.

Keys this code does not know (written by a newer clipsearch, or by hand) are kept in `extra` and
written back unchanged, so deriving a version never loses them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import IndexOpenError
from .layout import MANIFEST, VERSIONS, dir_size, live_version
from .types import RERANK_K

FORMAT_VERSION = 1
REQUIRED = ("fingerprint", "dim", "count", "factory", "files", "model")
_TYPES: dict[str, type | tuple[type, ...]] = {
    "model": str,
    "fingerprint": str,
    "factory": str,
    "dim": int,
    "count": int,
    "files": dict,
    "search_params": dict,
    "rerank_k": int,
    "texts_count": int,
}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Manifest:
    """Everything a version says about itself (versions/<id>/manifest.json)."""

    model: str  # the model spec it was built with
    fingerprint: str  # the model's fingerprint: searching needs the same one
    dim: int
    count: int
    factory: str  # FAISS factory string of images.faiss
    backend: str = "torch"  # the encoder backend the vectors came from (torch, onnx, onnx-int8)
    metric: str = "inner_product"
    root: str = ""  # the corpus root item paths are relative to
    source: str = ""  # the folder or manifest it was built from
    created_at: str = field(default_factory=now_iso)
    parent: str | None = None  # the version it was derived from
    rerank: bool = False
    rerank_k: int = RERANK_K
    search_params: dict[str, int] = field(default_factory=dict)  # e.g. {"nprobe": 32}
    recall_at_10: float | None = 1.0  # None: not measurable (an empty index)
    recall_queries: int = 0
    exact: bool = True
    texts_count: int = 0  # rows of texts.faiss (the image→text corpus), 0 without one
    texts_source: str | None = None  # "captions" | "file"
    ondisk: bool = False  # images.faiss is an IVF whose lists are mapped from `ivfdata`
    ivfdata: str | None = None
    index_bytes: int | None = None
    ondisk_build: dict[str, Any] | None = None
    build_report: dict[str, Any] | None = None  # BuildReport.to_dict() of the build or update
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name → {sha256, size}
    format_version: int = FORMAT_VERSION
    version: str | None = None  # the version id (set when published)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, written back as they were

    # -- dict form ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any, where: str | Path = "manifest") -> Manifest:
        """Validate a parsed manifest.json; IndexOpenError names the first problem."""
        if not isinstance(d, dict):
            raise IndexOpenError(f"{where}: manifest.json is not a JSON object")
        for key in REQUIRED:
            if key not in d:
                raise IndexOpenError(f"{where}: manifest.json lacks {key!r}")
        for key, typ in _TYPES.items():
            value = d.get(key)
            if value is None and key not in REQUIRED:
                continue
            if not isinstance(value, typ) or isinstance(value, bool):
                raise IndexOpenError(f"{where}: manifest.json has an invalid {key!r}: {value!r}")
        if d["dim"] < 1 or d["count"] < 0:
            raise IndexOpenError(f"{where}: manifest.json has dim {d['dim']}, count {d['count']}")
        for name, meta in d["files"].items():
            if not isinstance(meta, dict) or not {"sha256", "size"} <= meta.keys():
                raise IndexOpenError(f"{where}: manifest.json has a bad entry for {name!r}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in d.items() if k in known and v is not None}
        if "parent" in d or "recall_at_10" in d:  # None is meaningful for these two
            kwargs.update({k: d[k] for k in ("parent", "recall_at_10") if k in d})
        return cls(**kwargs, extra={k: v for k, v in d.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **d}

    # -- files ----------------------------------------------------------------------------------
    @classmethod
    def read(cls, version_dir: Path) -> Manifest:
        """versions/<id>/manifest.json → Manifest; IndexOpenError if missing or invalid."""
        try:
            data = json.loads((version_dir / MANIFEST).read_text())
        except FileNotFoundError:
            raise IndexOpenError(f"{version_dir}: manifest.json is missing") from None
        except (OSError, ValueError) as e:
            raise IndexOpenError(f"{version_dir}: manifest.json is unreadable ({e})") from None
        return cls.from_dict(data, version_dir)

    def write(self, version_dir: Path) -> None:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        (version_dir / MANIFEST).write_text(text)

    def derive(self, **changes: Any) -> Manifest:
        """A copy for a new version made from this one: parent set, seal fields cleared."""
        base = {"parent": self.version, "created_at": now_iso(), "files": {}, "version": None}
        return dataclasses.replace(self, **{**base, **changes}, extra=dict(self.extra))


def version_dir(index_dir: str | Path, version: str | None = None) -> Path:
    """The directory of `version` (default: the live one); IndexOpenError (index_not_found)
    when there is no index, no published version, or no such version."""
    root = Path(index_dir)
    if not root.is_dir():
        raise IndexOpenError(f"{root}: no index directory here", code="index_not_found")
    version = version or live_version(root)
    if version is None:
        raise IndexOpenError(
            f"{root}: no published version (run `clipsearch index build` first)",
            code="index_not_found",
        )
    path = root / VERSIONS / version
    if "/" in version or not path.is_dir():
        raise IndexOpenError(f"{root}: no version {version!r}", code="index_not_found")
    return path


def read_manifest(index_dir: str | Path, version: str | None = None) -> Manifest:
    """The manifest of the live (or a named) version, without opening its files."""
    return Manifest.read(version_dir(index_dir, version))


@dataclass(frozen=True)
class VersionInfo:
    """One entry of versions/: what `clipsearch index info` lists."""

    version: str
    live: bool
    size_bytes: int
    manifest: Manifest | None  # None: unreadable (a damaged or half-pruned version)

    @property
    def created_at(self) -> str | None:
        return self.manifest.created_at if self.manifest else None

    @property
    def count(self) -> int | None:
        return self.manifest.count if self.manifest else None


def list_versions(index_dir: str | Path) -> list[VersionInfo]:
    """Every version under versions/, oldest first."""
    root = Path(index_dir) / VERSIONS
    live = live_version(index_dir)
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        try:
            m: Manifest | None = Manifest.read(d)
        except IndexOpenError:
            m = None
        out.append(VersionInfo(d.name, d.name == live, dir_size(d), m))
    return out
