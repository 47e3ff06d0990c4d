"""Decode + preprocess in DataLoader worker processes, so the model never waits on JPEG decoding.

With `device_decode` (a GPU build), the workers only read the bytes and header of plain JPEGs,
and the batch is decoded on the device (nvJPEG through `torchvision.io.decode_jpeg`), resized,
cropped and normalised there: on a GPU the indexer is decode-bound, and a few CPU workers cannot
decode 10,000 images/s. Every other file (PNG, CMYK or EXIF-rotated JPEG, oversized, broken)
still takes the CPU path in the worker, so the skip codes and messages are the same.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from model import ImageLoadError, load_image
from model.config import PreprocessConfig
from model.limits import DEFAULT_MAX_PIXELS
from model.preprocess import decode_size

log = logging.getLogger(__name__)


@dataclass
class DecodedBatch:
    """Pixels for the images that decoded, plus the failures of this batch (by position)."""

    positions: list[int]  # positions in the dataset of the rows of `pixels`
    pixels: torch.Tensor  # (n_ok, 3, H, W)
    sizes: list[tuple[int, int]]  # (width, height) after EXIF orientation
    failures: list[tuple[int, str, str]]  # (position, code, message)
    # device_decode: undecoded JPEGs (position, raw bytes as a uint8 tensor, (w, h)), not yet
    # in `pixels`; `decode_on_device` moves them there
    jpegs: list[tuple[int, torch.Tensor, tuple[int, int]]] = field(default_factory=list)


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


class JpegOrDecoded(ImageFiles):
    """As ImageFiles, but a plain JPEG (RGB or grayscale, upright, within the pixel cap) comes
    back as its raw bytes, for the main process to decode on the device in one batch."""

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, tuple[int, int], tuple]:
        path = self.paths[i]
        try:
            with Image.open(path) as im:
                plain = (
                    im.format == "JPEG"
                    and im.mode in ("RGB", "L")
                    and im.getexif().get(0x0112, 1) == 1
                    and 0 < im.width * im.height <= DEFAULT_MAX_PIXELS
                )
                size = im.size
            if plain:
                data = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
                return i, data, size, ("jpeg",)
        except Exception as e:  # unreadable here: the CPU path below reports it properly
            log.debug("%s: not sent to the device decoder (%r)", path, e)
        return super().__getitem__(i)


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
    jpeg = [r for r in rows if r[3] == ("jpeg",)]
    ok = [r for r in rows if r[1] is not None and r[3] != ("jpeg",)]
    pixels = torch.stack([r[1] for r in ok]) if ok else torch.empty(0, 3, 1, 1)
    return DecodedBatch(
        positions=[r[0] for r in ok],
        pixels=pixels,
        sizes=[tuple(r[2]) for r in ok],
        failures=[(r[0], *r[3]) for r in rows if r[1] is None],
        jpegs=[(r[0], r[1], tuple(r[2])) for r in jpeg],
    )


class DeviceDecoder:
    """JPEG bytes → the eval transform's normalised (n, 3, size, size) tensor on `device`: one
    batched nvJPEG decode (on a CPU device, libjpeg: the same code path, for tests), then per
    image an antialiased resize of the short side and a centre crop (the transform's steps in
    the same order, so vectors match the CPU path's to cosine ≈ 0.999). A file the device
    decoder rejects is decoded by the CPU path instead, never dropped."""

    def __init__(
        self, cfg: PreprocessConfig, preprocess: Callable[[Any], torch.Tensor], device: Any
    ) -> None:
        from torchvision.transforms import InterpolationMode

        self.cfg, self.preprocess, self.device = cfg, preprocess, torch.device(device)
        self.interp = InterpolationMode(cfg.interpolation)
        self.mean = torch.tensor(cfg.mean, device=self.device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(cfg.std, device=self.device).view(1, 3, 1, 1) * 255

    def __call__(self, batch: DecodedBatch, paths: Sequence[Path]) -> DecodedBatch:
        if not batch.jpegs:
            return batch
        images = self._decode([data for _, data, _ in batch.jpegs], batch, paths)
        parts = [batch.pixels.to(self.device, non_blocking=True)] if batch.positions else []
        done = [
            (p, wh) for (p, _, wh), im in zip(batch.jpegs, images, strict=True) if im is not None
        ]
        if done:
            parts.append(self._transform([im for im in images if im is not None]))
        batch.positions += [p for p, _ in done]
        batch.sizes += [wh for _, wh in done]
        batch.pixels = torch.cat(parts) if parts else torch.empty(0, 3, 1, 1)
        batch.jpegs = []
        return batch

    def _decode(
        self, data: list[torch.Tensor], batch: DecodedBatch, paths: Sequence[Path]
    ) -> list[torch.Tensor | None]:
        # torchvision ≥ 0.29 warns on every decode that TorchCodec will take over its decoders
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_jpeg

            try:
                return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device))
            except RuntimeError as e:  # one bad file fails the whole batch: one at a time
                log.debug("batched device decode failed (%s): decoding one at a time", e)
            out: list[torch.Tensor | None] = []
            for pos, raw, _ in batch.jpegs:
                try:
                    out.append(decode_jpeg(raw, mode=ImageReadMode.RGB, device=self.device))
                except RuntimeError:
                    out.append(None)
                    self._cpu_fallback(pos, batch, paths)
            return out

    def _cpu_fallback(self, pos: int, batch: DecodedBatch, paths: Sequence[Path]) -> None:
        """The worker's CPU decode for one file the device decoder refused."""
        _, pixels, size, err = ImageFiles(paths, self.preprocess, decode_size(self.cfg))[pos]
        if pixels is None:
            batch.failures.append((pos, *err))
            return
        batch.pixels = torch.cat([batch.pixels, pixels[None]]) if batch.positions else pixels[None]
        batch.positions.append(pos)
        batch.sizes.append(size)

    def _transform(self, images: list[torch.Tensor]) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        cfg, out = self.cfg, []
        for im in images:  # (3, h, w) uint8; sizes differ, so one image at a time
            if cfg.resize_mode == "squash":
                im = TF.resize(im, [cfg.size, cfg.size], self.interp, antialias=True)
            else:
                im = TF.resize(im, decode_size(cfg), self.interp, antialias=True)
                im = TF.center_crop(im, [cfg.size, cfg.size])
            out.append(im)
        x = torch.stack(out).float()  # (n, 3, size, size), 0…255
        return (x - self.mean) / self.std


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
    device_decode: DeviceDecoder | None = None,
) -> Iterator[DecodedBatch]:
    """Batches of DecodedBatch in file order, decoded by `workers` processes (0 = in-process);
    with `device_decode`, plain JPEGs are decoded on its device instead (see DeviceDecoder)."""
    files = (JpegOrDecoded if device_decode else ImageFiles)(paths, preprocess, min_size)
    loader = DataLoader(
        files,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
        pin_memory=pin_memory and device_decode is None,
    )
    if device_decode is None:
        return iter(loader)
    return (device_decode(batch, files.paths) for batch in loader)
