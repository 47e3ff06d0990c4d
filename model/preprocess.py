"""Image decoding (safe, EXIF-aware, RGB) and the eval transform built from a PreprocessConfig."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision import transforms as T

from .config import PreprocessConfig
from .errors import ImageLoadError
from .limits import DEFAULT_MAX_PIXELS

# Pillow format names we accept; anything else is refused before pixels are decoded.
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})

# The caller's cap, checked on the header (_check_header), is the one gate: Pillow's own global
# guard would refuse at another size, with another message, below a larger configured cap.
Image.MAX_IMAGE_PIXELS = None

_INTERPOLATION = {
    "bicubic": T.InterpolationMode.BICUBIC,
    "bilinear": T.InterpolationMode.BILINEAR,
    "nearest": T.InterpolationMode.NEAREST,
}

ImageSource = str | Path | bytes | BinaryIO


def load_image(
    source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, min_size: int | None = None
) -> Image.Image:
    """Decode a file path, bytes or file object into an RGB image with EXIF orientation applied.

    `min_size` (JPEG only): let libjpeg decode at the smallest 1/2, 1/4 or 1/8 scale whose sides
    all stay ≥ min_size — several times faster for large photos bound for a 224-px model; the
    image returned is then smaller than the stored one.

    Raises ImageLoadError (with a `code`) for empty, non-image, disallowed, oversized, truncated
    or corrupt input; never lets a Pillow exception escape.
    """
    name = str(source) if isinstance(source, str | Path) else "image"
    if isinstance(source, bytes):
        if not source:
            raise ImageLoadError("the image is empty (0 bytes)", code="empty_image")
        source = io.BytesIO(source)
    try:
        img = Image.open(source)
        _check_header(img, name, max_pixels)
        if min_size and img.format in ("JPEG", "MPO"):
            img.draft(img.mode, (min_size, min_size))
        img.load()  # first frame only for GIF/animated WebP
        img = ImageOps.exif_transpose(img)
    except ImageLoadError:
        raise
    except FileNotFoundError as e:
        raise ImageLoadError(f"{name}: no such file", code="file_not_found") from e
    except IsADirectoryError as e:
        raise ImageLoadError(f"{name}: is a directory, not an image", code="file_not_found") from e
    except UnidentifiedImageError as e:
        if _is_empty(source):
            raise ImageLoadError(f"{name}: the image is empty (0 bytes)", code="empty_image") from e
        raise ImageLoadError(
            f"{name}: not a supported image (allowed: {', '.join(sorted(ALLOWED_FORMATS))})",
            code="unsupported_image_format",
        ) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageLoadError(f"{name}: truncated or corrupt image ({e})") from e
    return to_rgb(img)


def _check_header(img: Image.Image, name: str, max_pixels: int) -> None:
    if img.format not in ALLOWED_FORMATS:
        raise ImageLoadError(
            f"{name}: image format {img.format} is not allowed "
            f"(allowed: {', '.join(sorted(ALLOWED_FORMATS))})",
            code="unsupported_image_format",
        )
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageLoadError(f"{name}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageLoadError(
            f"{name}: image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}",
            code="image_too_large",
        )


def _is_empty(source: object) -> bool:
    if isinstance(source, str | Path):
        try:
            return Path(source).stat().st_size == 0
        except OSError:
            return False
    if isinstance(source, io.BytesIO):
        return source.getbuffer().nbytes == 0
    return False


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited onto white."""
    if img.mode == "RGB":
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        # Pillow clips 16/32-bit values at 255 when converting; rescale instead.
        arr = np.asarray(img, dtype=np.float32)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_size(cfg: PreprocessConfig) -> int:
    """The side the eval transform first resizes to: a JPEG need not be decoded any larger
    (see load_image's `min_size`)."""
    if cfg.resize_mode == "squash":
        return int(cfg.size)
    return int(math.floor(cfg.size / cfg.crop_pct + 1e-6))


def build_transform(cfg: PreprocessConfig) -> T.Compose:
    """PIL image (any mode) → normalised float32 (3, size, size); picklable for DataLoader."""
    interp = _INTERPOLATION[cfg.interpolation]
    if cfg.resize_mode == "squash":
        resize: list[torch.nn.Module] = [T.Resize((cfg.size, cfg.size), interpolation=interp)]
    else:
        resize = [T.Resize(decode_size(cfg), interpolation=interp), T.CenterCrop(cfg.size)]
    # to_rgb first: callers may hand over grayscale/CMYK/RGBA images straight from Pillow
    return T.Compose([T.Lambda(to_rgb), *resize, T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
