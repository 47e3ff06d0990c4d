"""The benchmark suite: probe the machine, run every benchmark with warm-up and ≥ 5 repetitions,
print one table of targets (measured ratio, goal, pass/fail) and write it as JSON.

    python -m benchmarks.run_all                  # the full suite (< 15 min on 2 CPU cores)
    python -m benchmarks.run_all --quick          # smaller sizes: a few minutes
    python -m benchmarks.run_all --only encoder,service --write-docs
    make bench                                    # = the full suite with --write-docs

Each benchmark runs in its own process (`python -m benchmarks.<name> --json-out …`), one after
another so that none measures while another loads the cores; its log is kept next to the JSON.
A benchmark that fails or times out is reported as such and the suite goes on.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._common import REPO
from benchmarks.probes import probe_machine

# (module, extra args for a full run, extra args for --quick, time limit in seconds)
BENCHMARKS: list[tuple[str, list[str], list[str], int]] = [
    ("encoder", ["--skip-build"], ["--skip-build"], 300),
    ("onnx_backend", [], [], 420),
    # the default backend (auto) vs --backend torch: encode, index build, server p50/req/s
    ("default_backend", [], [], 480),
    ("decode", [], [], 300),
    ("indexer", [], [], 420),
    ("search", [], [], 900),  # a first run builds its 1M-vector index (~7 min), cached after
    # 300k vectors keep a first run's index build near a minute; the ratios hardly depend on
    # the size (one IVF probe is well under a millisecond either way)
    ("service", ["--n", "300000"], [], 600),
    # searches at c=16 while images are uploaded to a writable server (the living index)
    ("live_writes", [], [], 600),
    # the same ClipClient load against clip-retrieval's back and clipsearch (its own venv,
    # built once; a first full run also makes a random-weight ViT-B/32 and embeds 100 images)
    ("clip_retrieval_side_by_side", [], [], 900),
    # the tiny preset from scratch through the CLI: held-out R@1 within 5 minutes of training
    ("train_tiny", [], [], 600),
]
DOC_BEGIN, DOC_END = "<!-- suite:begin -->", "<!-- suite:end -->"


def run_one(name: str, args: list[str], limit: int, out_dir: Path) -> dict[str, Any]:
    """Run one benchmark module in a subprocess; its result JSON, or a record of the failure."""
    json_path, log_path = out_dir / f"{name}.json", out_dir / f"{name}.log"
    json_path.unlink(missing_ok=True)
    if not (REPO / "benchmarks" / f"{name}.py").exists():
        return {"benchmark": name, "status": "missing", "targets": []}
    cmd = [sys.executable, "-m", f"benchmarks.{name}", *args, "--json-out", str(json_path)]
    t0 = time.perf_counter()
    with log_path.open("w") as log:
        try:
            rc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=limit)
            status = (
                "ok"
                if rc.returncode == 0 and json_path.exists()
                else f"failed (exit {rc.returncode})"
            )
        except subprocess.TimeoutExpired:
            status = f"timed out after {limit} s"
    took = time.perf_counter() - t0
    result = json.loads(json_path.read_text()) if json_path.exists() else {"targets": []}
    log_name = log_path.relative_to(REPO) if log_path.is_relative_to(REPO) else log_path
    return {**result, "benchmark": name, "status": status, "seconds": took, "log": str(log_name)}


def format_value(t: dict[str, Any]) -> str:
    return "—" if t["measured"] is None else f"{t['measured']:.3g}{t['unit']}"


def mark(t: dict[str, Any]) -> str:
    return {True: "✅ pass", False: "❌ miss", None: "⏸ not run"}[t["ok"]]


def table(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        if r["status"] != "ok":
            rows.append([r["benchmark"], "(whole benchmark)", "—", "—", r["status"], ""])
        for t in r["targets"]:
            goal = f"{t['op'].replace('>=', '≥').replace('<=', '≤')} {t['goal']:g}{t['unit']}"
            rows.append([r["benchmark"], t["what"], format_value(t), goal, mark(t), t["note"]])
    return rows


def print_table(rows: list[list[str]]) -> None:
    heads = ["benchmark", "target", "measured", "goal", "result"]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    print("  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)))


def markdown(suite: dict[str, Any], rows: list[list[str]]) -> str:
    m = suite["machine"]
    cpu = m["lscpu"]
    v = m["versions"]
    lines = [
        DOC_BEGIN,
        f"Latest suite run: {suite['date']}, {'quick' if suite['quick'] else 'full'} mode, "
        f"{suite['seconds'] / 60:.1f} min. Machine: {cpu.get('Model name', '?')} "
        f"({m['cpu_count']} cores, SIMD {cpu.get('simd', '?')}), torch {v.get('torch')} on "
        f"{m['torch_threads']} threads, faiss {v.get('faiss-cpu')}, GPU: "
        f"{m['gpu']['name'] if m['gpu'] else 'none'}. Probes: fp32 GEMM "
        f"{m['gemm_fp32_gflops']:.0f} GFLOP/s, memory copy {m['memory_copy_gbs']:.1f} GB/s; "
        f"load average at the start {m['loadavg_1min']:.1f}.",
        "",
        "| benchmark | target | measured | goal | result | why / note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    lines.append(DOC_END)
    return "\n".join(lines)


def write_docs(block: str) -> None:
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text()
    pattern = re.compile(re.escape(DOC_BEGIN) + ".*?" + re.escape(DOC_END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"docs/benchmarks.md has no {DOC_BEGIN} … {DOC_END} block to replace")
    path.write_text(pattern.sub(lambda _: block, text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes: a few minutes in all")
    ap.add_argument("--only", default=None, help="comma-separated benchmark names to run")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"),
                    help="folder for suite.json and one log per benchmark")  # fmt: skip
    ap.add_argument(
        "--write-docs", action="store_true", help="update the table in docs/benchmarks.md"
    )
    args = ap.parse_args()
    names = [b[0] for b in BENCHMARKS]
    only = names if args.only is None else args.only.split(",")
    unknown = sorted(set(only) - set(names))
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    print("probing the machine …", file=sys.stderr, flush=True)
    machine = probe_machine()
    results = []
    for name, full, quick, limit in BENCHMARKS:
        if name not in only:
            continue
        extra = (quick + ["--quick"]) if args.quick else full
        if name == "encoder":
            extra = [*extra, "--peak-gflops", f"{machine['gemm_fp32_gflops']:.1f}"]
        print(f"running {name} …", file=sys.stderr, flush=True)
        r = run_one(name, extra, limit, out_dir)
        print(
            f"  {name}: {r['status']} in {r.get('seconds', 0):.0f} s", file=sys.stderr, flush=True
        )
        results.append(r)
    suite = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick,
        "seconds": time.perf_counter() - t0,
        "machine": machine,
        "results": results,
    }
    (out_dir / "suite.json").write_text(json.dumps(suite, indent=1))
    rows = table(results)
    print_table(rows)
    print(f"\n{len(rows)} rows; JSON and logs in {out_dir}; {suite['seconds'] / 60:.1f} min")
    if args.write_docs:
        write_docs(markdown(suite, rows))
        (REPO / "docs" / "benchmarks.json").write_text(json.dumps(suite, indent=1))


if __name__ == "__main__":
    main()
