"""Indexer benchmark: end-to-end images/s against min(encoder rate, decode rate × workers).

    python -m benchmarks.indexer [--model starter] [--images N] [--batch-size 32]
                                 [--workers N] [--repeat 5] [--device cpu] [--quick]

The corpus is generated (benchmarks/decode.py): JPEGs of 0.3–12 MP made from the scikit-image
sample photos, in that benchmark's size mix (mostly web-sized images, a quarter phone photos);
each file has distinct bytes so the indexer's content hashing folds none of them. Its size is
whole batches worth about 12 s of encoding on this machine (`--images` fixes it); the forward
baseline runs on the first half of them. Measured in the
same run, on the same files:

  encoder rate   encode_pixels on the images already decoded into tensors, at the indexer's
                 batch size and torch threads (the model alone)
  decode rate    one indexer decode worker's work (indexer.decode.ImageFiles: reduced-scale
                 JPEG decode + preprocess + header read) on one thread, in this process
  end to end     build_index on the folder with the indexer's default decode workers: scanning,
                 hashing, decoding in worker processes, encoding, shard writes, FAISS build,
                 publishing (wall clock)

Target (issue): end to end ≥ 0.9 × min(encoder rate, decode rate × workers). On a CPU the decode
workers and the model share the same cores, which that bound ignores; the contention-aware bound
1 / (1/encoder + 1/(decode × cores)) and the CPU-seconds-per-image ratio are reported beside it.
Baseline and build alternate `--repeat` times; the target takes the median of the per-pair
ratios. The encoder's fingerprint and output size (computed once per process, by the first build
of a CLI run) are computed before the builds and reported apart, so a small corpus does not
spread a fixed cost over a few images.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import add_suite_args, report, target
from benchmarks.decode import make_sizes, mix_corpus

GPU_RATE_GOAL = 2500.0  # ViT-B/32 images/s end to end on one H100 (clip-retrieval's A100 figure)


def sized_corpus(enc, out: Path, batch_size: int, seconds: float, images: int | None) -> list[Path]:
    """The corpus, `images` JPEGs or — by default — as many whole batches as the encoder takes
    about `seconds` to embed on this machine right now (2 to 15 batches): every build then
    lasts about as long on a fast idle machine as on a slow busy one, so the fixed costs of a
    build (pipeline fill, scanning, FAISS, publishing) weigh alike and ≥ 5 pairs fit the time."""
    with tempfile.TemporaryDirectory() as base_dir:
        base = make_sizes(Path(base_dir))
        if images is None:
            files = [f for fs in base.values() for f in fs]
            one = torch.stack([enc.preprocess(enc.load_image(f)) for f in files])
            batch = one[torch.arange(batch_size) % len(one)]
            enc.encode_pixels(batch)  # warm-up
            rate = 0.0
            for _ in range(2):
                t0 = time.perf_counter()
                enc.encode_pixels(batch)
                rate = max(rate, batch_size / (time.perf_counter() - t0))
            images = batch_size * min(15, max(2, round(rate * seconds / batch_size)))
        return mix_corpus(out, images, base)


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the DataLoader decode workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def decode_all(enc, paths: list[Path]) -> tuple[torch.Tensor, float, float]:
    """(pixels, images/s, CPU s/image) of one decode worker's work on every file, one thread."""
    from indexer.decode import ImageFiles
    from indexer.pipeline import decode_min_size

    files = ImageFiles(paths, enc.preprocess, min_size=decode_min_size(enc))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a decode worker (indexer.decode._worker_init)
    try:
        files[0]  # warm-up
        t0, c0 = time.perf_counter(), cpu_seconds()
        rows = [files[i] for i in range(len(files))]
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    finally:
        torch.set_num_threads(threads)
    bad = [r for r in rows if r[1] is None]
    if bad:
        raise RuntimeError(f"generated corpus failed to decode: {bad[0]}")
    return torch.stack([r[1] for r in rows]), len(rows) / wall, cpu / len(rows)


def forward_throughput(enc, pixels: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """(images/s, CPU s/image) of encode_pixels on tensors already in memory (no decoding)."""
    if enc.device.type == "cuda":
        torch.cuda.synchronize()
    t0, c0 = time.perf_counter(), cpu_seconds()
    for i in range(0, len(pixels), batch_size):
        enc.encode_pixels(pixels[i : i + batch_size])  # returns numpy: synchronises the device
    return len(pixels) / (time.perf_counter() - t0), (cpu_seconds() - c0) / len(pixels)


class ForwardClock:
    """Wall time spent inside enc.encode_pixels while the indexer runs (the instance attribute
    shadows the method; the real forward still runs). Splits a build's wall time into the model's
    forward and everything else (waiting on decode, hashing, shard writes, FAISS, publishing)."""

    def __init__(self, enc) -> None:
        self.enc, self.seconds, self.images = enc, 0.0, 0

    def __enter__(self) -> ForwardClock:
        real = self.enc.encode_pixels

        def timed(pixels: torch.Tensor):
            t0 = time.perf_counter()
            out = real(pixels)
            self.seconds += time.perf_counter() - t0
            self.images += len(pixels)
            return out

        self.enc.encode_pixels = timed
        return self

    def __exit__(self, *exc: object) -> None:
        del self.enc.encode_pixels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="starter")
    ap.add_argument("--device", default=None)
    ap.add_argument(
        "--images",
        type=int,
        default=None,
        help="corpus size (default: ~12 s of encoding, quick 3 s)",
    )
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="default: the indexer's default")
    ap.add_argument(
        "--repeat", type=int, default=None, help="baseline/build pairs (default 5, quick 1)"
    )
    add_suite_args(ap)
    args = ap.parse_args()
    seconds = 3.0 if args.quick else 12.0
    repeat = args.repeat or (1 if args.quick else 5)

    from indexer import build_index
    from indexer.pipeline import default_workers, model_threads
    from model import load_encoder

    enc = load_encoder(args.model, device=args.device)
    workers = default_workers(enc) if args.workers is None else args.workers
    # the encoder rate is measured with the threads a build gives the model (the cores its
    # decode workers leave), so both sides of the ratio use the same cores
    if (threads := model_threads(enc, workers)) is not None:
        torch.set_num_threads(threads)
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = sized_corpus(enc, Path(tmp) / "corpus", args.batch_size, seconds, args.images)
        n_images = len(paths)
        # the baseline's rate needs fewer images than the build's fixed costs do to fade
        half = n_images // 2 // args.batch_size * args.batch_size
        n_forward = min(n_images, max(2 * args.batch_size, half))
        gen_s = time.perf_counter() - t0
        pixels, decode_rate, decode_cpu = decode_all(enc, paths)
        enc.encode_pixels(pixels[: args.batch_size])  # warm-up
        # Once per encoder per process, not per image (the first build in a CLI run pays them):
        # timed apart so a small corpus does not spread them over a few images.
        t0 = time.perf_counter()
        _ = enc.fingerprint, enc.dim
        once_s = time.perf_counter() - t0
        forward, e2e, stage, fwd_cpu, e2e_cpu, in_build, outside = [], [], [], [], [], [], []
        for r in range(repeat):
            rate, cpu = forward_throughput(enc, pixels[:n_forward], args.batch_size)
            forward.append(rate)
            fwd_cpu.append(cpu)
            t0, c0 = time.perf_counter(), cpu_seconds()
            with ForwardClock(enc) as clock:
                rep = build_index(
                    Path(tmp) / "corpus",
                    Path(tmp) / f"idx{r}",
                    enc,
                    batch_size=args.batch_size,
                    workers=workers,
                    progress=False,
                )
            wall = time.perf_counter() - t0
            in_build.append(clock.images / clock.seconds)
            outside.append(wall - clock.seconds)
            e2e_cpu.append((cpu_seconds() - c0) / rep.items)
            if rep.encoded != n_images:
                raise RuntimeError("not every image was encoded:\n" + rep.summary_lines())
            e2e.append(rep.items / wall)
            stage.append(rep.images_per_s)
    fwd, end, enc_stage, fwd_in_build, rest_s = (
        statistics.median(x) for x in (forward, e2e, stage, in_build, outside)
    )
    bound = min(fwd, decode_rate * max(workers, 1))
    # Decode workers run on the model's cores: per image the machine spends cores/fwd core-seconds
    # on the model plus 1/decode on decoding.
    shared_bound = 1.0 / (1.0 / fwd + 1.0 / (decode_rate * cores))
    # On a shared machine wall-clock rates swing with other load; CPU seconds per image do not.
    cpu_ratio = statistics.median(fwd_cpu) / statistics.median(e2e_cpu)
    # Each build is compared with the forward pass measured just before it; the median of those
    # pairs is the figure held to the target (the ratio of the medians is reported beside it).
    pairs = [e / min(f, decode_rate * max(workers, 1)) for e, f in zip(e2e, forward, strict=True)]
    ratio = statistics.median(pairs)
    results = {
        "model": args.model,
        "device": str(enc.device),
        "images": n_images,
        "corpus_generate_s": round(gen_s, 1),
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "encoder_once_s": round(once_s, 2),
        "batch_size": args.batch_size,
        "workers": workers,
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "encoder_images_per_s": round(fwd, 2),
        "decode_images_per_s_per_worker": round(decode_rate, 1),
        "bound_images_per_s": round(bound, 2),
        "shared_core_bound_images_per_s": round(shared_bound, 2),
        "indexer_images_per_s": round(end, 2),
        "encode_stage_images_per_s": round(enc_stage, 2),
        "forward_in_build_images_per_s": round(fwd_in_build, 2),
        "build_seconds_outside_forward": round(rest_s, 2),
        "build_seconds": round(n_images / end, 2),
        "ratio_to_bound": round(ratio, 3),
        "ratio_of_medians": round(end / bound, 3),
        "forward_images": n_forward,
        "ratio_to_shared_core_bound": round(end / shared_bound, 3),
        "ratio_to_encoder": round(end / fwd, 3),
        "ratio_cpu_time": round(cpu_ratio, 3),
        "forward_cpu_s_per_image": round(statistics.median(fwd_cpu), 4),
        "decode_cpu_s_per_image": round(decode_cpu, 4),
        "indexer_cpu_s_per_image": round(statistics.median(e2e_cpu), 4),
        "pair_ratios": [round(x, 3) for x in pairs],
        "runs": {"forward": forward, "indexer": e2e},
    }
    targets = [
        target(
            "indexer.e2e_vs_bound",
            f"indexer ({enc.device.type}): end to end ÷ min(encoder, decode × workers)",
            round(ratio, 3),
            0.9,
            note=_note(ratio, cpu_ratio, end / shared_bound),
        )
    ]
    model_only = statistics.median(e / f for e, f in zip(e2e, forward, strict=True))
    targets += gpu_targets(args.model, enc.device.type, end, model_only)
    report(
        "indexer",
        results,
        [
            ("encoder (forward on pre-decoded tensors)", f"{fwd:.1f} images/s"),
            ("decode + preprocess, one worker", f"{decode_rate:.1f} images/s"),
            ("decode workers / cores", f"{workers} / {cores}"),
            ("bound min(encoder, decode × workers)", f"{bound:.1f} images/s"),
            ("shared-core bound 1/(1/enc + 1/(dec × cores))", f"{shared_bound:.1f} images/s"),
            ("indexer end to end (build wall time)", f"{end:.1f} images/s"),
            ("indexer decode+encode stage", f"{enc_stage:.1f} images/s"),
            ("  forward inside the build (decode running beside)", f"{fwd_in_build:.1f} images/s"),
            ("  build wall time outside the forward", f"{rest_s:.1f} of {n_images / end:.1f} s"),
            ("encoder fingerprint + dim, once per process (not in the builds)", f"{once_s:.2f} s"),
            ("ratio of CPU s/image, forward / indexer", f"{cpu_ratio:.3f}"),
            ("per-pair end to end / bound", ", ".join(f"{x:.2f}" for x in pairs)),
            ("ratio of the medians", f"{end / bound:.3f}"),
        ],
        targets=targets,
        json_out=args.json_out,
    )


def _note(ratio: float, cpu_ratio: float, shared_ratio: float) -> str:
    if ratio >= 0.9:
        return ""
    return (
        f"decode workers share the model's cores: end to end is {shared_ratio:.2f} of the "
        f"shared-core bound and the CPU s/image ratio is {cpu_ratio:.2f}; see docs/benchmarks.md"
    )


def gpu_targets(model: str, device: str, end: float, ratio: float) -> list[dict]:
    """The issue's GPU items: measured only when this run is on CUDA."""
    if not torch.cuda.is_available():
        note = "no GPU on this machine"
        return [
            target("indexer.gpu_rate", "indexer ViT-B/32 on H100, images/s", None, GPU_RATE_GOAL,
                   note=note),
            target("indexer.gpu_vs_model", "indexer on GPU ÷ model only", None, 0.8, note=note),
        ]  # fmt: skip
    if device != "cuda":
        return []
    vit_b32 = any(s in model.lower() for s in ("vit-base-patch32", "vit-b-32", "vit_b_32"))
    return [
        target(
            "indexer.gpu_rate",
            "indexer ViT-B/32 on GPU, images/s",
            round(end, 1) if vit_b32 else None,
            GPU_RATE_GOAL,
            note="" if vit_b32 else "run with --model hf:<a ViT-B/32 CLIP dir> to measure",
        ),
        target("indexer.gpu_vs_model", "indexer on GPU ÷ model only", round(ratio, 3), 0.8),
    ]


if __name__ == "__main__":
    main()
