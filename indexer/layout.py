"""Where things live in an index directory (see DESIGN.md): CURRENT, versions/<id>/, work/."""

from __future__ import annotations

from pathlib import Path

CURRENT = "CURRENT"
VERSIONS = "versions"
WORK = "work"
MANIFEST = "manifest.json"


def live_version(index_dir: str | Path) -> str | None:
    """The name in CURRENT, or None if nothing was published yet."""
    try:
        name = (Path(index_dir) / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def dir_size(path: Path) -> int:
    """Bytes of the files directly in `path` (a version's files)."""
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())
