"""What a training run trains: a clipsearch DualEncoder (from scratch, the starter or a
checkpoint) or a Hugging Face CLIP-family model, behind one small handle."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..config import DualEncoderConfig, ImageTowerConfig, PreprocessConfig, TextTowerConfig
from ..dual_encoder import MAX_LOGIT_SCALE, DualEncoder
from ..encoder import Encoder, TextSettings
from ..loader import parse_spec
from .config import ConfigError, TrainConfig

log = logging.getLogger(__name__)

# --image-tower / --text-tower: the other one when only one is named
DEFAULT_IMAGE_TOWER, DEFAULT_TEXT_TOWER = "vit_base_patch32_224", "bert-base-uncased"

# parameter-name prefixes of each tower, per family (everything else, e.g. the temperature,
# belongs to neither tower)
TOWER_PREFIXES = {
    "clipsearch": {"image": ("visual.",), "text": ("text.",)},
    "hf": {
        "image": ("model.vision_model.", "model.visual_projection."),
        "text": ("model.text_model.", "model.text_projection."),
    },
    # open_clip: CustomTextCLIP keeps its text tower in .text, CLIP spreads it over attributes
    "open_clip": {
        "image": ("model.visual.",),
        "text": (
            "model.text.",
            "model.transformer.",
            "model.token_embedding.",
            "model.positional_embedding",
            "model.ln_final.",
            "model.text_projection",
        ),
    },
}


@dataclass
class TrainModel:
    module: nn.Module  # encode_image / encode_text / scale(), as the encoder contract wants
    tokenizer: Any
    preprocess: PreprocessConfig
    text: TextSettings
    family: str  # "clipsearch" | "hf" | "open_clip"
    hf_ref: str | None = None  # hf family: where the image processor comes from

    def tower_of(self, param_name: str) -> str:
        for tower, prefixes in TOWER_PREFIXES[self.family].items():
            if param_name.startswith(prefixes):
                return tower
        return "other"

    @property
    def logit_scale(self) -> nn.Parameter:
        return (
            self.module.logit_scale
            if self.family == "clipsearch"
            else self.module.model.logit_scale
        )

    def trunk(self, tower: str) -> nn.Module:
        if self.family == "clipsearch":
            return self.module.visual.trunk if tower == "image" else self.module.text.trunk
        if self.family == "open_clip":  # locked by open_clip's own lock_*_tower (lock.py)
            return self.module.model.visual if tower == "image" else self.module.model
        return self.module.model.vision_model if tower == "image" else self.module.model.text_model

    def clamp_temperature(self) -> None:
        """Keep the stored log-temperature inside [0, ln 100] (CLIP's clamp)."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)

    def encoder(self, device: torch.device, spec: str = "training") -> Encoder:
        """The same Encoder the indexer and server build: identical tokenizing and preprocess."""
        enc = Encoder(
            self.module,
            self.tokenizer,
            self.preprocess,
            self.text,
            spec=spec,
            device=device,
            fingerprint_meta={"family": self.family, "training": True},
        )
        return enc

    def save(self, out_dir: str | Path) -> str:
        """Write the final model; returns the spec that loads it (`<dir>` or `hf:<dir>`)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if self.family == "clipsearch":
            save_checkpoint(self.module, self.tokenizer, out)
            return str(out)
        if self.family == "open_clip":
            from ..open_clip_models import save_local_dir

            save_local_dir(self.module, self.tokenizer, self.preprocess, out)
            return str(out)
        from transformers import AutoImageProcessor

        self.module.model.save_pretrained(str(out))
        self.tokenizer.save_pretrained(str(out))
        AutoImageProcessor.from_pretrained(self.hf_ref).save_pretrained(str(out))
        return f"hf:{out}"


def build_model(cfg: TrainConfig) -> TrainModel:
    """Initialise from cfg.init: scratch, starter, hf:<ref> or a clipsearch checkpoint dir."""
    if cfg.init == "scratch":
        return _from_scratch(cfg)
    kind, ref = parse_spec(cfg.init)
    if kind == "hf" and (open_clip_ref := _hf_as_open_clip(ref)):
        kind, ref = "open_clip", open_clip_ref
    if kind == "open_clip":
        return _open_clip_model(ref)
    if kind == "hf":
        from ..hf_clip import load_hf

        module, tokenizer, pre, text = load_hf(ref)
        return TrainModel(module, tokenizer, pre, TextSettings(**text), "hf", hf_ref=ref)
    if kind == "starter":
        from ..starter import ensure_starter

        model, tokenizer = load_checkpoint(ensure_starter())
        if cfg.image_head == "linear":
            model = _linear_image_head(model)
    else:
        model, tokenizer = load_checkpoint(ref)
    return _wrap(model, tokenizer)


def _hf_as_open_clip(ref: str) -> str | None:
    from ..open_clip_models import hf_as_open_clip

    return hf_as_open_clip(ref)


def _open_clip_model(ref: str) -> TrainModel:
    from ..open_clip_models import load_weights, parse_source

    module, tokenizer, pre, text, _ = load_weights(parse_source(ref))
    return TrainModel(module, tokenizer, pre, TextSettings(**text), "open_clip")


def _wrap(model: DualEncoder, tokenizer: Any) -> TrainModel:
    c = model.config
    text = TextSettings(c.text.max_length, c.text.pad_to_max_length, True)
    return TrainModel(model, tokenizer, c.preprocess, text, "clipsearch")


def _from_scratch(cfg: TrainConfig) -> TrainModel:
    """A preset or a config file (--model-config), or timm + transformers names (--image-tower /
    --text-tower); the tokenizer is --tokenizer, else the config's own, else the text tower's."""
    from transformers import AutoConfig, AutoTokenizer

    from ..presets import load_model_config, tokenizer_path

    if cfg.image_tower or cfg.text_tower:
        dcfg = _config_from_names(cfg, AutoConfig)
        tok_ref = cfg.tokenizer or cfg.text_tower or DEFAULT_TEXT_TOWER
    else:
        dcfg, config_tokenizer = load_model_config(cfg.model_config)
        tok_ref = cfg.tokenizer or config_tokenizer
        if not tok_ref:
            raise ConfigError(
                f"--model-config {cfg.model_config} names no tokenizer: give --tokenizer DIR|ID"
            )
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path(tok_ref))
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load tokenizer {tok_ref!r}: {e}".splitlines()[0]) from e
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every rerun
    model = DualEncoder(dcfg)
    if cfg.pretrained_towers:
        _load_pretrained_towers(model, cfg)
    return _wrap(model, tokenizer)


def _config_from_names(cfg: TrainConfig, auto_config) -> DualEncoderConfig:
    import timm
    from timm.data import resolve_data_config

    image_tower = cfg.image_tower or DEFAULT_IMAGE_TOWER
    text_tower = cfg.text_tower or DEFAULT_TEXT_TOWER
    try:
        text_hf = auto_config.from_pretrained(text_tower).to_dict()
    except (OSError, ValueError) as e:
        raise ConfigError(f"text tower {text_tower!r}: {e}".splitlines()[0]) from e
    text_hf = {
        k: v
        for k, v in text_hf.items()
        if not k.startswith("_") and k not in ("transformers_version", "architectures")
    }
    if not timm.is_model(image_tower):
        raise ConfigError(
            f"unknown timm model {image_tower!r}; see timm.list_models() for the names"
        )
    data = resolve_data_config({}, model=timm.create_model(image_tower, pretrained=False))
    pre = PreprocessConfig(
        size=data["input_size"][-1],
        crop_pct=data.get("crop_pct", 1.0),
        interpolation=data.get("interpolation", "bicubic"),
        mean=data["mean"],
        std=data["std"],
    )
    return DualEncoderConfig(
        name=f"{image_tower}+{text_tower}",
        image=ImageTowerConfig(timm_name=image_tower),
        text=TextTowerConfig(hf_config=text_hf, pooling="mean"),
        preprocess=pre,
        embed_dim=cfg.embed_dim,
    )


def _load_pretrained_towers(model: DualEncoder, cfg: TrainConfig) -> None:
    """timm and transformers pretrained weights (downloaded or from their caches)."""
    import timm
    from transformers import AutoModel

    if not cfg.text_tower:
        raise ConfigError("--pretrained-towers needs --image-tower and --text-tower names")
    img = timm.create_model(model.config.image.timm_name, pretrained=True, num_classes=0)
    model.visual.trunk.load_state_dict(img.state_dict(), strict=True)
    txt = AutoModel.from_pretrained(cfg.text_tower)
    model.text.trunk.load_state_dict(txt.state_dict(), strict=False)
    log.info("loaded pretrained towers %s and %s", model.config.image.timm_name, cfg.text_tower)


def _linear_image_head(model: DualEncoder) -> DualEncoder:
    """The starter's image tower with pooled features + a fresh linear head instead of
    ImageNet logits + ConSE: the locked trunk keeps its weights, the head learns the mapping."""
    c = model.config
    new_cfg = replace(
        c, image=replace(c.image, num_classes=0, head="linear"), name=f"{c.name}-linear-head"
    )
    new = DualEncoder(new_cfg)
    trunk_state = {
        k: v for k, v in model.visual.trunk.state_dict().items() if not k.startswith("classifier.")
    }
    new.visual.trunk.load_state_dict(trunk_state, strict=True)
    new.text.load_state_dict(model.text.state_dict(), strict=True)
    with torch.no_grad():
        new.logit_scale.copy_(model.logit_scale)
    return new
