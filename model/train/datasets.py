"""The caption datasets people already have, read as they come: COCO captions
(`annotations/captions_*.json`), Flickr30k (`results.csv`, `|`-separated), Flickr8k
(`captions.txt`, or `Flickr8k.token.txt`) and Karpathy's split files (`dataset_coco.json`,
`dataset_flickr30k.json`, `dataset_flickr8k.json`) with a split. Every caption is one row; the
captions of one image share its image id, so none of them is a false negative of another."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from ..errors import ClipsearchError

log = logging.getLogger(__name__)

KARPATHY_SPLITS = ("train", "val", "test", "restval")
# Karpathy's "train" is usually trained together with "restval" (the rest of COCO's val2014)
SPLIT_ALIASES = {"train": ("train", "restval")}
IMAGE_DIRS = ("images", "Images", "flickr30k_images", "flickr8k_images", "Flicker8k_Dataset")


class DataError(ClipsearchError, ValueError):
    """A data source that cannot be read at all (single bad rows are skipped instead)."""

    code = "invalid_training_data"


def sniff(path: Path) -> str | None:
    """'coco' | 'karpathy' | 'flickr30k' | 'flickr8k' for a file in one of these layouts."""
    suffix = path.suffix.lower()
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(4096)
    first = head.splitlines()[0] if head else ""
    if suffix == ".json" and head.lstrip().startswith("{"):
        if '"sentences"' in head:
            return "karpathy"
        if '"annotations"' in head or ('"images"' in head and '"file_name"' in head):
            return "coco"
    if suffix == ".csv" and "|" in first and "image" in first.lower():
        return "flickr30k"
    if suffix == ".txt" and (first.lower().startswith("image,caption") or "#" in first):
        return "flickr8k"
    return None


def split_for(source: str | Path, given: str | None, default: str) -> str | None:
    """The split to read: `given`, else `default` for a Karpathy file (training reads train,
    evaluation test), else None (other sources have no splits)."""
    if given is not None:
        return given
    path = Path(source)
    return default if path.is_file() and sniff(path) == "karpathy" else None


def read_rows(path: Path, layout: str, split: str | None) -> Iterable[tuple[Path, str]]:
    """(image path, caption) pairs of a dataset file; images are looked for where each
    dataset's archives unpack them, relative to the file."""
    if split is not None and layout != "karpathy":
        raise DataError(f"{path}: a {layout} file has no splits; --split is for Karpathy files")
    return {"coco": _coco, "karpathy": _karpathy, "flickr30k": _flickr30k, "flickr8k": _flickr8k}[
        layout
    ](path, split)


def _image_root(path: Path, first_name: str, extra: Iterable[Path] = ()) -> Path:
    """The directory holding `first_name`: beside the file, in a usual images folder, or one
    level up; the file's own directory when none holds it (rows then count as not found)."""
    bases = (path.parent, path.parent.parent)
    candidates = [*extra, *(b / d for b in bases for d in IMAGE_DIRS), *bases]
    candidates += [c / c.name for c in candidates if c.name in IMAGE_DIRS]  # Kaggle's nesting
    for c in candidates:
        if (c / first_name).is_file():
            return c
    log.warning("%s: found no directory holding %s", path, first_name)
    return path.parent


def _coco(path: Path, split: str | None) -> Iterable[tuple[Path, str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    files = {im["id"]: im["file_name"] for im in data.get("images", [])}
    anns = data.get("annotations", [])
    if not files or not anns:
        return []
    # annotations/captions_val2017.json → the images sit in ../val2017/
    subset = path.stem.split("_", 1)[-1]
    root = _image_root(path, files[anns[0]["image_id"]], [path.parent.parent / subset])
    return [(root / files[a["image_id"]], a["caption"]) for a in anns if a["image_id"] in files]


def _karpathy(path: Path, split: str | None) -> Iterable[tuple[Path, str]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    images = data.get("images", [])
    if split is not None and split not in KARPATHY_SPLITS:
        raise DataError(f"--split {split!r}: choose one of {', '.join(KARPATHY_SPLITS)}")
    if split is None:
        choices = ", ".join(KARPATHY_SPLITS)
        raise DataError(f"{path}: a Karpathy split file needs --split ({choices})")
    wanted = SPLIT_ALIASES.get(split, (split,))
    chosen = [im for im in images if im.get("split") in wanted]
    if not chosen:
        return []
    first = chosen[0]
    rel = Path(first.get("filepath", "")) / first["filename"]  # COCO: val2014/…, Flickr: name
    root = _image_root(path, str(rel))
    return [
        (root / im.get("filepath", "") / im["filename"], s["raw"])
        for im in chosen
        for s in im.get("sentences", [])
    ]


def _flickr30k(path: Path, split: str | None) -> Iterable[tuple[Path, str]]:
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter="|")
        next(reader, None)  # image_name| comment_number| comment
        for row in reader:
            if len(row) >= 3:
                rows.append((row[0].strip(), "|".join(row[2:]).strip()))
    if not rows:
        return []
    root = _image_root(path, rows[0][0])
    return [(root / name, caption) for name, caption in rows]


def _flickr8k(path: Path, split: str | None) -> Iterable[tuple[Path, str]]:
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        first = fh.readline()
        if first.lower().startswith("image,caption"):  # Kaggle's captions.txt
            rows = [(r[0].strip(), ",".join(r[1:]).strip()) for r in csv.reader(fh) if r]
        else:  # Flickr8k.token.txt: name.jpg#0<TAB>caption
            for line in [first, *fh]:
                name, _, caption = line.partition("\t")
                rows.append((name.split("#")[0].strip(), caption.strip()))
    rows = [r for r in rows if r[0]]
    if not rows:
        return []
    root = _image_root(path, rows[0][0])
    return [(root / name, caption) for name, caption in rows]
