"""Load test on loopback: `clipsearch serve` under N concurrent clients (httpx asyncio) for a
fixed time, optionally with index reloads every few seconds.

Checks what docs/reliability.md promises: no 5xx other than 503 `overloaded` (which must carry
Retry-After), no client timeouts, RSS growth between the first and last 10 s within 10 %, and in
the reload run every search hit belonging to the index version its response names.

    python -m benchmarks.load --index IDX                       # 32 clients, 60 s
    python -m benchmarks.load --index IDX --reload-every 3      # flip CURRENT + /admin/reload
    python -m benchmarks.load --index IDX --duration 10 --concurrency 8   # quick look

With --reload-every the index needs at least two versions (e.g. build twice over different
folders); the script flips CURRENT between the two newest and restores it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from benchmarks._common import report

REPO = Path(__file__).resolve().parents[1]
ADMIN_KEY = "load-admin-key"
WORDS = ["cat", "coffee", "rocket", "astronaut", "camera", "dog", "beach", "car", "tree", "city"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _version_paths(index: Path, version: str) -> dict[str, str]:
    from indexer import open_index

    v = open_index(index, version=version)
    try:
        return {str(i): p for i, p in v._db().execute("SELECT id, path FROM items")}
    finally:
        v.close()


def _set_current(index: Path, version: str) -> None:
    tmp = index / "CURRENT.tmp-load"
    tmp.write_text(version + "\n")
    os.replace(tmp, index / "CURRENT")


def _sample_jpeg_b64() -> str:
    from PIL import Image

    img = Image.new("RGB", (224, 224))
    img.putdata([((x * 7) % 256, (x * 13) % 256, (x * 3) % 256) for x in range(224 * 224)])
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode()


class Tally:
    def __init__(self) -> None:
        self.status: Counter[int] = Counter()
        self.codes: Counter[str] = Counter()
        self.timeouts = 0
        self.transport_errors = 0
        self.overload_without_retry_after = 0
        self.inconsistent: list[Any] = []
        self.versions: Counter[str] = Counter()
        self.latencies: list[float] = []


async def _client(
    base: str, deadline: float, t: Tally, rng: random.Random, img: str, paths: dict
) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        while time.monotonic() < deadline:
            roll = rng.random()
            if roll < 0.6:  # text search, mostly uncached (random word pairs and k)
                text = f"a {rng.choice(WORDS)} and a {rng.choice(WORDS)} {rng.randrange(10**6)}"
                req = c.post("/search", json={"text": text, "k": rng.randint(1, 5)})
            elif roll < 0.85:  # image search: decode + image encoder, the expensive path
                req = c.post("/search", json={"image_b64": img, "k": 3})
            elif roll < 0.95:
                req = c.post("/embed", json={"texts": [f"{w} {rng.random()}" for w in WORDS]})
            else:
                req = c.get("/stats")
            t0 = time.monotonic()
            try:
                r = await req
            except httpx.TimeoutException:
                t.timeouts += 1
                continue
            except httpx.TransportError:
                t.transport_errors += 1
                continue
            t.latencies.append(time.monotonic() - t0)
            t.status[r.status_code] += 1
            if r.status_code >= 400:
                code = r.json().get("error", {}).get("code", "?")
                t.codes[code] += 1
                if r.status_code == 503 and "retry-after" not in r.headers:
                    t.overload_without_retry_after += 1
                continue
            body = r.json()
            if "hits" in body:
                version = body["index_version"]
                t.versions[version] += 1
                known = paths.get(version)
                if known is not None:
                    for hit in body["hits"]:
                        if known.get(hit["id"]) != hit["path"]:
                            t.inconsistent.append((version, hit["id"], hit["path"]))


async def _reloader(base: str, index: Path, versions: list[str], every: float, deadline: float,
                    t: Tally) -> int:  # fmt: skip
    n = 0
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        while time.monotonic() + every < deadline:
            await asyncio.sleep(every)
            _set_current(index, versions[n % 2])
            r = await c.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY})
            if r.status_code != 200:
                t.inconsistent.append(("reload", r.status_code, r.text))
            n += 1
    return n


async def _sample_rss(pid: int, deadline: float, out: list[tuple[float, int]]) -> None:
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        out.append((time.monotonic() - t0, _rss(pid)))
        await asyncio.sleep(0.5)


def run(args: argparse.Namespace) -> dict[str, Any]:
    index = Path(args.index).resolve()
    versions = sorted(p.name for p in (index / "versions").iterdir() if p.is_dir())[-2:]
    live = (index / "CURRENT").read_text().strip()
    if args.reload_every and len(versions) < 2:
        sys.exit("--reload-every needs an index with at least two versions")
    paths = {v: _version_paths(index, v) for v in versions} if args.reload_every else {}
    if not args.reload_every:
        paths = {live: _version_paths(index, live)}
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLIPSEARCH_ADMIN_API_KEY": ADMIN_KEY,
           "CLIPSEARCH_MAX_QUEUE": str(args.max_queue)}  # fmt: skip
    cmd = [sys.executable, "-m", "app.cli", "serve", "--index", str(index), "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"server did not start: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(base + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)

        tally = Tally()
        rss_ready = _rss(proc.pid)
        rss: list[tuple[float, int]] = []
        img = _sample_jpeg_b64()

        async def main() -> int:
            end = time.monotonic() + args.duration
            rngs = [random.Random(i) for i in range(args.concurrency)]
            tasks = [_client(base, end, tally, r, img, paths) for r in rngs]
            tasks.append(_sample_rss(proc.pid, end, rss))
            reloads = 0
            if args.reload_every:
                tasks.append(_reloader(base, index, versions, args.reload_every, end, tally))
            results = await asyncio.gather(*tasks)
            if args.reload_every:
                reloads = results[-1]
            return reloads

        t0 = time.monotonic()
        reloads = asyncio.run(main())
        elapsed = time.monotonic() - t0
    finally:
        _set_current(index, live)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()

    first = [b for s, b in rss if s < 10]
    last = [b for s, b in rss if s >= rss[-1][0] - 10]
    rss_first, rss_last = sum(first) / len(first), sum(last) / len(last)
    lat = sorted(tally.latencies)
    server_errors = sum(n for s, n in tally.status.items() if s >= 500)
    overloaded = tally.codes.get("overloaded", 0)
    return {
        "concurrency": args.concurrency,
        "duration_s": round(elapsed, 1),
        "reload_every_s": args.reload_every,
        "reloads": reloads,
        "requests": sum(tally.status.values()),
        "rps": round(sum(tally.status.values()) / elapsed, 1),
        "status": {str(k): v for k, v in sorted(tally.status.items())},
        "error_codes": dict(tally.codes),
        "5xx_not_overloaded": server_errors - overloaded,
        "503_overloaded": overloaded,
        "503_without_retry_after": tally.overload_without_retry_after,
        "timeouts": tally.timeouts,
        "transport_errors": tally.transport_errors,
        "p50_ms": round(1000 * lat[len(lat) // 2], 1) if lat else None,
        "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 1) if lat else None,
        "versions_answered": dict(tally.versions),
        "inconsistent": tally.inconsistent[:10],
        "rss_at_ready_mib": round(rss_ready / 2**20, 1),
        "rss_first10s_mib": round(rss_first / 2**20, 1),
        "rss_last10s_mib": round(rss_last / 2**20, 1),
        "rss_growth_pct": round(100 * (rss_last - rss_first) / rss_first, 2),
        # max RSS per 10 s window: tells a leak (keeps rising) from warm-up (levels off)
        "rss_by_10s_mib": [
            round(max(b for s, b in rss if w <= s < w + 10) / 2**20)
            for w in range(0, int(rss[-1][0]), 10)
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--index", required=True, help="index directory (served read-only)")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--reload-every", type=float, default=0.0, help="seconds between reloads")
    p.add_argument("--max-queue", type=int, default=16, help="server's encoder queue (503 beyond)")
    args = p.parse_args()
    r = run(args)
    ok = (
        r["5xx_not_overloaded"] == 0
        and r["503_without_retry_after"] == 0
        and r["timeouts"] == 0
        and r["transport_errors"] == 0
        and not r["inconsistent"]
        and r["rss_growth_pct"] <= 10
    )
    r["ok"] = ok
    name = "load+reload" if args.reload_every else "load"
    rows = [(k, json.dumps(v)) for k, v in r.items() if k != "inconsistent"]
    report(name, r, rows)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
