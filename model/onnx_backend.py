"""An Encoder whose forward passes run in ONNX Runtime on the CPU, and the `auto` backend's
choice between it and PyTorch.

Tokenising, preprocessing, batching, `fingerprint` and `logit_scale` are the PyTorch Encoder's own;
only the two tower forwards are replaced by the exported graphs (model/onnx_export.py). An fp32
export keeps the fingerprint, so it is checked against PyTorch once (the parity check, recorded
beside the graphs) before it is used under that fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .encoder import Encoder
from .errors import ClipsearchError
from .onnx_export import (
    EXPORT_VERSION,
    OnnxTowers,
    ensure_onnx,
    onnx_cache_dir,
    require_onnxruntime,
)

log = logging.getLogger(__name__)


def session(path: str | Path, threads: int | None = None) -> Any:
    """An ORT CPU session with every graph optimisation on, using `threads` intra-op threads
    (default: torch's own thread count, so both backends share the same CPU budget).

    Its threads sleep between runs instead of spinning: a spinning pool kept a core busy after
    every query, and on a shared CPU (the server's event loop, the indexer's decode workers,
    other processes) the server's p50 at c=1 was 2-4x worse and its req/s at c=16 below
    PyTorch's (docs/benchmarks.md, "Default backend")."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxEncoder(Encoder):
    """Same contract as Encoder; `backend` is 'onnx' (fp32) or 'onnx-int8'."""

    def __init__(
        self, base: Encoder, towers: OnnxTowers, backend: str, threads: int | None = None
    ) -> None:
        super().__init__(
            base.module,
            base.tokenizer,
            base.preprocess_config,
            base.text,
            spec=base.spec,
            device=torch.device("cpu"),
            fingerprint_meta=base._fingerprint_meta,
            image_batch_size=base.image_batch_size,
            text_batch_size=base.text_batch_size,
        )
        self.backend = backend
        self.towers = towers
        self._image = session(towers.image, threads)
        self._text = session(towers.text, threads)
        # a traced graph drops inputs it never reads (e.g. the mask of a SigLIP text tower)
        self._text_inputs = {i.name for i in self._text.get_inputs()}

    @cached_property
    def fingerprint(self) -> str:
        """fp32 graphs give the PyTorch vectors (cosine ≥ 0.999), so an index built with either
        serves the other; int8 weights move the vectors, so they are a different model."""
        base = super().fingerprint
        if self.backend == "onnx":
            return base
        return hashlib.sha256(f"{base}:{self.backend}".encode()).hexdigest()

    def __repr__(self) -> str:
        return f"OnnxEncoder(spec={self.spec!r}, backend={self.backend!r}, dim={self.dim})"

    def _encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        feed = {"pixels": pixels.detach().to("cpu", torch.float32).numpy()}
        return self._image.run(None, feed)[0]

    def _encode_tokens(self, tokens: dict[str, torch.Tensor]) -> np.ndarray:
        feed = {k: v.detach().cpu().long().numpy() for k, v in tokens.items()}
        return self._text.run(None, {k: v for k, v in feed.items() if k in self._text_inputs})[0]


def onnx_encoder(
    base: Encoder, int8: bool = False, threads: int | None = None, cache_dir: Path | None = None
) -> OnnxEncoder:
    """Export `base` once (cached) and wrap it in ORT sessions."""
    towers = ensure_onnx(base, int8=int8, cache_dir=cache_dir)
    return OnnxEncoder(base, towers, "onnx-int8" if int8 else "onnx", threads)


# --- the parity check and the `auto` choice ------------------------------------------------------
PARITY_MIN_COS = 0.999  # worst row cosine to PyTorch; fp32 graphs measure ≥ 0.99999
RECORD_FILE = "parity.json"  # beside the graphs: the check's outcome, so later loads skip it
# different lengths (and an empty one), so the padded path of the text graph is checked too
PROBE_TEXTS = ("", "a photo", "a photo of a cat sitting on a red chair next to a window at night")


class OnnxParityError(ClipsearchError):
    """The exported graphs do not give PyTorch's vectors (or the model does not export)."""


def parity(base: Encoder, ort: Encoder) -> tuple[float, float]:
    """Worst row cosine between `base` (PyTorch) and `ort` on probe pixels and texts:
    (image, text)."""
    side = base.preprocess_config.size
    pixels = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    img = _min_cos(base.encode_pixels(pixels), ort.encode_pixels(pixels))
    txt = _min_cos(base.encode_texts(list(PROBE_TEXTS)), ort.encode_texts(list(PROBE_TEXTS)))
    return img, txt


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.nan_to_num(cos, nan=-1.0).min())


def checked_onnx_encoder(
    base: Encoder, threads: int | None = None, cache_dir: Path | None = None
) -> OnnxEncoder:
    """The fp32 ONNX encoder of `base` (PyTorch), exported once and checked for parity once;
    OnnxParityError when the model does not export or its graphs give other vectors (the
    outcome is recorded in the cache, so a model that cannot export is not retried each load)."""
    require_onnxruntime()
    target = Path(cache_dir) if cache_dir else onnx_cache_dir(base)
    record = _read_record(target)
    if record is not None and not record["ok"]:
        raise OnnxParityError(
            f"{record['reason']} (recorded in {target / RECORD_FILE}; delete it to retry)"
        )
    try:
        enc = onnx_encoder(base, threads=threads, cache_dir=target)
    except (ClipsearchError, OSError):
        raise  # a missing package or a full disk says nothing about the model: not recorded
    except Exception as e:  # noqa: BLE001 - the exporter raises many kinds; each means "no ONNX"
        reason = f"the ONNX export failed: {type(e).__name__}: {_first_line(e)}"
        _write_record(target, {"ok": False, "reason": reason})
        raise OnnxParityError(reason) from e
    if _read_record(target) is None:  # (re-read: an export just now replaced the directory)
        img, txt = parity(base, enc)
        ok = min(img, txt) >= PARITY_MIN_COS
        reason = (
            f"the ONNX graphs' vectors differ from PyTorch's (worst cosine: images {img:.5f}, "
            f"texts {txt:.5f}; the parity check needs {PARITY_MIN_COS})"
        )
        _write_record(target, {"ok": ok, "reason": reason, "image_cos": img, "text_cos": txt})
        if not ok:
            raise OnnxParityError(reason)
        log.info("ONNX parity for %s: worst cosine images %.6f, texts %.6f", base.spec, img, txt)
    return enc


def auto_encoder(
    base: Encoder, threads: int | None = None, cache_dir: Path | None = None
) -> Encoder:
    """The `auto` backend on a CPU: ONNX Runtime fp32 when `base` exports and passes the parity
    check, else `base` itself (PyTorch) with the reason logged as a warning."""
    try:
        enc: Encoder = checked_onnx_encoder(base, threads, cache_dir)
    except ClipsearchError as e:
        _fall_back(base, str(e))
        return base
    except OSError as e:  # e.g. a read-only or full cache: PyTorch needs no cache
        _fall_back(base, f"the ONNX export could not be written: {e}")
        return base
    enc.requested_backend = "auto"
    return enc


def _fall_back(base: Encoder, reason: str) -> None:
    log.warning("backend auto: running %s in PyTorch, not ONNX Runtime: %s", base.spec, reason)
    base.use_channels_last()
    base.requested_backend = "auto"
    base.backend_reason = reason


def _versions() -> dict[str, str | int]:
    """What the recorded outcome depends on: the exporter, the runtime, our export code."""
    import onnxruntime

    return {
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "export_version": EXPORT_VERSION,
    }


def _read_record(target: Path) -> dict[str, Any] | None:
    """The recorded outcome for these versions, or None (none yet, stale, or unreadable)."""
    try:
        record = json.loads((target / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("versions") != _versions():
        return None
    return record


def _write_record(target: Path, record: dict[str, Any]) -> None:
    """Written aside, then renamed: concurrent loads each write a whole record."""
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f".{RECORD_FILE}.{os.getpid()}.{id(record)}"
    tmp.write_text(json.dumps({**record, "versions": _versions()}, indent=1))
    tmp.replace(target / RECORD_FILE)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else "(no message)"
