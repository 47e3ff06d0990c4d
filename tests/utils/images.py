"""Real photographs (scikit-image's samples) and deliberately broken files for tests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

# name → scikit-image loader; photos a ConSE/ImageNet model can recognise
SAMPLE_PHOTOS = {
    "cat": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
    "astronaut": "astronaut",
    "camera": "camera",  # grayscale
}


def sample_photo(name: str) -> Image.Image:
    import skimage.data

    return Image.fromarray(getattr(skimage.data, SAMPLE_PHOTOS[name])())


def write_sample_photos(out_dir: str | Path, fmt: str = "jpg") -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in SAMPLE_PHOTOS:
        path = out / f"{name}.{fmt}"
        sample_photo(name).save(path, quality=92) if fmt == "jpg" else sample_photo(name).save(path)
        paths[name] = path
    return paths


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", **kw)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def exif_rotated_jpeg(img: Image.Image, orientation: int = 6) -> bytes:
    """JPEG whose stored pixels are `img` rotated so that EXIF `orientation` restores `img`."""
    stored = {
        6: img.transpose(Image.Transpose.ROTATE_90),
        8: img.transpose(Image.Transpose.ROTATE_270),
        3: img.transpose(Image.Transpose.ROTATE_180),
    }[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.convert("RGB").save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def huge_png_header(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG file that claims enormous dimensions (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * (width + 1) * 4)  # a few rows only: the rest is "truncated"
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def random_image(size: tuple[int, int] = (64, 48), seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)
