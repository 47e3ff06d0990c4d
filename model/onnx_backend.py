"""An Encoder whose forward passes run in ONNX Runtime on the CPU.

Tokenising, preprocessing, batching, `fingerprint` and `logit_scale` are the PyTorch Encoder's own;
only the two tower forwards are replaced by the exported graphs (model/onnx_export.py).
"""

from __future__ import annotations

import hashlib
import logging
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .encoder import Encoder
from .onnx_export import OnnxTowers, ensure_onnx

log = logging.getLogger(__name__)


def session(path: str | Path, threads: int | None = None) -> Any:
    """An ORT CPU session with every graph optimisation on, using `threads` intra-op threads
    (default: torch's own thread count, so both backends share the same CPU budget)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
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
