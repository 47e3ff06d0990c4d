"""Service configuration: one typed settings class, read from CLIPSEARCH_* environment variables
(or built directly in code and tests). Nothing here is created at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLIPSEARCH_", extra="ignore")

    index: Path | None = None  # index directory (with CURRENT + versions/); required to serve
    model: str | None = None  # model spec; default: the one the live index version was built with
    device: str | None = None  # cpu, cuda, cuda:1 … (default: CUDA if present)
    backend: Literal["torch", "onnx", "onnx-int8"] = "torch"  # model.loader.BACKENDS
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)  # uvicorn worker processes (each loads model + index)

    # Security
    api_key: SecretStr | None = None  # if set, every route but the probes needs it
    admin_api_key: SecretStr | None = None  # for /admin/*; falls back to api_key
    cors_origins: str = ""  # comma-separated origins ("*" for any); empty: no CORS headers

    # Input limits (checked before any decoding or tokenising)
    max_body_bytes: int = Field(20 * MiB, ge=1024)
    max_image_pixels: int = Field(40_000_000, ge=1)
    max_text_chars: int = Field(2000, ge=1)
    max_labels: int = Field(256, ge=1)
    max_templates: int = Field(32, ge=1)
    max_embed_items: int = Field(64, ge=1)
    max_terms: int = Field(16, ge=1)

    # Encoder scheduling
    batching: bool = True  # micro-batch concurrent encoder calls (off: one call per request)
    max_batch: int = Field(32, ge=1)
    batch_wait_ms: float = Field(2.0, ge=0.0, le=100.0)  # linger (encode_workers > 1 only)
    encode_workers: int = Field(1, ge=1)  # threads running the model (each batch uses torch's pool)
    search_workers: int = Field(2, ge=1)  # threads for FAISS, decoding and thumbnails
    max_queue: int = Field(256, ge=1)  # queued encoder requests before 503 + Retry-After
    torch_threads: int | None = None  # torch intra-op threads (default: torch's choice)

    # Caches
    text_cache_size: int = Field(4096, ge=0)  # LRU of text-query embeddings
    label_cache_size: int = Field(4096, ge=0)  # LRU of label embeddings (per model fingerprint)
    thumbnail_cache_size: int = Field(256, ge=0)
    thumbnail_px: int = Field(256, ge=16, le=1024)

    reload_poll_s: float = Field(0.0, ge=0.0)  # >0: follow CURRENT, reloading when it changes
    malloc_trim_s: float = Field(2.0, ge=0.0)  # hand freed heap back to the OS this often; 0 = off
    warmup: bool = True  # run one text, image and search call before reporting ready
    static_dir: Path | None = None  # served at "/"; default: app/static when it exists

    @field_validator("api_key", "admin_api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, v: object) -> object:
        # CLIPSEARCH_API_KEY="" means "no key", not "the empty key" (which nobody could send).
        return None if v == "" else v

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def admin_key(self) -> SecretStr | None:
        return self.admin_api_key or self.api_key
