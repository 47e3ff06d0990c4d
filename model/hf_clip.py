"""Hugging Face CLIP-family checkpoints (CLIPModel, SiglipModel, …) behind the encoder contract."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

from .config import PreprocessConfig
from .errors import ModelSpecError

log = logging.getLogger(__name__)

_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


class HFDualEncoder(nn.Module):
    """Adapts a transformers model with get_image_features/get_text_features to the same surface
    as DualEncoder: encode_image, encode_text (unnormalised) and scale()."""

    def __init__(self, model: nn.Module, use_attention_mask: bool = True) -> None:
        super().__init__()
        self.model = model
        self.use_attention_mask = use_attention_mask

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return _features(self.model.get_image_features(pixel_values=pixels))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask if self.use_attention_mask else None
        return _features(self.model.get_text_features(input_ids=input_ids, attention_mask=mask))

    def scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp().clamp(max=100.0)


def _features(out: Any) -> torch.Tensor:
    # transformers < 5 returns the projected tensor, >= 5 a ModelOutput whose pooler_output it is
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def load_hf(ref: str) -> tuple[HFDualEncoder, Any, PreprocessConfig, dict[str, Any]]:
    """Load `ref` (hub id or local dir) → (module, tokenizer, preprocess config, text settings).

    A hub id is fetched only when the hub answers: offline (HF_HUB_OFFLINE/TRANSFORMERS_OFFLINE
    set, or no connection at the first try) it loads from the local cache or fails at once with
    one line, instead of transformers' half a minute of retries."""
    local = Path(ref).expanduser().is_dir()
    if not local and (ref.startswith(("/", ".", "~")) or ref.count("/") > 1):
        raise ModelSpecError(f"hf:{ref}: no such directory (and not a hub id: org/name)")
    cache_only = not local and not hub_reachable()
    try:
        model = AutoModel.from_pretrained(ref, local_files_only=cache_only)
        tokenizer = AutoTokenizer.from_pretrained(ref, local_files_only=cache_only)
        processor = AutoImageProcessor.from_pretrained(ref, local_files_only=cache_only)
    except (OSError, ValueError) as e:
        if cache_only:
            raise ModelSpecError(_offline_message(ref)) from e
        raise ModelSpecError(
            f"could not load Hugging Face model {ref!r}: {e}".splitlines()[0]
            + " (a hub id needs network access the first time; a local dir needs config.json,"
            " weights, tokenizer and preprocessor_config.json)"
        ) from e
    if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
        raise ModelSpecError(
            f"hf:{ref} is a {type(model).__name__}, not a CLIP-family image-text model "
            "(CLIPModel, SiglipModel, ...)"
        )
    model_type = getattr(model.config, "model_type", "")
    siglip = model_type.startswith("siglip")
    text_cfg = model.config.text_config
    text = {
        "max_length": int(getattr(text_cfg, "max_position_embeddings", 77)),
        # SigLIP was trained on fixed-length padded text without an attention mask
        "pad_to_max_length": siglip,
        "use_attention_mask": not siglip,
    }
    log.info("loaded hf:%s (%s)", ref, type(model).__name__)
    return (
        HFDualEncoder(model, text["use_attention_mask"]),
        tokenizer,
        preprocess_from_hf(processor.to_dict()),
        text,
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when Hugging Face offline mode is set or the hub does not answer one short request
    (no retries: an unreachable hub is known after one try, not after transformers' backoff)."""
    if _offline_mode():
        return False
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as e:  # any transport error (DNS, refused, timeout, proxy) means "no"
        log.info("the Hugging Face hub at %s is unreachable: %s", constants.ENDPOINT, e)
        return False
    return True


def _offline_message(ref: str) -> str:
    why = (
        " (offline mode: HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set)" if _offline_mode() else ""
    )
    return (
        f"cannot reach the Hugging Face hub to fetch {ref!r}{why} and it is not in the local "
        "cache; pass a local directory (hf:/path/to/model), or fetch it once with network access "
        "and then run with HF_HUB_OFFLINE=1 on that warm cache"
    )


def _offline_mode() -> bool:
    # Hugging Face's own switches (huggingface_hub reads them once at import; read them again
    # here so a value set later in the process counts too)
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(
        (v or "").strip().upper() in {"1", "ON", "YES", "TRUE"} for v in flags
    )


def preprocess_from_hf(p: dict[str, Any]) -> PreprocessConfig:
    """Translate a Hugging Face image-processor config into the equivalent PreprocessConfig."""
    size = p.get("size") or {}
    interp = _RESAMPLE.get(int(p.get("resample", 3)), "bicubic")
    mean = tuple(p.get("image_mean") or (0.5, 0.5, 0.5))
    std = tuple(p.get("image_std") or (0.5, 0.5, 0.5))
    if "shortest_edge" in size:
        crop = p.get("crop_size") or {}
        side = (
            int(crop.get("height", size["shortest_edge"])) if p.get("do_center_crop", True) else 0
        )
        side = side or int(size["shortest_edge"])
        return PreprocessConfig(
            size=side,
            resize_mode="shortest",
            crop_pct=side / int(size["shortest_edge"]),
            interpolation=interp,
            mean=mean,
            std=std,
        )
    side = int(size.get("height", 224))
    return PreprocessConfig(
        size=side, resize_mode="squash", interpolation=interp, mean=mean, std=std
    )
