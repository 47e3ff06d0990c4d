"""CPU inference backends: ONNX Runtime (fp32 and int8 weights) ÷ PyTorch, and what it costs in
retrieval quality.

    python -m benchmarks.onnx_backend [--model starter] [--repeat 5] [--quick]

Speed: the same preprocessed tensors / token batches go through `encode_pixels` / the token path
of each backend at the same thread count (torch.get_num_threads(); ORT gets as many intra-op
threads). Backends are timed in alternating rounds so a busy machine slows all of them alike;
the ratio is PyTorch's median time ÷ ORT's. Quality: the demo corpus (54 captioned images,
model/samples/demo.py) is encoded by each backend and every caption searches the images
(text→image recall@1/@5, also on the 18 photographs alone, where the starter is well above
chance); the drop is PyTorch's recall minus the backend's, in points (the worst of the four).

A backend is offered by `load_encoder(..., backend=...)` only when it is ≥ 1.3× faster on image
batches and single queries and loses ≤ 1 point of recall.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._common import add_suite_args, report, target

SPEEDUP_GOAL = 1.3
QUALITY_GOAL = 1.0  # points of recall@1 and @5, whole corpus and photographs alone
# Why a speed target can miss (from the profiles in docs/benchmarks.md)
NOTES = {
    "images_b32": "PyTorch spends ~79% in mkldnn_convolution and ~19% in unfused batch norm on "
    "the starter (torch profiler); ORT folds BN into its NCHWc convolutions. A miss means the "
    "machine was contended during the ORT rounds; re-run.",
    "images_b1": "see images_b32",
    "texts_b1": "one short query is dominated by per-op overhead, which ORT's optimised graph "
    "halves; a miss means contention during the ORT rounds; re-run.",
    "texts_b64": "at batch 64 the MiniLM matmuls dominate and both backends run comparable fp32 "
    "GEMMs (MKL vs MLAS), so trimming the small ops gains ~1.3x on one thread; int8 weights "
    "(onnx-int8) are what would be needed for more.",
}
RECALLS = ("recall@1", "recall@5", "photos_recall@1", "photos_recall@5")


def demo_corpus(tmp: Path) -> tuple[list[Path], list[str]]:
    from model.samples.demo import write_demo_corpus

    manifest = write_demo_corpus(tmp)
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [tmp / r["path"] for r in rows], [r["caption"] for r in rows]


def query_texts(n: int) -> list[str]:
    subjects = ["a cat", "a cup of coffee", "a red car", "two dogs", "a rocket", "the moon"]
    places = ["", " on a table", " in the snow", " at night", " on a beach"]
    return [f"{subjects[i % 6]}{places[i % 5]}" for i in range(n)]


def alternate(fns: dict[str, object], repeat: int) -> dict[str, float]:
    """Median seconds per backend, timing one call of each in turn, `repeat` rounds (+1 warm-up)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeat + 1):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r:  # round 0 warms up caches and thread pools
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def recall(img: np.ndarray, txt: np.ndarray, k: int) -> float:
    """Caption i's own image is image i; recall@k in points (0–100)."""
    sims = txt @ img.T  # (n_txt, n_img)
    rank = (sims > sims[np.arange(len(txt)), np.arange(len(txt))][:, None]).sum(1)
    return float((rank < k).mean() * 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="starter")
    ap.add_argument("--repeat", type=int, default=None, help="timed rounds (default 5, quick 3)")
    ap.add_argument("--threads", type=int, default=None, help="default: torch.get_num_threads()")
    add_suite_args(ap)
    args = ap.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    from model import load_encoder
    from model.onnx_backend import onnx_encoder

    base = load_encoder(args.model, device="cpu", backend="torch")  # not the default, auto
    encs = {"torch": base}
    export_s = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, int8 in (("onnx", False), ("onnx-int8", True)):
            t0 = time.perf_counter()
            encs[name] = onnx_encoder(base, int8=int8, threads=threads, cache_dir=Path(tmp))
            export_s[name] = round(time.perf_counter() - t0, 2)

        paths, captions = demo_corpus(Path(tmp) / "corpus")
        images = [base.load_image(p) for p in paths]
        pixels = torch.stack([base.preprocess(im) for im in images])  # (54, 3, S, S)
        n_photos = sum(1 for p in paths if p.parent.name == "photos")  # listed first

        # -- speed on identical inputs ------------------------------------------------------
        speed: dict[str, dict[str, float]] = {}
        b32, b1 = pixels[:32], pixels[:1]
        q1 = base.tokenize(query_texts(1))
        q64 = base.tokenize(query_texts(64))
        cases = {
            "images_b32": lambda e: e.encode_pixels(b32),
            "images_b1": lambda e: e.encode_pixels(b1),
            "texts_b1": lambda e: e._encode_tokens(q1),
            "texts_b64": lambda e: e._encode_tokens(q64),
        }
        for case, fn in cases.items():
            n = repeat if case != "texts_b1" else repeat * (3 if args.quick else 5)  # short calls
            med = alternate({k: (lambda e=e, fn=fn: fn(e)) for k, e in encs.items()}, n)
            speed[case] = {f"{k}_ms": round(v * 1000, 2) for k, v in med.items()}
            for k in ("onnx", "onnx-int8"):
                speed[case][f"{k}_speedup"] = round(med["torch"] / med[k], 2)

        # -- quality: parity and demo-corpus retrieval ------------------------------------------
        quality: dict[str, dict[str, float]] = {}
        ref_img = ref_txt = ref_top1 = None
        for name, enc in encs.items():
            img = enc.encode_pixels(pixels)
            txt = enc.encode_texts(captions)
            top1 = (txt @ img.T).argmax(1)  # (n_txt,)
            if ref_img is None:
                ref_img, ref_txt, ref_top1 = img, txt, top1
            quality[name] = {
                "top1_same_as_torch_%": round(float((top1 == ref_top1).mean() * 100), 2),
                "recall@1": round(recall(img, txt, 1), 2),
                "recall@5": round(recall(img, txt, 5), 2),
                # the photographs alone, where the starter is well above chance
                "photos_recall@1": round(recall(img[:n_photos], txt[:n_photos], 1), 2),
                "photos_recall@5": round(recall(img[:n_photos], txt[:n_photos], 5), 2),
                "min_cos_images": round(float((img * ref_img).sum(1).min()), 5),
                "min_cos_texts": round(float((txt * ref_txt).sum(1).min()), 5),
            }

    drops = {
        k: round(max(quality["torch"][m] - quality[k][m] for m in RECALLS), 2)
        for k in ("onnx", "onnx-int8")
    }
    offered = {
        k: min(speed["images_b32"][f"{k}_speedup"], speed["texts_b1"][f"{k}_speedup"])
        >= SPEEDUP_GOAL
        and drops[k] <= QUALITY_GOAL
        for k in ("onnx", "onnx-int8")
    }
    rows = [
        ("model / threads / rounds", f"{args.model} / {threads} / {repeat}"),
        ("export s (fp32, +int8 quantise)", f"{export_s['onnx']}, {export_s['onnx-int8']}"),
    ]
    for case, s in speed.items():
        rows.append(
            (
                f"{case} ms torch / onnx / int8",
                f"{s['torch_ms']} / {s['onnx_ms']} / {s['onnx-int8_ms']}  "
                f"(×{s['onnx_speedup']}, ×{s['onnx-int8_speedup']})",
            )
        )
    for name, q in quality.items():
        rows.append(
            (
                f"{name}: R@1 / R@5 (photos) / same top-1 % / min cos img, txt",
                f"{q['recall@1']} / {q['recall@5']} ({q['photos_recall@1']} / "
                f"{q['photos_recall@5']}) / {q['top1_same_as_torch_%']} / "
                f"{q['min_cos_images']}, {q['min_cos_texts']}",
            )
        )
    targets = []
    for k, label in (("onnx", "ORT fp32"), ("onnx-int8", "ORT int8")):
        sfx = "" if k == "onnx" else "_int8"
        for case, what in (
            ("images_b32", "image batch 32"),
            ("images_b1", "image batch 1"),
            ("texts_b1", "one short query"),
            ("texts_b64", "64 short queries"),
        ):
            targets.append(
                target(
                    f"onnx_speedup_{case}{sfx}",
                    f"{label} ÷ PyTorch speed, {what}",
                    speed[case][f"{k}_speedup"],
                    SPEEDUP_GOAL,
                    unit="×",
                    note=NOTES[case] if speed[case][f"{k}_speedup"] < SPEEDUP_GOAL else "",
                )
            )
        targets.append(
            target(
                f"onnx_quality_drop_points{sfx}",
                f"{label}: demo recall@1/@5 drop vs PyTorch",
                drops[k],
                QUALITY_GOAL,
                op="<=",
                unit=" pts",
                note="offered as a backend" if offered[k] else "not offered",
            )
        )
    results = {
        "model": args.model,
        "threads": threads,
        "repeat": repeat,
        "export_s": export_s,
        "speed": speed,
        "quality": quality,
        "quality_drop_points": drops,
        "offered": offered,
    }
    report("onnx_backend", results, rows, targets=targets, json_out=args.json_out)


if __name__ == "__main__":
    main()
