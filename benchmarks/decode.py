"""Image decoding benchmark: decode + preprocess to the model tensor on real JPEGs, four ways.

    python -m benchmarks.decode [--model starter] [--repeat 7] [--photos 4] [--quick]

The JPEGs are made here from the scikit-image sample photos (astronaut, coffee, chelsea, rocket):
resized with Lanczos to about 0.3, 1, 3, 6 and 12 MP, given a light sensor-like grain (an
upscaled photo alone is smoother than a camera's and would flatter every decoder), and saved as
baseline JPEG quality 90 in a temporary folder. Nothing is downloaded.

Per size, milliseconds per image for decoding a file into the encoder's input tensor through

  plain PIL    Image.open → convert("RGB") → the encoder's preprocess
  ours         Encoder.load_image (JPEG decoded at the smallest DCT scale whose sides stay ≥ the
               transform's first resize, via Pillow's draft) → the encoder's preprocess
  torchvision  torchvision.io.decode_jpeg (full size, it has no reduced-scale decode) → the
               same resize / centre crop / normalise on the uint8 tensor
  ours_tensor  a candidate: our reduced-scale decode, then that uint8-tensor transform instead of
               the PIL one (reported, not used by clipsearch)

all on one thread (torch.set_num_threads(1)), as in an indexer decode worker. Embeddings of our
path and of plain PIL are compared by cosine with the encoder (target ≥ 0.99 at every size).
The corpus-mix rate weights the sizes like a folder of web images and phone photos; the indexer
target uses the same mix (benchmarks/indexer.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import add_suite_args, report, target

SIZES_MP = (0.3, 1.0, 3.0, 6.0, 12.0)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
# Share of each size in a "realistic" folder: mostly web-sized images, a quarter phone photos.
MIX = {0.3: 0.35, 1.0: 0.25, 3.0: 0.15, 6.0: 0.15, 12.0: 0.10}
COSINE_GOAL = 0.99


def make_jpeg(photo: str, megapixels: float, path: Path, seed: int = 0) -> Path:
    """One baseline JPEG (quality 90) of about `megapixels`, from a scikit-image sample photo."""
    import skimage.data
    from PIL import Image

    img = Image.fromarray(getattr(skimage.data, photo)()).convert("RGB")
    scale = (megapixels * 1e6 / (img.width * img.height)) ** 0.5
    size = (round(img.width * scale), round(img.height * scale))
    big = np.asarray(img.resize(size, Image.Resampling.LANCZOS), dtype=np.int16)
    grain = np.random.default_rng(seed).integers(-3, 4, size=big.shape[:2], dtype=np.int16)
    big = np.clip(big + grain[..., None], 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(big).save(path, "JPEG", quality=90, progressive=False, optimize=False)
    return path


def unique_copy(src: Path, dst: Path, tag: int) -> Path:
    """Copy a JPEG with a comment segment carrying `tag` after SOI: the same pixels and the same
    decode cost, but distinct bytes (so a content-hashing indexer does not fold the copies)."""
    data = src.read_bytes()
    comment = f"copy {tag}".encode()
    segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[:2] + segment + data[2:])
    return dst


def make_sizes(out: Path, photos: tuple[str, ...] = PHOTOS) -> dict[float, list[Path]]:
    """{megapixels: [one JPEG per photo]} for every size in SIZES_MP."""
    return {
        mp: [
            make_jpeg(photo, mp, out / f"{mp:g}mp" / f"{photo}.jpg", seed=i)
            for i, photo in enumerate(photos)
        ]
        for mp in SIZES_MP
    }


def mix_corpus(out: Path, n: int, base: dict[float, list[Path]], seed: int = 0) -> list[Path]:
    """n JPEGs drawn from `base` with the MIX size shares (distinct bytes per file)."""
    rng = np.random.default_rng(seed)
    mps = list(MIX)
    picks = rng.choice(len(mps), size=n, p=[MIX[m] for m in mps])
    paths = []
    for i, k in enumerate(picks):
        files = base[mps[k]]
        src = files[int(rng.integers(len(files)))]
        paths.append(unique_copy(src, out / f"{i // 100:02d}" / f"photo_{i:05d}.jpg", i))
    return paths


def mix_rate(ms_per_size: dict[float, float]) -> float:
    """Images/s of one worker on the MIX corpus, from per-size milliseconds."""
    return 1000.0 / sum(MIX[mp] * ms_per_size[mp] for mp in MIX)


# -- the three paths -------------------------------------------------------------------------------
def plain_pil(preprocess: Callable) -> Callable[[Path], tuple[float, torch.Tensor]]:
    from PIL import Image

    def run(path: Path) -> tuple[float, torch.Tensor]:
        t0 = time.perf_counter()
        with Image.open(path) as im:
            img = im.convert("RGB")
        t1 = time.perf_counter()
        return t1 - t0, preprocess(img)

    return run


def ours(enc) -> Callable[[Path], tuple[float, torch.Tensor]]:
    def run(path: Path) -> tuple[float, torch.Tensor]:
        t0 = time.perf_counter()
        img = enc.load_image(path)
        t1 = time.perf_counter()
        return t1 - t0, enc.preprocess(img)

    return run


def tensor_transform(cfg) -> Callable[[torch.Tensor], torch.Tensor]:
    """The eval transform on a uint8 (3, H, W) tensor: the same sizes and interpolation as the
    PIL transform, antialiased like PIL's resize (torch's uint8 kernels)."""
    from torchvision.transforms.v2 import functional as F

    from model.preprocess import _INTERPOLATION, decode_size

    interp = _INTERPOLATION[cfg.interpolation]
    mean, std = list(cfg.mean), list(cfg.std)

    def run(x: torch.Tensor) -> torch.Tensor:
        if cfg.resize_mode == "squash":
            x = F.resize(x, [cfg.size, cfg.size], interpolation=interp, antialias=True)
        else:
            x = F.resize(x, [decode_size(cfg)], interpolation=interp, antialias=True)
            x = F.center_crop(x, [cfg.size, cfg.size])
        return F.normalize(x.float().div_(255.0), mean, std)

    return run


def torchvision_path(cfg) -> Callable[[Path], tuple[float, torch.Tensor]]:
    """decode_jpeg at full size to uint8 (3, H, W), then the eval transform on tensors."""
    from torchvision.io import ImageReadMode, decode_jpeg, read_file

    transform = tensor_transform(cfg)

    def run(path: Path) -> tuple[float, torch.Tensor]:
        t0 = time.perf_counter()
        x = decode_jpeg(read_file(str(path)), mode=ImageReadMode.RGB)
        t1 = time.perf_counter()
        return t1 - t0, transform(x)

    return run


def ours_tensor_path(enc) -> Callable[[Path], tuple[float, torch.Tensor]]:
    """A candidate, not what clipsearch runs: our reduced-scale decode, then the eval transform on
    the uint8 tensor instead of on the PIL image."""
    from torchvision.transforms.v2 import functional as F

    transform = tensor_transform(enc.preprocess_config)

    def run(path: Path) -> tuple[float, torch.Tensor]:
        t0 = time.perf_counter()
        img = enc.load_image(path)
        t1 = time.perf_counter()
        return t1 - t0, transform(F.pil_to_tensor(img))

    return run


def time_paths(
    paths: dict[str, Callable[[Path], tuple[float, torch.Tensor]]], files: list[Path], repeat: int
) -> dict[str, tuple[float, float, list[torch.Tensor]]]:
    """{path: (ms per image decode+preprocess, ms decode only, tensors)}: per file the median of
    `repeat` timed runs after one warm-up, averaged over the files. Paths take turns file by
    file, so a burst of load from elsewhere on the machine falls on all of them alike."""
    tensors: dict[str, list[torch.Tensor]] = {k: [] for k in paths}
    tot = {(k, i): [] for k in paths for i in range(len(files))}
    dec = {(k, i): [] for k in paths for i in range(len(files))}
    for i, f in enumerate(files):
        for k, fn in paths.items():
            tensors[k].append(fn(f)[1])  # warm-up (page cache, lazy imports)
        for _ in range(repeat):
            for k, fn in paths.items():
                t0 = time.perf_counter()
                d, _ = fn(f)
                tot[k, i].append(time.perf_counter() - t0)
                dec[k, i].append(d)
    out = {}
    for k in paths:
        ms = statistics.fmean(statistics.median(tot[k, i]) for i in range(len(files)))
        dec_ms = statistics.fmean(statistics.median(dec[k, i]) for i in range(len(files)))
        out[k] = (1000 * ms, 1000 * dec_ms, tensors[k])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="starter")
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per file (default 7)")
    ap.add_argument("--photos", type=int, default=None, help="source photos per size (max 4)")
    add_suite_args(ap)
    args = ap.parse_args()
    repeat = args.repeat or (3 if args.quick else 7)
    n_photos = min(len(PHOTOS), args.photos or (2 if args.quick else 4))

    from model import load_encoder

    enc = load_encoder(args.model, device="cpu")
    paths = {"plain_pil": plain_pil(enc.preprocess), "ours": ours(enc)}
    paths["torchvision"] = torchvision_path(enc.preprocess_config)
    paths["ours_tensor"] = ours_tensor_path(enc)
    threads = torch.get_num_threads()
    per_size: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        base = make_sizes(Path(tmp), PHOTOS[:n_photos])
        gen_s = time.perf_counter() - t0
        for mp, files in base.items():
            torch.set_num_threads(1)  # one decode worker's view
            row: dict = {
                "megapixels": mp,
                "sides": [list(_size(f)) for f in files],
                "bytes_per_pixel": round(
                    statistics.fmean(f.stat().st_size / np.prod(_size(f)) for f in files), 3
                ),
            }
            tensors = {}
            for name, (ms, dec_ms, tensors[name]) in time_paths(paths, files, repeat).items():
                row[f"{name}_ms"] = round(ms, 2)
                row[f"{name}_decode_ms"] = round(dec_ms, 2)
            torch.set_num_threads(threads)
            emb = {k: enc.encode_pixels(torch.stack(v)) for k, v in tensors.items()}
            row["cosine_ours_vs_pil"] = float(np.min(np.sum(emb["ours"] * emb["plain_pil"], 1)))
            for other in ("torchvision", "ours_tensor"):
                row[f"cosine_{other}_vs_pil"] = float(
                    np.min(np.sum(emb[other] * emb["plain_pil"], 1))
                )
            # the candidate differs from our path only in where the resize runs (PIL vs tensor)
            row["cosine_ours_tensor_vs_ours"] = float(
                np.min(np.sum(emb["ours_tensor"] * emb["ours"], 1))
            )
            row["speedup_vs_pil"] = round(row["plain_pil_ms"] / row["ours_ms"], 2)
            row["speedup_vs_torchvision"] = round(row["torchvision_ms"] / row["ours_ms"], 2)
            per_size[f"{mp:g}"] = row
    torch.set_num_threads(threads)

    rates = {
        name: round(mix_rate({mp: per_size[f"{mp:g}"][f"{name}_ms"] for mp in MIX}), 1)
        for name in paths
    }
    cos_min = min(r["cosine_ours_vs_pil"] for r in per_size.values())
    mix_vs_pil = round(rates["ours"] / rates["plain_pil"], 2)
    mix_vs_tv = round(rates["ours"] / rates["torchvision"], 2)
    results = {
        "model": args.model,
        "repeat": repeat,
        "photos_per_size": n_photos,
        "threads": 1,
        "generate_s": round(gen_s, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "mix": {f"{k:g}": v for k, v in MIX.items()},
        "per_size": per_size,
        "mix_images_per_s": rates,
        "decode_images_per_s_one_worker": rates["ours"],
        "cosine_min_ours_vs_pil": round(cos_min, 5),
        "mix_speedup_vs_pil": mix_vs_pil,
        "mix_speedup_vs_torchvision": mix_vs_tv,
    }
    rows = [("ms/image: plain PIL, ours (decode part), torchvision, ours+tensor resize", "")]
    for key, r in per_size.items():
        rows.append(
            (
                f"  {key} MP",
                f"{r['plain_pil_ms']:.1f}, {r['ours_ms']:.1f} ({r['ours_decode_ms']:.1f}),"
                f" {r['torchvision_ms']:.1f}, {r['ours_tensor_ms']:.1f};"
                f" ours ×{r['speedup_vs_pil']:.2f} vs PIL, ×{r['speedup_vs_torchvision']:.2f}"
                f" vs tv; cos {r['cosine_ours_vs_pil']:.4f}",
            )
        )
    rows.append(
        (
            "corpus mix, one worker (images/s)",
            ", ".join(f"{k} {v}" for k, v in rates.items()),
        )
    )
    targets = [
        target(
            "decode.cosine",
            "decode: min cosine ours vs plain PIL, 0.3–12 MP",
            round(cos_min, 5),
            COSINE_GOAL,
        ),
        target(
            "decode.mix_vs_pil",
            "decode: ours ÷ plain PIL images/s, corpus mix, one worker",
            mix_vs_pil,
            1.0,
            unit="×",
            note="goal set here: faster than plain PIL; per-size speedups in the JSON",
        ),
        target(
            "decode.mix_vs_torchvision",
            "decode: ours ÷ torchvision decode_jpeg images/s, corpus mix, one worker",
            mix_vs_tv,
            1.0,
            unit="×",
            note="goal set here: faster than torchvision's full-size decode on the mix",
        ),
    ]
    report("decode", results, rows, targets=targets, json_out=args.json_out)


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as im:
        return im.size


if __name__ == "__main__":
    main()
