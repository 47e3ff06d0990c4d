"""Shared helpers for benchmark scripts: timing with warm-up and repetitions, machine facts,
and the one result format that `benchmarks.run_all` collects.

Every benchmark module is runnable on its own (`python -m benchmarks.<name>`), accepts `--quick`
and `--json-out PATH`, and reports its targets with `target(...)`: a ratio measured in this run,
the goal it is held to, and whether it passed. `run_all` turns those into the suite's table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def timeit(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Run fn warmup + repeat times; return median/min/max seconds of the timed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "repeat": repeat,
    }


def interleaved(
    baseline: Callable[[], Any], ours: Callable[[], Any], repeat: int = 5, warmup: int = 1
) -> dict[str, float]:
    """Time `baseline` and `ours` alternately, `repeat` rounds after `warmup` each; the ratio is
    the median of the per-round ratios baseline ÷ ours, so drift in the machine's speed (other
    load, frequency) hits both sides of every round alike."""
    for _ in range(warmup):
        baseline()
        ours()
    ratios, base_t, ours_t = [], [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        baseline()
        t1 = time.perf_counter()
        ours()
        t2 = time.perf_counter()
        base_t.append(t1 - t0)
        ours_t.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    return {
        "ratio": statistics.median(ratios),
        "baseline_median_s": statistics.median(base_t),
        "ours_median_s": statistics.median(ours_t),
        "repeat": repeat,
    }


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
    }


def add_suite_args(ap: argparse.ArgumentParser) -> None:
    """The two flags every benchmark shares with the suite runner."""
    ap.add_argument("--quick", action="store_true", help="smaller sizes, a minute or two")
    ap.add_argument("--json-out", default=None, help="also write the result JSON to this file")


def target(
    id: str,
    what: str,
    measured: float | None,
    goal: float,
    op: str = ">=",
    unit: str = "",
    note: str = "",
) -> dict[str, Any]:
    """One target of the suite: `measured op goal` decides pass/fail; None means not measured."""
    if op not in (">=", "<="):
        raise ValueError(f"op must be '>=' or '<=', not {op!r}")
    ok = None
    if measured is not None:
        ok = measured >= goal if op == ">=" else measured <= goal
    return {
        "id": id,
        "what": what,
        "measured": measured,
        "goal": goal,
        "op": op,
        "unit": unit,
        "ok": ok,
        "note": note,
    }


def report(
    name: str,
    results: dict[str, Any],
    rows: list[tuple[str, str]],
    targets: list[dict[str, Any]] | None = None,
    json_out: str | None = None,
) -> None:
    """Print a short table, then the JSON (last line) for scripts that collect results."""
    targets = targets or []
    for t in targets:
        mark = {True: "pass", False: "MISS", None: "not run"}[t["ok"]]
        value = "—" if t["measured"] is None else f"{t['measured']:.3g}{t['unit']}"
        rows = [*rows, (t["what"], f"{value} ({t['op']} {t['goal']:g}{t['unit']}) {mark}")]
    width = max(len(k) for k, _ in rows)
    print(f"== {name} ==")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    payload = {"benchmark": name, "machine": machine(), **results, "targets": targets}
    if json_out:
        Path(json_out).write_text(json.dumps(payload, indent=1))
    print(json.dumps(payload))
