"""Find the images of a corpus: a folder (recursive) or a CSV/JSONL manifest, then hash them."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import SourceError
from .report import Skip

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
)
MANIFEST_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
PATH_COLUMNS = ("path", "image", "file", "filepath")  # first one present names the image


@dataclass(frozen=True)
class Entry:
    """A candidate image. `rel` is the POSIX path relative to the corpus root (the item's path)."""

    rel: str
    abs: Path
    caption: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    size: int = 0
    mtime_ns: int = 0
    sha256: str = ""


@dataclass
class ScanResult:
    root: Path  # resolved corpus root: image_path() never leaves it
    entries: list[Entry]
    skipped: list[Skip]
    ignored_files: int = 0


def scan_source(source: str | Path, exclude: Iterable[Path] = ()) -> ScanResult:
    """A folder or a manifest file → entries sorted by path (no file contents read yet)."""
    src = Path(source).expanduser()
    if src.is_dir():
        return scan_folder(src, exclude)
    if src.is_file():
        kind = MANIFEST_SUFFIXES.get(src.suffix.lower())
        if kind is None:
            raise SourceError(
                f"{src}: a source is a folder or a manifest (.csv, .tsv, .jsonl), "
                f"not a {src.suffix or 'suffix-less'} file"
            )
        return scan_manifest(src, kind)
    raise SourceError(f"{src}: no such folder or manifest")


# -- folders ----------------------------------------------------------------------------------
def scan_folder(folder: Path, exclude: Iterable[Path] = ()) -> ScanResult:
    root = folder.resolve()
    excluded = {p.resolve() for p in exclude}
    entries: list[Entry] = []
    skipped: list[Skip] = []
    ignored = 0
    seen_dirs: set[tuple[int, int]] = set()  # (dev, inode) of every directory walked: no loops

    def rel_of(p: Path) -> str:
        return p.relative_to(folder).as_posix()

    def walk(d: Path) -> None:
        nonlocal ignored
        try:
            st = d.stat()
            if (st.st_dev, st.st_ino) in seen_dirs:
                log.info("%s: directory already scanned (symlink loop or alias)", d)
                return
            seen_dirs.add((st.st_dev, st.st_ino))
            children = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as e:
            skipped.append(Skip(rel_of(d) or ".", "unreadable", f"cannot list directory: {e}"))
            return
        for child in children:
            p = Path(child.path)
            if child.name.startswith("."):
                continue  # hidden files and folders (.git, .DS_Store, .thumbnails …)
            try:
                is_link = child.is_symlink()
                real = p.resolve() if is_link else None
                if real is not None and not real.exists():
                    if p.suffix.lower() in IMAGE_EXTENSIONS:
                        skipped.append(Skip(rel_of(p), "file_not_found", "broken symlink"))
                    continue
                if real is not None and not real.is_relative_to(root):
                    if p.suffix.lower() in IMAGE_EXTENSIONS or real.is_dir():
                        skipped.append(
                            Skip(rel_of(p), "outside_corpus", f"symlink points outside to {real}")
                        )
                    continue
                if child.is_dir():
                    if (real or p.resolve()) not in excluded:
                        walk(p)
                    continue
                if not child.is_file():
                    continue  # sockets, fifos, devices
            except OSError as e:
                skipped.append(Skip(rel_of(p), "unreadable", str(e)))
                continue
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored += 1
                continue
            entries.append(Entry(rel=rel_of(p), abs=p))

    walk(folder)
    entries.sort(key=lambda e: e.rel)
    return ScanResult(root=root, entries=entries, skipped=skipped, ignored_files=ignored)


# -- manifests --------------------------------------------------------------------------------
def _manifest_rows(path: Path, kind: str) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            if kind == "jsonl":
                for n, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise SourceError(f"{path}:{n}: not a JSON object ({e.msg})") from e
                    if not isinstance(row, dict):
                        raise SourceError(f"{path}:{n}: each line must be a JSON object")
                    yield n, row
            else:
                reader = csv.DictReader(f, delimiter="\t" if kind == "tsv" else ",")
                for n, row in enumerate(reader, start=2):
                    yield n, {k: v for k, v in row.items() if k is not None}
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{path}: cannot read the manifest ({e})") from e


def scan_manifest(path: Path, kind: str) -> ScanResult:
    base = path.resolve().parent
    rows: list[tuple[Path, str, str | None, dict[str, Any]]] = []
    skipped: list[Skip] = []
    column: str | None = None
    for n, row in _manifest_rows(path, kind):
        if column is None:
            column = next((c for c in PATH_COLUMNS if c in row), None)
            if column is None:
                raise SourceError(
                    f"{path}: no image column; name one of {', '.join(PATH_COLUMNS)} "
                    f"(found: {', '.join(map(str, row)) or 'none'})"
                )
        raw = str(row.get(column) or "").strip()
        if not raw:
            skipped.append(Skip(f"{path.name}:{n}", "missing_path", f"row {n} has no {column}"))
            continue
        if "://" in raw:
            skipped.append(Skip(raw, "unsupported_source", "URLs are not supported yet"))
            continue
        caption = row.get("caption")
        caption = str(caption) if caption not in (None, "") else None
        extra = {
            str(k): v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v)
            for k, v in row.items()
            if k not in (column, "caption")
        }
        abs_path = (base / raw).resolve()
        if not abs_path.is_file():
            skipped.append(Skip(raw, "file_not_found", "no such file"))
            continue
        rows.append((abs_path, raw, caption, extra))
    if not rows:
        return ScanResult(root=base, entries=[], skipped=skipped)
    # The corpus root is the deepest folder holding every listed image.
    root = Path(os.path.commonpath([str(p.parent) for p, *_ in rows]))
    entries: dict[str, Entry] = {}
    for abs_path, _raw, caption, extra in rows:
        rel = abs_path.relative_to(root).as_posix()
        if rel in entries:
            skipped.append(Skip(rel, "duplicate_path", "listed more than once in the manifest"))
            continue
        entries[rel] = Entry(rel=rel, abs=abs_path, caption=caption, extra=extra)
    return ScanResult(
        root=root, entries=sorted(entries.values(), key=lambda e: e.rel), skipped=skipped
    )


# -- hashing ----------------------------------------------------------------------------------
Known = dict[
    str, tuple[int, int, str]
]  # rel path → (size, mtime_ns, sha256) from a previous version


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_entries(
    entries: list[Entry],
    known: Known | None = None,
    threads: int = 4,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[Entry], list[Skip]]:
    """Fill size/mtime/sha256. A file whose path, size and mtime match `known` is not re-read."""
    known = known or {}

    def one(e: Entry) -> Entry | Skip:
        try:
            st = e.abs.stat()
            prev = known.get(e.rel)
            if prev and prev[0] == st.st_size and prev[1] == st.st_mtime_ns:
                sha = prev[2]
            else:
                sha = file_sha256(e.abs)
        except FileNotFoundError:
            return Skip(e.rel, "file_not_found", "the file disappeared during the scan")
        except OSError as err:
            return Skip(e.rel, "unreadable", str(err))
        return replace(e, size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=sha)

    done: list[Entry] = []
    skipped: list[Skip] = []
    # hashlib releases the GIL on large buffers, so threads overlap file reads and hashing.
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for r in pool.map(one, entries):
            (done if isinstance(r, Entry) else skipped).append(r)
            if on_progress:
                on_progress(1)
    return done, skipped
