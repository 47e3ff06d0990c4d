"""Architecture as data: the dataclasses a clipsearch checkpoint's config.json is made of."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

CHECKPOINT_FORMAT = "clipsearch-dual-encoder"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class PreprocessConfig:
    """The exact eval transform: resize, crop, normalise. Shared by train, index and serve."""

    size: int = 224  # side of the square the model sees
    resize_mode: Literal["shortest", "squash"] = "shortest"  # shortest side then crop | stretch
    crop_pct: float = 1.0  # "shortest": resize the short side to size / crop_pct, then centre crop
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        d = dict(d)
        d["mean"] = tuple(d.get("mean", cls.mean))
        d["std"] = tuple(d.get("std", cls.std))
        return cls(**d)


@dataclass(frozen=True)
class ImageTowerConfig:
    timm_name: str = "vit_base_patch32_224"
    timm_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. img_size for tiny models
    # 0 → pooled features (the usual CLIP tower); >0 → classifier logits, used by the "conse" head
    num_classes: int = 0
    head: Literal["linear", "none", "conse"] = "linear"
    conse_top_t: int = 10  # ConSE: how many top classes are mixed into the embedding


@dataclass(frozen=True)
class TextTowerConfig:
    # Full transformers config (model_type + fields): the tower is rebuilt without network.
    hf_config: dict[str, Any] = field(default_factory=dict)
    pooling: Literal["mean", "cls", "eos"] = "mean"
    head: Literal["linear", "none"] = "linear"
    max_length: int = 77  # token context; longer texts are truncated
    pad_to_max_length: bool = False  # SigLIP-style models were trained with fixed padding


@dataclass(frozen=True)
class DualEncoderConfig:
    image: ImageTowerConfig
    text: TextTowerConfig
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    embed_dim: int = 512
    init_logit_scale: float = 1 / 0.07  # CLIP's initial temperature, stored as log() in the model
    name: str = ""  # free-form, shown in `index info` and the API

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["format"] = CHECKPOINT_FORMAT
        d["version"] = CHECKPOINT_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DualEncoderConfig:
        d = {k: v for k, v in d.items() if k not in ("format", "version")}
        return cls(
            image=ImageTowerConfig(**d.pop("image")),
            text=TextTowerConfig(**d.pop("text")),
            preprocess=PreprocessConfig.from_dict(d.pop("preprocess", {})),
            **d,
        )
