"""Hugging Face CLIP-family checkpoints (CLIPModel, SiglipModel, …) behind the encoder contract."""

from __future__ import annotations

import logging
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
    """Load `ref` (hub id or local dir) → (module, tokenizer, preprocess config, text settings)."""
    try:
        model = AutoModel.from_pretrained(ref)
        tokenizer = AutoTokenizer.from_pretrained(ref)
        processor = AutoImageProcessor.from_pretrained(ref)
    except (OSError, ValueError) as e:
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
