"""On-disk IVF benchmark: a few million synthetic CLIP-like vectors (with a modality gap) in an IVF
index whose inverted lists stay on disk, served memory-mapped by a real `clipsearch serve`.

    python -m benchmarks.ondisk [--n 3000000] [--queries 300] [--code Flat] [--write-docs]

Reports, for the serving process (read from /proc while it answers, and from its /stats):
- RSS after load and after the queries, split into anonymous memory (model, heap) and mapped
  file pages (the index pages the queries touched), as a ratio to the index's size on disk;
- recall@10 of the served results against exact search, with held-out text-like queries;
- latency of POST /search {"embedding": …} (p50/p95), against the in-process exact search of the
  same queries as a baseline measured in the same run.

The corpus is generated and built once under .bench_cache/ondisk-<n> (delete it to rebuild).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import report

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## On-disk index"


def _rss(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(index_dir: Path, n: int, code: str, shards: int | None) -> dict:
    from benchmarks._synthetic import GapSpace, publish_vectors
    from indexer import live_version
    from indexer.ondisk import OnDiskOptions
    from model import load_encoder

    record = index_dir / "build.json"
    if live_version(index_dir):
        saved = json.loads(record.read_text()) if record.is_file() else {}
        return {"build_seconds": saved.get("build_seconds"), "reused": True}
    enc = load_encoder("starter", device="cpu")
    space = GapSpace(dim=enc.dim, seed=7)
    t0 = time.perf_counter()
    publish_vectors(
        index_dir,
        space.images(n),
        n,
        enc.dim,
        model=enc.spec,
        fingerprint=enc.fingerprint,
        ondisk=OnDiskOptions(code=code, shards=shards),
        queries=space.text_queries(400),
    )
    seconds = round(time.perf_counter() - t0, 1)
    record.write_text(json.dumps({"build_seconds": seconds}))
    return {"build_seconds": seconds, "reused": False}


def _drop_cached(version_dir: Path) -> None:
    """Evict this version's files from the page cache (only these files), so the server faults
    its pages in itself and a memory limit applies to them."""
    for p in version_dir.iterdir():
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _memory_cgroup(limit: int) -> Path:
    """A cgroup (v1 memory controller, or v2) capping memory, page cache included."""
    v1 = Path("/sys/fs/cgroup/memory")
    if v1.is_dir():
        cg = v1 / f"clipsearch-ondisk-{os.getpid()}"
        cg.mkdir(exist_ok=True)
        (cg / "memory.limit_in_bytes").write_text(str(limit))
    else:
        cg = Path("/sys/fs/cgroup") / f"clipsearch-ondisk-{os.getpid()}"
        cg.mkdir(exist_ok=True)
        (cg / "memory.max").write_text(str(limit))
    return cg


def serve_and_query(index_dir: Path, queries: np.ndarray, memory_limit: int | None = None) -> dict:
    import httpx

    port = _free_port()
    env = {
        **os.environ,
        "CLIPSEARCH_TEXT_CACHE_SIZE": "0",
        "HF_HUB_OFFLINE": "1",
        "CLIPSEARCH_TORCH_THREADS": "1",
    }
    cgroup = _memory_cgroup(memory_limit) if memory_limit else None

    def enter_cgroup() -> None:  # runs in the child before exec
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "clipsearch"),
            "serve",
            "--index",
            str(index_dir),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=enter_cgroup if cgroup else None,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        with httpx.Client(base_url=base, timeout=120) as c:
            while True:
                if server.poll() is not None:
                    raise RuntimeError(server.stderr.read().decode()[-3000:])
                try:
                    if c.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
            ready_s = time.perf_counter() - t0
            pid = server.pid  # one uvicorn worker: it serves in the launched process
            after_load = _rss(pid)
            lat, found = [], []
            for q in queries:
                t = time.perf_counter()
                r = c.post("/search", json={"embedding": q.tolist(), "k": 10})
                lat.append(time.perf_counter() - t)
                r.raise_for_status()
                found.append([int(h["id"]) for h in r.json()["hits"]])
            after_queries = _rss(pid)
            stats = c.get("/stats").json()
    finally:
        server.terminate()
        server.wait(30)
        if cgroup is not None:
            cgroup.rmdir()
    return {
        "ready_seconds": round(ready_s, 1),
        "rss_after_load": after_load,
        "rss_after_queries": after_queries,
        "stats_memory": stats.get("memory"),
        "latency_ms": {
            "p50": round(1000 * statistics.median(lat), 2),
            "p95": round(1000 * float(np.percentile(lat, 95)), 2),
        },
        "found": found,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=3_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--code", default="Flat", help="IVF code: Flat, SQ8 or SQfp16")
    ap.add_argument("--shards", type=int, default=None)
    ap.add_argument(
        "--memory-limit",
        default="1.25G",
        help="also serve under this memory cap (a cgroup; page cache included), e.g. 1.25G; "
        "'none' to skip",
    )
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()

    from benchmarks._synthetic import GapSpace
    from indexer import open_index
    from indexer._search import exact_rows

    index_dir = REPO / ".bench_cache" / f"ondisk-{args.n}-{args.code}"
    built = build(index_dir, args.n, args.code, args.shards)
    v = open_index(index_dir)
    manifest, vdir = v.manifest, v.path
    v.close()
    index_bytes = sum(p.stat().st_size for p in vdir.iterdir() if p.is_file())
    ivf_bytes = int(manifest.index_bytes or 0)
    # Held-out queries: the tuning used the first 400 of the same stream.
    queries = GapSpace(dim=manifest.dim, seed=7).text_queries(400 + args.queries)[400:]

    from indexer.faiss_build import parse_size

    served = serve_and_query(index_dir, queries)
    limit = None if args.memory_limit == "none" else parse_size(args.memory_limit)
    capped = None
    if limit:
        _drop_cached(vdir)
        capped = serve_and_query(index_dir, queries, memory_limit=limit)
    vectors = np.load(vdir / "vectors.npy", mmap_mode="r")
    t0 = time.perf_counter()
    _, truth = exact_rows(vectors, queries, 10)
    exact_ms = 1000 * (time.perf_counter() - t0) / len(queries)

    def recall_of(found: list[list[int]]) -> float:
        pairs = zip(found, truth, strict=True)
        return float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in pairs]))

    recall = recall_of(served.pop("found"))
    if capped:
        capped["recall_at_10"] = round(recall_of(capped.pop("found")), 4)
        capped["memory_limit"] = limit
    rss = served["rss_after_queries"]
    results = {
        "n": args.n,
        "dim": manifest.dim,
        "factory": manifest.factory,
        "search_params": manifest.search_params,
        "tuned_recall_at_10": manifest.recall_at_10,
        "served_recall_at_10": round(recall, 4),
        "version_bytes": index_bytes,
        "ivf_bytes": ivf_bytes,
        "rss_over_ivf_size": round(rss["VmRSS"] / ivf_bytes, 3),
        "rss_over_version_size": round(rss["VmRSS"] / index_bytes, 3),
        "exact_search_ms_per_query_inprocess": round(exact_ms, 1),
        "served_p50_over_exact": round(served["latency_ms"]["p50"] / exact_ms, 3),
        **built,
        **served,
        "capped": capped,
    }
    gib = 2**30
    rows = [
        ("vectors", f"{args.n:,} × {results['dim']} ({manifest.factory})"),
        ("on disk: version / IVF", f"{index_bytes / gib:.2f} / {ivf_bytes / gib:.2f} GiB"),
        (
            "server RSS after load",
            f"{served['rss_after_load']['VmRSS'] / gib:.2f} GiB "
            f"(anon {served['rss_after_load']['RssAnon'] / gib:.2f}, "
            f"file {served['rss_after_load']['RssFile'] / gib:.2f})",
        ),
        (
            f"server RSS after {args.queries} queries",
            f"{rss['VmRSS'] / gib:.2f} GiB (anon {rss['RssAnon'] / gib:.2f}, "
            f"file {rss['RssFile'] / gib:.2f}) = {results['rss_over_ivf_size']:.1%} of the IVF",
        ),
        ("recall@10 vs exact (held-out)", f"{recall:.3f} (tuned {manifest.recall_at_10})"),
        ("nprobe", str(manifest.search_params)),
        (
            "latency p50 / p95",
            f"{served['latency_ms']['p50']} / {served['latency_ms']['p95']} ms over HTTP",
        ),
        ("exact search in-process", f"{exact_ms:.1f} ms/query (baseline)"),
    ]
    if capped:
        crss = capped["rss_after_queries"]
        rows += [
            (
                f"capped at {limit / gib:.2f} GiB: RSS after queries",
                f"{crss['VmRSS'] / gib:.2f} GiB (anon {crss['RssAnon'] / gib:.2f}, "
                f"file {crss['RssFile'] / gib:.2f}) = {crss['VmRSS'] / ivf_bytes:.1%} of the IVF",
            ),
            ("capped: recall@10", f"{capped['recall_at_10']:.3f}"),
            (
                "capped: latency p50 / p95",
                f"{capped['latency_ms']['p50']} / {capped['latency_ms']['p95']} ms over HTTP",
            ),
        ]
    rows += [
        ("build (one-off: generate, train, 3 shards, merge, tune)", f"{built['build_seconds']} s"),
        ("ready after", f"{served['ready_seconds']} s"),
    ]
    report("ondisk", results, rows)
    if args.write_docs:
        write_docs(rows)


def write_docs(rows: list[tuple[str, str]]) -> None:
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    body = (
        f"{SECTION}\n\n"
        "`python -m benchmarks.ondisk` — an IVF index with on-disk inverted lists "
        "(`OnDiskInvertedLists`, sharded build + `merge_ondisk`) over synthetic CLIP-like vectors "
        "with a modality gap, served memory-mapped by `clipsearch serve` on this 2-core machine; "
        'queries are held-out text-like vectors sent as `{"embedding": …}`.\n\n'
        "| measure | value |\n| --- | --- |\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
    )
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(body + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + body
    DOCS.write_text(text)


if __name__ == "__main__":
    main()
