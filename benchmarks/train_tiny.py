"""The `tiny` preset from scratch through the command line: held-out R@1 vs training time.

Held-out text→image Recall@1 on `clipsearch data shapes` (unseen colour–shape pairs) against
training time, and the figure reached within 5 minutes of training.

    python -m benchmarks.train_tiny [--epochs 4] [--eval-every 25] [--threads 1] [--svg FILE]

It runs, each in its own process, exactly what a user types:

    clipsearch data shapes --out DATA                       (2,000 scenes, 120 held out)
    clipsearch train --train DATA/train.csv --val DATA/heldout.csv --out RUN \\
        --model-config tiny --epochs 4 --eval-every 25 ...
    clipsearch eval --model RUN --data DATA/heldout.csv --json

and reads the curve from RUN/metrics.csv: each evaluation row carries the training clock at
that step (`train_s` wall-clock, `train_cpu_s` CPU time of the training process; evaluation
time is left out of both). With `--threads 1 --workers 0` (the defaults here) the whole run is
one thread in one process, so its CPU time is what the same run takes on an idle core: a
figure that other jobs on a shared machine barely move, unlike the wall clock, which is
reported too, with the load average it was measured under.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks._common import REPO, add_suite_args, report, target

BUDGET_S = 300.0  # "within 5 minutes of training"
GOAL_R1 = 0.6


def cli(*args: str, env: dict[str, str] | None = None) -> str:
    """Run `clipsearch ARGS` (python -m app.cli) and return its stdout; fail loudly."""
    cmd = [sys.executable, "-m", "app.cli", *args]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


class LoadSampler:
    """The 1-minute load average every few seconds while the training runs."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def _run(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def train_argv(data: Path, run: Path, args: argparse.Namespace) -> list[str]:
    return [
        "train", "--train", str(data / "train.csv"), "--val", str(data / "heldout.csv"),
        "--out", str(run), "--model-config", "tiny", "--epochs", f"{args.epochs:g}",
        "--eval-every", str(args.eval_every), "--log-every", str(args.eval_every),
        "--workers", str(args.workers), "--save-every", "0", "--no-progress",
        "--no-tensorboard", "--json",
    ]  # fmt: skip


def read_curve(run: Path) -> list[dict[str, float]]:
    """(step, train_s, train_cpu_s, t2i R@1, i2t R@1) of every evaluation in metrics.csv."""
    with open(run / "metrics.csv", newline="") as fh:
        return [
            {
                "step": int(r["step"]),
                "train_s": float(r["train_s"]),
                "train_cpu_s": float(r["train_cpu_s"]),
                "t2i_R@1": float(r["val_t2i_R@1"]),
                "i2t_R@1": float(r["val_i2t_R@1"]),
            }
            for r in csv.DictReader(fh)
            if r["val_t2i_R@1"]
        ]


def within(curve: list[dict[str, float]], clock: str, budget: float) -> float | None:
    """R@1 of the last evaluation whose training clock is within `budget` seconds."""
    inside = [p for p in curve if p[clock] <= budget]
    return inside[-1]["t2i_R@1"] if inside else None


def first_reaching(curve: list[dict[str, float]], goal: float) -> dict[str, float] | None:
    return next((p for p in curve if p["t2i_R@1"] >= goal), None)


def run_benchmark(args: argparse.Namespace, work: Path) -> dict:
    data, run = work / "shapes", work / "run"
    cli("data", "shapes", "--out", str(data), "--n", str(args.n), "--seed", "0")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with LoadSampler() as load:
        summary = json.loads(cli(*train_argv(data, run, args), env=env))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    evaluated = json.loads(cli("eval", "--model", str(run), "--data", str(data / "heldout.csv"),
                               "--json"))  # fmt: skip
    curve = read_curve(run)
    n = evaluated["n_images"]
    return {
        "command": "clipsearch " + " ".join(train_argv(Path("DATA"), Path("RUN"), args)),
        "threads": args.threads,
        "workers": args.workers,
        "steps": summary["steps"],
        "heldout_images": n,
        "chance_R@1": 1 / n,
        "curve": curve,
        "final_t2i_R@1": evaluated["t2i"]["R@1"],
        "final_i2t_R@1": evaluated["i2t"]["R@1"],
        "train_time_final_R@1": summary["val"]["t2i"]["R@1"],
        "R@1_within_budget_wall": within(curve, "train_s", args.budget),
        "R@1_within_budget_cpu": within(curve, "train_cpu_s", args.budget),
        "first_at_goal": first_reaching(curve, GOAL_R1),
        "train_process_wall_s": wall,
        "train_process_cpu_s": (after.ru_utime + after.ru_stime)
        - (before.ru_utime + before.ru_stime),
        "loadavg": {
            "min": min(load.samples),
            "median": sorted(load.samples)[len(load.samples) // 2],
            "max": max(load.samples),
        },
        "cores": os.cpu_count(),
    }


def markdown_curve(r: dict) -> str:
    lines = [
        "| step | epoch | training time, wall (s) | training time, CPU (s) | t2i R@1 | i2t R@1 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    per_epoch = r["steps"] / r["epochs"]
    for p in r["curve"]:
        lines.append(
            f"| {p['step']} | {p['step'] / per_epoch:.1f} | {p['train_s']:.0f} | "
            f"{p['train_cpu_s']:.0f} | {p['t2i_R@1']:.3f} | {p['i2t_R@1']:.3f} |"
        )
    return "\n".join(lines)


def svg_curve(r: dict) -> str:
    """A small self-contained SVG: held-out t2i R@1 against training time (CPU seconds, solid;
    wall-clock seconds on the loaded machine, dashed), the goal and the 5-minute budget."""
    w, h, pad = 520, 280, 44
    xmax = max(BUDGET_S, *(p["train_s"] for p in r["curve"])) * 1.05

    def xy(t: float, v: float) -> tuple[float, float]:
        return pad + t / xmax * (w - 2 * pad), h - pad - v * (h - 2 * pad)

    def line(t0: float, v0: float, t1: float, v1: float, style: str) -> str:
        (x0, y0), (x1, y1) = xy(t0, v0), xy(t1, v1)
        return f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" {style}/>'

    def curve(clock: str, style: str) -> str:
        pts = " ".join("{:.1f},{:.1f}".format(*xy(p[clock], p["t2i_R@1"])) for p in r["curve"])
        return f'<polyline points="{pts}" fill="none" stroke="#1f5fbf" {style}/>'

    ticks = "".join(
        f'<text x="{pad - 6}" y="{xy(0, v)[1] + 4:.1f}" text-anchor="end">{v:.1f}</text>'
        for v in (0, 0.2, 0.4, 0.6, 0.8, 1.0)
    ) + "".join(
        f'<text x="{xy(t, 0)[0]:.1f}" y="{h - pad + 14}" text-anchor="middle">{t}</text>'
        for t in range(0, int(xmax) + 1, 60)
    )
    bx, top = xy(BUDGET_S, 1)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif" font-size="11"><rect width="{w}" height="{h}" fill="white"/>'
        + line(0, 0, xmax, 0, 'stroke="black"')
        + line(0, 0, 0, 1, 'stroke="black"')
        + ticks
        + line(0, GOAL_R1, xmax, GOAL_R1, 'stroke="#999" stroke-dasharray="4 3"')
        + line(BUDGET_S, 0, BUDGET_S, 1, 'stroke="#c33" stroke-dasharray="4 3"')
        + f'<text x="{bx - 4:.1f}" y="{top + 12:.1f}" fill="#c33" text-anchor="end">5 min</text>'
        + curve("train_cpu_s", 'stroke-width="2"')
        + curve("train_s", 'stroke-width="1.5" stroke-dasharray="5 3"')
        + f'<text x="{w / 2}" y="{h - 8}" text-anchor="middle">seconds of training: CPU '
        f"(solid, 1 thread) and wall clock at load ≈ {r['loadavg']['median']:.0f} (dashed)</text>"
        f'<text x="12" y="{pad - 16}">held-out text→image R@1, tiny preset from scratch, '
        f"{r['heldout_images']} scenes of unseen colour–shape pairs</text></svg>\n"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=4.0)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--n", type=int, default=2000, help="training scenes (the CLI's default)")
    ap.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the training")
    ap.add_argument("--workers", type=int, default=0, help="clipsearch train --workers")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="training seconds allowed")
    ap.add_argument("--svg", default=None, help="also write the curve as an SVG file")
    ap.add_argument("--markdown", action="store_true", help="print the curve as a table")
    add_suite_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.epochs = min(args.epochs, 2.0)
    with tempfile.TemporaryDirectory() as tmp:
        r = {**run_benchmark(args, Path(tmp)), "epochs": args.epochs}
    if args.svg:
        Path(args.svg).write_text(svg_curve(r))
    if args.markdown:
        print(markdown_curve(r))
    report("train_tiny", r, summary_rows(r), targets_of(r, args), args.json_out)


def summary_rows(r: dict) -> list[tuple[str, str]]:
    curve = " ".join(f"{p['step']}@{p['train_cpu_s']:.0f}s:{p['t2i_R@1']:.2f}" for p in r["curve"])
    first = r["first_at_goal"]
    reached = "never"
    if first is not None:
        reached = (
            f"step {first['step']}, {first['train_cpu_s']:.0f} CPU-s, {first['train_s']:.0f} s wall"
        )
    load = r["loadavg"]
    return [
        ("command", r["command"]),
        ("held-out images (chance R@1)", f"{r['heldout_images']} ({r['chance_R@1']:.4f})"),
        ("curve step@cpu_s:R@1", curve),
        ("final t2i / i2t R@1 (eval)", f"{r['final_t2i_R@1']:.3f} / {r['final_i2t_R@1']:.3f}"),
        (f"first R@1 ≥ {GOAL_R1}", reached),
        (
            "train process wall / CPU s",
            f"{r['train_process_wall_s']:.0f} / {r['train_process_cpu_s']:.0f}",
        ),
        (
            "load average min/median/max",
            f"{load['min']:.1f} / {load['median']:.1f} / {load['max']:.1f}",
        ),
    ]


def targets_of(r: dict, args: argparse.Namespace) -> list[dict]:
    note = f"{args.threads} thread(s); load average median {r['loadavg']['median']:.1f}"
    what = f"tiny preset: held-out t2i R@1 within {args.budget:g}"
    return [
        target("train_tiny_5min_cpu", f"{what} CPU-s", r["R@1_within_budget_cpu"], GOAL_R1,
               note=note),
        target("train_tiny_5min_wall", f"{what} s wall", r["R@1_within_budget_wall"], GOAL_R1,
               note=note + " (wall clock, shared machine)"),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
