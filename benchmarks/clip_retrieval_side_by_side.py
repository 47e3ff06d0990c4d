"""Side by side with clip-retrieval: the same `ClipClient` load against `clip-retrieval back` and
against `clipsearch serve`, on the same machine, with the same model and the same images.

    python -m benchmarks.clip_retrieval_side_by_side           # ViT-B/32 architecture, 100 images
    python -m benchmarks.clip_retrieval_side_by_side --quick   # the tiny test model, 60 images

1. clip-retrieval 2.45.0 from PyPI in its own venv (tests/utils/clip_retrieval_env.py);
2. the model: a CLIPModel with openai/clip-vit-base-patch32's architecture and random weights
   (the real per-query cost, nothing downloaded), or in --quick the tiny test model;
3. `clip-retrieval inference` over N generated photos, then `clip-retrieval index` (autofaiss)
   builds its index and `clipsearch index import` ours from the same embeddings (cached under
   .bench_cache/clip_retrieval/);
4. each server alone in turn: start, warm up, then Q text queries through ClipClient
   (num_images=20, deduplicate=False) with 1 and with 8 threads: p50/p95 latency and queries/s.
   Every query text is new to the server (none repeats across levels), so neither side answers
   from a cache.

Before timing, both servers must return the same ids for the same queries (ids are row numbers
on both sides). Both run with their defaults, as a user starts them: clip_back is Flask's
threaded server running PyTorch, clipsearch is uvicorn with its micro-batcher and its default
backend (ONNX Runtime on a CPU where the export matches PyTorch).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import REPO, add_suite_args, report, target

NOUNS = ["cat", "dog", "cup", "rocket", "car", "tree", "house", "boat", "bird", "horse",
         "camera", "guitar", "bicycle", "mountain", "beach", "city", "flower", "clock",
         "chair", "pizza", "train", "lamp", "shoe", "kite", "bridge", "apple", "violin",
         "tractor", "owl", "umbrella"]  # fmt: skip
TEMPLATES = ["a photo of a {}", "a {} at night", "a close-up of a {}", "a drawing of a {}",
             "a {} in the snow", "a blurry picture of a {}", "a red {}", "an old {}",
             "a {} on a table", "a small {}"]  # fmt: skip
NUM_IMAGES = 20

LOAD_SCRIPT = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from clip_retrieval.clip_client import ClipClient

job = json.load(sys.stdin)
client = ClipClient(url=job["url"] + "/knn-service", indice_name=job["index"],
                    num_images=job["num_images"], deduplicate=False)
if job.get("ids_of"):
    print(json.dumps([[r["id"] for r in client.query(text=t)] for t in job["ids_of"]]))
    sys.exit(0)
for t in job["warmup"]:
    client.query(text=t)
out = {}
for c in job["concurrency"]:
    lat = []
    def one(t):
        t0 = time.perf_counter()
        n = len(client.query(text=t))
        lat.append(time.perf_counter() - t0)
        return n
    t0 = time.perf_counter()
    with ThreadPoolExecutor(c) as ex:
        counts = list(ex.map(one, job["texts"][str(c)]))
    wall = time.perf_counter() - t0
    lat.sort()
    out[str(c)] = {"p50_ms": 1000 * lat[len(lat) // 2],
                   "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))],
                   "qps": len(lat) / wall, "requests": len(lat), "min_results": min(counts)}
print(json.dumps(out))
"""


def query_texts(n: int, offset: int = 0) -> list[str]:
    combos = [t.format(w) for t in TEMPLATES for w in NOUNS]
    if offset + n > len(combos):
        raise ValueError(f"at most {len(combos) - offset} distinct queries")
    return combos[offset : offset + n]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_vit_b32(out: Path) -> Path:
    """A CLIPModel with openai/clip-vit-base-patch32's architecture, random weights, CLIP's BPE."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from tests.utils.tiny_models import write_clip_tokenizer

    torch.manual_seed(0)
    cfg = CLIPConfig(  # the defaults are ViT-B/32's; the token ids are CLIP's BPE ones
        text_config=dict(eos_token_id=49407, bos_token_id=49406, pad_token_id=49407)
    )
    CLIPModel(cfg).eval().save_pretrained(str(out))
    CLIPImageProcessor(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    ).save_pretrained(str(out))
    write_clip_tokenizer(out)
    return out


def write_images(out: Path, n: int) -> None:
    """n distinct photos: crops, flips and sizes of the five sample photos."""
    import numpy as np
    from PIL import ImageOps

    from tests.utils.images import SAMPLE_PHOTOS, sample_photo

    out.mkdir(parents=True, exist_ok=True)
    photos = [sample_photo(name).convert("RGB") for name in SAMPLE_PHOTOS]
    rng = np.random.default_rng(0)
    for i in range(n):
        im = photos[i % len(photos)]
        w, h = im.size
        x0, y0 = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
        x1, y1 = int(rng.integers(2 * w // 3, w)), int(rng.integers(2 * h // 3, h))
        crop = im.crop((x0, y0, x1, y1))
        crop = ImageOps.mirror(crop) if i % 2 else crop
        side = int(rng.integers(160, 400))
        crop.resize((side, side * crop.height // crop.width)).save(out / f"img{i:04d}.jpg")


def run(cmd: list, env: dict | None = None, timeout: float = 900) -> str:
    p = subprocess.run(list(map(str, cmd)), env=env, capture_output=True, text=True,
                       timeout=timeout, cwd=REPO)  # fmt: skip
    if p.returncode != 0:
        raise SystemExit(
            f"{' '.join(map(str, cmd[:4]))} … failed:\n{(p.stdout + p.stderr)[-3000:]}"
        )
    return p.stdout


# long: one linear recipe, each step skipped when its output is cached
def prepare(work: Path, cr_env: Any, model_kind: str, n_images: int) -> dict[str, Path]:
    """Model, images, clip-retrieval's embeddings and index, our imported index (cached)."""
    model = work / "model"
    if not (model / "config.json").is_file():
        if model_kind == "vit-b-32":
            make_vit_b32(model)
        else:
            from tests.utils.tiny_models import make_tiny_hf_clip

            make_tiny_hf_clip(model)
    images, emb, cr_index = work / "images", work / "emb", work / "cr_index"
    if not (images / f"img{n_images - 1:04d}.jpg").is_file():
        write_images(images, n_images)
    t0 = time.perf_counter()
    if not (emb / "img_emb").is_dir() or not any((emb / "img_emb").iterdir()):
        cmd = cr_env.cli("inference", "--input_dataset", images, "--output_folder", emb,
                         "--clip_model", f"hf_clip:{model}", "--enable_text", "False",
                         "--batch_size", "32", "--num_prepro_workers", "0")  # fmt: skip
        run(cmd, cr_env.environ())
    if not (cr_index / "image.index").is_file():
        run(cr_env.cli("index", "--embeddings_folder", emb, "--index_folder", cr_index),
            cr_env.environ())  # fmt: skip
    ours = work / "clipsearch_index"
    if not (ours / "CURRENT").is_file():
        run([sys.executable, "-m", "app.cli", "index", "import", emb, "--from", "clip-retrieval",
             "--model", f"hf:{model}", "--index", ours],
            {**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    print(f"prepared in {time.perf_counter() - t0:.0f} s: {work}", file=sys.stderr, flush=True)
    (work / "indices.json").write_text(json.dumps({"bench": str(cr_index)}))
    return {"model": model, "cr_index": cr_index, "ours": ours, "indices": work / "indices.json"}


def start_server(which: str, paths: dict[str, Path], cr_env: Any, port: int, log: Path):
    """One server on `port`; → (process, URL) once it answers."""
    import httpx

    if which == "clip-retrieval":
        cmd = cr_env.cli("back", "--port", port, "--indices_paths", paths["indices"],
                         "--clip_model", f"hf_clip:{paths['model']}", "--enable_mclip_option",
                         "False", "--provide_aesthetic_embeddings", "False", "--use_jit",
                         "False")  # fmt: skip
        env, probe = cr_env.environ(), "/indices-list"
    else:
        cmd = [sys.executable, "-m", "app.cli", "serve", "--index", f"bench={paths['ours']}",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        env, probe = {**os.environ, "PYTHONPATH": str(REPO)}, "/readyz"
    with open(log, "w") as fh:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{which} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + probe, timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"{which} not ready in 600 s:\n{log.read_text()[-3000:]}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(which: str, paths: dict, cr_env: Any, texts: list[str], log_dir: Path) -> dict:
    """Start one server, check its ids, run the load at c=1 and c=8, stop it."""
    proc, url = start_server(which, paths, cr_env, free_port(), log_dir / f"{which}.log")
    try:
        job = {"url": url, "index": "bench", "num_images": NUM_IMAGES}
        ids = cr_env.run_json(
            LOAD_SCRIPT, {**job, "ids_of": query_texts(5, offset=len(texts) + 10)}
        )
        # distinct texts at each level: a repeated text would be answered from clipsearch's
        # text-embedding cache (clip_back has none)
        q = len(texts) // 2
        load = {**job, "warmup": query_texts(10, offset=len(texts)), "concurrency": [1, 8],
                "texts": {"1": texts[:q], "8": texts[q:]}}  # fmt: skip
        result = cr_env.run_json(LOAD_SCRIPT, load, timeout=1800)
    finally:
        stop_server(proc)
    return {"ids": ids, "levels": result}


def summarise(cr: dict, ours: dict, args: argparse.Namespace) -> tuple[dict, list, list]:
    same = sum(a == b for a, b in zip(cr["ids"], ours["ids"], strict=True))
    results = {"model": args.model, "images": args.images, "queries": args.queries,
               "num_images": NUM_IMAGES, "same_ids_queries": f"{same}/{len(cr['ids'])}",
               "clip_retrieval_back": cr["levels"], "clipsearch": ours["levels"]}  # fmt: skip
    rows = [("model, images, queries", f"{args.model}, {args.images}, {args.queries}"),
            ("same ids for the check queries", results["same_ids_queries"])]  # fmt: skip
    for c in ("1", "8"):
        a, b = cr["levels"][c], ours["levels"][c]
        rows.append((f"c={c} clip-retrieval back", _fmt(a)))
        rows.append((f"c={c} clipsearch", _fmt(b)))
    q8 = ours["levels"]["8"]["qps"] / cr["levels"]["8"]["qps"]
    p1 = ours["levels"]["1"]["p50_ms"] / cr["levels"]["1"]["p50_ms"]
    targets = [
        target("cr_qps_c8", "ClipClient q/s at c=8, clipsearch ÷ clip-retrieval back", round(q8, 3),
               1.0, unit="×", note="same model, index and images; each server alone"),
        target("cr_p50_c1", "ClipClient p50 at c=1, clipsearch ÷ clip-retrieval back",
               round(p1, 3), 1.0, op="<=", unit="×"),
    ]  # fmt: skip
    return results, rows, targets


def _fmt(r: dict) -> str:
    return f"p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  {r['qps']:.1f} q/s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", choices=["vit-b-32", "tiny"], default="vit-b-32")
    ap.add_argument("--images", type=int, default=100, help="images in the corpus")
    ap.add_argument("--queries", type=int, default=100, help="timed text queries per level")
    ap.add_argument("--cache-dir", default=str(REPO / ".bench_cache"))
    add_suite_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.model, args.images, args.queries = "tiny", min(args.images, 60), min(args.queries, 60)
    from tests.utils.clip_retrieval_env import ensure_env

    cache = Path(args.cache_dir)
    cr_env = ensure_env(cache / "clip_retrieval_env")
    work = cache / "clip_retrieval" / f"{args.model}-{args.images}"
    work.mkdir(parents=True, exist_ok=True)
    paths = prepare(work, cr_env, args.model, args.images)
    texts = query_texts(2 * args.queries)
    cr = measure("clip-retrieval", paths, cr_env, texts, work)
    ours = measure("clipsearch", paths, cr_env, texts, work)
    results, rows, targets = summarise(cr, ours, args)
    report("clip_retrieval_side_by_side", results, rows, targets, args.json_out)


if __name__ == "__main__":
    main()
