"""Indexer benchmark: end-to-end indexing throughput ÷ the encoder's pure forward throughput.

    python -m benchmarks.indexer [--model starter] [--images 300] [--batch-size 32]
                                 [--workers 1] [--repeat 2] [--device cpu]

The corpus is generated: JPEGs cut and resized from the scikit-image sample photos (320–800 px,
quality 85–92), like a folder of ordinary photos. The baseline runs the same model on the same
images already decoded and preprocessed into tensors (same batch size, same torch threads), so the
ratio is the share of model throughput the indexer keeps after scanning, hashing, decoding in
worker processes, shard writes, the FAISS build and publishing. Baseline and build alternate
`--repeat` times in the same run; medians are reported.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import report


def make_corpus(out: Path, n: int, seed: int = 0) -> list[Path]:
    import skimage.data
    from PIL import Image

    photos = [
        getattr(skimage.data, name)() for name in ("chelsea", "coffee", "astronaut", "rocket")
    ]
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = Image.fromarray(photos[i % len(photos)]).convert("RGB")
        w, h = img.size
        x0, y0 = int(rng.integers(0, w // 5)), int(rng.integers(0, h // 5))
        x1, y1 = w - int(rng.integers(0, w // 5)), h - int(rng.integers(0, h // 5))
        side = int(rng.integers(320, 801))
        crop = img.crop((x0, y0, x1, y1))
        scale = side / max(crop.size)
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))))
        if i % 2:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        p = out / f"{i // 100:02d}" / f"photo_{i:05d}.jpg"
        p.parent.mkdir(exist_ok=True)
        crop.save(p, quality=int(rng.integers(85, 93)))
        paths.append(p)
    return paths


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the DataLoader decode workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def forward_throughput(enc, pixels: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """(images/s, CPU s/image) of encode_pixels on tensors already in memory (no decoding)."""
    t0, c0 = time.perf_counter(), cpu_seconds()
    for i in range(0, len(pixels), batch_size):
        enc.encode_pixels(pixels[i : i + batch_size])
    return len(pixels) / (time.perf_counter() - t0), (cpu_seconds() - c0) / len(pixels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="starter")
    ap.add_argument("--device", default=None)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="default: the indexer's default")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from indexer import build_index
    from indexer.pipeline import default_workers
    from model import load_encoder, load_image

    enc = load_encoder(args.model, device=args.device)
    workers = default_workers(enc) if args.workers is None else args.workers
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_corpus(Path(tmp) / "corpus", args.images)
        pixels = torch.stack([enc.preprocess(load_image(p)) for p in paths])
        enc.encode_pixels(pixels[: args.batch_size])  # warm-up
        forward, e2e, stage, fwd_cpu, e2e_cpu = [], [], [], [], []
        for r in range(args.repeat):
            rate, cpu = forward_throughput(enc, pixels, args.batch_size)
            forward.append(rate)
            fwd_cpu.append(cpu)
            t0, c0 = time.perf_counter(), cpu_seconds()
            rep = build_index(
                Path(tmp) / "corpus",
                Path(tmp) / f"idx{r}",
                enc,
                batch_size=args.batch_size,
                workers=workers,
                progress=False,
            )
            wall = time.perf_counter() - t0
            e2e_cpu.append((cpu_seconds() - c0) / rep.items)
            assert rep.encoded == args.images, rep.summary_lines()
            e2e.append(rep.items / wall)
            stage.append(rep.images_per_s)
    fwd, end, enc_stage = (statistics.median(x) for x in (forward, e2e, stage))
    # On a shared machine wall-clock rates swing with other load; CPU seconds per image do not,
    # so their ratio is the steadier estimate of the share of model throughput kept.
    cpu_ratio = statistics.median(fwd_cpu) / statistics.median(e2e_cpu)
    pair_ratios = [e / f for e, f in zip(e2e, forward, strict=True)]
    results = {
        "model": args.model,
        "device": str(enc.device),
        "images": args.images,
        "batch_size": args.batch_size,
        "workers": workers,
        "forward_images_per_s": round(fwd, 2),
        "indexer_images_per_s": round(end, 2),
        "encode_stage_images_per_s": round(enc_stage, 2),
        "ratio": round(end / fwd, 3),
        "ratio_encode_stage": round(enc_stage / fwd, 3),
        "ratio_cpu_time": round(cpu_ratio, 3),
        "forward_cpu_s_per_image": round(statistics.median(fwd_cpu), 4),
        "indexer_cpu_s_per_image": round(statistics.median(e2e_cpu), 4),
        "pair_ratios": [round(x, 3) for x in pair_ratios],
        "runs": {"forward": forward, "indexer": e2e},
    }
    report(
        "indexer",
        results,
        [
            ("pure forward on pre-decoded tensors", f"{fwd:.1f} images/s"),
            ("indexer end to end (build wall time)", f"{end:.1f} images/s"),
            ("indexer decode+encode stage", f"{enc_stage:.1f} images/s"),
            ("ratio end to end / forward (target ≥ 0.9)", f"{end / fwd:.3f}"),
            ("ratio of CPU s/image, forward / indexer", f"{cpu_ratio:.3f}"),
            ("per-run wall ratios", ", ".join(f"{x:.2f}" for x in pair_ratios)),
            ("decode workers", str(workers)),
        ],
    )


if __name__ == "__main__":
    main()
