"""The GPU check: one run on a lent GPU (an H100/H200) measures what a CPU machine cannot.

    python -m benchmarks.gpu_check [--out DIR] [--images 30000] [--budget-s 480]
                                   [--no-docs] [--dry-run [--write-docs]]
    python -m benchmarks.gpu_check --docs-from DIR/gpu_check.json   # table from a saved run

Stages, each with its own time budget, the whole guarded to stay within `--budget-s` (8 min by
default; a stage that would not fit is skipped with a note, one that overruns is cut off):

  gpu_tests  `pytest -m gpu` over every test file holding gpu-marked tests
  indexer    ViT-B/32 (transformers' CLIPConfig defaults: the real architecture, random
             weights, saved as an `hf:` directory) indexing JPEG files on disk that this script
             writes (256–500 px, smooth shapes + noise, every file distinct), with the real
             `indexer.build_index`: once decoding on the GPU (BuildOptions.device_decode: nvJPEG),
             once with CPU decode workers; the faster is the indexer's rate, and its ratio to the
             model alone (encode_pixels on tensors already decoded and on the device)
  train      the real training loop (`model.train.train`) on the same files with captions, AMP
             bf16, from the same ViT-B/32; samples/s from its metrics.csv, first log row
             (warm-up) left out
  server     the real `clipsearch serve` (subprocess, micro-batching on) on the indexer's index:
             text and image (`image_b64`) queries/s at concurrency 32, every query distinct

It writes DIR/gpu_check.json (default benchmarks/results/) and, unless --no-docs, the "GPU"
table of docs/benchmarks.md (between the gpu markers). `--dry-run` runs the same code paths on
the CPU at tiny sizes (a tiny CLIP, a few images, 2 training steps, a few queries) in well under a
minute and writes no docs unless --write-docs: tests/test_gpu_check.py runs it, so this script
never rots while no GPU is at hand. scripts/gpu_check.sh runs it on a bare GPU machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import csv
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
DOC_BEGIN, DOC_END = "<!-- gpu:begin -->", "<!-- gpu:end -->"
RATE_GOAL = 10_000.0  # ViT-B/32 images/s end to end from JPEG on one H100/H200 (issue 18)
RATIO_GOAL = 0.8  # end to end ÷ model alone


@dataclass
class Sizes:
    """How much each stage does: the GPU run's sizes, or the dry run's tiny ones."""

    images: int = 30_000
    batch_size: int = 256  # indexer batch and encoder forward
    model_images: int = 2048  # pre-decoded tensors for the model-alone rate
    model_seconds: float = 5.0
    train_steps: int = 30
    train_batch: int = 256
    train_log_every: int = 5
    queries: int = 2000
    concurrency: int = 32
    budgets: dict[str, float] = field(
        default_factory=lambda: {
            "gpu_tests": 120,
            "indexer": 170,
            "train": 100,
            "server": 80,
        }
    )


DRY = Sizes(
    images=24,
    batch_size=8,
    model_images=8,
    model_seconds=0.2,
    train_steps=2,
    train_batch=4,
    train_log_every=1,
    queries=12,
    concurrency=4,
    # ~10 s each on an idle 2-core machine; the slack is for a loaded one (seen: 5× slower)
    budgets={"gpu_tests": 90, "indexer": 120, "train": 90, "server": 150},
)


class StageTimeout(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Cut the block off after `seconds` (SIGALRM: takes effect between C calls)."""

    def fire(*_: object) -> None:
        raise StageTimeout(f"over its {seconds:.0f} s budget")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, max(1.0, seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- inputs: the model and the JPEG corpus --------------------------------------------------
def write_vit_b32(out: Path, tiny: bool) -> Path:
    """A random-weight `hf:` CLIP directory: transformers' CLIPConfig defaults are ViT-B/32
    (224 px, patch 32, width 768, 12 layers; text width 512), or a tiny one for the dry run."""
    from tests.utils.tiny_models import make_tiny_hf_clip, write_clip_tokenizer

    if tiny:
        return make_tiny_hf_clip(out, image_size=64)
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    CLIPModel(CLIPConfig()).eval().save_pretrained(str(out))
    CLIPImageProcessor().save_pretrained(str(out))  # 224 px, bicubic, OpenAI mean/std
    write_clip_tokenizer(out)
    return out


def _write_jpeg_range(args: tuple[str, int, int, int]) -> None:
    """Images start…stop-1 into folder `out` (one process of the pool)."""
    from PIL import Image, ImageDraw

    out, start, stop, seed = args
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        w, h = (int(x) for x in rng.integers(256, 501, size=2))
        base = rng.integers(0, 256, size=(int(rng.integers(4, 17)),) * 2 + (3,), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 6))):
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            box = (x0, y0, x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2)))
            color = tuple(int(c) for c in rng.integers(0, 256, size=3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=color)
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, size=(h, w, 3))
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(
            Path(out) / f"img{i:06d}.jpg", "JPEG", quality=int(rng.integers(80, 93))
        )


def write_corpus(out: Path, n: int, procs: int, seed: int = 0) -> list[Path]:
    """n distinct photo-like JPEGs (smooth colour fields, shapes, grain), in `procs` processes."""
    from concurrent.futures import ProcessPoolExecutor

    out.mkdir(parents=True, exist_ok=True)
    step = -(-n // max(1, procs))
    jobs = [(str(out), s, min(n, s + step), seed) for s in range(0, n, step)]
    if procs <= 1:
        for job in jobs:
            _write_jpeg_range(job)
    else:
        with ProcessPoolExecutor(procs) as pool:
            list(pool.map(_write_jpeg_range, jobs))
    return sorted(out.glob("*.jpg"))


@dataclass
class Context:
    args: argparse.Namespace
    sizes: Sizes
    device: str
    tmp: Path
    cores: int
    model_dir: Path | None = None
    corpus: list[Path] = field(default_factory=list)
    encoder: Any = None
    index_dir: Path | None = None

    def prepare(self) -> None:
        """The model directory, the corpus and the loaded encoder (shared by the stages)."""
        if self.encoder is not None:
            return
        from model import load_encoder

        self.model_dir = write_vit_b32(self.tmp / "vit-b-32", tiny=self.args.dry_run)
        procs = 1 if self.args.dry_run else max(1, self.cores - 1)
        self.corpus = write_corpus(self.tmp / "corpus", self.sizes.images, procs)
        self.encoder = load_encoder(
            f"hf:{self.model_dir}",
            device=self.device,
            image_batch_size=self.sizes.batch_size,
            backend="torch",  # on CUDA what `auto` picks; on the dry run's CPU, no ONNX export
        )


# -- stages ---------------------------------------------------------------------------------
def stage_gpu_tests(ctx: Context) -> dict[str, Any]:
    """`pytest -m gpu` in a subprocess; → counts from its summary line. Only the files that
    hold gpu-marked tests are collected: a bare GPU machine lacks some test-only packages
    (Playwright, schemathesis) that other test files import."""
    files = sorted(
        str(p.relative_to(REPO))
        for p in (REPO / "tests").rglob("test_*.py")
        if "mark.gpu" in p.read_text(errors="replace")
    )
    if not files:
        return {"status": "failed", "note": "no gpu-marked tests found under tests/"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *files]
    budget = ctx.sizes.budgets["gpu_tests"]
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=budget)
    except subprocess.TimeoutExpired:
        raise StageTimeout(f"pytest -m gpu ran over its {budget:.0f} s budget") from None
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    counts = {k: 0 for k in ("passed", "failed", "skipped", "errors", "deselected")}
    for num, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", tail):
        counts["errors" if word.startswith("error") else word] = int(num)
    out: dict[str, Any] = {**counts, "summary": tail, "exit_code": r.returncode}
    if r.returncode not in (0, 5) or counts["failed"] or counts["errors"]:
        out["status"] = "failed"
        out["output_tail"] = r.stdout[-3000:]
    return out


def _predecoded(ctx: Context):
    """The first `model_images` files decoded by the indexer's own CPU path, on the device."""
    import torch

    from indexer.decode import image_loader
    from indexer.pipeline import decode_min_size

    enc, n = ctx.encoder, min(ctx.sizes.model_images, len(ctx.corpus))
    workers = 0 if ctx.args.dry_run else min(8, ctx.cores)
    loader = image_loader(
        ctx.corpus[:n], enc.preprocess, ctx.sizes.batch_size, workers,
        min_size=decode_min_size(enc),
    )  # fmt: skip
    return torch.cat([b.pixels for b in loader]).to(enc.device)


def model_alone_rate(ctx: Context) -> float:
    """images/s of encode_pixels on tensors already on the device (the model alone)."""
    enc, bs = ctx.encoder, ctx.sizes.batch_size
    pixels = _predecoded(ctx)
    enc.encode_pixels(pixels[:bs])  # warm-up (kernels, autotuning)
    done, t0 = 0, time.perf_counter()
    while done == 0 or time.perf_counter() - t0 < ctx.sizes.model_seconds:
        for i in range(0, len(pixels), bs):
            enc.encode_pixels(pixels[i : i + bs])  # → numpy: waits for the device
        done += len(pixels)
    return done / (time.perf_counter() - t0)


def timed_build(ctx: Context, name: str, device_decode: bool) -> dict[str, Any]:
    """One real `build_index` of the corpus folder; → its wall-clock rate and report figures."""
    from indexer import build_index
    from indexer.pipeline import default_workers

    workers = 0 if ctx.args.dry_run else default_workers(ctx.encoder)
    index_dir = ctx.tmp / f"index-{name}"
    t0 = time.perf_counter()
    rep = build_index(
        ctx.tmp / "corpus",
        index_dir,
        ctx.encoder,
        batch_size=ctx.sizes.batch_size,
        workers=workers,
        device_decode=device_decode,
        progress=False,
    )
    wall = time.perf_counter() - t0
    if rep.encoded != len(ctx.corpus):
        raise RuntimeError(f"{name}: {rep.encoded} of {len(ctx.corpus)} images encoded")
    ctx.index_dir = ctx.index_dir or index_dir
    return {
        "images_per_s": round(rep.items / wall, 1),
        "encode_stage_images_per_s": round(rep.images_per_s, 1),
        "seconds": round(wall, 2),
        "workers": workers,
    }


def stage_indexer(ctx: Context) -> dict[str, Any]:
    ctx.prepare()
    _ = ctx.encoder.fingerprint  # once per process, not per build (as in benchmarks/indexer.py)
    model = model_alone_rate(ctx)
    builds = {
        "device_decode": timed_build(ctx, "device-decode", True),
        "cpu_workers": timed_build(ctx, "cpu-workers", False),
    }
    best = max(builds, key=lambda k: builds[k]["images_per_s"])
    rate = builds[best]["images_per_s"]
    return {
        "model": "ViT-B/32 (hf CLIPModel, random weights)" if not ctx.args.dry_run else "tiny",
        "images": len(ctx.corpus),
        "batch_size": ctx.sizes.batch_size,
        "model_alone_images_per_s": round(model, 1),
        "builds": builds,
        "best": best,
        "images_per_s": rate,
        "ratio_to_model": round(rate / model, 3),
    }


def stage_train(ctx: Context) -> dict[str, Any]:
    """The real training loop, AMP bf16 on CUDA, on the corpus with generated captions."""
    from model.train import TrainConfig, train

    ctx.prepare()
    s = ctx.sizes
    rows = s.train_batch * (s.train_steps + 1)
    manifest = ctx.tmp / "train.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for i in range(rows):
            w.writerow([str(ctx.corpus[i % len(ctx.corpus)]), f"shapes on a field, number {i}"])
    cfg = TrainConfig(
        train=str(manifest),
        out=str(ctx.tmp / "train-out"),
        init=f"hf:{ctx.model_dir}",
        steps=s.train_steps,
        batch_size=s.train_batch,
        precision="bf16",
        workers=0 if ctx.args.dry_run else max(2, ctx.cores - 2),
        warmup_steps=0,
        save_every=0,
        log_every=s.train_log_every,
        tensorboard=False,
        progress=False,
    )
    t0 = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t0
    with (ctx.tmp / "train-out" / "metrics.csv").open() as f:
        rates = [float(r["samples_per_s"]) for r in csv.DictReader(f) if r.get("samples_per_s")]
    steady = rates[1:] or rates  # the first row holds the warm-up (kernels, workers starting)
    sps = statistics.median(steady)
    return {
        "precision": "bf16 autocast" if ctx.device.startswith("cuda") else "fp32 (CPU)",
        "batch_size": s.train_batch,
        "steps": result.steps,
        "samples_per_s": round(sps, 1),
        "steps_per_s": round(sps / s.train_batch, 3),
        "final_loss": round(result.final_loss, 4),
        "wall_seconds": round(wall, 1),
    }


def _rate(url: str, bodies: list[dict], concurrency: int) -> dict[str, Any]:
    from benchmarks.service import load_bodies

    asyncio.run(load_bodies(url, bodies[: concurrency * 2], concurrency))  # warm-up
    lat, wall, errors = asyncio.run(load_bodies(url, bodies, concurrency))
    return {
        "queries_per_s": round(len(bodies) / wall, 1),
        "p50_ms": round(1000 * statistics.median(lat), 2),
        "errors": errors,
    }


def stage_server(ctx: Context) -> dict[str, Any]:
    """`clipsearch serve` on the indexer stage's index; text and image queries/s."""
    from benchmarks.service import Server, query_texts

    if ctx.index_dir is None:
        raise RuntimeError("no index: the indexer stage did not run")
    s = ctx.sizes
    texts = [{"text": q, "k": 10} for q in query_texts(s.queries)]
    images = [
        {"image_b64": base64.b64encode(p.read_bytes()).decode(), "k": 10}
        for p in ctx.corpus[: s.queries // 2]
    ]
    if ctx.args.dry_run:  # `auto` would export the tiny model to ONNX first (CUDA: torch)
        os.environ["CLIPSEARCH_BACKEND"] = "torch"
    server = Server(ctx.index_dir, batching=True, torch_threads=max(1, min(4, ctx.cores // 2)))
    try:
        server.wait_ready(timeout=s.budgets["server"] * 0.75)
        text = _rate(server.url, texts, s.concurrency)
        image = _rate(server.url, images, s.concurrency)
    finally:
        server.stop()
    if text["errors"] or image["errors"]:
        raise RuntimeError(f"server errors: {text['errors']} text, {image['errors']} image")
    return {"concurrency": s.concurrency, "micro_batching": True, "text": text, "image": image}


STAGES: dict[str, Callable[[Context], dict[str, Any]]] = {
    "gpu_tests": stage_gpu_tests,
    "indexer": stage_indexer,
    "train": stage_train,
    "server": stage_server,
}


def run_stages(ctx: Context, budget_s: float) -> dict[str, dict[str, Any]]:
    """Every stage within its own budget and the whole within `budget_s`."""
    t_start = time.perf_counter()
    out: dict[str, dict[str, Any]] = {}
    for name, fn in STAGES.items():
        left = budget_s - (time.perf_counter() - t_start)
        want = ctx.sizes.budgets[name]
        if left < min(want, 30.0):
            out[name] = {"status": "skipped", "note": f"out of time ({left:.0f} s left)"}
            continue
        t0 = time.perf_counter()
        try:
            with time_limit(min(want, left)):
                res = fn(ctx)
            res.setdefault("status", "ok")
        except StageTimeout as e:
            res = {"status": "timeout", "note": str(e)}
        except Exception as e:  # a broken stage must not hide the others' figures
            res = {"status": "failed", "note": f"{type(e).__name__}: {e}"}
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out[name] = res
        print(f"[gpu_check] {name}: {res['status']} in {res['seconds']} s", file=sys.stderr)
    return out


# -- results: targets, JSON, docs ---------------------------------------------------------
def targets(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    from benchmarks._common import target

    idx = stages.get("indexer", {})
    ok = idx.get("status") == "ok"
    return [
        target("gpu.indexer_rate", "indexer ViT-B/32 end to end from JPEG, images/s",
               idx.get("images_per_s") if ok else None, RATE_GOAL),
        target("gpu.indexer_vs_model", "indexer end to end ÷ model alone",
               idx.get("ratio_to_model") if ok else None, RATIO_GOAL),
    ]  # fmt: skip


def _fmt(x: Any, unit: str = "") -> str:
    return "—" if x is None else f"{x:,}{unit}"


def docs_block(res: dict[str, Any]) -> str:
    st = res["stages"]
    idx, tr, sv, gt = (st.get(k, {}) for k in ("indexer", "train", "server", "gpu_tests"))
    b = idx.get("builds", {})
    rows = [
        ("gpu-marked tests", gt.get("summary") or gt.get("status", "—")),
        ("model alone (encode_pixels, decoded tensors on the GPU)",
         _fmt(idx.get("model_alone_images_per_s"), " images/s")),
        ("indexer, GPU JPEG decode (nvJPEG)",
         _fmt(b.get("device_decode", {}).get("images_per_s"), " images/s")),
        ("indexer, CPU decode workers", _fmt(b.get("cpu_workers", {}).get("images_per_s"),
                                             " images/s")),
        (f"indexer end to end, faster path ({idx.get('best', '—')}) — goal ≥ {RATE_GOAL:,.0f}",
         _fmt(idx.get("images_per_s"), " images/s")),
        (f"end to end ÷ model alone — goal ≥ {RATIO_GOAL}", _fmt(idx.get("ratio_to_model"))),
        (f"training, {tr.get('precision', 'bf16')}, batch {tr.get('batch_size', '—')}",
         f"{_fmt(tr.get('samples_per_s'), ' samples/s')} ({_fmt(tr.get('steps_per_s'))} steps/s)"),
        (f"server text queries/s, c={sv.get('concurrency', '—')}, micro-batching",
         _fmt(sv.get("text", {}).get("queries_per_s"))),
        (f"server image queries/s, c={sv.get('concurrency', '—')}, micro-batching",
         _fmt(sv.get("image", {}).get("queries_per_s"))),
    ]  # fmt: skip
    notes = [f"{k}: {v['status']} ({v.get('note', '')})" for k, v in st.items()
             if v.get("status") != "ok"]  # fmt: skip
    lines = [
        f"Latest GPU check: {res['finished']}, {res['mode']}, {res['seconds']:.0f} s. "
        f"Device: {res['device_name']}; torch {res['torch']}.",
        "",
        "| measure | result |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in rows],
    ]
    if notes:
        lines += ["", "Not measured: " + "; ".join(notes) + "."]
    return "\n".join(lines)


def write_docs(res: dict[str, Any]) -> None:
    text = DOCS.read_text()
    begin, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if begin < 0 or end < begin:
        raise SystemExit(f"{DOCS} has no {DOC_BEGIN} … {DOC_END} block")
    new = text[: begin + len(DOC_BEGIN)] + "\n" + docs_block(res) + "\n" + text[end:]
    DOCS.write_text(new)


def device_info(dry_run: bool) -> tuple[str, str]:
    import torch

    if dry_run or not torch.cuda.is_available():
        return "cpu", "CPU (dry run)" if dry_run else "CPU (no CUDA device)"
    return "cuda", torch.cuda.get_device_name(0)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for JSON")
    ap.add_argument("--images", type=int, default=None, help="corpus size (default 30000)")
    ap.add_argument("--budget-s", type=float, default=480.0, help="whole run (default 8 min)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (< 60 s)")
    ap.add_argument("--write-docs", action="store_true", help="dry run: write the docs too")
    ap.add_argument("--no-docs", action="store_true", help="leave docs/benchmarks.md alone")
    ap.add_argument("--docs-from", default=None, help="write the docs table from this JSON")
    return ap.parse_args()


def main() -> None:
    args = parse_args()
    if args.docs_from:
        write_docs(json.loads(Path(args.docs_from).read_text()))
        return
    import torch

    sizes = DRY if args.dry_run else Sizes()
    if args.images:
        sizes.images = args.images
    device, name = device_info(args.dry_run)
    if device == "cpu" and not args.dry_run:
        print("[gpu_check] no CUDA device: the figures below are the CPU's", file=sys.stderr)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        ctx = Context(args, sizes, device, Path(tmp), len(os.sched_getaffinity(0)))
        stages = run_stages(ctx, args.budget_s)
    res = {
        "benchmark": "gpu_check",
        "mode": "dry run" if args.dry_run else "full",
        "device": device,
        "device_name": name,
        "torch": torch.__version__,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.perf_counter() - t0, 1),
        "budget_s": args.budget_s,
        "stages": stages,
    }
    res["targets"] = targets(stages)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(res, indent=1))
    if (args.write_docs or not args.dry_run) and not args.no_docs:
        write_docs(res)
    print(docs_block(res))
    print(json.dumps(res))


if __name__ == "__main__":
    main()
