"""Publishing a version: write it aside in work/, fsync, rename into versions/, swap CURRENT.

A crash at any point leaves CURRENT naming a complete version: a version directory only appears
under versions/ once every file in it (and the manifest with their checksums) is on disk, and
CURRENT is replaced atomically afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from ._fsutil import fsync_dir, fsync_file, write_atomic

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
VERSIONS = "versions"
WORK = "work"
MANIFEST = "manifest.json"
KEEP_VERSIONS = 3  # older versions are pruned (a server may still hold one open: files stay valid)
FORMAT_VERSION = 1


def new_version_id() -> str:
    """Sortable by creation time, unique across concurrent writers."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


def live_version(index_dir: str | Path) -> str | None:
    """The name in CURRENT, or None if nothing was published yet."""
    try:
        name = (Path(index_dir) / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


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


def publish(index_dir: Path, staging: Path, version: str, manifest: dict[str, Any]) -> Path:
    """Seal `staging` (checksums + manifest), move it into versions/, make it live."""
    manifest = {
        **manifest,
        "format_version": FORMAT_VERSION,
        "version": version,
        "files": file_checksums(staging),
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
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
    return final


def prune_versions(index_dir: Path, keep: int = KEEP_VERSIONS) -> None:
    live = live_version(index_dir)
    versions = sorted(p for p in (index_dir / VERSIONS).iterdir() if p.is_dir())
    for p in versions[:-keep]:
        if p.name != live:
            shutil.rmtree(p, ignore_errors=True)
