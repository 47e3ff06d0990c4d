"""The default backend (`auto`) against `--backend torch`, side by side in one run: encode_texts,
encode_images, an index build and the server's p50 at c=1 and req/s at c=16.

    python -m benchmarks.default_backend [--model starter] [--rounds 5] [--quick]

Each pair is measured in alternating rounds (default, torch, default, torch, …) so the load of a
shared machine hits both alike; the ratio is torch's time ÷ the default's (≥ 1: the default wins;
for req/s the default's ÷ torch's). The load average is recorded before and after. Both use the
same thread count (torch.get_num_threads(); ONNX Runtime gets as many intra-op threads), and the
two servers run side by side on the same index, one idle while the other is measured.

It also measures what `auto` costs at start-up: a first load (export + parity check, into an
empty cache) and a second (both cached), against a plain PyTorch load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks._common import add_suite_args, report, target

TIE = 0.95  # a ratio ≥ this is a tie: rounds on a shared 2-core machine vary by a few percent


def rounds_of(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each fn, one call of each per round (who goes first alternates),
    after one warm-up round."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(rounds + 1):
        pairs = list(fns.items())
        for name, fn in pairs if r % 2 else pairs[::-1]:
            t0 = time.perf_counter()
            fn()
            if r:
                times[name].append(time.perf_counter() - t0)
    return times


def ratio(times: dict[str, list[float]]) -> float:
    """Median of the per-round ratios torch ÷ default."""
    return statistics.median(t / d for t, d in zip(times["torch"], times["default"], strict=True))


def load_pair(spec: str) -> dict[str, Any]:
    """The two encoders, and the start-up cost of auto: first load (export + parity into an
    empty cache), second load (cached), and a PyTorch load for reference."""
    from model import load_encoder
    from model.onnx_backend import auto_encoder

    t0 = time.perf_counter()
    torch_enc = load_encoder(spec, device="cpu", backend="torch")
    t_torch = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_encoder(spec, device="cpu")  # the default: exports if this cache has no export yet
    t_default_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    default = load_encoder(spec, device="cpu")  # now certainly from the cache
    t_default = time.perf_counter() - t0
    fresh = Path(tempfile.mkdtemp(prefix="auto-export-"))
    try:
        base = load_encoder(spec, device="cpu", backend="torch")
        t0 = time.perf_counter()
        first = auto_encoder(base, cache_dir=fresh / "m")
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        auto_encoder(base, cache_dir=fresh / "m")
        t_second = time.perf_counter() - t0
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return {
        "encoders": {"default": default, "torch": torch_enc},
        "startup_s": {
            "torch_load": t_torch,
            "default_load_first_in_this_cache": t_default_first,
            "default_load_cached": t_default,
            "auto_first_export_and_parity": t_first,
            "auto_second_cached": t_second,
        },
        "default_backend": default.backend_label,
        "fresh_export_backend": first.backend,
    }


def encode_rounds(encs: dict, photos: list, rounds: int) -> dict[str, dict[str, list[float]]]:
    from benchmarks.onnx_backend import query_texts

    texts = query_texts(64)
    images = photos[:16]
    singles = iter(query_texts(10_000)[::-1])
    return {
        "encode_texts_1": rounds_of(
            {k: (lambda e=e: e.encode_texts([next(singles)])) for k, e in encs.items()}, rounds * 4
        ),
        "encode_texts_64": rounds_of(
            {k: (lambda e=e: e.encode_texts(texts)) for k, e in encs.items()}, rounds
        ),
        "encode_images_16": rounds_of(
            {k: (lambda e=e: e.encode_images(images)) for k, e in encs.items()}, rounds
        ),
    }


def build_rounds(encs: dict, corpus: Path, work: Path, rounds: int) -> dict[str, list[float]]:
    """`build_index` of the corpus with each encoder, alternating; a fresh index each time."""
    from indexer import build_index

    def build(name: str) -> Callable[[], None]:
        def run() -> None:
            out = work / f"idx-{name}"
            shutil.rmtree(out, ignore_errors=True)
            build_index(corpus, out, encs[name], progress=False)

        return run

    return rounds_of({k: build(k) for k in encs}, rounds)


def server_rounds(index: Path, threads: int, n_req: int, rounds: int) -> dict[str, Any]:
    """Two `clipsearch serve` processes on one index, the default and --backend torch; each
    round loads one at c=1, then the other, then both at c=16."""
    from benchmarks.service import load, query_texts, summary

    servers, ready = {}, {}
    out: dict[str, Any] = {"c1": {"default": [], "torch": []}, "c16": {"default": [], "torch": []}}
    try:
        for name, backend in (("default", None), ("torch", "torch")):  # one at a time: each
            t0 = time.perf_counter()  # start-up time is its own
            servers[name] = _server(index, backend, threads)
            servers[name].wait_ready()
            ready[name] = time.perf_counter() - t0
        out["backend"] = {k: _readyz(s.url)["backend"] for k, s in servers.items()}
        offset = 0
        for r in range(rounds + 1):  # round 0 warms up
            for level, key in ((1, "c1"), (16, "c16")):
                pairs = list(servers.items())  # who goes first alternates, round by round
                for name, s in pairs if (r + level) % 2 else pairs[::-1]:
                    n = n_req if level == 1 else 4 * n_req
                    lat, wall, errors = asyncio.run(load(s.url, query_texts(n, offset), level))
                    offset += n
                    if r:
                        out[key][name].append(summary(lat, wall, errors))
        out["ready_after_s"] = ready
    finally:
        for s in servers.values():
            s.stop()
    return out


def _server(index: Path, backend: str | None, threads: int):
    """`clipsearch serve` with `--backend` given through its setting (absent: the default)."""
    from benchmarks.service import Server

    saved = os.environ.pop("CLIPSEARCH_BACKEND", None)
    if backend:
        os.environ["CLIPSEARCH_BACKEND"] = backend
    try:
        return Server(index, batching=True, torch_threads=threads)
    finally:
        os.environ.pop("CLIPSEARCH_BACKEND", None)
        if saved is not None:
            os.environ["CLIPSEARCH_BACKEND"] = saved


def _readyz(url: str) -> dict[str, Any]:
    import httpx

    return httpx.get(url + "/readyz", timeout=5).json()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="starter")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=60, help="c=1 requests per server per round")
    add_suite_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.requests = 2, 20
    threads = torch.get_num_threads()
    load_before = os.getloadavg()
    pair = load_pair(args.model)
    encs = pair["encoders"]
    with tempfile.TemporaryDirectory(prefix="default-backend-") as tmp:
        from benchmarks.onnx_backend import demo_corpus
        from model import load_image

        paths, _ = demo_corpus(Path(tmp) / "demo")
        photos = [load_image(p) for p in paths]
        encode = encode_rounds(encs, photos, args.rounds)
        corpus = Path(tmp) / "demo" / "images"  # every demo image, in subfolders
        build = build_rounds(encs, corpus, Path(tmp), max(2, args.rounds // 2))
        server = server_rounds(Path(tmp) / "idx-torch", threads, args.requests, args.rounds)
    load_after = os.getloadavg()
    results, rows, targets = summarise(encode, build, server, len(paths), args)
    results.update(
        threads=threads,
        model=args.model,
        default_backend=pair["default_backend"],
        server_backends=server["backend"],
        server_ready_after_s=server["ready_after_s"],
        startup_s=pair["startup_s"],
        loadavg_before=load_before,
        loadavg_after=load_after,
    )
    rows = [
        ("default backend", f"{pair['default_backend']} (servers: {server['backend']})"),
        ("load average before → after", f"{load_before[0]:.2f} → {load_after[0]:.2f}"),
        *rows,
        *((f"start-up: {k}", f"{v:.2f} s") for k, v in pair["startup_s"].items()),
    ]
    report("default_backend", results, rows, targets=targets, json_out=args.json_out)


# long: one row and one target per measured pair, in the order of the docs table
def summarise(encode: dict, build: dict, server: dict, n_images: int, args) -> tuple:
    results: dict[str, Any] = {"encode": {}, "server": {}}
    rows, targets = [], []
    what = {
        "encode_texts_1": "encode_texts, one short query",
        "encode_texts_64": "encode_texts, 64 queries",
        "encode_images_16": "encode_images, 16 photos",
    }
    for key, times in encode.items():
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        r = ratio(times)
        results["encode"][key] = {
            "default_ms": med["default"],
            "torch_ms": med["torch"],
            "ratio": r,
        }
        rows.append(
            (what[key], f"{med['default']:.1f} ms vs torch {med['torch']:.1f} ms: {r:.2f}×")
        )
        targets.append(target(key, f"default ÷ torch: {what[key]}", r, TIE, unit="×"))
    med = {k: statistics.median(v) for k, v in build.items()}
    r = ratio(build)
    results["index_build"] = {"images": n_images, "default_s": med["default"],
                              "torch_s": med["torch"], "ratio": r}  # fmt: skip
    rows.append((f"index build, {n_images} images",
                 f"{med['default']:.1f} s vs torch {med['torch']:.1f} s: {r:.2f}×"))  # fmt: skip
    targets.append(target("index_build", "default ÷ torch: index build", r, TIE, unit="×"))
    p50 = {k: [s["p50_ms"] for s in v] for k, v in server["c1"].items()}
    rps = {k: [s["req_per_s"] for s in v] for k, v in server["c16"].items()}
    r_p50 = statistics.median(t / d for t, d in zip(p50["torch"], p50["default"], strict=True))
    r_rps = statistics.median(d / t for t, d in zip(rps["torch"], rps["default"], strict=True))
    for key, vals, r, unit in (("p50_c1", p50, r_p50, "ms"), ("rps_c16", rps, r_rps, "req/s")):
        med = {k: statistics.median(v) for k, v in vals.items()}
        results["server"][key] = {"default": med["default"], "torch": med["torch"], "ratio": r}
        label = "server p50 at c=1" if key == "p50_c1" else "server req/s at c=16"
        rows.append((label, f"{med['default']:.1f} {unit} vs torch {med['torch']:.1f}: {r:.2f}×"))
        targets.append(target(key, f"default ÷ torch: {label}", r, TIE, unit="×"))
    results["rounds"] = args.rounds
    return results, rows, targets


if __name__ == "__main__":
    main()
