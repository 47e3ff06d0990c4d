"""Publishing a version: write it aside in work/, fsync, rename into versions/, swap CURRENT.

A crash at any point leaves CURRENT naming a complete version: a version directory only appears
under versions/ once every file in it (and the manifest with their checksums) is on disk, and
CURRENT is replaced atomically afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from ._fsutil import fsync_dir, fsync_file, write_atomic
from .layout import CURRENT, MANIFEST, VERSIONS, WORK, live_version
from .manifest import FORMAT_VERSION, Manifest

__all__ = ["CURRENT", "MANIFEST", "VERSIONS", "WORK", "live_version", "publish"]

log = logging.getLogger(__name__)

KEEP_VERSIONS = 3  # older versions are pruned (a server may still hold one open: files stay valid)


def new_version_id() -> str:
    """Sortable by creation time (to the microsecond: two versions of one second keep their
    order), unique across concurrent writers."""
    now = time.time_ns() // 1000
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000))
    return f"{stamp}.{now % 1_000_000:06d}Z-{secrets.token_hex(3)}"


def staging_dir(index_dir: Path, version: str) -> Path:
    d = index_dir / WORK / f"staging-{version}"
    d.mkdir(parents=True, exist_ok=False)
    return d


def clean_staging(index_dir: Path) -> None:
    """Drop half-written versions of killed runs (their shards stay for resuming)."""
    for d in (index_dir / WORK).glob("staging-*"):
        log.info("removing unfinished version %s", d.name)
        shutil.rmtree(d, ignore_errors=True)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_checksums(d: Path) -> dict[str, dict[str, Any]]:
    return {
        p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(d.iterdir())
        if p.is_file() and p.name != MANIFEST
    }


def link_or_copy(src: Path, dst: Path) -> None:
    """Immutable files of the previous version are shared by hard link when possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def publish(index_dir: Path, staging: Path, version: str, manifest: Manifest) -> Manifest:
    """Seal `staging` (checksums + manifest), move it into versions/, make it live.
    → the manifest as published (version, files and format version set)."""
    manifest = dataclasses.replace(
        manifest, format_version=FORMAT_VERSION, version=version, files=file_checksums(staging)
    )
    manifest.write(staging)
    for p in staging.iterdir():
        fsync_file(p)
    fsync_dir(staging)
    versions = index_dir / VERSIONS
    versions.mkdir(exist_ok=True)
    final = versions / version
    os.rename(staging, final)
    fsync_dir(versions)
    fsync_dir(staging.parent)
    write_atomic(index_dir / CURRENT, (version + "\n").encode())
    log.info("published version %s", version)
    prune_versions(index_dir)
    return manifest


def prune_versions(index_dir: Path, keep: int = KEEP_VERSIONS) -> None:
    live = live_version(index_dir)
    versions = sorted(p for p in (index_dir / VERSIONS).iterdir() if p.is_dir())
    for p in versions[:-keep]:
        if p.name != live:
            shutil.rmtree(p, ignore_errors=True)
