"""A synthetic image–caption set for offline tests and demos: rendered scenes of coloured shapes
with compositional captions ("two small red circles on the left"), plus a held-out split whose
shape–colour pairs never occur in training (so retrieval on it needs composition, not recall)."""

from __future__ import annotations

import csv
import itertools
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

log = logging.getLogger(__name__)

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 80, 230),
    "yellow": (230, 210, 40),
    "purple": (150, 50, 200),
}
SIZES = {"small": 0.075, "large": 0.125}  # radius as a fraction of the image side
# region boxes (x0, y0, x1, y1) in unit coordinates; objects are laid out along the long side
REGIONS = {
    "on the left": (0.0, 0.1, 0.45, 0.9),
    "on the right": (0.55, 0.1, 1.0, 0.9),
    "at the top": (0.1, 0.0, 0.9, 0.45),
    "at the bottom": (0.1, 0.55, 0.9, 1.0),
    "in the middle": (0.2, 0.2, 0.8, 0.8),
}
COUNTS = {1: "a", 2: "two", 3: "three"}


@dataclass(frozen=True)
class Scene:
    shape: str
    colour: str
    size: str
    region: str
    count: int

    def captions(self) -> list[str]:
        """Two phrasings of the same content (several captions per image)."""
        noun = self.shape + ("s" if self.count > 1 else "")
        words = f"{COUNTS[self.count]} {self.size} {self.colour} {noun}"
        return [f"{words} {self.region}", f"{self.region}, {words}"]


def is_heldout(shape: str, colour: str) -> bool:
    """4 of the 20 shape–colour pairs (each shape and colour at most once) are held out."""
    return (SHAPES.index(shape) + list(COLOURS).index(colour)) % 5 == 0


def all_scenes(heldout: bool) -> list[Scene]:
    return [
        Scene(*combo)
        for combo in itertools.product(SHAPES, COLOURS, SIZES, REGIONS, COUNTS)
        if is_heldout(combo[0], combo[1]) == heldout
    ]


def render(scene: Scene, rng: random.Random, side: int = 64) -> Image.Image:
    """Draw `scene` on a dark, slightly noisy background with jittered placement and colour."""
    bg = tuple(rng.randint(10, 45) for _ in range(3))
    img = Image.new("RGB", (side, side), bg)
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = REGIONS[scene.region]
    r = SIZES[scene.size] * side * rng.uniform(0.9, 1.1)
    colour = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in COLOURS[scene.colour])
    horizontal = (x1 - x0) >= (y1 - y0)
    for i in range(scene.count):
        t = (i + 0.5) / scene.count  # evenly spaced along the region's long side
        fx = x0 + (x1 - x0) * (t if horizontal else 0.5)
        fy = y0 + (y1 - y0) * (0.5 if horizontal else t)
        cx = min(max(fx * side + rng.uniform(-2, 2), r), side - r)
        cy = min(max(fy * side + rng.uniform(-2, 2), r), side - r)
        _draw_shape(draw, scene.shape, cx, cy, r, colour)
    return img


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill):
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        s = r * 0.88  # same area feel as the circle
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    else:  # diamond
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)


def generate(
    out_dir: str | Path, n: int, seed: int = 0, n_heldout: int | None = None, side: int = 64
) -> dict[str, int]:
    """Write `n` training scenes (two caption rows each) to train.csv and up to `n_heldout`
    held-out scenes (distinct captions, unseen shape–colour pairs) to heldout.csv.

    Held-out captions are unique so text→image retrieval on that split is unambiguous; its
    `label` column (the shape) allows zero-shot classification.
    """
    if n < 1:
        raise ValueError(f"--n must be at least 1, got {n}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train_scenes = all_scenes(heldout=False)
    held = all_scenes(heldout=True)
    rng.shuffle(held)
    held = held[: n_heldout if n_heldout is not None else min(len(held), max(8, n // 10))]

    with open(out / "train.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption"])
        for i in range(n):
            scene = rng.choice(train_scenes)
            name = f"images/train_{i:06d}.png"
            render(scene, rng, side).save(out / name)
            for cap in scene.captions():
                w.writerow([name, cap])
    with open(out / "heldout.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "caption", "label"])
        for i, scene in enumerate(held):
            name = f"images/heldout_{i:06d}.png"
            render(scene, rng, side).save(out / name)
            w.writerow([name, scene.captions()[0], scene.shape])
    log.info("wrote %d training and %d held-out scenes to %s", n, len(held), out)
    return {"train": n, "heldout": len(held)}
