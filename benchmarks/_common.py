"""Shared helpers for benchmark scripts: timing with warm-up and repetitions, machine facts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any


def timeit(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1) -> dict[str, float]:
    """Run fn warmup + repeat times; return median/min/max seconds of the timed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}


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


def report(name: str, results: dict[str, Any], rows: list[tuple[str, str]]) -> None:
    """Print a short table, then the JSON (last line) for scripts that collect results."""
    width = max(len(k) for k, _ in rows)
    print(f"== {name} ==")
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print(json.dumps({"benchmark": name, "machine": machine(), **results}))
