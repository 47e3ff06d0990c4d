"""Service configuration: one typed settings class, read from CLIPSEARCH_* environment variables
(or built directly in code, tests and the CLI, whose `serve` flags are derived from these fields).
Nothing here is created at import time; this is the one module that reads our environment."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model.backends import BACKENDS, DEFAULT_BACKEND
from model.limits import DEFAULT_MAX_PIXELS

MiB = 1024 * 1024
ENV_PREFIX = "CLIPSEARCH_"
Backend = Literal[BACKENDS]  # type: ignore[valid-type]
LogLevel = Literal["debug", "info", "warning", "error"]


class Settings(BaseSettings):
    """Every field is also a `clipsearch serve` flag (`max_batch` → `--max-batch`) and an
    environment variable (`CLIPSEARCH_MAX_BATCH`); the description is the flag's help."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    index: Annotated[list[str], NoDecode] | None = Field(
        None,
        description="index directory (with CURRENT + versions/); repeat for several, as "
        "NAME=DIR (a plain DIR is named after its folder; the first is the default), or a "
        "clip-retrieval indices.json (name -> folder)",
    )
    model: str | None = Field(
        None, description="model spec (default: the one the index was built with)"
    )
    device: str | None = Field(None, description="cpu, cuda, cuda:1 … (default: CUDA if present)")
    backend: Backend = Field(
        DEFAULT_BACKEND,
        description="auto: ONNX Runtime on a CPU when it gives PyTorch's vectors, else torch; "
        "torch; or ONNX Runtime on the CPU: onnx (same vectors), onnx-int8",
    )
    host: str = Field("127.0.0.1", description="address to bind")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    workers: int = Field(
        1, ge=1, le=64, description="worker processes (each loads the model and the index)"
    )
    log_level: LogLevel = Field("info", description="server log level")

    # Security
    api_key: SecretStr | None = Field(
        None, description="if set, every route but the probes needs it (X-API-Key or Bearer)"
    )
    admin_api_key: SecretStr | None = Field(
        None, description="key for /admin/* (default: the API key)"
    )
    cors_origins: str = Field(
        "", description='comma-separated origins allowed by CORS ("*" for any; empty: none)'
    )

    # Input limits (checked before any decoding or tokenising)
    max_body_bytes: int = Field(20 * MiB, ge=1024, description="request body limit in bytes")
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="image pixel cap (the indexer's default too)"
    )
    max_text_chars: int = Field(2000, ge=1, description="query text length cap")
    max_labels: int = Field(256, ge=1, description="labels per /classify request")
    max_templates: int = Field(32, ge=1, description="prompt templates per /classify request")
    max_embed_items: int = Field(
        64, ge=1, description="texts, and images, per /embed request (each)"
    )
    max_terms: int = Field(16, ge=1, description="weighted terms per /search request")

    # Encoder scheduling
    batching: bool = Field(
        True, description="micro-batch concurrent encoder calls (off: one call per request)"
    )
    max_batch: int = Field(32, ge=1, description="largest micro-batch")
    batch_wait_ms: float = Field(
        2.0, ge=0.0, le=100.0, description="micro-batch linger (with encode workers > 1)"
    )
    encode_workers: int = Field(1, ge=1, description="threads running the model")
    search_workers: int = Field(2, ge=1, description="threads for FAISS, decoding, thumbnails")
    max_queue: int = Field(
        256, ge=1, description="queued encoder requests before 503 + Retry-After"
    )
    torch_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads (default: torch's choice)"
    )

    # Caches
    text_cache_size: int = Field(4096, ge=0, description="LRU size of text-query embeddings")
    label_cache_size: int = Field(4096, ge=0, description="LRU size of label embeddings")
    thumbnail_cache_size: int = Field(256, ge=0, description="LRU size of thumbnails")
    thumbnail_px: int = Field(256, ge=16, le=1024, description="thumbnail side in pixels")

    writable: bool = Field(
        False, description="accept writes: POST /images and DELETE /images/{id} (a living index)"
    )
    compact_changes: int = Field(
        1000, ge=1, description="writable: fold the changes into a new version after this many"
    )
    compact_idle_s: float = Field(
        30.0, gt=0.0, description="writable: … or once no write came for this many seconds"
    )
    reload_poll_s: float = Field(
        0.0, ge=0.0, description="> 0: follow CURRENT, reloading when it changes (seconds)"
    )
    malloc_trim_s: float = Field(
        2.0, ge=0.0, description="hand freed heap back to the OS this often (0: off)"
    )
    warmup: bool = Field(True, description="run every request path once before ready")
    # clip-retrieval's back-end API (/knn-service, /metadata, /indices-list)
    image_url_hosts: str = Field(
        "",
        description="hosts whose images /knn-service may fetch for an image_url query, "
        'comma-separated ("*": any host on a public address; empty: image_url is refused)',
    )
    knn_inline_images: bool = Field(
        False,
        description="/knn-service and /metadata also send each image file as base64 `image`, "
        "as clip-retrieval's back does (off: `url` points at /images/{id})",
    )
    static_dir: Path | None = Field(
        None, description="web page directory served at / (default: the built-in page)"
    )

    @field_validator("api_key", "admin_api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, v: object) -> object:
        # CLIPSEARCH_API_KEY="" means "no key", not "the empty key" (which nobody could send).
        return None if v == "" else v

    @field_validator("static_dir", mode="after")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        # Resolved once, where it is given: a worker process or a later chdir sees the same dir.
        return v.expanduser().resolve() if v is not None else None

    @field_validator("index", mode="before")
    @classmethod
    def _indexes(cls, v: Any) -> list[str] | None:
        # Normalised to "name=/absolute/dir" entries, resolved once where given (a worker
        # process or a later chdir sees the same dirs), indices.json files expanded.
        return None if v is None else normalise_indexes(v)

    def index_map(self) -> dict[str, Path]:
        """The served indexes by name, in the order given: the first is the default."""
        return dict(_split_entry(e) for e in self.index or [])

    def image_url_host_list(self) -> list[str]:
        return [h.strip().lower() for h in self.image_url_hosts.split(",") if h.strip()]

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def admin_key(self) -> SecretStr | None:
        return self.admin_api_key or self.api_key

    def to_env(self) -> dict[str, str]:
        """These settings as CLIPSEARCH_* variables: how uvicorn's worker processes, which can
        only import a factory, receive them (app.server.create_app_from_env reads them back)."""
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, list):
                value = json.dumps(value)
            env[ENV_PREFIX + name.upper()] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        return env


INDEX_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def normalise_indexes(value: Any) -> list[str]:
    """`--index` values → ["name=/abs/dir", …]. Each value is DIR (named after its folder),
    NAME=DIR, or a clip-retrieval indices.json (a JSON object name → folder, or name →
    {"indice_folder": folder}; relative folders are read from the JSON file's folder). The
    environment gives one such value or a JSON list of them. Names and folders must be unique."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise ValueError(f"not a JSON list of indexes: {e}") from None
    values = value if isinstance(value, list | tuple) else [value]
    entries: list[tuple[str, Path]] = []
    for raw in values:
        if not isinstance(raw, str | Path):
            raise ValueError(f"an index is a DIR or NAME=DIR, not {raw!r}")
        name, path = _parse_entry(str(raw))
        if path.is_file() and path.suffix == ".json":
            if name is not None:
                raise ValueError(f"{raw}: an indices.json names its indexes itself; drop {name}=")
            entries += _indices_json(path)
        else:
            entries.append((name or _folder_name(path), path))
    names = [n for n, _ in entries]
    paths = [p for _, p in entries]
    for what, seen in (("name", names), ("folder", paths)):
        dup = next((x for i, x in enumerate(seen) if x in seen[:i]), None)
        if dup is not None:
            raise ValueError(f"two indexes with the {what} {dup}: give each its own NAME=DIR")
    return [f"{n}={p}" for n, p in entries]


def _parse_entry(raw: str) -> tuple[str | None, Path]:
    name, sep, rest = raw.partition("=")
    if sep and INDEX_NAME.fullmatch(name):
        return name, Path(rest).expanduser().resolve()
    if sep and "/" not in name and "\\" not in name:
        raise ValueError(
            f"{name!r} is not an index name: use letters, digits, '.', '_' and '-' (at most 64)"
        )
    return None, Path(raw).expanduser().resolve()


def _folder_name(path: Path) -> str:
    """A plain DIR's name: its folder's, with anything a name cannot hold made '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.name).strip("-._")[:64]
    return name or "default"


def _indices_json(path: Path) -> list[tuple[str, Path]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable indices.json ({e})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: an indices.json is a JSON object of name → index folder")
    out = []
    for name, where in data.items():
        if isinstance(where, dict):
            where = where.get("indice_folder")
        if not isinstance(where, str) or not INDEX_NAME.fullmatch(str(name)):
            raise ValueError(f"{path}: entry {name!r} needs a name and a folder")
        out.append((str(name), (path.parent / Path(where).expanduser()).resolve()))
    return out


def _split_entry(entry: str) -> tuple[str, Path]:
    name, _, path = entry.partition("=")
    return name, Path(path)
