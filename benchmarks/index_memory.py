"""FAISS build of a large synthetic corpus within a memory budget, and its recall@10 with
text-like queries (the modality gap: queries sit away from the image cluster).

    python -m benchmarks.index_memory [--n 1000000] [--dim 512] [--memory-budget 1G]
                                      [--queries 1000] [--factory STR]

Phase 1 writes n synthetic fp16 vectors (benchmarks._synthetic.GapSpace) to a temp vectors.npy.
Phase 2 runs in a fresh process, so its peak RSS (ru_maxrss) is the build's alone: the same
indexer.faiss_build.build_faiss the indexer uses (factory chosen by size and budget: SQ8, SQ4 or
PQ codes; IVF trained on a sample; the exact ground truth computed before the codes exist;
vectors added in chunks; freed memory handed back between phases; nprobe/re-rank tuned until
recall@10 ≥ 0.95 on half the queries, recall reported on the other half). Goal (issue 18): peak
RSS ÷ budget ≤ 1.1 at 512 MiB and 1 GiB for 1M vectors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_vectors(path: Path, n: int, dim: int, seed: int) -> None:
    from benchmarks._synthetic import GapSpace
    from indexer.store import VectorWriter

    w = VectorWriter(path, n, dim)
    for chunk in GapSpace(dim=dim, seed=seed).images(n):
        w.write(chunk)
    w.close()


def build_phase(args: argparse.Namespace) -> None:
    """Runs in its own process: only the build counts towards the peak RSS."""
    from benchmarks._synthetic import GapSpace
    from indexer.faiss_build import build_faiss, current_rss, parse_size, peak_rss

    baseline = current_rss()
    queries = GapSpace(dim=args.dim, seed=args.seed).text_queries(args.queries)
    ids = np.arange(args.n, dtype=np.int64)
    t0 = time.perf_counter()
    built = build_faiss(
        Path(args.vectors),
        ids,
        args.dim,
        factory=args.factory,
        memory_budget=args.memory_budget,
        queries=queries,
    )
    seconds = time.perf_counter() - t0
    budget = parse_size(args.memory_budget)
    out = {
        **built.manifest_fields(),
        "n": args.n,
        "dim": args.dim,
        "memory_budget_bytes": budget,
        "peak_rss_bytes": peak_rss(),
        "baseline_rss_bytes": baseline,
        "index_bytes": int(built.index.sa_code_size() * args.n) if built.index.ntotal else 0,
        "build_seconds": round(seconds, 1),
    }
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--memory-budget", default="1G")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--factory", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vectors", default=None, help=argparse.SUPPRESS)  # phase 2
    args = ap.parse_args()
    if args.vectors:
        build_phase(args)
        return

    from benchmarks._common import report

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vectors.npy"
        t0 = time.perf_counter()
        write_vectors(path, args.n, args.dim, args.seed)
        gen_s = time.perf_counter() - t0
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.index_memory",
            "--vectors",
            str(path),
            "--n",
            str(args.n),
            "--dim",
            str(args.dim),
            "--memory-budget",
            args.memory_budget,
            "--queries",
            str(args.queries),
            "--seed",
            str(args.seed),
        ]
        if args.factory:
            cmd += ["--factory", args.factory]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"build phase failed:\n{proc.stderr}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["generate_seconds"] = round(gen_s, 1)
    res["rss_over_budget"] = round(res["peak_rss_bytes"] / res["memory_budget_bytes"], 3)
    mib = 1 << 20
    report(
        "index_memory",
        res,
        [
            ("vectors", f"{args.n:,} × {args.dim}"),
            ("factory (chosen)", f"{res['factory']}  {res['search_params']}"),
            ("re-rank candidates", str(res["rerank_k"])),
            ("memory budget", f"{res['memory_budget_bytes'] / mib:.0f} MiB"),
            ("peak RSS of the build", f"{res['peak_rss_bytes'] / mib:.0f} MiB"),
            ("peak RSS ÷ budget (goal ≤ 1.1)", f"{res['rss_over_budget']:.3f}"),
            ("recall@10, text-like queries (≥ 0.95)", f"{res['recall_at_10']:.3f}"),
            ("build time", f"{res['build_seconds']} s"),
        ],
    )


if __name__ == "__main__":
    main()
