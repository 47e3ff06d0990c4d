"""The demo corpus: scikit-image's sample photographs and rendered shape scenes, each with a
caption, written as a folder plus a CSV manifest the indexer reads (`clipsearch demo` indexes
it; the ONNX benchmark measures search quality on it)."""

from __future__ import annotations

import csv
import logging
import random
from pathlib import Path

from ..errors import ClipsearchError

log = logging.getLogger(__name__)

# scikit-image loader → (file name, caption). All ship inside the scikit-image wheel.
PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea": ("cat.jpg", "a tabby cat looking into the camera"),
    "coffee": ("coffee.jpg", "a cup of espresso on a red saucer"),
    "astronaut": ("astronaut.jpg", "an astronaut in an orange space suit"),
    "rocket": ("rocket.jpg", "a rocket on the launch pad at dusk"),
    "camera": ("cameraman.jpg", "a man with a camera on a tripod"),
    "hubble_deep_field": ("hubble.jpg", "galaxies in deep space"),
    "immunohistochemistry": ("tissue.jpg", "stained tissue under a microscope"),
    "retina": ("retina.jpg", "a photograph of the back of an eye"),
    "stereo_motorcycle": ("motorcycle.jpg", "a motorcycle parked in a garage"),
    "coins": ("coins.png", "old coins laid out on a table"),
    "moon": ("moon.png", "the cratered surface of the moon"),
    "clock": ("clock.png", "a wall clock"),
    "page": ("page.png", "a page of printed text"),
    "brick": ("brick.png", "a brick wall"),
    "grass": ("grass.png", "a patch of grass"),
    "gravel": ("gravel.png", "gravel on the ground"),
    "colorwheel": ("colorwheel.png", "a colour wheel"),
    "horse": ("horse.png", "the silhouette of a horse"),
}
N_SHAPES = 36  # rendered scenes: shapes, colours, sizes, positions, counts
SHAPE_SIDE = 192


def write_demo_corpus(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the corpus under out_dir/images and return the manifest (path, caption)."""
    try:
        import numpy as np
        import skimage.data
        from PIL import Image
    except ImportError as e:
        raise ClipsearchError(
            "the demo corpus needs scikit-image's sample photos: pip install 'clipsearch[demo]'"
        ) from e
    from .shapes import all_scenes, render

    out = Path(out_dir)
    images = out / "images"
    (images / "photos").mkdir(parents=True, exist_ok=True)
    (images / "shapes").mkdir(parents=True, exist_ok=True)
    rows: list[tuple[str, str]] = []
    for loader, (name, caption) in PHOTOS.items():
        arr = getattr(skimage.data, loader)()
        if isinstance(arr, tuple):  # stereo pairs: keep the left view
            arr = arr[0]
        if arr.dtype == bool:
            arr = (~arr).astype(np.uint8) * 255  # the horse: black on white
        img = Image.fromarray(arr)
        if img.mode == "RGBA":
            img = img.convert("RGB")
        path = images / "photos" / name
        img.save(path, quality=92) if name.endswith(".jpg") else img.save(path)
        rows.append((f"images/photos/{name}", caption))

    rng = random.Random(seed)
    scenes = rng.sample(all_scenes(heldout=False), N_SHAPES)
    for i, scene in enumerate(scenes):
        rel = f"images/shapes/shape_{i:03d}.png"
        render(scene, rng, side=SHAPE_SIDE).save(out / rel)
        rows.append((rel, scene.captions()[0]))

    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "caption"])
        w.writerows(rows)
    log.info("demo corpus: %d images in %s", len(rows), out)
    return manifest
