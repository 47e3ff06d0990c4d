"""Image–caption training data: CSV/TSV/JSONL manifests, a folder of x.jpg + x.txt, or WebDataset
tar shards. Rows that cannot be used are skipped and counted (never fatal): at scan time (missing
file, empty caption) and at load time (undecodable image → an invalid placeholder row)."""

from __future__ import annotations

import csv
import glob
import json
import logging
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset, Sampler

from ..errors import ImageLoadError
from ..preprocess import load_image
from .datasets import DataError, read_rows, sniff

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
CAPTION_EXTS = (".txt", ".caption", ".cap")
IMAGE_KEYS = ("image", "path", "filepath", "file", "img")
CAPTION_KEYS = ("caption", "text", "title")


@dataclass(frozen=True)
class TarMember:
    """An uncompressed tar member read straight from its byte range (no re-scan per sample)."""

    shard: str
    offset: int
    size: int

    def read(self) -> bytes:
        with open(self.shard, "rb") as fh:
            fh.seek(self.offset)
            return fh.read(self.size)


@dataclass
class PairData:
    """Rows of (image, caption); `image_ids[i]` is shared by every row of the same image."""

    images: list[str | TarMember] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # reason → count, at scan time
    source: str = ""

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def num_images(self) -> int:
        return len(set(self.image_ids))

    def add(self, image: str | TarMember, caption: str, label: str | None, ids: dict) -> None:
        key = str(image)
        self.images.append(image)
        self.captions.append(caption)
        self.image_ids.append(ids.setdefault(key, len(ids)))
        self.labels.append(label)


def load_pairs(source: str | Path, split: str | None = None) -> PairData:
    """Scan a manifest (.csv/.tsv/.jsonl), a folder, WebDataset shards (.tar, a directory of
    .tar files, a glob or a brace range like shards-{000..009}.tar), or a caption dataset as it
    comes (COCO, Flickr30k/8k, a Karpathy split file: model/train/datasets.py) into rows.
    `split` chooses the part of a Karpathy file (train = train + restval, val, test)."""
    src = str(source)
    path = Path(src)
    layout = _dataset_layout(path)
    if split is not None and layout is None:
        raise DataError(f"{src}: --split {split} is for Karpathy split files (dataset_*.json)")
    if layout is not None:
        data = _load_dataset(path, layout, split)
    elif "{" in src or any(c in src for c in "*?[") or src.endswith(".tar"):
        shards = _expand_shards(src)
        data = _load_tars(shards)
    else:
        path = Path(src)
        if not path.exists():
            raise DataError(f"{src}: no such file or directory")
        if path.is_dir():
            tars = sorted(path.glob("*.tar"))
            data = _load_tars([str(t) for t in tars]) if tars else _load_folder(path)
        elif path.suffix.lower() in (".csv", ".tsv"):
            data = _load_table(path)
        elif path.suffix.lower() in (".jsonl", ".json"):
            data = _load_jsonl(path)
        else:
            raise DataError(
                f"{src}: unknown data format (use a .csv/.tsv/.jsonl manifest, a folder of "
                "x.jpg + x.txt, or WebDataset .tar shards)"
            )
    data.source = src
    if not len(data):
        reasons = ", ".join(f"{k}: {v}" for k, v in data.skipped.items()) or "no rows"
        raise DataError(f"{src}: no usable image–caption pairs ({reasons})")
    if data.skipped:
        log.warning("%s: skipped %d rows (%s)", src, sum(data.skipped.values()), dict(data.skipped))
    return data


def _dataset_layout(path: Path) -> str | None:
    return sniff(path) if path.is_file() else None


def _load_dataset(path: Path, layout: str, split: str | None) -> PairData:
    data, ids = PairData(), {}
    for image, caption in read_rows(path, layout, split):
        caption = caption.strip()
        if not caption:
            data.skipped["empty_caption"] += 1
        elif not image.is_file():
            data.skipped["image_not_found"] += 1
        else:
            data.add(str(image), caption, None, ids)
    return data


def _pick(row: dict, keys: Sequence[str]) -> str | None:
    for k in keys:
        if k in row and row[k] is not None:
            return str(row[k])
    return None


def _add_row(data: PairData, row: dict, base: Path, ids: dict) -> None:
    image = _pick(row, IMAGE_KEYS)
    caption = (_pick(row, CAPTION_KEYS) or "").strip()
    if not image:
        data.skipped["missing_image_column"] += 1
        return
    if not caption:
        data.skipped["empty_caption"] += 1
        return
    path = Path(image).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        data.skipped["image_not_found"] += 1
        return
    label = row.get("label")
    data.add(str(path), caption, str(label).strip() if label else None, ids)


def _load_table(path: Path) -> PairData:
    data, ids = PairData(), {}
    delim = "\t" if path.suffix.lower() == ".tsv" else ","
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter=delim)
        cols = set(reader.fieldnames or [])
        if not cols & set(IMAGE_KEYS) or not cols & set(CAPTION_KEYS):
            raise DataError(
                f"{path}: needs an image column ({'/'.join(IMAGE_KEYS)}) and a caption column "
                f"({'/'.join(CAPTION_KEYS)}); found {sorted(cols)}"
            )
        for row in reader:
            _add_row(data, row, path.parent, ids)
    return data


def _load_jsonl(path: Path) -> PairData:
    data, ids = PairData(), {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                data.skipped["invalid_json"] += 1
                continue
            if not isinstance(row, dict):
                data.skipped["invalid_json"] += 1
                continue
            _add_row(data, row, path.parent, ids)
    return data


def _load_folder(path: Path) -> PairData:
    """x.jpg + x.txt; every non-empty line of x.txt is one caption of x.jpg."""
    data, ids = PairData(), {}
    for img in sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTS):
        cap_file = next(
            (img.with_suffix(e) for e in CAPTION_EXTS if img.with_suffix(e).is_file()), None
        )
        if cap_file is None:
            data.skipped["missing_caption"] += 1
            continue
        lines = [ln.strip() for ln in cap_file.read_text(errors="replace").splitlines()]
        lines = [ln for ln in lines if ln]
        if not lines:
            data.skipped["empty_caption"] += 1
        for cap in lines:
            data.add(str(img), cap, None, ids)
    return data


def _expand_shards(pattern: str) -> list[str]:
    m = re.search(r"\{(\d+)\.\.(\d+)\}", pattern)
    if m:
        lo, hi, width = int(m.group(1)), int(m.group(2)), len(m.group(1))
        names = [
            pattern[: m.start()] + f"{i:0{width}d}" + pattern[m.end() :] for i in range(lo, hi + 1)
        ]
    elif any(c in pattern for c in "*?["):
        names = sorted(glob.glob(pattern))
    else:
        names = [pattern]
    missing = [n for n in names if not Path(n).is_file()]
    if not names or missing:
        raise DataError(f"{pattern}: no such shard(s) {missing[:3] or ''}".strip())
    return names


def _load_tars(shards: Sequence[str]) -> PairData:
    """WebDataset layout: members sharing a key (name up to the first dot) form one sample."""
    data, ids = PairData(), {}
    for shard in shards:
        try:
            tar = tarfile.open(shard, "r:")  # noqa: SIM115 (closed by the `with tar` below)
        except tarfile.ReadError as e:
            raise DataError(f"{shard}: not an uncompressed tar file ({e})") from e
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        with tar:
            for m in tar:
                if not m.isfile():
                    continue
                key, _, ext = m.name.partition(".")
                groups.setdefault(key, {})["." + ext.lower()] = m
            for members in groups.values():
                img = next((members[e] for e in IMAGE_EXTS if e in members), None)
                cap = next((members[e] for e in CAPTION_EXTS if e in members), None)
                if img is None:
                    data.skipped["missing_image"] += 1
                    continue
                if cap is None:
                    data.skipped["missing_caption"] += 1
                    continue
                fh = tar.extractfile(cap)
                text = fh.read().decode("utf-8", errors="replace").strip() if fh else ""
                if not text:
                    data.skipped["empty_caption"] += 1
                    continue
                ref = TarMember(shard, img.offset_data, img.size)
                for line in (ln.strip() for ln in text.splitlines()):
                    if line:
                        data.add(ref, line, None, ids)
    return data


class PairDataset(Dataset):
    """Row i → (pixels, caption, image_id, valid). An undecodable image gives a zero placeholder
    with valid=False, so every rank keeps the same batch shape and the loss ignores the row.

    Indices may be `epoch * len + row` (StepBatchSampler's encoding); with a `seed`, random
    augmentations are seeded by that index, so they replay exactly on --resume and do not
    depend on which worker process loads the row.
    """

    def __init__(
        self, data: PairData, transform: Callable, image_size: int, seed: int | None = None
    ) -> None:
        self.data = data
        self.transform = transform
        self.image_size = image_size
        self.seed = seed

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, int, bool]:
        i = index % len(self.data)
        ref = self.data.images[i]
        try:
            img = load_image(ref.read() if isinstance(ref, TarMember) else ref)
            if self.seed is None:
                pixels = self.transform(img)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed * 1_000_003 + index)
                    pixels = self.transform(img)
            ok = True
        except (ImageLoadError, OSError) as e:
            log.debug("skipping row %d: %s", i, e)
            pixels = torch.zeros(3, self.image_size, self.image_size)
            ok = False
        return pixels, self.data.captions[i], self.data.image_ids[i], ok


def collate(rows: list) -> dict:
    pixels, captions, ids, ok = zip(*rows, strict=True)
    return {
        "pixels": torch.stack(pixels),
        "captions": list(captions),
        "image_ids": torch.tensor(ids, dtype=torch.long),
        "valid": torch.tensor(ok, dtype=torch.bool),
    }


class StepBatchSampler(Sampler[list[int]]):
    """Deterministic batches by step: step s uses rows perm_e[j*G:(j+1)*G] of epoch e's seeded
    permutation (G = global batch), and each rank takes its contiguous slice. Starting at any
    step reproduces the same stream, which is what makes --resume exact."""

    def __init__(
        self,
        n: int,
        global_batch: int,
        seed: int,
        start_step: int,
        total_steps: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if global_batch > n:
            raise DataError(f"batch size {global_batch} is larger than the dataset ({n} rows)")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.start_step, self.total_steps = start_step, total_steps
        self.rank, self.world = rank, world
        self.steps_per_epoch = n // global_batch  # drop the ragged tail: fixed batch shapes

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        local = self.global_batch // self.world
        perm, perm_epoch = None, -1
        for step in range(self.start_step, self.total_steps):
            epoch, j = divmod(step, self.steps_per_epoch)
            if epoch != perm_epoch:
                g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
                perm, perm_epoch = torch.randperm(self.n, generator=g), epoch
            batch = perm[j * self.global_batch : (j + 1) * self.global_batch]
            mine = batch[self.rank * local : (self.rank + 1) * local]
            yield (mine + epoch * self.n).tolist()  # PairDataset decodes epoch * n + row
