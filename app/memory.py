"""Measured memory of the serving process, for /stats: how much of a memory-mapped index is
actually resident, next to how big the index is on disk."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_FIELDS = {
    "VmRSS": "rss_bytes",
    "RssAnon": "anon_bytes",
    "RssFile": "file_bytes",
    "VmHWM": "peak_rss_bytes",
}


def process_memory(version_path: Path | None = None) -> dict[str, Any]:
    """RSS of this process split into anonymous memory (model, heap) and file-backed pages (the
    mapped index pages queries touched), from /proc/self/status; plus the index files' size."""
    out: dict[str, Any] = dict.fromkeys(_FIELDS.values())
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in _FIELDS:
                out[_FIELDS[key]] = int(value.split()[0]) * 1024  # reported in kB
    except OSError as e:  # not Linux: the numbers stay null
        log.debug("no /proc/self/status: %s", e)
    if version_path is not None:
        out["index_bytes"] = sum(p.stat().st_size for p in version_path.iterdir() if p.is_file())
    return out
