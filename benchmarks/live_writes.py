"""Living-index benchmark: text searches at concurrency 16 against a real `clipsearch serve
--writable`, first idle, then while images are uploaded at a steady rate.

    python -m benchmarks.live_writes [--n 100000] [--requests 600] [--rate 4] [--quick]

- search p99 during writes ÷ search p99 idle, both measured in the same run (goal ≤ 2);
- 0 errors among the searches and the uploads;
- add-to-searchable latency: from sending `POST /images` until a search by the new id's vector
  (`{"image_id": …}`) returns it first — p50 and p99 (read-your-writes makes this the 201 plus
  one search; no polling).

The index is the service benchmark's synthetic one (cached under .bench_cache/), copied so the
uploads never touch the cache; the uploads are distinct random JPEGs (each one is encoded).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._common import add_suite_args, report, target
from benchmarks.service import REPO, Connection, Server, make_index, percentile, query_texts

CONCURRENCY = 16


async def _searches(url: str, queries: list[str], stop_after: int) -> tuple[list[float], int]:
    host, port = url.removeprefix("http://").split(":")
    it = iter(queries[:stop_after])
    latencies: list[float] = []
    errors = 0

    async def worker(conn: Connection) -> None:
        nonlocal errors
        for q in it:
            t0 = time.perf_counter()
            status, _ = await conn.post_json("/search", {"text": q, "k": 10})
            latencies.append(time.perf_counter() - t0)
            errors += status != 200
        await conn.close()

    await asyncio.gather(*(worker(Connection(host, int(port))) for _ in range(CONCURRENCY)))
    return latencies, errors


def _jpeg(seed: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


async def _writer(url: str, rate: float, done: asyncio.Event) -> tuple[list[float], int]:
    """One upload every 1/rate s until `done` → (add-to-searchable seconds, errors)."""
    import httpx

    out: list[float] = []
    errors, seed = 0, 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        while not done.is_set():
            seed += 1
            t0 = time.perf_counter()
            r = await c.post("/images", files=[("image", ("x.jpg", _jpeg(seed), "image/jpeg"))])
            if r.status_code != 201:
                errors += 1
                continue
            new_id = r.json()["items"][0]["id"]
            s = await c.post("/search", json={"image_id": new_id, "k": 1})
            ok = s.status_code == 200 and s.json()["hits"][0]["id"] == new_id
            errors += not ok
            out.append(time.perf_counter() - t0)
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - t0)))
    return out, errors


async def _with_writes(url: str, queries: list[str], n: int, rate: float):
    done = asyncio.Event()
    writer = asyncio.create_task(_writer(url, rate, done))
    await asyncio.sleep(1.0)  # the writes are under way before the searches are timed
    lat, errors = await _searches(url, queries, n)
    done.set()
    adds, add_errors = await writer
    return lat, errors, adds, add_errors


def run(args: argparse.Namespace) -> dict:
    from model import load_encoder

    enc = load_encoder("starter", device="cpu")
    cache = Path(args.cache_dir) / f"service-{args.n}"
    make_index(cache, args.n, enc)
    work = Path(tempfile.mkdtemp(prefix="live-bench-"))
    shutil.copytree(cache, work / "idx")
    os.environ["CLIPSEARCH_WRITABLE"] = "true"  # the server subprocess's setting
    server = Server(work / "idx", batching=True, torch_threads=1)
    try:
        server.wait_ready()
        queries = query_texts(3 * args.requests)
        asyncio.run(_searches(server.url, queries[-64:], 64))  # warm the connections
        idle, idle_err = asyncio.run(_searches(server.url, queries, args.requests))
        busy, busy_err, adds, add_err = asyncio.run(
            _with_writes(server.url, queries[args.requests :], args.requests, args.rate)
        )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "n": args.n, "concurrency": CONCURRENCY, "rate_per_s": args.rate,
        "idle_p99_ms": 1e3 * percentile(idle, 99), "writes_p99_ms": 1e3 * percentile(busy, 99),
        "idle_p50_ms": 1e3 * statistics.median(idle),
        "writes_p50_ms": 1e3 * statistics.median(busy),
        "p99_ratio": percentile(busy, 99) / percentile(idle, 99),
        "adds": len(adds), "add_p50_ms": 1e3 * statistics.median(adds) if adds else None,
        "add_p99_ms": 1e3 * percentile(adds, 99) if adds else None,
        "errors": idle_err + busy_err + add_err,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="synthetic vectors in the index")
    ap.add_argument("--requests", type=int, default=600, help="timed searches per phase")
    ap.add_argument("--rate", type=float, default=4.0, help="uploads per second during writes")
    ap.add_argument("--cache-dir", default=str(REPO / ".bench_cache"))
    add_suite_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.n, args.requests = min(args.n, 20_000), min(args.requests, 200)
    r = run(args)
    rows = [
        ("search p50 idle / writing", f"{r['idle_p50_ms']:.1f} / {r['writes_p50_ms']:.1f} ms"),
        ("search p99 idle / writing", f"{r['idle_p99_ms']:.1f} / {r['writes_p99_ms']:.1f} ms"),
        ("add → searchable p50 / p99", f"{r['add_p50_ms']:.0f} / {r['add_p99_ms']:.0f} ms"),
        ("uploads, errors", f"{r['adds']}, {r['errors']}"),
    ]
    targets = [
        target("live_p99_ratio", "search p99 while writing ÷ idle", r["p99_ratio"], 2.0, "<="),
        target("live_errors", "errors during writes", r["errors"], 0, "<="),
    ]
    report("live_writes", r, rows, targets, args.json_out)


if __name__ == "__main__":
    main()
