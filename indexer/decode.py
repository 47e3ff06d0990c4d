"""Decode + preprocess in DataLoader worker processes, so the model never waits on JPEG decoding."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from model import ImageLoadError, load_image

log = logging.getLogger(__name__)


@dataclass
class DecodedBatch:
    """Pixels for the images that decoded, plus the failures of this batch (by position)."""

    positions: list[int]  # positions in the dataset of the rows of `pixels`
    pixels: torch.Tensor  # (n_ok, 3, H, W)
    sizes: list[tuple[int, int]]  # (width, height) after EXIF orientation
    failures: list[tuple[int, str, str]]  # (position, code, message)


class ImageFiles(Dataset):
    """Files → (position, preprocessed tensor | None, (w, h), error). Never raises on a bad file.

    `min_size`: JPEGs are decoded at a reduced DCT scale that keeps both sides ≥ this (the
    model's resize target), so a 12-MP photo costs little more to decode than a small one.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        preprocess: Callable[[Any], torch.Tensor],
        min_size: int | None = None,
    ) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess
        self.min_size = min_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, tuple[int, int], tuple]:
        try:
            img = load_image(self.paths[i], min_size=self.min_size)
            size = _stored_size(self.paths[i]) if self.min_size else img.size
            return i, self.preprocess(img), size, ()
        except ImageLoadError as e:
            return i, None, (0, 0), (e.code, _short(str(e), self.paths[i]))
        except Exception as e:  # a preprocessing bug must not kill a million-image build
            log.warning("%s: unexpected decode failure: %r", self.paths[i], e)
            return i, None, (0, 0), ("invalid_image", f"{type(e).__name__}: {e}")


def _stored_size(path: Path) -> tuple[int, int]:
    """(width, height) of the stored image after EXIF orientation, from its header only."""
    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90°: sides swap
            w, h = h, w
    return w, h


def _short(message: str, path: Path) -> str:
    """Drop the leading 'path: ' that load_image puts in its messages (the report has the path)."""
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def collate(rows: list[tuple]) -> DecodedBatch:
    ok = [r for r in rows if r[1] is not None]
    pixels = torch.stack([r[1] for r in ok]) if ok else torch.empty(0, 3, 1, 1)
    return DecodedBatch(
        positions=[r[0] for r in ok],
        pixels=pixels,
        sizes=[tuple(r[2]) for r in ok],
        failures=[(r[0], *r[3]) for r in rows if r[1] is None],
    )


def _worker_init(_: int) -> None:
    # Decoding is single-threaded per image; extra torch threads in workers only fight the model.
    torch.set_num_threads(1)


def image_loader(
    paths: Sequence[Path],
    preprocess: Callable[[Any], torch.Tensor],
    batch_size: int,
    workers: int,
    pin_memory: bool = False,
    min_size: int | None = None,
) -> DataLoader:
    """Batches of DecodedBatch in file order, decoded by `workers` processes (0 = in-process)."""
    return DataLoader(
        ImageFiles(paths, preprocess, min_size),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
        pin_memory=pin_memory,
    )
