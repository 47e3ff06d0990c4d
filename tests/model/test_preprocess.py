"""Image decoding: every odd or broken file gets a clear error or a correct RGB image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from model import ImageLoadError, PreprocessConfig, build_transform, load_image
from tests.utils.images import (
    exif_rotated_jpeg,
    huge_png_header,
    jpeg_bytes,
    png_bytes,
    random_image,
    sample_photo,
)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_image"),
        (b"hello, I am a text file", "unsupported_image_format"),
        (jpeg_bytes(sample_photo("cat"))[:3000], "invalid_image"),
        (png_bytes(sample_photo("coffee"))[:2000], "invalid_image"),
        (huge_png_header(), "image_too_large"),
        (b"%PDF-1.4\n" + b"0" * 100, "unsupported_image_format"),
    ],
    ids=["empty", "text", "truncated-jpeg", "truncated-png", "pixel-bomb", "pdf"],
)
def test_bad_bytes_are_clear_errors(data, code):
    with pytest.raises(ImageLoadError) as err:
        load_image(data)
    assert err.value.code == code
    assert str(err.value)


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="notes.jpg.*not a supported image"):
        load_image(tmp_path / "notes.jpg")
    with pytest.raises(ImageLoadError, match="empty") as err:
        load_image(tmp_path / "empty.png")
    assert err.value.code == "empty_image"
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "missing.jpg")


def test_pixel_cap_is_checked_before_decoding():
    big = png_bytes(random_image((400, 300)))
    with pytest.raises(ImageLoadError) as err:
        load_image(big, max_pixels=100_000)
    assert err.value.code == "image_too_large"
    assert load_image(big, max_pixels=120_000).size == (400, 300)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "1", "LA", "I;16", "I", "F"])
def test_any_mode_becomes_rgb(mode):
    src = random_image((32, 24), seed=3).convert(mode if mode not in ("I;16", "I", "F") else "L")
    if mode in ("I;16", "I", "F"):
        arr = np.asarray(src).astype({"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode])
        if mode == "I;16":
            arr = arr * 257  # full 16-bit range
        src = Image.fromarray(arr)
        assert src.mode == mode
    fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
    buf = io.BytesIO()
    src.save(buf, format=fmt)
    img = load_image(buf.getvalue())
    assert img.mode == "RGB" and img.size == (32, 24)
    if mode == "I;16":  # rescaled, not clipped to white
        assert np.asarray(img).mean() < 200


def test_exif_orientation_is_applied():
    photo = sample_photo("rocket")
    img = load_image(exif_rotated_jpeg(photo, orientation=6))
    assert img.size == photo.size
    diff = np.abs(np.asarray(img, dtype=float) - np.asarray(photo, dtype=float)).mean()
    assert diff < 10  # JPEG noise only


def test_gif_first_frame_and_other_formats():
    frames = [Image.new("RGB", (20, 10), c) for c in ("red", "blue", "green")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    img = load_image(buf.getvalue())
    r, g, b = img.getpixel((5, 5))
    assert r > 200 and g < 50 and b < 50
    for fmt in ("WEBP", "BMP", "TIFF"):
        out = io.BytesIO()
        random_image((16, 16)).save(out, format=fmt)
        assert load_image(out.getvalue()).size == (16, 16)


def test_transform_shapes():
    img = random_image((300, 120))
    for mode in ("shortest", "squash"):
        t = build_transform(PreprocessConfig(size=64, resize_mode=mode, crop_pct=0.875))(img)
        assert tuple(t.shape) == (3, 64, 64)
