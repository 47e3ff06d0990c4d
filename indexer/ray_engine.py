"""The Ray engine of `clipsearch index build|update --engine ray`: decode → encode as Ray Data map
stages over a Ray cluster, writing the same resumable embedding shards as the local engine; the
usual plan → FAISS build → publish step then runs here, on the driver, and finds every vector
already in the shards (so a distributed build equals a local one: same ids, same vectors up to
float rounding).

Decoding runs as stateless Ray tasks (one CPU each); encoding runs in a pool of actors that load
the model once (one GPU each when the cluster has GPUs, CPU actors otherwise). Every node must see
the images and the model under the same paths (a shared filesystem, or the same files everywhere),
and the driver must be able to write the index directory.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from model import Encoder

from ._fsutil import exclusive_lock
from .decode import ImageFiles
from .layout import WORK
from .options import BuildOptions
from .pipeline import (
    _previous,
    _reusable,
    decode_min_size,
    hash_scanned,
    require_encoder,
    run_build,
)
from .report import BuildReport
from .scan import scan_source
from .shards import ShardStore, ShardWriter

log = logging.getLogger(__name__)

# Other tools' environment the workers need to find the same model files as the driver (a
# private local instance inherits the driver's whole environment anyway).
FORWARDED_ENV = (
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "TOKENIZERS_PARALLELISM",
)


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None  # "auto", "ray://host:10001", "host:6379"; None: a local instance
    encoders: int | None = None  # encoder actors (default: one per GPU, or CPUs // 2)
    cpus_per_encoder: float = 1.0  # CPU actors only: torch threads per actor
    decode_batch: int = 16  # images per decode task


def ray_build_index(
    source: str | Path,
    index_dir: str | Path,
    encoder: Encoder,
    options: BuildOptions | None = None,
    *,
    mode: str = "build",
    ray: RayOptions | None = None,
    **fields: Any,
) -> BuildReport:
    """Encode on a Ray cluster, then plan, build FAISS and publish like `build_index` (mode
    "build") or `update_index` (mode "update": only new or changed contents are encoded).
    `options.workers` is unused: Ray schedules the decoding."""
    if mode not in ("build", "update"):
        raise ValueError(f"mode must be 'build' or 'update', not {mode!r}")
    opts = BuildOptions.of(options, **fields)
    enc = require_encoder(encoder)
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with exclusive_lock(index_dir / WORK / "lock"):
        todo = _todo(source, index_dir, enc, mode, opts.progress)
        encoded = 0
        if todo:
            store = ShardStore(index_dir / WORK, enc.fingerprint)
            store.clear_temp()
            encoded = _encode_on_ray(enc, todo, store, ray or RayOptions(), opts)
    encode_seconds = time.perf_counter() - t0
    report = run_build(mode, source, index_dir, enc, opts)
    # The local step found every vector in the shards: report the distributed encode instead.
    report.encoded, report.resumed = encoded, max(0, report.resumed - encoded)
    report.encode_seconds = encode_seconds
    report.seconds = time.perf_counter() - t0
    report.images_per_s = encoded / encode_seconds if encoded else 0.0
    return report


def _todo(
    source: str | Path, index_dir: Path, enc: Encoder, mode: str, progress: bool
) -> list[tuple[str, str]]:
    """(sha256, absolute path) of every content neither in the shards nor reusable."""
    scan = scan_source(source, exclude=[index_dir])
    prev = _previous(index_dir, enc) if mode == "update" else None
    entries, _ = hash_scanned(scan.entries, prev, progress)
    reusable = _reusable(prev)
    if prev:
        prev.version.close()
    done = ShardStore(index_dir / WORK, enc.fingerprint).load()
    first: dict[str, str] = {}
    for e in entries:
        first.setdefault(e.sha256, str(e.abs))
    return [(s, p) for s, p in first.items() if s not in done and s not in reusable]


# -- the Ray Data stages ------------------------------------------------------------------------


def decode_batch(
    batch: dict[str, np.ndarray], preprocess: Any, shape: tuple, min_size: int | None
) -> dict:
    """Paths → preprocessed pixels (zeros for a failed file, whose error code is kept). Decoded
    exactly as the local engine does (same reduced-scale JPEG decoding), so vectors agree."""
    files = ImageFiles([Path(p) for p in batch["path"]], preprocess, min_size=min_size)
    n = len(files)
    pixels = np.zeros((n, *shape), dtype=np.float32)
    wh = np.zeros((n, 2), dtype=np.int32)
    code, msg = [""] * n, [""] * n
    for i in range(n):
        _, tensor, size, err = files[i]
        if tensor is None:
            code[i], msg[i] = err
        else:
            pixels[i] = tensor.numpy()
            wh[i] = size
    return {
        "sha": batch["sha"],
        "pixels": pixels,
        "wh": wh,
        "code": np.array(code, dtype=object),
        "msg": np.array(msg, dtype=object),
    }


class EncodeActor:
    """Loads the model once per actor and refuses to run if it is not the driver's model (a node
    with other model files would silently mix embedding spaces)."""

    def __init__(
        self, spec: str, fingerprint: str, device: str, threads: int, backend: str = "auto"
    ) -> None:
        import torch

        from model import load_encoder

        torch.set_num_threads(max(1, threads))
        # on its own node: the driver's encoder can't travel
        self.enc = load_encoder(spec, device=device, backend=backend)
        if self.enc.fingerprint != fingerprint:
            raise RuntimeError(
                f"model {spec!r} on this node has fingerprint {self.enc.fingerprint[:12]}…, the "
                f"driver's is {fingerprint[:12]}…: every node needs the same model files"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        ok = np.array([not c for c in batch["code"]], dtype=bool)
        vec = np.zeros((len(ok), self.enc.dim), dtype=np.float32)
        if ok.any():
            vec[ok] = self.enc.encode_pixels(
                torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok]))
            )
        return {
            "sha": batch["sha"],
            "vec": vec,
            "wh": batch["wh"],
            "code": batch["code"],
            "msg": batch["msg"],
        }


def _encode_on_ray(
    enc: Encoder,
    todo: list[tuple[str, str]],
    store: ShardStore,
    opts: RayOptions,
    build: BuildOptions,
) -> int:
    """→ the number of images encoded (the rest of `todo` failed to decode)."""
    import ray

    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            # "local" starts a private instance; None would join whatever cluster this machine
            # last ran (ray's current-cluster file), which is never what a build without
            # --ray-address means.
            address=opts.address or "local",
            runtime_env={"env_vars": env},
            logging_level=logging.WARNING,
            log_to_driver=False,
            include_dashboard=False if opts.address is None else None,
        )
    try:
        ds = _dataset(enc, todo, opts, build.batch_size)
        out = ShardWriter(store, enc.dim, build.shard_size)
        return _collect(ds, len(todo), out, build.progress)
    finally:
        if started_here:
            ray.shutdown()


def _dataset(enc: Encoder, todo: list[tuple[str, str]], opts: RayOptions, batch_size: int) -> Any:
    """The Ray Data pipeline: (sha, path) rows → decode tasks → encoder actors."""
    import ray
    import ray.data
    from PIL import Image

    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    n_actors = opts.encoders or (gpus if gpus else max(1, cpus // 2))
    shape = tuple(enc.preprocess(Image.new("RGB", (32, 32))).shape)
    log.info(
        "ray: %d nodes, %d CPUs, %d GPUs: %d %s encoder actors for %d images",
        len(ray.nodes()),
        cpus,
        gpus,
        n_actors,
        "GPU" if gpus else "CPU",
        len(todo),
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items(
        [{"sha": s, "path": p} for s, p in todo],
        override_num_blocks=max(1, min(len(todo) // opts.decode_batch, 4 * cpus)),
    )
    ds = ds.map_batches(
        decode_batch,
        fn_kwargs={"preprocess": enc.preprocess, "shape": shape, "min_size": decode_min_size(enc)},
        batch_size=opts.decode_batch,
        num_cpus=1,
    )
    return ds.map_batches(
        EncodeActor,
        fn_constructor_kwargs={
            "spec": enc.spec,
            "fingerprint": enc.fingerprint,
            "device": "cuda" if gpus else "cpu",
            "threads": int(opts.cpus_per_encoder),
            # the backend the driver was asked for (auto, torch, onnx: the same vectors); a GPU
            # worker runs auto, i.e. PyTorch on CUDA
            "backend": "auto" if gpus else enc.requested_backend or enc.backend,
        },
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        num_gpus=1 if gpus else 0,
        num_cpus=0 if gpus else opts.cpus_per_encoder,
    )


def _collect(ds: Any, total: int, out: ShardWriter, progress: bool) -> int:
    """Stream the encoded rows back into shards; → the number encoded."""
    encoded = 0
    with tqdm(
        total=total, desc="encoding (ray)", unit="img", disable=not progress, file=sys.stderr
    ) as bar:
        for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
            ok = np.array([not c for c in b["code"]], dtype=bool)
            fails = zip(b["sha"][~ok], b["code"][~ok], b["msg"][~ok], strict=True)
            out.add(
                [str(s) for s in b["sha"][ok]],
                b["vec"][ok],
                [(int(w), int(h)) for w, h in b["wh"][ok]],
                [(str(s), str(c), str(m)) for s, c, m in fails],
            )
            encoded += int(ok.sum())
            bar.update(len(ok))
        out.flush()
    return encoded
