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


class MallocTrimmer:
    """Hands freed heap memory back to the OS every `interval_s` seconds (glibc `malloc_trim`).

    Under concurrent load glibc keeps the pages of freed activations in its arenas (one per
    thread), so RSS climbs for the first minute of traffic and stays there although the
    process's live memory is flat; see docs/reliability.md for the measurements. Trimming
    returns those pages; it does nothing where malloc_trim does not exist (musl, macOS)."""

    def __init__(self, interval_s: float) -> None:
        import ctypes
        import ctypes.util
        import threading

        self.interval_s = interval_s
        self.trims = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._trim = None
        name = ctypes.util.find_library("c")
        try:
            self._trim = ctypes.CDLL(name).malloc_trim if name else None
        except (OSError, AttributeError):
            self._trim = None
        if self._trim is not None and interval_s > 0:
            self._thread = threading.Thread(target=self._run, name="clipsearch-trim", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._trim(0)
            self.trims += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
