"""load_encoder(spec): one entry point for every model family."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from .backends import BACKENDS, DEFAULT_BACKEND
from .checkpoint import is_checkpoint_dir, load_checkpoint
from .config import PreprocessConfig
from .encoder import Encoder, TextSettings
from .errors import ModelSpecError

log = logging.getLogger(__name__)

CPU_IMAGE_BATCH = 8  # measured best per image for the starter's tower on 1–2 CPU threads

SPEC_FORMS = (
    "'starter' (the offline default), 'hf:<hub id or local dir>' "
    "(e.g. hf:openai/clip-vit-base-patch32), 'open_clip:ARCH/TAG' "
    "(e.g. open_clip:ViT-B-32/laion2b_s34b_b79k), 'open_clip:hf-hub:ORG/REPO', "
    "'open_clip:local-dir:DIR', an OpenAI name (ViT-B/32, ViT-L/14@336px, RN50, ...), "
    "or the path of a clipsearch checkpoint directory; `clipsearch model list` shows the names"
)
OPEN_CLIP_PREFIX = "open_clip:"


def load_encoder(
    spec: str = "starter",
    device: str | torch.device | None = None,
    *,
    image_batch_size: int | None = None,
    text_batch_size: int = 128,
    backend: str = DEFAULT_BACKEND,
) -> Encoder:
    """Load a model by spec onto `device` (default: CUDA if available, else CPU). `backend`
    "onnx"/"onnx-int8" runs both towers in ONNX Runtime on the CPU (exported once, cached);
    "auto" (the default) does so for fp32 on a CPU when the export matches PyTorch's vectors, and
    runs PyTorch otherwise and on CUDA. The encoder's `backend` names the one running.

    A relative directory in `spec` is resolved here, once: the encoder's `spec` (and so an index
    manifest's model) is absolute and loads the same model from any working directory.

    `image_batch_size` (default: CPU_IMAGE_BATCH on a CPU, 32 on an accelerator) bounds one
    forward; larger requests are split. On a CPU small batches are faster per image: a
    convolutional tower's activations at batch 32 no longer fit the caches (docs/benchmarks.md).
    """
    dev = _device_for(backend, device)
    if image_batch_size is None:
        image_batch_size = CPU_IMAGE_BATCH if dev.type == "cpu" else 32
    spec = absolute_spec(spec)
    module, tokenizer, pre, text, meta = _load_weights(*parse_spec(spec))
    enc = Encoder(
        module,
        tokenizer,
        pre,
        TextSettings(**text),
        spec=spec,
        device=dev,
        fingerprint_meta=meta,
        image_batch_size=image_batch_size,
        text_batch_size=text_batch_size,
    )
    if backend == "torch" or (backend == "auto" and dev.type != "cpu"):
        # on CUDA PyTorch runs with fp16 autocast (model/device.py); ORT's CPU graphs can't
        enc.use_channels_last()
        return enc
    from .onnx_backend import auto_encoder, checked_onnx_encoder, onnx_encoder

    if backend == "auto":
        return auto_encoder(enc)
    if backend == "onnx":
        return checked_onnx_encoder(enc)
    return onnx_encoder(enc, int8=True)  # int8 vectors differ by design: no parity to check


def _device_for(backend: str, device: str | torch.device | None) -> torch.device:
    from .device import resolve_device

    if backend not in BACKENDS:
        raise ModelSpecError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend in ("torch", "auto"):
        return resolve_device(device)
    if device not in (None, "auto") and resolve_device(device).type != "cpu":
        raise ModelSpecError(f"the {backend} backend runs on the CPU, not {device}")
    return torch.device("cpu")


def _load_weights(kind: str, ref: str) -> tuple[Any, Any, PreprocessConfig, dict, dict]:
    """(module, tokenizer, preprocess config, text settings, fingerprint meta) of one spec."""
    if kind == "hf":
        from .open_clip_models import hf_as_open_clip

        if open_clip_ref := hf_as_open_clip(ref):
            return _load_weights("open_clip", open_clip_ref)
        from .hf_clip import load_hf

        module, tokenizer, pre, text = load_hf(ref)
        meta = {
            "family": "hf",
            "arch": type(module.model).__name__,
            "preprocess": pre.__dict__,
            "text": text,
        }
        return module, tokenizer, pre, text, meta
    if kind == "open_clip":
        from .open_clip_models import load_weights, parse_source

        return load_weights(parse_source(ref))
    if kind == "starter":
        from .starter import ensure_starter

        path = ensure_starter()
    else:
        path = Path(ref)
    module, tokenizer = load_checkpoint(path)
    cfg = module.config
    text = {
        "max_length": cfg.text.max_length,
        "pad_to_max_length": cfg.text.pad_to_max_length,
        "use_attention_mask": True,
    }
    meta = {"family": "clipsearch", "config": cfg.to_dict()}
    return module, tokenizer, cfg.preprocess, text, meta


def absolute_spec(spec: str) -> str:
    """The spec with a relative directory (a checkpoint, an open_clip dir, `hf:` or
    `open_clip:local-dir:`) made absolute and 'default' resolved to the model it stands for
    here (model.default_model); names and hub ids unchanged. Raises ModelSpecError for a spec
    that names no model."""
    from .default_model import is_default, resolve_default_model

    if is_default(spec):  # resolved once, here: the encoder (and an index) records the result
        spec = resolve_default_model()
    kind, ref = parse_spec(spec)
    spec = spec.strip()
    if kind == "open_clip" and spec.startswith(OPEN_CLIP_PREFIX) and ref.startswith("local-dir:"):
        return OPEN_CLIP_PREFIX + ref  # parse_spec resolved the directory
    if kind in ("checkpoint", "open_clip") and Path(spec).expanduser().is_dir():
        return str(Path(spec).expanduser().resolve())
    if kind == "hf" and Path(ref).expanduser().is_dir():  # a local dir wins over a hub id
        return "hf:" + str(Path(ref).expanduser().resolve())
    return spec


def parse_spec(spec: str) -> tuple[str, str]:
    """A spec → (kind, ref): 'starter' | 'hf:<ref>' | 'open_clip:<ref>' | an OpenAI name |
    '<checkpoint dir>' | '<open_clip dir>'; anything else is a clear error. For the open_clip
    family, ref is what model.open_clip_models.parse_source takes (ARCH/TAG, hf-hub:…,
    local-dir:<absolute dir>)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ModelSpecError(f"empty model spec; use {SPEC_FORMS}")
    spec = spec.strip()
    if spec == "starter":
        return "starter", ""
    if spec == "default":  # see absolute_spec, which load_encoder resolves it through
        from .default_model import resolve_default_model

        return parse_spec(resolve_default_model())
    if spec.startswith("hf:"):
        ref = spec[3:].strip()
        if not ref:
            raise ModelSpecError(f"'hf:' needs a hub id or a local directory; use {SPEC_FORMS}")
        return "hf", ref
    if spec.startswith(OPEN_CLIP_PREFIX):
        from .open_clip_models import parse_source

        return "open_clip", parse_source(spec[len(OPEN_CLIP_PREFIX) :]).ref
    path = Path(spec).expanduser()
    if is_checkpoint_dir(path):
        return "checkpoint", str(path)
    return _parse_other(spec, path)


def _parse_other(spec: str, path: Path) -> tuple[str, str]:
    """An open_clip directory, an OpenAI name, or a clear error."""
    from .open_clip_models import CONFIG_FILE, looks_like_openai_name, openai_source

    if (path / CONFIG_FILE).is_file():
        return "open_clip", f"local-dir:{path.resolve()}"
    if looks_like_openai_name(spec) and not path.exists():
        return "open_clip", openai_source(spec).ref
    if (path / "config.json").is_file():
        raise ModelSpecError(
            f"{spec} looks like a Hugging Face model directory; load it as 'hf:{spec}'"
        )
    what = "is not a clipsearch checkpoint directory" if path.exists() else "is not a known model"
    raise ModelSpecError(f"model spec {spec!r} {what}; use {SPEC_FORMS}")
