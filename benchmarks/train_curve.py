"""Training learning curve on CPU: held-out Recall@1 vs step for a tiny from-scratch dual encoder
and a LiT run on the starter towers, on the synthetic shapes set (unseen shape–colour pairs).

    python -m benchmarks.train_curve [--steps 150] [--lit-steps 60] [--eval-every 25]

Ratios, not absolute times, are the result: held-out R@1 ÷ chance (1/N) and ÷ the untrained
model's R@1 at the same checkpoint in the same run; samples/s is reported for context only.
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._common import report


def _curve(out: Path) -> list[tuple[int, float]]:
    with open(out / "metrics.csv", newline="") as fh:
        return [
            (int(r["step"]), float(r["val_t2i_R@1"]))
            for r in csv.DictReader(fh)
            if r["val_t2i_R@1"]
        ]


def _rate(out: Path) -> float:
    with open(out / "metrics.csv", newline="") as fh:
        rates = [float(r["samples_per_s"]) for r in csv.DictReader(fh) if r["samples_per_s"]]
    rates = sorted(rates[1:] or rates)  # the first interval includes start-up
    return rates[len(rates) // 2] if rates else float("nan")


def run(kind: str, work: Path, shapes: Path, steps: int, eval_every: int) -> dict:
    from model.train.config import TrainConfig
    from model.train.data import load_pairs
    from model.train.evaluate import evaluate
    from model.train.loop import train
    from model.train.modeling import build_model
    from tests.train.conftest import write_model_config
    from tests.utils.tiny_models import write_clip_tokenizer

    common = dict(
        train=str(shapes / "train.csv"), val=str(shapes / "heldout.csv"), out=str(work / kind),
        steps=steps, eval_every=eval_every, save_every=0, workers=1, progress=False,
        tensorboard=False, log_every=5, weight_decay=0.05,
    )  # fmt: skip
    if kind == "scratch":
        cfg = TrainConfig(
            **common, model_config=str(write_model_config(work / "m.json", "test_resnet")),
            tokenizer=str(write_clip_tokenizer(work / "tok")), batch_size=64, lr=2e-3,
            warmup_steps=15,
        )  # fmt: skip
    else:
        cfg = TrainConfig(
            **common, init="starter", image_head="linear", lock_image=True, batch_size=32,
            lr=1e-3, lr_text=1e-4, warmup_steps=6,
        )  # fmt: skip
    heldout = load_pairs(shapes / "heldout.csv")
    untrained = evaluate(build_model(cfg).encoder(torch.device("cpu")), heldout)["t2i"]["R@1"]
    t0 = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t0
    n = heldout.num_images
    final = result.metrics["t2i"]["R@1"]
    return {
        "kind": kind,
        "steps": steps,
        "batch_size": cfg.batch_size,
        "heldout_images": n,
        "chance_R@1": 1 / n,
        "untrained_R@1": untrained,
        "final_t2i_R@1": final,
        "final_i2t_R@1": result.metrics["i2t"]["R@1"],
        "ratio_vs_chance": final * n,
        "ratio_vs_untrained": final / max(untrained, 1 / n),
        "curve": _curve(work / kind),
        "median_samples_per_s": _rate(work / kind),
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lit-steps", type=int, default=60)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--only", choices=["scratch", "lit"], default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    from model.samples.shapes import generate

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generate(work / "shapes", n=1500, seed=0, n_heldout=40)
        runs = []
        for kind, steps in (("scratch", args.steps), ("lit", args.lit_steps)):
            if args.only in (None, kind):
                runs.append(run(kind, work, work / "shapes", steps, args.eval_every))
    rows = []
    for r in runs:
        curve = " ".join(f"{s}:{v:.2f}" for s, v in r["curve"])
        rows.append(
            (
                f"{r['kind']} R@1 untrained → final",
                f"{r['untrained_R@1']:.3f} → "
                f"{r['final_t2i_R@1']:.3f} (×{r['ratio_vs_chance']:.0f} chance)",
            )
        )
        rows.append((f"{r['kind']} curve (step:R@1)", curve))
        rows.append(
            (f"{r['kind']} samples/s, wall", f"{r['median_samples_per_s']:.0f}, {r['wall_s']:.0f}s")
        )
    report("train_curve", {"runs": runs}, rows)


if __name__ == "__main__":
    main()
