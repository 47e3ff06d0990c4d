"""Service benchmark: text-search latency and throughput of a real `clipsearch serve` (uvicorn on
127.0.0.1) over an index of N synthetic vectors, as ratios against baselines from the same run.

    python -m benchmarks.service [--n 1000000] [--requests 300] [--concurrency 1,8,32]
                                 [--write-docs]

- in-process baseline: encode_texts([q]) + IndexVersion.search(q, 10), one query at a time,
  alternated in rounds with the server's concurrency-1 queries (same background load);
- server p50 at concurrency 1 ÷ that baseline's p50 (target ≤ 1.10);
- micro-batching on ÷ off at concurrency 32, in requests/s (target ≥ 2×, at no worse p99);
- `/classify` of one JPEG against 10 labels whose embeddings are cached ÷ the in-process decode +
  encode of that image alone (target ≤ 1.25: the request is dominated by its one image encode).

Every query text is distinct and the text cache is off, so each request runs the model. The index
is made once (cached under .bench_cache/): vectors clustered around the starter's embeddings of
ImageNet class prompts (so text queries have real neighbours), written with the indexer's own
file writers and FAISS builder, published like any other version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks._common import add_suite_args, report, target

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = ["a photo of a {}", "a {} at night", "a close-up of a {}", "two {}s on a table",
             "a drawing of a {}", "a {} in the snow", "a blurry picture of a {}"]  # fmt: skip


def class_names() -> list[str]:
    from model.starter import imagenet_class_synonyms

    return [syns[0] for syns in imagenet_class_synonyms() if syns]


def query_texts(n: int, offset: int = 0) -> list[str]:
    """n distinct caption-like queries (distinct so that no cache can answer them)."""
    names = class_names()
    out = []
    for i in range(offset, offset + n):
        t = TEMPLATES[i % len(TEMPLATES)].format(names[(i * 7919) % len(names)])
        out.append(f"{t} #{i // (len(TEMPLATES) * len(names))}" if i >= 7 * len(names) else t)
    return out


def make_index(index_dir: Path, n: int, enc, seed: int = 0) -> str:
    """Publish a version of n synthetic unit vectors (fp16) with items rows, like a build."""
    from indexer.faiss_build import build_faiss
    from indexer.manifest import Manifest, read_manifest
    from indexer.publish import live_version, new_version_id, publish, staging_dir
    from indexer.resolve import backend_of
    from indexer.store import VectorWriter, write_items

    live = live_version(index_dir) if index_dir.is_dir() else None
    if live is not None:
        old = read_manifest(index_dir)
        if old.count == n and old.fingerprint == enc.fingerprint:
            return live
    index_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    names = class_names()
    centers = enc.encode_texts([f"a photo of a {c}" for c in names])  # (C, D)
    rng = np.random.default_rng(seed)
    version = new_version_id()
    staging = staging_dir(index_dir, version)
    writer = VectorWriter(staging / "vectors.npy", n, enc.dim)
    chunk = 65536
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        c = rng.integers(0, len(centers), m)
        noise = rng.standard_normal((m, enc.dim)).astype(np.float32) / np.sqrt(enc.dim)
        v = centers[c] + 0.8 * noise  # cos to its centre ≈ 0.8
        writer.write(v / np.linalg.norm(v, axis=1, keepdims=True))
    writer.close()
    write_items(
        staging / "items.sqlite",
        (
            {"id": i, "path": f"synthetic/{i:07d}.jpg", "sha256": f"{i:064x}", "size": 0,
             "mtime_ns": 0, "width": 256, "height": 256, "caption": None, "extra": {}}
            for i in range(n)
        ),
    )  # fmt: skip
    ids = np.arange(n, dtype=np.int64)
    built = build_faiss(
        staging / "vectors.npy", ids, enc.dim,
        queries=lambda: enc.encode_texts(query_texts(500, offset=10**6)),
    )  # fmt: skip
    import faiss

    faiss.write_index(built.index, str(staging / "images.faiss"))
    manifest = Manifest(
        model=enc.spec,
        fingerprint=enc.fingerprint,
        dim=enc.dim,
        count=n,
        backend=backend_of(enc),
        root=str(index_dir / "no-files"),
        source="synthetic",
        **built.manifest_fields(),
    )
    publish(index_dir, staging, version, manifest)
    took = time.perf_counter() - t0
    print(f"made {n:,}-vector index {version} ({built.factory}, recall@10 "
          f"{built.recall_at_10:.3f}) in {took:.0f}s", file=sys.stderr)  # fmt: skip
    return version


def percentile(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def in_process_times(version, enc, queries: list[str]) -> list[float]:
    """Seconds per query of encode_texts([q]) + search(q, 10), one after another."""
    times = []
    for q in queries:
        t0 = time.perf_counter()
        version.search(enc.encode_texts([q]), 10)
        times.append(time.perf_counter() - t0)
    return times


def summary(latencies: list[float], wall: float | None = None, errors: int = 0) -> dict:
    out = {
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * percentile(latencies, 99),
    }
    if wall is not None:
        out |= {"req_per_s": len(latencies) / wall, "errors": errors}
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`clipsearch serve` in a subprocess on loopback, waited for until /readyz answers."""

    def __init__(self, index_dir: Path, batching: bool, torch_threads: int) -> None:
        self.port = free_port()
        env = {**os.environ, "CLIPSEARCH_TEXT_CACHE_SIZE": "0",
               "CLIPSEARCH_BATCHING": "true" if batching else "false",
               "CLIPSEARCH_TORCH_THREADS": str(torch_threads)}  # fmt: skip
        cmd = [sys.executable, "-m", "app.cli", "serve", "--index", str(index_dir),
               "--port", str(self.port), "--log-level", "warning"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 600) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError("server not ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Connection:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams: the load generator shares the
    server's 2 cores, and a full client library would add its own milliseconds to every
    measured request (httpx costs ~1 ms of CPU per request here)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: dict) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), payload

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def load(url: str, queries: list[str], concurrency: int) -> tuple[list[float], float, int]:
    """`concurrency` clients each sending one text search after another until all are answered."""
    return await load_bodies(url, [{"text": q, "k": 10} for q in queries], concurrency)


async def load_bodies(
    url: str, bodies: list[dict], concurrency: int
) -> tuple[list[float], float, int]:
    """`concurrency` keep-alive clients posting /search bodies until all are answered →
    (latencies, wall seconds, non-200 answers)."""
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    errors = 0
    it = iter(bodies)
    conns = [Connection(host, int(port)) for _ in range(concurrency)]

    async def worker(conn: Connection) -> None:
        nonlocal errors
        for body in it:
            t0 = time.perf_counter()
            status, _ = await conn.post_json("/search", body)
            latencies.append(time.perf_counter() - t0)
            errors += status != 200

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    wall = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return latencies, wall, errors


CLASSIFY_LABELS = ["a cat", "a dog", "a cup of coffee", "a rocket", "a car", "a bird",
                   "a mountain", "a person", "a building", "a flower"]  # fmt: skip


def sample_jpeg() -> bytes:
    """A 512×512 JPEG photo (scikit-image's cat), as a client would upload it."""
    import io

    import skimage.data
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).resize((512, 512)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def image_encode_times(enc, data: bytes, n: int) -> list[float]:
    """Seconds per decode + encode of one image in process: the floor of one /classify."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        enc.encode_images([enc.load_image(data)])
        times.append(time.perf_counter() - t0)
    return times


async def classify_load(url: str, data: bytes, n: int) -> list[float]:
    """n /classify requests one after another (labels cached after the warm-up ones)."""
    import base64

    host, port = url.removeprefix("http://").split(":")
    conn = Connection(host, int(port))
    body = {"image_b64": base64.b64encode(data).decode(), "labels": CLASSIFY_LABELS}
    for _ in range(3):  # warm-up: the first request embeds and caches the labels
        status, payload = await conn.post_json("/classify", body)
        if status != 200:
            raise RuntimeError(f"/classify answered {status}: {payload[:200]!r}")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await conn.post_json("/classify", body)
        times.append(time.perf_counter() - t0)
    await conn.close()
    return times


def run_server(
    index_dir: Path,
    batching: bool,
    levels: list[int],
    n_req: int,
    offset: int,
    threads: int,
    baseline: tuple | None = None,
    rounds: int = 6,
) -> dict[str, dict[str, float]]:
    """Load the server at each concurrency level. With `baseline` = (version, encoder), the
    c=1 level alternates rounds of in-process and server queries, so that both see the same
    background load on a shared machine; its in-process numbers land under "in_process"."""
    server = Server(index_dir, batching, threads)
    try:
        server.wait_ready()
        out = {}
        for i, c in enumerate(levels):
            base = offset + i * 10 * n_req
            asyncio.run(load(server.url, query_texts(max(2 * c, 20), base), c))  # warm-up
            queries = query_texts(n_req, base + 5 * n_req)
            if c == 1 and baseline is not None:
                version, enc = baseline
                in_process_times(version, enc, query_texts(10, base + 8 * n_req))  # warm-up
                local, remote, wall, errors = [], [], 0.0, 0
                step = -(-n_req // rounds)
                for r in range(0, n_req, step):
                    local += in_process_times(version, enc, query_texts(step, base + 9 * n_req + r))
                    lat, w, e = asyncio.run(load(server.url, queries[r : r + step], 1))
                    remote, wall, errors = remote + lat, wall + w, errors + e
                out["in_process"] = summary(local)
                out[str(c)] = summary(remote, wall, errors)
            else:
                out[str(c)] = summary(*asyncio.run(load(server.url, queries, c)))
        if baseline is not None:
            version, enc = baseline
            data = sample_jpeg()
            image_encode_times(enc, data, 3)  # warm-up
            local, remote = [], []
            for _ in range(rounds):  # alternate, as above, so both see the same background load
                local += image_encode_times(enc, data, 10)
                remote += asyncio.run(classify_load(server.url, data, 10))
            out["image_encode_in_process"] = summary(local)
            out["classify_cached_labels"] = summary(remote)
        return out
    finally:
        server.stop()


def write_docs(results: dict) -> None:
    path = REPO / "docs" / "benchmarks.md"
    on, off, base = results["batching_on"], results["batching_off"], results["in_process"]
    rows = "\n".join(
        f"| {c} | {on[c]['p50_ms']:.1f} | {on[c]['p99_ms']:.1f} | {on[c]['req_per_s']:.0f} | "
        + (f"{off[c]['p50_ms']:.1f} | {off[c]['p99_ms']:.1f} | {off[c]['req_per_s']:.0f} |"
           if c in off else "— | — | — |")
        for c in on
    )  # fmt: skip
    r = results["ratios"]
    cls = r["classify_over_image_encode_p50"]
    section = f"""## Service

```bash
.venv/bin/python -m benchmarks.service --write-docs   # makes/reuses a {results["n"]:,}-vector index
```

Text search (`POST /search {{"text": …, "k": 10}}`, every query distinct, text cache off) against a
real `clipsearch serve` (uvicorn with uvloop + httptools, 1 worker, torch on
{results["torch_threads"]} thread(s), the same in the baseline) on 127.0.0.1, load generated by a
minimal asyncio HTTP/1.1 keep-alive client in another process on the same 2 cores. Index:
{results["n"]:,} synthetic vectors (dim {results["dim"]}, `{results["factory"]}`), starter model.
In-process baseline: `encode_texts([q])` + `IndexVersion.search(q, 10)` in the benchmark process,
alternating in rounds with the server's c=1 queries: p50 {base["p50_ms"]:.1f} ms,
p99 {base["p99_ms"]:.1f} ms.

| concurrency | batching on p50 ms | p99 ms | req/s | batching off p50 ms | p99 ms | req/s |
| --- | --- | --- | --- | --- | --- | --- |
{rows}

| ratio | result | target |
| --- | --- | --- |
| server p50 (c=1) ÷ in-process encode+search p50 | {r["server_over_inprocess_p50"]:.2f} | ≤ 1.10 |
| req/s at c=32, batching on ÷ off | {r["batching_speedup_c32"]:.2f}× | ≥ 2× |
| p99 at c=32, batching on ÷ off | {r["batching_p99_ratio_c32"]:.2f} | ≤ 1.0 |
| `/classify` (10 cached labels) p50 ÷ in-process image decode + encode | {cls:.2f} | ≤ 1.25 |

Measured {results["date"]} with a 1-minute load average of {results["loadavg"]:.1f} on the 2
cores. Absolute numbers move by 2–3× with other load on the machine, so read the ratios, which
compare measurements made back to back. The HTTP path adds about 1–2 ms per request on top of
encode + search (uvicorn + FastAPI + JSON), which at ~12 ms of encode + search puts server ÷
in-process right at the 1.10 target: it is met on a quiet machine and missed on a busy one (a run
at load average ≈ 10 measured 1.32, and 1.16× for batching). The encoder
runs one thread (`CLIPSEARCH_TORCH_THREADS=1`): on 2 shared cores two torch threads stalled badly
under load, and the second core serves HTTP, FAISS and decoding.

Where the HTTP milliseconds go (`py-spy record --threads` of the server for 1 500 requests at
c = 1, 100k-vector index): 87 % of the samples are in the encode thread (the text tower's
`Linear` layers alone 55 %, FAISS and the id → path lookup ~3 %); the event-loop thread's 13 %
is mostly uvloop's own I/O loop, with the whole uvicorn → FastAPI → route stack at ~0.25 ms per
request; per-thread CPU time (`/proc/<pid>/task/*/stat`) puts the event-loop thread at
~1.0 ms of CPU per request. The rest of the gap is the two thread hand-offs (event loop → encode
thread → event loop), each a futex wake-up on a shared core. Getting further below 1.10 would
mean answering from the encode thread without the hand-back, i.e. a different server design.
The same per-thread accounting found an OpenBLAS worker thread spinning ~1 ms of CPU per request
after numpy's small per-query operations; `clipsearch serve` now starts with
`OPENBLAS_NUM_THREADS=1` (unless set), which removed it.
"""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Service\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else (
        text.rstrip("\n") + "\n\n" + section)  # fmt: skip
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic vectors in the index")
    ap.add_argument("--requests", type=int, default=300, help="timed requests per level")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--off-levels", default="1,32", help="levels to run with batching off")
    ap.add_argument(
        "--torch-threads", type=int, default=1,
        help="torch threads in the baseline and the server (1 leaves a core for HTTP + FAISS)",
    )  # fmt: skip
    ap.add_argument("--cache-dir", default=str(REPO / ".bench_cache"))
    ap.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    add_suite_args(ap)
    args = ap.parse_args()
    if args.quick:  # a 100k-vector index and fewer requests: the same ratios, noisier
        args.n, args.requests = min(args.n, 100_000), min(args.requests, 100)
    levels = sorted({1, *(int(x) for x in args.concurrency.split(","))})  # c=1 has the baseline
    off_levels = [int(x) for x in args.off_levels.split(",")]

    import torch

    from model import load_encoder

    torch.set_num_threads(args.torch_threads)
    enc = load_encoder("starter", device="cpu")
    index_dir = Path(args.cache_dir) / f"service-{args.n}"
    make_index(index_dir, args.n, enc)
    from indexer import open_index

    v = open_index(index_dir)
    factory, dim = v.factory, v.dim
    on = run_server(
        index_dir, True, levels, args.requests, 3 * 10**6, args.torch_threads, baseline=(v, enc)
    )
    v.close()
    del enc
    base = on.pop("in_process")
    img_base, classify = on.pop("image_encode_in_process"), on.pop("classify_cached_labels")
    off = run_server(index_dir, False, off_levels, args.requests, 4 * 10**6, args.torch_threads)
    c32 = str(max(levels))
    results = {
        "n": args.n,
        "dim": dim,
        "factory": factory,
        "requests_per_level": args.requests,
        "torch_threads": args.torch_threads,
        "in_process": base,
        "image_encode_in_process": img_base,
        "classify_cached_labels": classify,
        "batching_on": on,
        "batching_off": off,
        "ratios": {
            "server_over_inprocess_p50": on[str(min(levels))]["p50_ms"] / base["p50_ms"],
            "batching_speedup_c32": on[c32]["req_per_s"] / off[c32]["req_per_s"]
            if c32 in off
            else float("nan"),
            "batching_p99_ratio_c32": on[c32]["p99_ms"] / off[c32]["p99_ms"]
            if c32 in off
            else float("nan"),
            "classify_over_image_encode_p50": classify["p50_ms"] / img_base["p50_ms"],
        },  # fmt: skip
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "loadavg": os.getloadavg()[0],
    }
    rows = [("in-process p50 / p99 ms", f"{base['p50_ms']:.1f} / {base['p99_ms']:.1f}")]
    for name, res in (("on", on), ("off", off)):
        for c, m in res.items():
            p50, p99, rps, err = m["p50_ms"], m["p99_ms"], m["req_per_s"], m["errors"]
            line = f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, {rps:.0f} req/s, {err} errors"
            rows.append((f"batching {name}, c={c}", line))
    r = results["ratios"]
    rows.append(("classify p50 / one image encode p50",
                 f"{classify['p50_ms']:.1f} / {img_base['p50_ms']:.1f} ms"))  # fmt: skip
    targets = [
        target("service_p50_overhead", "server p50 (c=1) ÷ in-process encode + search p50",
               r["server_over_inprocess_p50"], 1.10, "<=", note=(
                   f"HTTP adds {on[str(min(levels))]['p50_ms'] - base['p50_ms']:.1f} ms to "
                   f"{base['p50_ms']:.1f} ms of encode + search; py-spy of the server at c=1: "
                   "87 % of samples in the encode thread (the model); the event-loop thread "
                   "uses ~1.0 ms of CPU per request (uvloop I/O, uvicorn + FastAPI ~0.25 ms) "
                   "plus two thread hand-offs"
               )),
        target("service_batching_speedup", f"req/s at c={c32}, batching on ÷ off",
               r["batching_speedup_c32"], 2.0, unit="×", note=(
                   f"{on[c32]['req_per_s']:.0f} vs {off[c32]['req_per_s']:.0f} req/s; this run's "
                   f"in-process p50 was {base['p50_ms']:.1f} ms (≈ 12 ms on an idle machine): "
                   "the gain is the per-call cost a batch shares, and it shrinks when the "
                   "machine is slowed by other load"
               )),
        target("service_batching_p99", f"p99 at c={c32}, batching on ÷ off",
               r["batching_p99_ratio_c32"], 1.0, "<="),
        target("service_classify_dominated", "/classify (cached labels) p50 ÷ one image encode p50",
               r["classify_over_image_encode_p50"], 1.25, "<=", note=(
                   f"{classify['p50_ms']:.1f} vs {img_base['p50_ms']:.1f} ms; beyond the one "
                   "image encode a request pays HTTP + base64, two thread hand-offs and the "
                   "cached label lookup"
               )),
    ]  # fmt: skip
    report("service", results, rows, targets, json_out=args.json_out)
    if args.write_docs:
        write_docs(results)


if __name__ == "__main__":
    main()
