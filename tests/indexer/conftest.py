"""Corpora for indexer tests: real photos plus every kind of bad file a real folder holds."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.utils.images import exif_rotated_jpeg, jpeg_bytes, png_bytes, sample_photo

REPO = Path(__file__).resolve().parents[2]

# file name → skip code the build report must give it
BAD_FILES = {
    "corrupt.jpg": "invalid_image",
    "truncated.png": "invalid_image",
    "notes_named.jpg": "unsupported_image_format",
    "empty.jpg": "empty_image",
}
GOOD_EXTRAS = ("tiny_1x1.png", "gray.png", "cmyk.jpg", "rotated.jpg", "sub/cat_copy.jpg")


def make_corpus(photos_dir: Path, dest: Path) -> Path:
    """The sample photos plus broken, odd and duplicate files."""
    shutil.copytree(photos_dir, dest)
    coffee = sample_photo("coffee")
    good = jpeg_bytes(coffee)
    (dest / "corrupt.jpg").write_bytes(good[:600] + bytes(range(256)) * 40)
    (dest / "truncated.png").write_bytes(png_bytes(coffee)[: len(png_bytes(coffee)) // 2])
    (dest / "notes_named.jpg").write_text("not an image, just text\n")
    (dest / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(dest / "tiny_1x1.png")
    sample_photo("rocket").convert("L").save(dest / "gray.png")
    sample_photo("astronaut").convert("CMYK").save(dest / "cmyk.jpg")
    (dest / "rotated.jpg").write_bytes(exif_rotated_jpeg(sample_photo("cat"), orientation=6))
    (dest / "sub").mkdir()
    shutil.copy(dest / "cat.jpg", dest / "sub" / "cat_copy.jpg")  # an exact duplicate
    (dest / "README.txt").write_text("not an image extension: ignored, not skipped\n")
    return dest


@pytest.fixture
def corpus(photos_dir, tmp_path) -> Path:
    return make_corpus(photos_dir, tmp_path / "corpus")


@pytest.fixture(scope="module")
def built(photos_dir, tmp_path_factory, starter_encoder):
    """(corpus, index dir, report) built once per module with the starter model."""
    from indexer import build_index

    base = tmp_path_factory.mktemp("built")
    corpus = make_corpus(photos_dir, base / "corpus")
    report = build_index(corpus, base / "idx", starter_encoder, workers=1, progress=False)
    return corpus, base / "idx", report


def cli(*args: str, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run `clipsearch …` in a subprocess with the test environment."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        **kw,
    )
