"""What the machine is and what it can do: lscpu, threads, library versions, GPU, and two probes
(fp32 GEMM GFLOP/s, memory copy bandwidth) that the suite's utilisation figures divide by.

    python -m benchmarks.probes
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import time
from typing import Any

LIBRARIES = ["torch", "torchvision", "timm", "transformers", "faiss-cpu", "numpy", "pillow",
             "onnxruntime", "fastapi", "uvicorn"]  # fmt: skip
LSCPU_KEYS = ["Model name", "Architecture", "CPU(s)", "Thread(s) per core", "Core(s) per socket",
              "Socket(s)", "CPU max MHz", "L2 cache", "L3 cache"]  # fmt: skip
SIMD_FLAGS = ["avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile"]


def lscpu() -> dict[str, str]:
    """The lines of `lscpu` that explain a CPU figure, plus the SIMD flags present."""
    if shutil.which("lscpu") is None:
        return {"Model name": platform.processor() or platform.machine()}
    text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in text.splitlines())
    )
    out = {k: fields[k] for k in LSCPU_KEYS if k in fields}
    flags = set(fields.get("Flags", "").split())
    out["simd"] = " ".join(f for f in SIMD_FLAGS if f in flags)
    return out


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def gpu() -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    p = torch.cuda.get_device_properties(0)
    return {
        "name": p.name,
        "memory_gib": round(p.total_memory / 2**30, 1),
        "count": torch.cuda.device_count(),
    }


def gemm_gflops(n: int = 2048, repeat: int = 5) -> float:
    """Best fp32 n×n matmul rate at torch's thread count: the ceiling for model FLOP utilisation."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool, caches
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def memory_bandwidth_gbs(mib: int = 512, repeat: int = 5) -> float:
    """Best copy rate of a buffer far larger than the caches, counting the read and the write."""
    import torch

    src = torch.ones(mib * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # warm-up: fault the pages in
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() * 4 / best / 1e9


def probe_machine() -> dict[str, Any]:
    import torch

    return {
        "lscpu": lscpu(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": versions(),
        "gpu": gpu(),
        "gemm_fp32_gflops": gemm_gflops(),
        "memory_copy_gbs": memory_bandwidth_gbs(),
        "loadavg_1min": os.getloadavg()[0],
    }


if __name__ == "__main__":
    print(json.dumps(probe_machine(), indent=1))
