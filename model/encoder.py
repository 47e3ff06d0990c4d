"""The one encoder contract used by training, indexing and serving."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .config import PreprocessConfig
from .device import autocast_for
from .preprocess import DEFAULT_MAX_PIXELS, ImageSource, build_transform, decode_size, load_image

log = logging.getLogger(__name__)

CHARS_PER_TOKEN_CAP = 10  # texts are cut to max_length * this many characters before tokenising


@dataclass(frozen=True)
class TextSettings:
    max_length: int = 77  # the tokenizer's context; longer texts are truncated
    pad_to_max_length: bool = False
    use_attention_mask: bool = True


class Encoder:
    """A loaded image–text model. encode_* return L2-normalised float32 arrays of shape (n, dim).

    `module` is any nn.Module with encode_image(pixels), encode_text(ids, mask) and scale();
    `preprocess` is the exact eval transform (PIL RGB → tensor) the model expects.
    `backend` names what runs the forwards (one of model.backends.BACKENDS): "torch" here, the
    ONNX Runtime subclass says which graphs it runs; the indexer records it in the manifest.
    """

    backend: str = "torch"
    # what the caller asked for when it was not this backend itself ("auto"), and, when auto
    # fell back to PyTorch, why: shown as e.g. "auto → onnx" by `backend_label`
    requested_backend: str | None = None
    backend_reason: str = ""

    def __init__(
        self,
        module: nn.Module,
        tokenizer: Any,
        preprocess_config: PreprocessConfig,
        text: TextSettings,
        spec: str,
        device: torch.device,
        fingerprint_meta: dict[str, Any],
        image_batch_size: int = 32,
        text_batch_size: int = 128,
    ) -> None:
        self.module = module.to(device).eval()
        self.tokenizer = tokenizer
        self.preprocess_config = preprocess_config
        self.preprocess = build_transform(preprocess_config)
        self.text = text
        self.spec = spec
        self.device = device
        self.image_batch_size = image_batch_size
        self.text_batch_size = text_batch_size
        self._fingerprint_meta = fingerprint_meta
        self.channels_last = False

    def use_channels_last(self) -> bool:
        """Store a convolutional image tower's weights, and feed its pixels, channels-last (NHWC):
        oneDNN's CPU convolutions and cuDNN's tensor-core kernels run it without layout
        conversions (1.5–1.8× faster for the starter on this project's CPU). Same values, so the
        fingerprint is unchanged; a tower without convolutions (a ViT's one patch conv aside)
        gains nothing and is left alone. For inference only: training keeps the default layout."""
        convs = [m for m in self.module.modules() if isinstance(m, nn.Conv2d)]
        if len(convs) > 1:
            self.module.to(memory_format=torch.channels_last)
            self.channels_last = True
        return self.channels_last

    @property
    def backend_label(self) -> str:
        """The backend running, with the choice that led to it: "onnx", or "auto → onnx"."""
        if self.requested_backend and self.requested_backend != self.backend:
            return f"{self.requested_backend} → {self.backend}"
        return self.backend

    def __repr__(self) -> str:
        return (
            f"Encoder(spec={self.spec!r}, backend={self.backend!r}, dim={self.dim}, "
            f"device={self.device})"
        )

    @cached_property
    def dim(self) -> int:
        return int(self.encode_texts([""]).shape[1])

    @property
    def logit_scale(self) -> float:
        """The model's temperature, already exp'd: probabilities = softmax(logit_scale * cos)."""
        with torch.no_grad():
            return float(self.module.scale())

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over the architecture/preprocessing config and every weight tensor."""
        h = hashlib.sha256(json.dumps(self._fingerprint_meta, sort_keys=True).encode())
        for name, t in sorted(self.module.state_dict().items()):
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    # -- images ---------------------------------------------------------------------------------
    def load_image(self, source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
        """Decode an image the way every clipsearch path does for this model: JPEGs at the
        smallest DCT scale that still covers the transform's first resize. The indexer and the
        server both decode through here, so one file gives one vector wherever it is encoded."""
        return load_image(
            source, max_pixels=max_pixels, min_size=decode_size(self.preprocess_config)
        )

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """PIL images (any mode) → (n, dim) unit vectors."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for i in range(0, len(images), self.image_batch_size):
            chunk = images[i : i + self.image_batch_size]
            pixels = torch.stack([self.preprocess(im) for im in chunk])
            out.append(self._encode_pixels(pixels))
        return np.concatenate(out)

    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Preprocessed (n, 3, H, W) tensors → (n, dim) unit vectors (the indexer's path)."""
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected pixels of shape (n, 3, H, W), got {tuple(pixels.shape)}")
        out = [
            self._encode_pixels(pixels[i : i + self.image_batch_size])
            for i in range(0, len(pixels), self.image_batch_size)
        ]
        return np.concatenate(out) if out else np.zeros((0, self.dim), dtype=np.float32)

    @torch.inference_mode()
    def _encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        pixels = pixels.to(self.device, non_blocking=True)
        if self.channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with autocast_for(self.device):
            feats = self.module.encode_image(pixels)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()

    # -- texts ----------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts → input_ids/attention_mask, cut to the model's context; batches are padded to
        the longest text in them (same embeddings as fixed padding, far less compute)."""
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must be strings, got {type(t).__name__}")
        cap = self.text.max_length * CHARS_PER_TOKEN_CAP
        enc = self.tokenizer(
            [t[:cap] for t in texts],
            padding="max_length" if self.text.pad_to_max_length else "longest",
            truncation=True,
            max_length=self.text.max_length,
            return_tensors="pt",
        )
        mask = enc.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(enc["input_ids"])
        return {"input_ids": enc["input_ids"], "attention_mask": mask}

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Strings → (n, dim) unit vectors."""
        if isinstance(texts, str):
            raise TypeError("encode_texts takes a list of strings, not one string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = [
            self._encode_tokens(self.tokenize(texts[i : i + self.text_batch_size]))
            for i in range(0, len(texts), self.text_batch_size)
        ]
        return np.concatenate(out)

    @torch.inference_mode()
    def _encode_tokens(self, tokens: dict[str, torch.Tensor]) -> np.ndarray:
        ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device)
        with autocast_for(self.device):
            feats = self.module.encode_text(ids, mask)
        return F.normalize(feats.float(), dim=-1).cpu().numpy()
